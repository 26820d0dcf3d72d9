//! Builds the conformance suite's `probe` plugin for wasm32-wasip2: the
//! benchmark drives programs through it, as a plugin author's task would.

use kiln_guest_build::{Guest, build, rerun_if_changed};
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let wasm = build(
        &root,
        &[Guest {
            package: "kiln-test-probe",
            lib_name: "probe",
        }],
    );
    rerun_if_changed(&root.join("tests/plugins/probe"));
    println!(
        "cargo:rustc-env=KILN_BENCH_PROBE_WASM={}",
        wasm[0].display()
    );
}
