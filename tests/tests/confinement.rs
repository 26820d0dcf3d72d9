//! Native programs run confined: a granted program told (by its registry
//! entry, which the host does not second-guess) to read /etc/passwd or
//! write outside the grants fails inside the program under Landlock, while
//! it can read its inputs and write its job directory.

mod common;

use common::{TestHost, grants, outside_file, result_text};
use kiln_host::FinishStatus;
use kiln_host::registry::ProgramEntry;
use kiln_test_support::{LANDLOCK, LANDLOCK_6, PIDS_CGROUP, tokio_test};

async fn reading_and_writing_outside_the_grants_fails_inside_the_program() {
    let t = TestHost::new().await;

    let r = t.probe("outcome sneaky-read", None).await;
    assert_eq!(result_text(&r), "exited 1");
    let err = std::fs::read_to_string(r.job_dir.join("log_err.txt")).unwrap();
    assert!(
        err.contains("/etc/passwd") && err.contains("Permission denied"),
        "{err}"
    );
    let out = String::from_utf8(common::read_log(&r.job_dir, "log.txt")).unwrap();
    assert!(!out.contains("root:"), "{out}");

    let r = t.probe("outcome sneaky-write", None).await;
    assert_eq!(result_text(&r), "exited 1");
    assert!(
        !outside_file().exists(),
        "a program wrote {}",
        outside_file().display()
    );
    t.assert_no_leftovers().await;
}

async fn a_confined_program_reads_its_inputs_and_writes_its_job_directory() {
    let t = TestHost::new().await;
    let data = t.jobs.path().join("inputs");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("in.txt"), "input text").unwrap();
    let data = data.canonicalize().unwrap();
    let manifest = grants(&format!(
        "programs = [\"fake\"]\nread_dirs = [{:?}]",
        data.display().to_string()
    ));
    let mode = format!("outcome fake read-file {}", data.join("in.txt").display());
    let r = t.probe(&mode, Some(manifest)).await;
    assert_eq!(result_text(&r), "exited 0");
    assert_eq!(
        std::fs::read_to_string(r.job_dir.join("log.txt")).unwrap(),
        "input text"
    );

    let r = t.probe("outcome fake write-file out.txt hello", None).await;
    assert_eq!(result_text(&r), "exited 0");
    assert_eq!(
        std::fs::read_to_string(r.job_dir.join("out.txt")).unwrap(),
        "hello"
    );
    t.assert_no_leftovers().await;
}

async fn programs_have_no_network_unless_granted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = TestHost::with_registry(|mut r| {
        r.insert(
            "fake",
            ProgramEntry {
                path: "/bin/bash".into(),
                args: vec!["-c".into(), format!("echo hi > /dev/tcp/127.0.0.1/{port}")],
                env: Default::default(),
                sha256: None,
            },
        )
        .unwrap();
        r
    })
    .await;
    let r = t.probe("outcome fake", None).await;
    assert_eq!(
        result_text(&r),
        "exited 1",
        "connected without a network grant"
    );

    let r = t
        .probe(
            "outcome fake",
            Some(grants("programs = [\"fake\"]\nnetwork = true\n")),
        )
        .await;
    assert_eq!(
        result_text(&r),
        "exited 0",
        "no connection with the network granted"
    );
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_ok());
    t.assert_no_leftovers().await;
}

async fn required_confinement_refuses_to_run_a_program_unconfined() {
    // This machine supports confinement: required, programs still run.
    let t = TestHost::new().await;
    let required = || {
        Some(grants(
            "programs = [\"fake\"]\nrequire_confinement = true\n",
        ))
    };
    let r = t.probe("outcome fake exit 0", required()).await;
    assert_eq!(result_text(&r), "exited 0");

    // Without the helper, a required confinement cannot be had.
    let t = TestHost::with_config(
        |r| r,
        |mut c| {
            c.local.confine_helper = None;
            c
        },
    )
    .await;
    let r = t.probe("outcome fake exit 0", required()).await;
    assert_eq!(r.status, FinishStatus::Failed);
    let reason = r.reason.unwrap();
    assert!(
        reason.contains("confinement is required but incomplete here"),
        "{reason}"
    );
    assert!(reason.contains("kiln-confine was not found"), "{reason}");
    assert!(!r.job_dir.join("log.txt").exists(), "nothing was spawned");
    t.assert_no_leftovers().await;
}

async fn programs_with_rlimits_are_confined_launched_or_through_the_helper() {
    for direct in [true, false] {
        rlimits_and_confinement(direct).await;
    }
}

async fn rlimits_and_confinement(launch_directly: bool) {
    let t = TestHost::with_config(
        |r| r,
        |mut c| {
            c.local.launch_directly = launch_directly;
            c
        },
    )
    .await;
    let limited = || {
        Some(grants(
            "programs = [\"fake\", \"sneaky-read\"]\n[limits]\nprogram_open_files = 64\nprogram_file_size_bytes = 1000\n",
        ))
    };
    let r = t.probe("outcome sneaky-read", limited()).await;
    assert_eq!(result_text(&r), "exited 1");
    let err = std::fs::read_to_string(r.job_dir.join("log_err.txt")).unwrap();
    assert!(err.contains("Permission denied"), "{err}");

    // The file-size limit stops a write past 1000 bytes (SIGXFSZ).
    let r = t.probe("outcome fake spew 5000 stdout", limited()).await;
    assert_eq!(result_text(&r), "exited 0", "stdout is a pipe, not limited");
    let big = "x".repeat(2000);
    let r = t
        .probe(&format!("outcome fake write-file big.txt {big}"), limited())
        .await;
    assert_eq!(result_text(&r), "signaled 25");
    t.assert_no_leftovers().await;
}

