//! Native programs wait for a slot: at most `max_running_processes` run
//! host-wide and `limits.processes` per pipeline, the rest queue in order,
//! and a job whose only programs wait shows `queued`.

mod common;

use common::{TestHost, grants, result_text};
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

#[tokio::test(flavor = "multi_thread")]
async fn a_job_waiting_for_the_host_wide_limit_is_queued_and_runs_after() {
    let t = TestHost::with_config(
        |r| r,
        |mut c| {
            c.max_running_processes = 1;
            c
        },
    )
    .await;
    let mut events = t.host.events().subscribe();
    let first = t
        .host
        .submit(probe_request("outcome fake sleep 1"))
        .await
        .unwrap();
    t.host.start(&first);
    common::wait_for_program(&first.dir).await;
    let second = t
        .host
        .submit(probe_request("outcome fake exit 0"))
        .await
        .unwrap();
    t.host.start(&second);
    assert_eq!(second.wait().await.status, FinishStatus::Succeeded);
    assert_eq!(first.wait().await.status, FinishStatus::Succeeded);

    let mut second_states = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let (true, EventKind::State { state }) = (e.job_id == second.id, &e.kind) {
            second_states.push(*state);
        }
    }
    assert!(
        second_states.contains(&JobState::Queued),
        "{second_states:?}"
    );
    let queued_at = second_states
        .iter()
        .position(|s| *s == JobState::Queued)
        .unwrap();
    assert_eq!(
        second_states[queued_at + 1],
        JobState::Running,
        "{second_states:?}"
    );
    // The second program started only once the first had ended.
    let first_end = first.times().ended.unwrap().0;
    let second_end = second.times().ended.unwrap().0;
    assert!(second_end >= first_end - Duration::from_millis(200));
    t.assert_no_leftovers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_runs_at_most_its_limit_of_programs_at_once() {
    let t = TestHost::new().await;
    let started = Instant::now();
    let r = t
        .probe(
            "spawn-many 4 4 fake sleep 0.3",
            Some(grants("programs = [\"fake\"]\n[limits]\nprocesses = 1\n")),
        )
        .await;
    assert_eq!(result_text(&r), "4");
    // One at a time: four sleeps of 0.3 s cannot take less than 1.2 s.
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    t.assert_no_leftovers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_job_whose_program_waits_in_the_queue_cancels_it_there() {
    let t = TestHost::with_config(
        |r| r,
        |mut c| {
            c.max_running_processes = 1;
            c
        },
    )
    .await;
    let blocker = t
        .host
        .submit(probe_request("outcome fake sleep 600"))
        .await
        .unwrap();
    t.host.start(&blocker);
    common::wait_for_program(&blocker.dir).await;
    // A program that prints: had it run, its log.txt would exist.
    let waiting = t
        .host
        .submit(probe_request("outcome fake print-argv"))
        .await
        .unwrap();
    t.host.start(&waiting);
    let deadline = Instant::now() + Duration::from_secs(20);
    while waiting.state() != JobState::Queued && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(waiting.state(), JobState::Queued);
    waiting.cancel();
    assert_eq!(waiting.wait().await.status, FinishStatus::Interrupted);
    assert!(
        !waiting.dir.join("log.txt").exists(),
        "the queued program never started"
    );
    blocker.cancel();
    assert_eq!(blocker.wait().await.status, FinishStatus::Interrupted);
    t.assert_no_leftovers().await;
}
