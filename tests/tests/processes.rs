//! Native programs through the process interface: each way a program can end
//! is a distinct outcome, wait-any returns the first to end, and ungranted
//! programs are denied naming the grant.

mod common;

use kiln_test_support::{CGROUPS, tokio_test};

use common::{TestHost, grants, result_text};
use kiln_host::FinishStatus;

async fn outcome_of(t: &TestHost, mode: &str) -> String {
    let report = t.probe(mode, None).await;
    assert_eq!(report.status, FinishStatus::Succeeded, "{report:#?}");
    result_text(&report)
}

async fn exit_codes_signals_timeouts_and_spawn_failures_are_distinct() {
    let t = TestHost::new().await;
    assert_eq!(outcome_of(&t, "outcome fake exit 0").await, "exited 0");
    assert_eq!(outcome_of(&t, "outcome fake exit 127").await, "exited 127");
    assert_eq!(outcome_of(&t, "outcome fake crash").await, "signaled 11");
    let missing = outcome_of(&t, "outcome missing").await;
    assert!(
        missing.starts_with("spawn-failed") && missing.contains("does not exist"),
        "{missing}"
    );
    let not_exec = outcome_of(&t, "outcome not-executable").await;
    assert!(
        not_exec.starts_with("spawn-failed") && not_exec.contains("not executable"),
        "{not_exec}"
    );
    t.assert_no_leftovers().await;
}

async fn a_program_past_its_timeout_is_killed_with_its_process_group() {
    let t = TestHost::new().await;
    let started = std::time::Instant::now();
    let report = t
        .run(
            "probe",
            &[
                ("MODE", "outcome fake ignore-term 60"),
                ("TIMEOUT_MS", "300"),
            ],
            None,
        )
        .await;
    assert_eq!(result_text(&report), "timed-out");
    // SIGTERM is ignored, so SIGKILL after the grace period ends it.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    t.assert_no_leftovers().await;
}

async fn wait_any_returns_the_first_program_to_end() {
    let t = TestHost::new().await;
    assert_eq!(outcome_of(&t, "wait-any 30 0.1").await, "1");
    t.assert_no_leftovers().await;
}

async fn stdin_is_dev_null_without_a_script_and_the_environment_is_cleared() {
    let t = TestHost::new().await;
    let report = t.probe("outcome fake echo-stdin", None).await;
    assert_eq!(result_text(&report), "exited 0");
    let log = common::read_log(&report.job_dir, "log.txt");
    assert!(log.is_empty(), "stdin was not empty: {log:?}");

    // SAFETY: set before the program is spawned; the suite does not read it.
    unsafe { std::env::set_var("KILN_TEST_SECRET", "hunter2") };
    let report = t.probe("outcome fake print-env", None).await;
    let env = std::fs::read_to_string(report.job_dir.join("log.txt")).unwrap();
    assert!(!env.contains("hunter2"), "{env}");
    assert!(!env.contains("PATH="), "{env}");
    t.assert_no_leftovers().await;
}

async fn an_ungranted_program_is_denied_naming_the_manifest_line() {
    let t = TestHost::new().await;
    let report = t
        .probe("outcome fake exit 0", Some(grants("programs = []")))
        .await;
    assert_eq!(report.status, FinishStatus::Failed);
    let reason = report.reason.unwrap();
    assert!(reason.contains("program `fake` is not granted"), "{reason}");
    assert!(reason.contains("add \"fake\" to `programs`"), "{reason}");
    let audit = std::fs::read_to_string(report.job_dir.join("audit.jsonl")).unwrap();
    let denial: serde_json::Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(denial["event"], "denied");
    assert_eq!(denial["capability"], "programs");
    assert_eq!(denial["name"], "fake");
    assert_eq!(denial["job"], report.job_id.as_str());
    t.assert_no_leftovers().await;
}

/// The process id a program printed on stdout (log.txt).
fn pid_in_log(report: &kiln_host::JobReport) -> i32 {
    let log = std::fs::read_to_string(report.job_dir.join("log.txt")).unwrap();
    log.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no pid in {log:?}"))
}

/// Whether `pid` is gone within 5 s.
fn died_within_5s(pid: i32) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    !alive(pid)
}

