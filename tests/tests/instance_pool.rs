//! The instance pool at its limit: more jobs at once than the pool has
//! slots all run and succeed, those beyond it allocated on demand and
//! counted; a task loaded while the pool is full still describes itself;
//! and every instance is let go at the end.

mod common;

use common::TestHost;
use kiln_host::events::{Event, EventKind};
use kiln_host::{FinishStatus, InstancePool, RunRequest, TaskRef};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;
use tokio::sync::broadcast;

const SLOTS: u32 = 2;
const JOBS: usize = 8;
/// Long enough for every job to be in its host call before the first one
/// ends, even on a slow debug build.
const SLEEP_MS: u64 = 5000;

fn probe_request(mode: &str) -> RunRequest {
    RunRequest {
        task: TaskRef::Name("probe".into()),
        params: vec![("MODE".into(), mode.into())],
        grants: None,
    }
}

/// Wait until every job of `ids` has said `sleeping` on the bus: its
/// instance is live from then until it ends.
async fn all_sleeping(rx: &mut broadcast::Receiver<Event>, ids: &[String]) {
    let mut sleeping = HashSet::new();
    while sleeping.len() < ids.len() {
        let event = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("the jobs did not all reach their sleep within 60 s")
            .expect("the bus closed or this reader fell behind");
        if !ids.contains(&event.job_id) {
            continue;
        }
        match event.kind {
            EventKind::Progress { phase, .. } if phase == "sleeping" => {
                sleeping.insert(event.job_id);
            }
            EventKind::Finished { status, reason } => {
                panic!(
                    "job {} ended {status:?} before its sleep: {reason:?}",
                    event.job_id
                )
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn more_jobs_than_pool_slots_all_succeed_on_demand() {
    let t = TestHost::with_config(
        |r| r,
        |mut c| {
            c.instance_pool = InstancePool::with_instances(SLOTS);
            c
        },
    )
    .await;
    let before = t.host.runtime_stats();
    assert_eq!(before.pool_slots, SLOTS);
    assert_eq!(before.instances_live, 0, "{before:?}");

    let mut rx = t.host.events().subscribe();
    let mut jobs = Vec::new();
    for _ in 0..JOBS {
        let job = t
            .host
            .submit(probe_request(&format!("sleep {SLEEP_MS}")))
            .await
            .unwrap();
        t.host.start(&job);
        jobs.push(job);
    }
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    all_sleeping(&mut rx, &ids).await;
    let during = t.host.runtime_stats();
    assert_eq!(during.instances_live, JOBS as u64, "{during:?}");
    assert_eq!(during.instances_pooled, u64::from(SLOTS), "{during:?}");
    let fallbacks = during.pooled_exhausted_fallbacks - before.pooled_exhausted_fallbacks;
    assert_eq!(fallbacks, JOBS as u64 - u64::from(SLOTS), "{during:?}");

    // A task first loaded now describes itself in an instance of its own,
    // outside the full pool.
    let hostile = Path::new(common::PLUGIN_DIR).join("hostile.wasm");
    t.host.catalog().add_file(&hostile).await.unwrap();
    let loaded = t.host.runtime_stats();
    assert_eq!(
        loaded.pooled_exhausted_fallbacks,
        during.pooled_exhausted_fallbacks + 1,
        "{loaded:?}"
    );

    for job in &jobs {
        let result = job.wait().await;
        assert_eq!(
            result.status,
            FinishStatus::Succeeded,
            "job {}: {:?}",
            job.id,
            result.reason
        );
    }
    let after = t.host.runtime_stats();
    assert_eq!(after.instances_live, 0, "{after:?}");
    assert_eq!(after.instances_pooled, 0, "{after:?}");
    assert!(
        after.instantiations >= before.instantiations + JOBS as u64,
        "{after:?}"
    );

    // With the pool free again, a job takes a slot.
    let report = t.probe("ok", None).await;
    assert_eq!(
        report.status,
        FinishStatus::Succeeded,
        "{:?}",
        report.reason
    );
    let last = t.host.runtime_stats();
    assert_eq!(
        last.pooled_exhausted_fallbacks, after.pooled_exhausted_fallbacks,
        "{last:?}"
    );
}
