//! Pipelines in the real host: sub-jobs under a cap, failure policies,
//! signals delivered exactly once in order, and resuming from the job
//! records. The example pipeline `refine_scan` (prosmart_refmac-like) runs
//! against the fake registry's refmac5 stand-in.

mod common;

use common::{TestHost, data, grants, most_at_once, record, result_text};
use kiln_host::events::EventKind;
use kiln_host::job::JobRecord;
use kiln_host::{FinishStatus, JobReport, JobState};
use std::path::Path;

const WEIGHTS: &str = "0.05 0.1 0.2 0.3 0.5 0.8 1.2 2.0";

async fn refine_scan(t: &TestHost, extra: &[(&str, &str)]) -> JobReport {
    let (mtz, pdb) = (data("5e5z.mtz"), data("rnase_frag.pdb"));
    let mut params = vec![
        ("HKLIN", mtz.to_str().unwrap()),
        ("XYZIN", pdb.to_str().unwrap()),
        ("WEIGHTS", WEIGHTS),
    ];
    params.extend_from_slice(extra);
    t.run("refine_scan", &params, None).await
}

/// Records of the refinement steps (every sub-job after the preparation).
fn refinement_records(report: &JobReport) -> Vec<JobRecord> {
    report.sub_jobs[1..]
        .iter()
        .map(|s| record(&s.job_dir))
        .collect()
}