/// Whether `pid` is still a live process (a zombie counts as dead).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

async fn a_grandchild_holding_stdout_open_is_killed_and_does_not_hold_the_job() {
    let t = TestHost::new().await;
    let started = std::time::Instant::now();
    let report = t.probe("outcome fake fork-grandchild 60", None).await;
    assert_eq!(result_text(&report), "exited 0");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let pid = pid_in_log(&report);
    assert!(died_within_5s(pid), "grandchild {pid} outlived its job");
    t.assert_no_leftovers().await;
}

async fn arguments_are_passed_literally_without_a_shell() {
    let t = TestHost::new().await;
    let report = t
        .probe(
            "outcome fake print-argv ;rm -rf x $(id) `id` -x --y |cat >out",
            None,
        )
        .await;
    assert_eq!(result_text(&report), "exited 0");
    let argv = std::fs::read_to_string(report.job_dir.join("log.txt")).unwrap();
    let words: Vec<&str> = argv.lines().skip(2).collect();
    assert_eq!(
        words,
        [
            ";rm", "-rf", "x", "$(id)", "`id`", "-x", "--y", "|cat", ">out"
        ]
    );
    assert!(!report.job_dir.join("out").exists());
    t.assert_no_leftovers().await;
}

async fn oversized_and_too_many_arguments_are_refused_before_spawning() {
    let t = TestHost::new().await;
    let r = t.probe("big-arg 1048576", None).await;
    assert_eq!(r.status, FinishStatus::Failed);
    assert!(
        r.reason
            .unwrap()
            .contains("an argument of 1048576 bytes; the limit is 131072")
    );
    let r = t.probe("many-args 5000", None).await;
    assert_eq!(r.status, FinishStatus::Failed);
    assert!(
        r.reason
            .unwrap()
            .contains("5002 arguments; the limit is 4096")
    );
    assert!(!r.job_dir.join("log.txt").exists(), "nothing was spawned");
    t.assert_no_leftovers().await;
}

async fn ld_variables_are_never_passed_and_others_only_when_granted() {
    let t = TestHost::new().await;
    let r = t.probe("spawn-env LD_PRELOAD /tmp/evil.so", None).await;
    assert_eq!(r.status, FinishStatus::Failed);
    assert!(r.reason.unwrap().contains("`LD_PRELOAD` is never passed"));

    let r = t
        .probe(
            "spawn-env CCP4_SCR /tmp",
            Some(grants("programs = [\"fake\"]")),
        )
        .await;
    assert_eq!(r.status, FinishStatus::Failed);
    assert!(r.reason.unwrap().contains("add \"CCP4_SCR\" to `env`"));

    let manifest = grants("programs = [\"fake\"]\nenv = [\"CCP4_SCR\"]");
    let r = t.probe("spawn-env CCP4_SCR /scratch", Some(manifest)).await;
    let env = result_text(&r);
    let names: Vec<&str> = env.lines().map(|l| l.split('=').next().unwrap()).collect();
    assert_eq!(names, ["CCP4_SCR", "TMPDIR"], "{env}");
    assert!(env.contains("CCP4_SCR=/scratch\n"));
    t.assert_no_leftovers().await;
}

async fn programs_see_only_fds_0_1_and_2() {
    let t = TestHost::new().await;
    let r = t.probe("outcome fake list-fds", None).await;
    assert_eq!(result_text(&r), "exited 0");
    let fds = std::fs::read_to_string(r.job_dir.join("log.txt")).unwrap();
    assert_eq!(fds.lines().collect::<Vec<_>>(), ["0", "1", "2"]);
    t.assert_no_leftovers().await;
}