async fn a_fork_bomb_is_stopped_by_the_jobs_process_limit() {
    let t = TestHost::with_registry(|mut r| {
        r.insert(
            "fake",
            ProgramEntry {
                path: "/usr/bin/python3".into(),
                args: vec![
                    "-c".into(),
                    "import os, sys, time\nn = 0\ntry:\n    while n < 10000:\n        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('fork failed after', n, e, file=sys.stderr)\n".into(),
                ],
                env: Default::default(),
                sha256: None,
            },
        )
        .unwrap();
        r
    })
    .await;
    let started = std::time::Instant::now();
    let r = t
        .probe(
            "outcome fake",
            Some(grants(
                "programs = [\"fake\"]\n[limits]\nprogram_processes = 20\n",
            )),
        )
        .await;
    assert_eq!(r.status, FinishStatus::Succeeded, "{r:#?}");
    let err = std::fs::read_to_string(r.job_dir.join("log_err.txt")).unwrap();
    assert!(
        err.contains("fork failed after") && err.contains("Resource temporarily unavailable"),
        "{err}"
    );
    let n: usize = err
        .split_whitespace()
        .nth(3)
        .and_then(|w| w.parse().ok())
        .unwrap_or(usize::MAX);
    assert!(n < 20, "{n} forks under a limit of 20: {err}");
    // The sleeps that did start die with the job; the host is unharmed.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(t.probe("ok", None).await.status, FinishStatus::Succeeded);
    t.assert_no_leftovers().await;
}

async fn a_confined_program_can_neither_lower_the_hosts_limits_nor_signal_it() {
    let host = std::process::id().to_string();
    // Read once a host exists: a host raises its own soft limit on open
    // files to the hard limit when it starts.
    let _first = TestHost::new().await;
    let before = std::fs::read_to_string("/proc/self/limits").unwrap();
    for (name, path, args) in [
        (
            "fake",
            "/usr/bin/prlimit",
            vec![
                "--pid".to_string(),
                host.clone(),
                "--nofile=7:7".to_string(),
            ],
        ),
        (
            "sneaky-read",
            "/bin/kill",
            vec!["-STOP".to_string(), host.clone()],
        ),
    ] {
        // Both ways of starting a confined program: launched, and through
        // the helper.
        for launch_directly in [true, false] {
            let t = TestHost::with_config(
                |mut r| {
                    r.insert(
                        name,
                        ProgramEntry {
                            path: path.into(),
                            args: args.clone(),
                            env: Default::default(),
                            sha256: None,
                        },
                    )
                    .unwrap();
                    r
                },
                |mut c| {
                    c.local.launch_directly = launch_directly;
                    c
                },
            )
            .await;
            for manifest in [
                format!("programs = [\"{name}\"]"),
                format!("programs = [\"{name}\"]\n[limits]\nprogram_open_files = 256\n"),
            ] {
                let r = t
                    .probe(&format!("outcome {name}"), Some(grants(&manifest)))
                    .await;
                // The program ran and was refused: not a spawn that failed.
                let result = result_text(&r);
                let err =
                    std::fs::read_to_string(r.job_dir.join("log_err.txt")).unwrap_or_default();
                assert!(
                    result.starts_with("exited ")
                        && result != "exited 0"
                        && err.contains("Operation not permitted"),
                    "{path} {args:?} (launched directly: {launch_directly}): {result}, stderr {err:?}"
                );
            }
            t.assert_no_leftovers().await;
        }
    }
    assert_eq!(
        std::fs::read_to_string("/proc/self/limits").unwrap(),
        before
    );
}

fn main() -> std::process::ExitCode {
    kiln_test_support::run(vec![
        tokio_test!(reading_and_writing_outside_the_grants_fails_inside_the_program)
            .needs(LANDLOCK),
        tokio_test!(a_confined_program_reads_its_inputs_and_writes_its_job_directory)
            .needs(LANDLOCK),
        tokio_test!(programs_have_no_network_unless_granted).needs(LANDLOCK),
        tokio_test!(required_confinement_refuses_to_run_a_program_unconfined).needs(LANDLOCK),
        tokio_test!(programs_with_rlimits_are_confined_launched_or_through_the_helper)
            .needs(LANDLOCK),
        tokio_test!(a_fork_bomb_is_stopped_by_the_jobs_process_limit)
            .needs(LANDLOCK)
            .needs(PIDS_CGROUP),
        tokio_test!(a_confined_program_can_neither_lower_the_hosts_limits_nor_signal_it)
            .needs(LANDLOCK_6),
    ])
}
