//! A host killed with SIGKILL: the next host to start kills what its jobs'
//! programs left running. Alone in its test binary because every host that
//! starts sweeps the machine for dead hosts' programs: another test's host
//! would do the sweeping this one checks.

mod common;

use kiln_test_support::{CGROUPS, test};

use common::{data, kiln, programs_in, spawn_kiln, text};
use std::time::{Duration, Instant};

fn the_next_host_kills_what_a_dead_hosts_jobs_left_running() {
    let tmp = tempfile::tempdir().unwrap();
    // A "refmac5" that writes nothing (a program that writes dies of
    // SIGPIPE once its host is gone) and runs for 30 s.
    let reg = tmp.path().join("silent.toml");
    std::fs::write(
        &reg,
        "[programs.refmac5]\npath = \"/bin/sh\"\nargs = [\"-c\", \"sleep 30\"]\n",
    )
    .unwrap();
    let jobs = tmp.path().join("kiln-jobs");
    let args: Vec<String> = [
        "run",
        "refmac",
        "--param",
        &format!("HKLIN={}", data("5e5z.mtz").display()),
        "--param",
        &format!("XYZIN={}", data("rnase_frag.pdb").display()),
        "--registry",
        reg.to_str().unwrap(),
        "--progress",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut host = spawn_kiln(tmp.path(), &args);
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = jobs.join("job_1");
    while !job.is_dir() || programs_in(&job).is_empty() {
        assert!(Instant::now() < deadline, "refmac5 did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    host.kill().unwrap();
    host.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let orphans = programs_in(&job);
    assert!(!orphans.is_empty(), "the program died with its host");

    let out = kiln(tmp.path(), &["describe", "refmac"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        programs_in(&job),
        Vec::<u32>::new(),
        "orphans {orphans:?} survived"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(job.join("job.json")).unwrap()).unwrap();
    assert_eq!(record["state"], "interrupted");
}

fn main() -> std::process::ExitCode {
    kiln_test_support::run(vec![
        test!(the_next_host_kills_what_a_dead_hosts_jobs_left_running).needs(CGROUPS),
    ])
}
