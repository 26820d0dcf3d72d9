//! Builds the standard tasks (plugins/*) for wasm32-wasip2 and embeds them,
//! and builds the confinement helper `kiln-confine` that native programs are
//! spawned through (its path is baked in as the fallback location).

use kiln_guest_build::{Guest, build, build_native_tool, rerun_if_changed};
use std::path::PathBuf;

/// Standard tasks: (package, lib name = task name).
const TASKS: &[(&str, &str)] = &[
    ("kiln-task-mtzdump", "mtzdump"),
    ("kiln-task-mtzheader", "mtzheader"),
    ("kiln-task-coord-convert", "coord_convert"),
    ("kiln-task-sfcalc-r", "sfcalc_r"),
    ("kiln-task-model-contents", "model_contents"),
    ("kiln-task-gemmi-report", "gemmi_report"),
    ("kiln-task-pdbset", "pdbset"),
    ("kiln-task-demo-copycell", "demo_copycell"),
    ("kiln-task-refmac", "refmac"),
    ("kiln-task-refine-scan", "refine_scan"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let guests: Vec<Guest> = TASKS
        .iter()
        .map(|(package, lib_name)| Guest { package, lib_name })
        .collect();
    let wasm = build(&root, &guests);
    rerun_if_changed(&root.join("plugins"));
    let mut code = String::from(
        "/// (task name, component bytes) of every standard task.\npub const STANDARD_TASKS: &[(&str, &[u8])] = &[\n",
    );
    for ((_, name), path) in TASKS.iter().zip(&wasm) {
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("standard_tasks.rs");
    std::fs::write(out, code).unwrap();

    let helper = build_native_tool(&root, "kiln-confine", "kiln-confine");
    rerun_if_changed(&root.join("confine"));
    println!("cargo:rustc-env=KILN_CONFINE_BUILT={}", helper.display());
}