async fn a_guest_blocked_on_a_program_forever_is_ended_by_the_wall_limit() {
    let t = TestHost::new().await;
    let started = std::time::Instant::now();
    let r = t
        .probe(
            "outcome fake sleep 600",
            Some(grants(
                "programs = [\"fake\"]\n[limits]\nwall_seconds = 1\n",
            )),
        )
        .await;
    assert_eq!(r.status, FinishStatus::Failed);
    let reason = r.reason.unwrap();
    assert!(reason.contains("wall time"), "{reason}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    t.assert_no_leftovers().await;
}

async fn output_lines_are_published_as_events_while_produced() {
    let t = TestHost::new().await;
    let mut events = t.host.events().subscribe();
    let report = t.probe("outcome fake print-argv first second", None).await;
    assert_eq!(result_text(&report), "exited 0");
    let mut lines = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let (true, kiln_host::events::EventKind::Output { stream, line, .. }) =
            (e.job_id == report.job_id, e.kind)
        {
            assert_eq!(stream, "stdout");
            lines.push(line);
        }
    }
    assert_eq!(lines[1..], ["print-argv", "first", "second"]);
    t.assert_no_leftovers().await;
}

async fn a_log_file_is_created_with_the_first_output_on_its_stream() {
    let t = TestHost::new().await;
    let quiet = t.probe("outcome fake exit 0", None).await;
    assert_eq!(result_text(&quiet), "exited 0");
    for log in ["log.txt", "log_err.txt"] {
        assert!(!quiet.job_dir.join(log).exists(), "{log}");
    }
    let noisy = t.probe("outcome fake spew 10 stderr", None).await;
    assert_eq!(result_text(&noisy), "exited 0");
    assert!(!noisy.job_dir.join("log.txt").exists());
    assert_eq!(common::read_log(&noisy.job_dir, "log_err.txt").len(), 10);
    t.assert_no_leftovers().await;
}

async fn a_flood_on_stdout_and_stderr_at_once_reaches_the_logs_without_deadlock() {
    let t = TestHost::new().await;
    let size: u64 = 64 << 20;
    let started = std::time::Instant::now();
    let report = t
        .probe(&format!("outcome fake spew {size} both"), None)
        .await;
    assert_eq!(result_text(&report), "exited 0");
    for log in ["log.txt", "log_err.txt"] {
        let len = std::fs::metadata(report.job_dir.join(log)).unwrap().len();
        assert_eq!(len, size, "{log}");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    t.assert_no_leftovers().await;
}

async fn a_setsid_escapee_is_killed_at_the_end_of_its_job() {
    // Launched directly (born in the job's cgroups) and through the helper
    // (which joins them before its exec).
    for launch_directly in [true, false] {
        let t = TestHost::with_config(
            |r| r,
            |mut c| {
                c.local.launch_directly = launch_directly;
                c
            },
        )
        .await;
        let started = std::time::Instant::now();
        let report = t.probe("outcome fake setsid-grandchild 60", None).await;
        assert_eq!(result_text(&report), "exited 0");
        let pid = pid_in_log(&report);
        assert!(
            died_within_5s(pid),
            "the setsid escapee {pid} outlived its job (launched directly: {launch_directly})"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(15));
        t.assert_no_leftovers().await;
    }
}

fn main() -> std::process::ExitCode {
    kiln_test_support::run(vec![
        tokio_test!(exit_codes_signals_timeouts_and_spawn_failures_are_distinct),
        tokio_test!(a_program_past_its_timeout_is_killed_with_its_process_group),
        tokio_test!(wait_any_returns_the_first_program_to_end),
        tokio_test!(stdin_is_dev_null_without_a_script_and_the_environment_is_cleared),
        tokio_test!(an_ungranted_program_is_denied_naming_the_manifest_line),
        tokio_test!(a_grandchild_holding_stdout_open_is_killed_and_does_not_hold_the_job),
        tokio_test!(arguments_are_passed_literally_without_a_shell),
        tokio_test!(oversized_and_too_many_arguments_are_refused_before_spawning),
        tokio_test!(ld_variables_are_never_passed_and_others_only_when_granted),
        tokio_test!(programs_see_only_fds_0_1_and_2),
        tokio_test!(a_guest_blocked_on_a_program_forever_is_ended_by_the_wall_limit),
        tokio_test!(output_lines_are_published_as_events_while_produced),
        tokio_test!(a_log_file_is_created_with_the_first_output_on_its_stream),
        tokio_test!(a_flood_on_stdout_and_stderr_at_once_reaches_the_logs_without_deadlock),
        tokio_test!(a_setsid_escapee_is_killed_at_the_end_of_its_job).needs(CGROUPS),
    ])
}
