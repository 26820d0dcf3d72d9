//! Malformed and hostile components are refused at load with a clear
//! message, and the host carries on.

mod common;

use common::{PLUGIN_DIR, TestHost, probe_wasm};
use kiln_host::FinishStatus;
use std::path::Path;

#[tokio::test(flavor = "multi_thread")]
async fn truncated_wrong_world_and_non_component_files_are_refused_at_load() {
    let t = TestHost::new().await;
    let scratch = t.jobs.path();

    let bytes = std::fs::read(probe_wasm()).unwrap();
    let truncated = scratch.join("truncated.wasm");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = t
        .host
        .catalog()
        .add_file(&truncated)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a valid WebAssembly component"), "{e}");
    assert!(e.contains("truncated.wasm"), "{e}");

    let wrong = Path::new(PLUGIN_DIR).join("wrong_version.wasm");
    let e = t
        .host
        .catalog()
        .add_file(&wrong)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("does not target Kiln's world kiln:plugin/plugin@0.1.0"),
        "{e}"
    );
    assert!(e.contains("kiln:plugin/log@0.2.0"), "{e}");

    let text = scratch.join("text.wasm");
    std::fs::write(&text, "not wasm at all").unwrap();
    let e = t
        .host
        .catalog()
        .add_file(&text)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a valid WebAssembly component"), "{e}");

    let e = t
        .host
        .catalog()
        .add_file(scratch)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a regular file"), "{e}");

    assert_eq!(t.probe("ok", None).await.status, FinishStatus::Succeeded);
}
