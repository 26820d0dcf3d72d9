//! The embedder API a job service builds on: a submitted job is found by
//! id while it runs and after it ended, listed with the others, watched
//! through its own event stream to its `finished`, and cancelled by id;
//! a new host on the same jobs directory finds what the old one recorded.

mod common;

use common::{TestHost, probe_wasm};
use kiln_host::{EventKind, FinishStatus, Host, HostConfig, RunRequest, TaskRef, Watched};
use std::time::Duration;

fn probe(mode: &str) -> RunRequest {
    RunRequest {
        task: TaskRef::Name("probe".into()),
        params: vec![("MODE".into(), mode.into())],
        grants: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_is_found_listed_watched_and_cancelled_by_id() {
    let t = TestHost::new().await;
    let done = t.host.submit(probe("ok")).await.unwrap();
    let mut watch = t.host.subscribe(&done.id);
    t.host.start(&done);
    let mut kinds = Vec::new();
    while let Some(w) = tokio::time::timeout(Duration::from_secs(60), watch.next())
        .await
        .expect("the stream ends after finished")
    {
        match w {
            Watched::Event(e) => {
                assert_eq!(e.job_id, done.id, "only this job's events");
                kinds.push(e.kind);
            }
            Watched::Missed(n) => panic!("missed {n} events"),
        }
    }
    assert!(
        matches!(
            kinds.last(),
            Some(EventKind::Finished {
                status: FinishStatus::Succeeded,
                ..
            })
        ),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| matches!(k, EventKind::State { .. })));

    // A second job, still running when looked up, then cancelled by id.
    let running = t
        .host
        .submit(probe("outcome fake sleep 600"))
        .await
        .unwrap();
    t.host.start(&running);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while t.host.job(&running.id).unwrap().state != "running" {
        assert!(std::time::Instant::now() < deadline, "never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let found = t.host.job(&running.id).unwrap();
    assert!(found.live);
    assert_eq!(found.task, "probe");
    assert!(t.host.cancel(&running.id));
    assert_eq!(running.wait().await.status, FinishStatus::Interrupted);
    assert!(!t.host.cancel("999"), "no such job");
    assert!(t.host.job("999").is_none());

    let listed = t.host.jobs().unwrap();
    let ids: Vec<&str> = listed.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, [done.id.as_str(), running.id.as_str()]);
    assert_eq!(listed[0].status.as_deref(), Some("succeeded"));
    assert_eq!(listed[1].status.as_deref(), Some("interrupted"));
    t.assert_no_leftovers().await;

    // A new host on the same jobs directory: the jobs are in its store.
    let jobs_dir = t.jobs.path().join("jobs");
    let mut config = HostConfig::new(&jobs_dir, common::fake_registry(t.jobs.path()));
    config.cache_dir = t_cache();
    let again = Host::new(config).unwrap();
    again.catalog().add_file(&probe_wasm()).await.unwrap();
    let past = again.job(&done.id).expect("recorded");
    assert!(!past.live);
    assert_eq!(past.state, "finished");
    assert_eq!(past.status.as_deref(), Some("succeeded"));
    assert_eq!(past.job_dir, jobs_dir.join(format!("job_{}", done.id)));
    assert_eq!(again.jobs().unwrap().len(), 2);
}

fn t_cache() -> Option<std::path::PathBuf> {
    Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-cache"))
}