/// The weight the stand-in gives the lowest R free for the prepared model.
fn expected_best(report: &JobReport) -> (f64, f64) {
    let prepared = report.sub_jobs[0].outputs["XYZOUT"]["path"]
        .as_str()
        .expect("prepared model");
    let model = std::fs::read(prepared).unwrap();
    WEIGHTS
        .split_whitespace()
        .map(|w| {
            let w: f64 = w.parse().unwrap();
            (w, kiln_ccp4_programs::refmac5::simulate(&model, w).r_free)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn refine_scan_runs_four_refinements_at_a_time_and_keeps_the_lowest_r_free() {
    let t = TestHost::new().await;
    let mut events = t.host.events().subscribe();
    let report = refine_scan(&t, &[]).await;
    assert_eq!(report.status, FinishStatus::Succeeded, "{report:#?}");
    assert_eq!(report.sub_jobs.len(), 9);
    assert_eq!(report.sub_jobs[0].task, "demo_copycell");
    assert!(report.sub_jobs[1..].iter().all(|s| s.task == "refmac"));

    // At most 4 at once, from the start and end times in the job records;
    // and really in parallel.
    let records = refinement_records(&report);
    let most = most_at_once(&records);
    assert!((2..=4).contains(&most), "{most} refinements at once");
    let mut queued = 0;
    loop {
        use tokio::sync::broadcast::error::TryRecvError;
        match events.try_recv() {
            Ok(e) => {
                if matches!(e.kind, EventKind::State { state } if state == JobState::Queued) {
                    queued += 1;
                }
            }
            Err(TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    assert!(queued >= 1, "no refinement waited for a slot");

    // The best: the lowest R free, as the stand-in computes it.
    let (weight, r_free) = expected_best(&report);
    assert_eq!(report.outputs["BEST_WEIGHT"].as_f64(), Some(weight));
    let got = report.outputs["RFREE"].as_f64().unwrap();
    assert!((got - r_free).abs() < 1e-4, "{got} vs {r_free}");
    let best_step = report
        .sub_jobs
        .iter()
        .find(|s| s.outputs["XYZOUT"]["path"] == report.outputs["XYZOUT"]["path"])
        .expect("XYZOUT is one step's model");
    let model =
        std::fs::read_to_string(best_step.outputs["XYZOUT"]["path"].as_str().unwrap()).unwrap();
    assert!(model.contains(&format!("FREE R VALUE                     : {r_free:.4}")));
    t.assert_no_leftovers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_reuses_finished_steps_and_fresh_or_changed_parameters_do_not() {
    let t = TestHost::new().await;
    let first = refine_scan(&t, &[("NCYCLES", "2")]).await;
    assert_eq!(first.status, FinishStatus::Succeeded, "{first:#?}");
    assert!(first.sub_jobs.iter().all(|s| s.reused_from.is_none()));

    let second = refine_scan(&t, &[("NCYCLES", "2")]).await;
    assert_eq!(second.status, FinishStatus::Succeeded, "{second:#?}");
    for (old, new) in first.sub_jobs.iter().zip(&second.sub_jobs) {
        let r = record(&new.job_dir);
        assert_eq!(r.reused_from.as_deref(), Some(old.job_id.as_str()));
        assert_eq!(r.attempts, 0);
        assert_eq!(r.fingerprint, record(&old.job_dir).fingerprint);
        // The reused outputs point into the new directory, and are there.
        let path = new.outputs["XYZOUT"]["path"].as_str().unwrap();
        assert!(Path::new(path).starts_with(&new.job_dir), "{path}");
        assert!(Path::new(path).is_file());
    }
    assert_eq!(second.outputs["BEST_WEIGHT"], first.outputs["BEST_WEIGHT"]);
    assert_eq!(second.outputs["RFREE"], first.outputs["RFREE"]);

    // Other cycles: the preparation is reused, the refinements run.
    let changed = refine_scan(&t, &[("NCYCLES", "3")]).await;
    assert_eq!(changed.status, FinishStatus::Succeeded);
    // The newest job with the same fingerprint stands in (the second run's).
    assert_eq!(
        changed.sub_jobs[0].reused_from.as_deref(),
        Some(second.sub_jobs[0].job_id.as_str())
    );
    assert!(
        changed.sub_jobs[1..]
            .iter()
            .all(|s| s.reused_from.is_none())
    );

    // A host with resuming off runs everything.
    let fresh = TestHost::with_config(
        |r| r,
        |mut c| {
            c.resume = false;
            c.jobs_dir = t.jobs.path().join("jobs");
            c
        },
    )
    .await;
    let all = refine_scan(&fresh, &[("NCYCLES", "2")]).await;
    assert!(
        all.sub_jobs
            .iter()
            .all(|s| s.reused_from.is_none() && s.attempts == 1)
    );
    assert_eq!(all.outputs["BEST_WEIGHT"], first.outputs["BEST_WEIGHT"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_step_is_never_reused() {
    let t = TestHost::new().await;
    let a = t.probe("step continue fail boom", None).await;
    let b = t.probe("step continue fail boom", None).await;
    assert_eq!(result_text(&a), "Failed 1");
    assert_eq!(result_text(&b), "Failed 1");
    assert!(b.sub_jobs[0].reused_from.is_none());
    // A step that succeeded is.
    t.probe("step continue ok", None).await;
    let again = t.probe("step continue ok", None).await;
    assert_eq!(result_text(&again), "Succeeded 0");
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_pipeline_fails_it_with_the_steps_report_and_stops_the_rest() {
    let t = TestHost::new().await;
    let r = t.probe("step fail fail boom", None).await;
    assert_eq!(r.status, FinishStatus::Failed);
    let reason = r.reason.clone().unwrap();
    assert!(
        reason.contains(&format!("sub-job {}.1 (probe) failed: boom", r.job_id)),
        "{reason}"
    );
    // The error report carries the pipeline's error and the step's.
    let diagnostic = std::fs::read_to_string(r.job_dir.join("diagnostic.xml")).unwrap();
    assert_eq!(
        diagnostic.matches("<errorReport>").count(),
        2,
        "{diagnostic}"
    );
    assert!(diagnostic.contains("<description>boom</description>"));
    let rec = record(&r.job_dir);
    assert_eq!(rec.status.as_deref(), Some("failed"));
    assert_eq!(rec.step_failures.len(), 1);
    assert_eq!(rec.step_failures[0]["policy"], "fail_pipeline");

    // Its other steps are cancelled, and no more start.
    let started = std::time::Instant::now();
    let r = t.probe("fail-fast", None).await;
    assert_eq!(r.status, FinishStatus::Failed);
    let text = result_text(&r);
    assert!(
        text.starts_with("slow Interrupted; third: no more steps start"),
        "{text}"
    );
    assert!(text.contains("boom"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    t.assert_no_leftovers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn continue_and_unsatisfactory_policies() {
    let t = TestHost::new().await;
    let r = t.probe("step continue fail boom", None).await;
    assert_eq!(r.status, FinishStatus::Succeeded, "{r:#?}");
    assert_eq!(result_text(&r), "Failed 1");
    // The step's failure is still in the pipeline's record.
    assert_eq!(record(&r.job_dir).step_failures.len(), 1);

    let r = t.probe("step unsatisfactory fail boom", None).await;
    assert_eq!(r.status, FinishStatus::Unsatisfactory, "{r:#?}");
    assert!(r.reason.as_deref().unwrap().contains("boom"));
    assert_eq!(r.state, JobState::Unsatisfactory);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_reruns_a_failed_step_with_backoff_and_keeps_each_attempt() {
    let t = TestHost::new().await;
    let started = std::time::Instant::now();
    let r = t.probe("step retry:3:100 flaky 2", None).await;
    assert_eq!(r.status, FinishStatus::Succeeded, "{r:#?}");
    assert_eq!(result_text(&r), "Succeeded 3");
    // Backoff 100 ms, then 200 ms.
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    let step = &r.sub_jobs[0];
    assert_eq!(step.attempts, 3);
    for k in [1, 2] {
        let kept = step.job_dir.join(format!("attempt_{k}"));
        assert!(kept.join("diagnostic.xml").is_file(), "{}", kept.display());
    }
    assert!(!step.job_dir.join("attempt_3").exists());

    // Out of retries: the pipeline fails.
    let r = t.probe("step retry:1:10 flaky 5", None).await;
    assert_eq!(r.status, FinishStatus::Failed);
    assert_eq!(result_text(&r), "Failed 2");
    assert!(r.reason.unwrap().contains("flaky: attempt 2"));

    // Only tasks that say they are retryable.
    let r = t.probe("retry-task mtzdump", None).await;
    assert!(
        result_text(&r).contains("does not describe itself as retryable"),
        "{}",
        result_text(&r)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_arrive_once_each_in_order_with_finished_last() {
    let t = TestHost::new().await;
    let r = t.probe("read-signals 200", None).await;
    assert_eq!(r.status, FinishStatus::Succeeded, "{r:#?}");
    let text = result_text(&r);
    let (seen, after) = text.split_once(" | then: ").unwrap();
    let mut expected: Vec<String> = (0..200).map(|i| format!("P{i}")).collect();
    expected.push("C:hello:{\"n\": 200}".into());
    expected.push("F:Succeeded".into());
    assert_eq!(seen.split(' ').collect::<Vec<_>>().len(), 203);
    assert_eq!(seen, expected.join(" "));
    assert!(after.contains("has no more signals"), "{after}");

    let r = t.probe("wait-signal hello", None).await;
    assert_eq!(result_text(&r), "{\"n\": 3}");
    let r = t.probe("wait-signal nope", None).await;
    assert_eq!(result_text(&r), "none");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_far_ahead_of_its_reader_is_refused_more_signals() {
    let t = TestHost::new().await;
    let manifest = grants("tasks = [\"probe\"]\nprograms = [\"fake\"]\n[limits]\nsignals = 10\n");
    // The pipeline waits for the end without reading any signal.
    let r = t.probe("step continue signals 50", Some(manifest)).await;
    assert_eq!(result_text(&r), "Failed 1");
    let step = &r.sub_jobs[0];
    assert!(
        step.reason.as_deref().unwrap().contains("limits.signals"),
        "{step:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cap_on_running_steps_holds_and_is_checked() {
    let t = TestHost::new().await;
    let r = t.probe("cap 2 5 0.3", None).await;
    assert_eq!(r.status, FinishStatus::Succeeded, "{r:#?}");
    let records: Vec<JobRecord> = r.sub_jobs.iter().map(|s| record(&s.job_dir)).collect();
    assert_eq!(records.len(), 5);
    assert_eq!(most_at_once(&records), 2);

    let r = t.probe("set-cap 5", None).await;
    assert!(
        result_text(&r).contains("limits.sub_jobs"),
        "{}",
        result_text(&r)
    );
    let r = t.probe("set-cap 0", None).await;
    assert!(result_text(&r).contains("at least 1"));
    let manifest = grants("tasks = [\"probe\"]\n[limits]\nsub_jobs = 8\n");
    let r = t.probe("set-cap 5", Some(manifest)).await;
    assert_eq!(result_text(&r), "accepted");
}
