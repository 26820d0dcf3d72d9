//! The simulated stage behind the axes interface: motions take time, can be
//! stopped midway, respect limits, and ungranted axes are denied.

mod common;

use common::{TestHost, grants, result_text};
use kiln_host::FinishStatus;

#[tokio::test(flavor = "multi_thread")]
async fn a_motion_reaches_its_target_at_finite_speed() {
    let t = TestHost::new().await;
    let started = std::time::Instant::now();
    let report = t.probe("axis x 2 10 0", None).await;
    assert_eq!(result_text(&report), "reached 2.000");
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_motion_stopped_midway_ends_between_start_and_target() {
    let t = TestHost::new().await;
    let report = t.probe("axis phi 90 10 300", None).await;
    let result = result_text(&report);
    let (end, pos) = result.split_once(' ').unwrap();
    assert_eq!(end, "stopped");
    let pos: f64 = pos.parse().unwrap();
    assert!(pos > 0.0 && pos < 90.0, "{pos}");
}

#[tokio::test(flavor = "multi_thread")]
async fn moves_outside_the_limits_and_ungranted_axes_are_refused() {
    let t = TestHost::new().await;
    let report = t.probe("axis x 500 1 0", None).await;
    assert_eq!(report.status, FinishStatus::Failed);
    assert!(report.reason.unwrap().contains("outside its limits"));

    let report = t
        .probe("axis x 1 1 0", Some(grants("axes = [\"phi\"]")))
        .await;
    assert_eq!(report.status, FinishStatus::Failed);
    let reason = report.reason.unwrap();
    assert!(reason.contains("axis `x` is not granted"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_granted_envelope_bounds_targets_and_speeds() {
    let t = TestHost::new().await;
    let manifest = || {
        Some(grants(
            "axes = [\"x\"]\n[axis_limits.x]\nmin = -1.0\nmax = 1.0\nmax_speed = 5.0\n",
        ))
    };
    let report = t.probe("axis x 2 1 0", manifest()).await;
    assert_eq!(report.status, FinishStatus::Failed);
    let reason = report.reason.unwrap();
    assert!(
        reason.contains("outside the granted envelope [-1, 1]"),
        "{reason}"
    );
    assert!(reason.contains("[axis_limits.x]"), "{reason}");

    let report = t.probe("axis x 1 9 0", manifest()).await;
    assert_eq!(report.status, FinishStatus::Failed);
    assert!(
        report
            .reason
            .unwrap()
            .contains("speed 9 is above the granted 5")
    );

    let report = t.probe("axis x 0.5 5 0", manifest()).await;
    assert_eq!(result_text(&report), "reached 0.500");
}
