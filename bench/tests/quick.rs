//! The quick benchmark runs to its end and every job in it succeeds. No
//! timing is checked: a shared test machine makes numbers meaningless here.

use std::process::Command;

#[test]
fn the_quick_benchmark_completes_and_every_job_succeeds() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln-bench"))
        .args(["--quick", "--skip-python"])
        .output()
        .expect("failed to run kiln-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kiln-bench --quick failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("every job succeeded"),
        "no closing line:\n{stdout}\n{stderr}"
    );
    for table_line in [
        "Spawn and wait",
        "Targets",
        "log.txt throughput",
        "cancel to",
    ] {
        assert!(stdout.contains(table_line), "no `{table_line}`:\n{stdout}");
    }
}
