//! The host's open files do not grow with the jobs a plugin keeps. A
//! pipeline may hold thousands of sub-job handles (made and never started,
//! or finished); the host holds a job's directory open only while the job
//! is being made or runs, so a host allowed a few hundred descriptors
//! serves them all.
//!
//! Its own test binary: it lowers this process's limit on open files for
//! good, which no other test must see.

mod common;

use common::{TestHost, grants, result_text};
use kiln_host::FinishStatus;

/// Far fewer descriptors than the jobs below, and the hard limit too, so
/// the host cannot raise it.
const OPEN_FILES: u64 = 400;

fn limit_open_files(n: u64) {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit with a valid struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread")]
async fn kept_sub_jobs_made_or_finished_hold_no_descriptor_each() {
    let t = TestHost::new().await;
    // Warm up: the first run compiles and opens what every later one shares.
    assert_eq!(t.probe("ok", None).await.status, FinishStatus::Succeeded);
    let before = open_descriptors();
    limit_open_files(OPEN_FILES);
    let manifest = || Some(grants("tasks = [\"probe\"]\n[limits]\ntree_jobs = 5000\n"));

    let made = t.probe("handles 3000", manifest()).await;
    assert_eq!(made.status, FinishStatus::Succeeded, "{made:#?}");
    assert_eq!(result_text(&made), "3000");

    let ran = t.probe("run-kept 600", manifest()).await;
    assert_eq!(ran.status, FinishStatus::Succeeded, "{ran:#?}");
    assert_eq!(result_text(&ran), "600 ran");

    // Nothing stays open once the jobs are gone.
    let after = open_descriptors();
    assert!(
        after <= before + 8,
        "{before} descriptors before, {after} after"
    );
}
