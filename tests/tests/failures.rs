//! Jobs that fail: a missing input, a program that exits 1, a plugin that
//! panics, spins or runs out of memory. Each ends failed with a reason that
//! names the cause, and the host carries on serving other jobs.

mod common;

use common::{TestHost, data, grants};
use kiln_host::registry::ProgramEntry;
use kiln_host::{FinishStatus, RunRequest, TaskRef};

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_input_file_is_refused_before_anything_runs_naming_the_item() {
    let t = TestHost::new().await;
    let pdb = data("rnase_frag.pdb");
    let e = t
        .host
        .submit(RunRequest {
            task: TaskRef::Name("demo_copycell".into()),
            params: vec![
                ("HKLIN".into(), "/nonexistent/missing.mtz".into()),
                ("XYZIN".into(), pdb.display().to_string()),
            ],
            grants: None,
        })
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("inputData.HKLIN"), "{e}");
    assert!(e.contains("mustExist"), "{e}");
    assert!(e.contains("missing.mtz"), "{e}");
    assert!(
        !t.jobs.path().join("jobs").exists(),
        "no job directory was made"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sub_job_whose_input_is_missing_fails_the_pipeline_naming_the_cause() {
    let t = TestHost::new().await;
    // The pipeline itself is valid; the input disappears before step 1.
    let dir = t.jobs.path().join("inputs");
    std::fs::create_dir_all(&dir).unwrap();
    let mtz = dir.join("vanishing.mtz");
    std::fs::copy(data("5e5z.mtz"), &mtz).unwrap();
    let pdb = data("rnase_frag.pdb");
    let job = t
        .host
        .submit(RunRequest {
            task: TaskRef::Name("demo_copycell".into()),
            params: vec![
                ("HKLIN".into(), mtz.display().to_string()),
                ("XYZIN".into(), pdb.display().to_string()),
            ],
            grants: None,
        })
        .await
        .unwrap();
    std::fs::remove_file(&mtz).unwrap();
    t.host.start(&job);
    let result = job.wait().await;
    assert_eq!(result.status, FinishStatus::Failed);
    let reason = result.reason.unwrap();
    assert!(
        reason.contains("sub-job") && reason.contains("mtzdump"),
        "{reason}"
    );
    assert!(
        reason.contains("inputData.HKLIN") && reason.contains("vanishing.mtz"),
        "{reason}"
    );
    assert!(job.dir.join("diagnostic.xml").is_file());
    assert!(!job.dir.join("job_2").exists(), "step 2 never ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_exiting_1_fails_its_job_with_the_exit_status() {
    let t = TestHost::with_registry(|mut r| {
        let e = ProgramEntry {
            path: "/bin/false".into(),
            args: vec![],
            env: Default::default(),
            sha256: None,
        };
        r.insert("mtzdump", e).unwrap();
        r
    })
    .await;
    let mtz = data("5e5z.mtz");
    let report = t
        .run("mtzdump", &[("HKLIN", mtz.to_str().unwrap())], None)
        .await;
    assert_eq!(report.status, FinishStatus::Failed);
    let reason = report.reason.unwrap();
    assert!(reason.contains("mtzdump exited with status 1"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_plugin_fails_with_its_panic_message() {
    let t = TestHost::new().await;
    let report = t.probe("panic", None).await;
    assert_eq!(report.status, FinishStatus::Failed);
    let reason = report.reason.unwrap();
    assert!(reason.contains("probe panicked on purpose"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_plugin_is_stopped_at_its_cpu_deadline_while_another_job_finishes() {
    let t = TestHost::new().await;
    let limited = grants("programs = [\"fake\"]\ntasks = [\"probe\"]\n[limits]\ncpu_seconds = 1\n");
    let spin = t.probe("spin", Some(limited));
    let other = async {
        // Started while the spinner runs; must not wait for it.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let r = t.probe("outcome fake exit 0", None).await;
        (r, started.elapsed())
    };
    let (spun, (other, other_took)) = tokio::join!(spin, other);
    assert_eq!(spun.status, FinishStatus::Failed);
    let reason = spun.reason.unwrap();
    assert!(reason.contains("time limit"), "{reason}");
    assert_eq!(other.status, FinishStatus::Succeeded, "{other:#?}");
    assert!(
        other_took < std::time::Duration::from_secs(30),
        "{other_took:?}"
    );
    // The host still serves jobs afterwards.
    assert_eq!(t.probe("ok", None).await.status, FinishStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread")]
async fn time_spent_waiting_on_programs_is_not_charged_as_the_plugins_cpu() {
    let t = TestHost::new().await;
    // 250 waits of 8 ms or more: over 2 s of waiting, against a CPU limit
    // of 1 s. Charged by wall time, the job would be stopped halfway.
    let limited = grants("programs = [\"fake\"]\n[limits]\ncpu_seconds = 1\n");
    let started = std::time::Instant::now();
    let report = t
        .probe("spawn-many 250 1 fake sleep 0.008", Some(limited))
        .await;
    assert!(
        started.elapsed() > std::time::Duration::from_secs(2),
        "the programs did not run: {report:#?}"
    );
    assert_eq!(report.status, FinishStatus::Succeeded, "{report:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_bomb_is_refused_at_the_memory_limit() {
    let t = TestHost::new().await;
    let limited = grants("[limits]\nmemory_mib = 64\n");
    let report = t.probe("memory", Some(limited)).await;
    assert_eq!(report.status, FinishStatus::Failed);
    let reason = report.reason.unwrap();
    assert!(reason.contains("memory limit"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stack_overflow_traps_the_guest_only() {
    let t = TestHost::new().await;
    let report = t.probe("stack", None).await;
    assert_eq!(report.status, FinishStatus::Failed);
    let reason = report.reason.unwrap();
    assert!(reason.contains("stack"), "{reason}");
    assert_eq!(t.probe("ok", None).await.status, FinishStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_sub_job_fails_its_parent_with_the_childs_reason() {
    let t = TestHost::new().await;
    let report = t.probe("subjob outcome-unknown-mode", None).await;
    assert_eq!(report.status, FinishStatus::Failed);
    let reason = report.reason.unwrap();
    assert!(
        reason.contains(&format!("sub-job {}.1", report.job_id)),
        "{reason}"
    );
    assert!(reason.contains("unknown probe mode"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_holding_too_many_handles_is_refused_at_the_limit() {
    let t = TestHost::new().await;
    // The job tree's own cap is raised so the handle limit is what stops it.
    let manifest = grants("tasks = [\"probe\"]\n[limits]\ntree_jobs = 20000\n");
    let r = t.probe("handles 10001", Some(manifest)).await;
    assert_eq!(r.status, FinishStatus::Failed);
    let reason = r.reason.unwrap();
    assert!(reason.contains("holds 10000 handles already"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loop_a_memory_bomb_and_a_stack_overflow_end_within_limits_while_a_pipeline_finishes() {
    let t = TestHost::new().await;
    let limited = || Some(grants("[limits]\ncpu_seconds = 2\nmemory_mib = 64\n"));
    let mtz = data("5e5z.mtz");
    let pdb = data("rnase_frag.pdb");
    let params = [
        ("HKLIN", mtz.to_str().unwrap()),
        ("XYZIN", pdb.to_str().unwrap()),
    ];
    let started = std::time::Instant::now();
    let (spin, memory, stack, pipeline) = tokio::join!(
        t.probe("spin", limited()),
        t.probe("memory", limited()),
        t.probe("stack", limited()),
        t.run("demo_copycell", &params, None),
    );
    for (r, want) in [
        (&spin, "time limit"),
        (&memory, "memory limit"),
        (&stack, "stack"),
    ] {
        assert_eq!(r.status, FinishStatus::Failed, "{r:#?}");
        let reason = r.reason.clone().unwrap();
        assert!(reason.contains(want), "{reason}");
    }
    assert_eq!(pipeline.status, FinishStatus::Succeeded, "{pipeline:#?}");
    // The CPU deadline is 2 s; a debug-built host on a busy machine still
    // ends everything well inside this.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_number_outside_its_range_is_refused_with_ccp4i2s_code() {
    let t = TestHost::new().await;
    for (value, code) in [("2.5", "code 102"), ("-1", "code 101")] {
        let e = t
            .host
            .submit(RunRequest {
                task: TaskRef::Name("probe".into()),
                params: vec![
                    ("MODE".into(), "ok".into()),
                    ("FRACTION".into(), value.into()),
                ],
                grants: None,
            })
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("controlParameters.FRACTION") && e.contains(code),
            "{e}"
        );
    }
    let e = t
        .host
        .submit(RunRequest {
            task: TaskRef::Name("probe".into()),
            params: vec![
                ("MODE".into(), "ok".into()),
                ("FRACTION".into(), "lots".into()),
            ],
            grants: None,
        })
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("FRACTION") && e.contains("lots"), "{e}");
}
