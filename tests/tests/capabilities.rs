//! A hostile plugin tries, in turn, everything it was not granted. Each
//! attempt fails with an error naming the missing grant (or the rule
//! broken), and the job's audit log records it.

mod common;

use common::{TestHost, grants, result_text};
use kiln_host::FinishStatus;
use kiln_host::{JobReport, RunRequest, TaskRef};

fn audit_lines(report: &JobReport) -> Vec<serde_json::Value> {
    std::fs::read_to_string(report.job_dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The run failed naming `want`, and the audit log holds the denial.
fn assert_denied(report: &JobReport, want: &str, capability: &str) {
    assert_eq!(report.status, FinishStatus::Failed, "{report:#?}");
    let reason = report.reason.clone().unwrap();
    assert!(
        reason.contains(want),
        "reason {reason:?} does not contain {want:?}"
    );
    let audit = audit_lines(report);
    assert!(
        audit
            .iter()
            .any(|l| l["event"] == "denied" && l["capability"] == capability),
        "no {capability} denial in the audit log: {audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_ungranted_attempt_is_denied_naming_the_grant_and_audited() {
    let t = TestHost::new().await;
    // Grants the probe's own sub-task and nothing else.
    let tight = || Some(grants("tasks = [\"probe\"]"));

    let r = t.probe("outcome fake exit 0", tight()).await;
    assert_denied(&r, "add \"fake\" to `programs`", "programs");

    let r = t
        .probe("set-file inputData.XYZIN /etc/shadow", tight())
        .await;
    assert_denied(&r, "add its directory to `read_dirs`", "files");

    let r = t.probe("set-file inputData.XYZIN ../../x", tight()).await;
    assert_denied(&r, "contains `..`", "files");

    let r = t
        .probe("set-file outputData.XYZOUT /tmp/outside.pdb", tight())
        .await;
    assert_denied(&r, "add its directory to `write_dirs`", "files");

    let r = t.probe("make mtzdump", tight()).await;
    assert_denied(&r, "add \"mtzdump\" to `tasks`", "tasks");

    let r = t.probe("axis x 1 1 0", tight()).await;
    assert_denied(&r, "add \"x\" to `axes`", "axes");

    let r = t
        .probe(
            "outcome fake /etc/passwd",
            Some(grants("programs = [\"fake\"]")),
        )
        .await;
    assert_denied(&r, "argument `/etc/passwd`", "files");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plugin_sees_no_host_directory_and_no_host_environment() {
    let t = TestHost::new().await;
    let r = t.probe("read-dir /etc", None).await;
    assert_eq!(r.status, FinishStatus::Failed);
    assert!(r.reason.unwrap().contains("read-dir /etc"));

    // The job directory is the plugin's only preopen.
    let r = t.probe("read-dir /job", None).await;
    assert_eq!(r.status, FinishStatus::Succeeded, "{r:#?}");

    // SAFETY: the suite's own variable; nothing reads the environment
    // concurrently in a way that matters.
    unsafe { std::env::set_var("KILN_TEST_HOST_SECRET", "s3cret") };
    let r = t.probe("env", None).await;
    assert_eq!(result_text(&r), "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn files_inside_the_job_directory_and_granted_directories_are_accepted() {
    let t = TestHost::new().await;
    let r = t.probe("set-file outputData.XYZOUT out.pdb", None).await;
    assert_eq!(r.status, FinishStatus::Succeeded, "{r:#?}");
    assert_eq!(
        result_text(&r),
        r.job_dir.join("out.pdb").display().to_string()
    );

    let data = t.jobs.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("in.pdb"), "END\n").unwrap();
    let data = data.canonicalize().unwrap();
    let manifest = grants(&format!(
        "tasks = [\"probe\"]\nread_dirs = [{:?}]",
        data.display().to_string()
    ));
    let mode = format!("set-file inputData.XYZIN {}", data.join("in.pdb").display());
    let r = t.probe(&mode, Some(manifest)).await;
    assert_eq!(r.status, FinishStatus::Succeeded, "{r:#?}");
    let used = audit_lines(&r);
    assert!(
        used.iter().any(|l| l["event"] == "directory_grant"
            && l["directory"] == data.display().to_string()
            && l["access"] == "read"),
        "{used:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_out_of_the_job_directory_is_refused() {
    let t = TestHost::new().await;
    let job = t
        .host
        .submit(RunRequest {
            task: TaskRef::Name("probe".into()),
            params: vec![("MODE".into(), "set-file inputData.XYZIN out/shadow".into())],
            grants: None,
        })
        .await
        .unwrap();
    // Planted before the run: a link out, a loop and a dangling link.
    std::os::unix::fs::symlink("/etc", job.dir.join("out")).unwrap();
    std::os::unix::fs::symlink(job.dir.join("loop"), job.dir.join("loop")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", job.dir.join("dangling")).unwrap();
    t.host.start(&job);
    job.wait().await;
    let r = t.host.report(&job);
    assert_denied(&r, "symbolic link", "files");
    let reason = r.reason.unwrap();
    assert!(reason.contains("`out/shadow`"), "{reason}");

    for (name, mode) in [
        ("loop", "set-file inputData.XYZIN loop"),
        ("dangling", "set-file inputData.XYZIN dangling"),
    ] {
        let job = t
            .host
            .submit(RunRequest {
                task: TaskRef::Name("probe".into()),
                params: vec![("MODE".into(), mode.into())],
                grants: None,
            })
            .await
            .unwrap();
        let target = if name == "loop" {
            job.dir.join("loop")
        } else {
            "/nonexistent".into()
        };
        std::os::unix::fs::symlink(target, job.dir.join(name)).unwrap();
        t.host.start(&job);
        job.wait().await;
        let r = t.host.report(&job);
        assert_denied(&r, "symbolic link", "files");
        let reason = r.reason.unwrap();
        assert!(reason.contains(&format!("`{name}`")), "{reason}");
    }
}

/// A pinned program rewritten in place, same size and with its mtime put
/// back, is refused at its next spawn: the pin is checked against what the
/// file holds, not against the size and mtime seen at the last check.
#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_program_rewritten_in_place_is_refused() {
    use sha2::{Digest, Sha256};
    use std::io::{Seek, Write};
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("pinned.sh");
    let honest = "#!/bin/sh\nexit 0\n";
    let altered = "#!/bin/sh\nexit 7\n";
    std::fs::write(&program, honest).unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let pin = hex::encode(Sha256::digest(honest));
    let path = program.clone();
    let t = TestHost::with_registry(move |mut r| {
        r.insert(
            "fake",
            kiln_host::registry::ProgramEntry {
                path,
                args: Vec::new(),
                env: Default::default(),
                sha256: Some(pin),
            },
        )
        .unwrap();
        r
    })
    .await;
    assert_eq!(
        result_text(&t.probe("outcome fake", None).await),
        "exited 0"
    );

    let before = std::fs::metadata(&program).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&program)
        .unwrap();
    file.rewind().unwrap();
    file.write_all(altered.as_bytes()).unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
    drop(file);
    let after = std::fs::metadata(&program).unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());

    let r = t.probe("outcome fake", None).await;
    assert_eq!(r.status, FinishStatus::Failed, "{r:#?}");
    let reason = r.reason.clone().unwrap();
    assert!(reason.contains("but the program registry pins"), "{reason}");
    let audit = audit_lines(&r);
    assert!(
        !audit.iter().any(|l| l["event"] == "spawn"),
        "the altered program was spawned: {audit:#?}"
    );
    t.assert_no_leftovers().await;
}
