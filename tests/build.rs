//! Builds the test plugins (tests/plugins/*) for wasm32-wasip2; the suite
//! finds them through `KILN_TEST_PLUGIN_DIR`.

use kiln_guest_build::{Guest, build, rerun_if_changed};
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let wasm = build(
        &root,
        &[
            Guest {
                package: "kiln-test-probe",
                lib_name: "probe",
            },
            Guest {
                package: "kiln-test-hostile",
                lib_name: "hostile",
            },
            Guest {
                package: "kiln-test-wrong-version",
                lib_name: "wrong_version",
            },
        ],
    );
    rerun_if_changed(&manifest.join("plugins"));
    let dir = wasm[0].parent().unwrap();
    println!("cargo:rustc-env=KILN_TEST_PLUGIN_DIR={}", dir.display());
}
