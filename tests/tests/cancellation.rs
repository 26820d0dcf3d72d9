//! Cancelling a job while its guest runs, while it waits in a host call,
//! twice, and after it finished: each time exactly one final state and one
//! `finished` signal, its programs gone, and no panic.

mod common;

use common::TestHost;
use kiln_host::events::EventKind;
use kiln_host::{FinishStatus, JobState, RunRequest, TaskRef};
use std::time::{Duration, Instant};

fn probe_request(mode: &str) -> RunRequest {
    RunRequest {
        task: TaskRef::Name("probe".into()),
        params: vec![("MODE".into(), mode.into())],
        grants: None,
    }
}

/// How many `finished` events the bus carried for `job_id`.
fn finished_count(
    rx: &mut tokio::sync::broadcast::Receiver<kiln_host::events::Event>,
    job_id: &str,
) -> usize {
    let mut n = 0;
    while let Ok(e) = rx.try_recv() {
        if e.job_id == job_id && matches!(e.kind, EventKind::Finished { .. }) {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_guest_waiting_on_a_program_interrupts_it_and_kills_the_program() {
    let t = TestHost::new().await;
    let mut events = t.host.events().subscribe();
    let job = t
        .host
        .submit(probe_request("outcome fake sleep 600"))
        .await
        .unwrap();
    t.host.start(&job);
    // Wait until the program runs.
    common::wait_for_program(&job.dir).await;
    let started = Instant::now();
    job.cancel();
    job.cancel();
    let result = job.wait().await;
    assert_eq!(result.status, FinishStatus::Interrupted, "{result:?}");
    assert_eq!(job.state(), JobState::Interrupted);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    job.cancel();
    assert_eq!(job.result().unwrap().status, FinishStatus::Interrupted);
    assert_eq!(finished_count(&mut events, &job.id), 1);
    let audit = std::fs::read_to_string(job.dir.join("audit.jsonl")).unwrap();
    let spawn: serde_json::Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(spawn["event"], "spawn");
    t.assert_no_leftovers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_spinning_guest_ends_it_after_the_grace_period() {
    let t = TestHost::new().await;
    let job = t.host.submit(probe_request("spin")).await.unwrap();
    t.host.start(&job);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    job.cancel();
    let result = job.wait().await;
    assert_eq!(result.status, FinishStatus::Interrupted);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The host carries on.
    assert_eq!(t.probe("ok", None).await.status, FinishStatus::Succeeded);
    t.assert_no_leftovers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_after_the_end_changes_nothing() {
    let t = TestHost::new().await;
    let mut events = t.host.events().subscribe();
    let job = t.host.submit(probe_request("ok")).await.unwrap();
    t.host.start(&job);
    assert_eq!(job.wait().await.status, FinishStatus::Succeeded);
    job.cancel();
    job.cancel();
    assert_eq!(job.state(), JobState::Finished);
    assert_eq!(job.result().unwrap().status, FinishStatus::Succeeded);
    assert_eq!(finished_count(&mut events, &job.id), 1);
    t.assert_no_leftovers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_pipeline_cancels_its_running_sub_job() {
    let t = TestHost::new().await;
    let job = t
        .host
        .submit(probe_request("subjob outcome fake sleep 600"))
        .await
        .unwrap();
    t.host.start(&job);
    common::wait_for_program(&job.dir.join("job_1")).await;
    job.cancel();
    assert_eq!(job.wait().await.status, FinishStatus::Interrupted);
    let children = job.children();
    assert_eq!(children.len(), 1);
    assert_eq!(
        children[0].result().unwrap().status,
        FinishStatus::Interrupted
    );
    t.assert_no_leftovers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_handle_is_refused() {
    let t = TestHost::new().await;
    // Another job's sub-job exists, but its handle lives in that job's
    // instance only.
    let other = t.host.submit(probe_request("make probe")).await.unwrap();
    t.host.start(&other);
    other.wait().await;
    for n in ["1", "7", "4294967295"] {
        let r = t.probe(&format!("forged-handle {n}"), None).await;
        assert_eq!(r.status, FinishStatus::Failed, "handle {n}: {r:#?}");
        let reason = r.reason.unwrap();
        assert!(
            reason.contains(&format!("unknown handle index {n}")),
            "{reason}"
        );
    }
    t.assert_no_leftovers().await;
}
