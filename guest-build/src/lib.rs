//! Build-script support: compile guest crates (Kiln plugins) for
//! wasm32-wasip2 with a nested `cargo build`, the way wasmtime's
//! test-programs artifacts are built.
//!
//! The nested cargo gets a target directory of its own: sharing the outer
//! one would deadlock on its lock. Every build script that uses this shares
//! that one guest directory, so the guest dependencies compile once.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";

/// A guest crate to build: its package name, and the file name stem cargo
/// gives its `.wasm` (the lib name).
pub struct Guest<'a> {
    pub package: &'a str,
    pub lib_name: &'a str,
}

/// Build `guests` from the workspace at `workspace_root` in release mode and
/// return the path of each `.wasm`, in order. Panics (failing the build) with
/// a message saying what to do when something is missing.
pub fn build(workspace_root: &Path, guests: &[Guest<'_>]) -> Vec<PathBuf> {
    ensure_target();
    let target_dir = guest_target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(workspace_root.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        // Flags meant for the host build must not leak into the guest one.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_PRIMARY_PACKAGE");
    for g in guests {
        cmd.arg("-p").arg(g.package);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("failed to run {cargo} to build the plugins: {e}"));
    if !status.success() {
        panic!("failed to build the plugins for {TARGET} (see the cargo output above)");
    }
    for dir in ["wit", "sdk"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace_root.join(dir).display()
        );
    }
    guests
        .iter()
        .map(|g| {
            let wasm = target_dir
                .join(TARGET)
                .join("release")
                .join(format!("{}.wasm", g.lib_name));
            if !wasm.is_file() {
                panic!(
                    "the build of {} did not produce {}",
                    g.package,
                    wasm.display()
                );
            }
            wasm
        })
        .collect()
}

/// Build binary `bin` of `package` for the host, statically linked where the
/// toolchain can (a static helper execs measurably faster), into the same
/// separate target directory; returns the executable's path.
pub fn build_native_tool(workspace_root: &Path, package: &str, bin: &str) -> PathBuf {
    let target_dir = guest_target_dir();
    let triple = std::env::var("TARGET").expect("TARGET is set for build scripts");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let run = |static_link: bool| {
        let mut cmd = Command::new(&cargo);
        cmd.arg("build")
            .arg("--release")
            .arg("--target")
            .arg(&triple)
            .arg("--manifest-path")
            .arg(workspace_root.join("Cargo.toml"))
            .arg("-p")
            .arg(package)
            .arg("--bin")
            .arg(bin)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_PRIMARY_PACKAGE");
        // An explicit --target keeps these flags off build scripts and
        // proc-macros, which cannot be static.
        if static_link {
            cmd.env("RUSTFLAGS", "-C target-feature=+crt-static");
        } else {
            cmd.env_remove("RUSTFLAGS");
        }
        cmd.status().map(|s| s.success()).unwrap_or(false)
    };
    if !run(true) && !run(false) {
        panic!(
            "failed to build {bin} (package {package}) for {triple}; see the cargo output above"
        );
    }
    let exe = target_dir.join(&triple).join("release").join(bin);
    if !exe.is_file() {
        panic!("the build of {package} did not produce {}", exe.display());
    }
    exe
}

/// Tell cargo to rebuild when a guest crate's sources change.
pub fn rerun_if_changed(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
}

/// `<target>/kiln-guests`, beside the outer build's profile directories.
fn guest_target_dir() -> PathBuf {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    // OUT_DIR is <target>[/<triple>]/<profile>/build/<pkg>-<hash>/out.
    let build = out
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .unwrap_or(&out);
    let target = build.parent().and_then(Path::parent).unwrap_or(build);
    target.join("kiln-guests")
}

/// Make sure the wasm32-wasip2 standard library is installed: add it with
/// rustup when it is missing, or fail saying the one command that does.
fn ensure_target() {
    if target_installed() {
        return;
    }
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !added || !target_installed() {
        panic!(
            "the Rust target {TARGET} is not installed and could not be added; run:\n\n    rustup target add {TARGET}\n"
        );
    }
}

fn target_installed() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .join("lib")
        .is_dir()
}
