//! The `hostile` plugin against the real host (RELIABILITY rows 28-35): it
//! plants links where the host writes, tampers with its finished sub-jobs,
//! swaps inputs, sets Kiln's own environment names, connects to a host
//! UNIX socket, keeps handles and sub-jobs, and fills the disk. Each test
//! asserts that nothing outside the job directory changed, nothing the
//! plugin wrote was trusted, and the host stayed inside its bounds.

mod common;

use common::{TestHost, data, grants, result_text};
use kiln_host::grants::Grants;
use kiln_host::{FinishStatus, JobReport};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn hostile_wasm() -> PathBuf {
    Path::new(common::PLUGIN_DIR).join("hostile.wasm")
}

async fn host() -> TestHost {
    let t = TestHost::new().await;
    t.host.catalog().add_file(&hostile_wasm()).await.unwrap();
    t
}

/// Run `hostile` in `mode`; a run that does not end within two minutes is
/// a host that blocked or spun.
async fn hostile(
    t: &TestHost,
    mode: &str,
    params: &[(&str, &str)],
    g: Option<Grants>,
) -> JobReport {
    let mut all = vec![("MODE", mode)];
    all.extend_from_slice(params);
    tokio::time::timeout(Duration::from_secs(120), t.run("hostile", &all, g))
        .await
        .unwrap_or_else(|_| panic!("`hostile {mode}` did not end within 2 minutes"))
}

/// Every file below `dir` with its contents, to compare before and after.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            out.extend(snapshot(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
        }
    }
    out.sort();
    out
}

/// A directory outside the jobs directory with one file in it, and the
/// two as a job directory (`jobs/job_N`) reaches them by relative links.
fn victim(t: &TestHost) -> (PathBuf, &'static str, &'static str) {
    let dir = t.jobs.path().join("victim");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("file"), "original\n").unwrap();
    (dir, "../../victim/file", "../../victim")
}

async fn links_are_never_followed(mode: &str) {
    let t = host().await;
    let (dir, file, up) = victim(&t);
    let before = snapshot(&dir);
    let r = hostile(&t, &format!("{mode} {file} {up}"), &[], None).await;
    assert_eq!(
        snapshot(&dir),
        before,
        "the host wrote outside the job directory: {r:#?}"
    );
    // The links were all planted and the host then wrote its files.
    assert_eq!(r.status, FinishStatus::Succeeded, "{r:#?}");
    let text = result_text(&r);
    assert!(text.contains("workdir: refused"), "{text}");
    // The records were replaced, links and all, by files of the host's.
    for name in ["job.json", "params.xml"] {
        let meta = std::fs::symlink_metadata(r.job_dir.join(name)).unwrap();
        assert!(meta.is_file(), "{name} is still a link");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn links_planted_by_wasi_where_the_host_writes_are_never_followed() {
    links_are_never_followed("links-wasi").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn links_planted_by_a_program_where_the_host_writes_are_never_followed() {
    links_are_never_followed("links-program").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_finished_sub_job_is_not_trusted_by_a_later_run() {
    let t = host().await;
    let mtz = data("5e5z.mtz");
    let mtz = mtz.to_str().unwrap();
    let r = hostile(&t, "tamper", &[("HKLIN", mtz)], None).await;
    assert_eq!(r.status, FinishStatus::Succeeded, "{r:#?}");
    let truth = r.sub_jobs[0].outputs["CELL"].clone();
    assert_ne!(truth["a"].as_f64(), Some(111.1));
    let forged = std::fs::read_to_string(r.sub_jobs[0].job_dir.join("params.xml")).unwrap();
    assert!(
        forged.contains("111.1"),
        "the plugin did not tamper: {forged}"
    );

    // A later, trusted pipeline with the same step in the same jobs
    // directory: the step may be reused, but from the host's own record.
    let pdb = data("rnase_frag.pdb");
    let out = t.jobs.path().join("out.pdb");
    let demo = t
        .run(
            "demo_copycell",
            &[
                ("HKLIN", mtz),
                ("XYZIN", pdb.to_str().unwrap()),
                ("XYZOUT", out.to_str().unwrap()),
            ],
            None,
        )
        .await;
    assert_eq!(demo.status, FinishStatus::Succeeded, "{demo:#?}");
    assert_eq!(demo.outputs["CELL"], truth, "{:#}", demo.outputs);
    let cryst1 = std::fs::read_to_string(&out).unwrap();
    assert!(!cryst1.contains("111.1"), "{cryst1}");
}

async fn a_swapped_input_is_refused_or_bounded(kind: &str) {
    let t = host().await;
    let limits =
        grants("programs = [\"fake\"]\ntasks = [\"probe\"]\n[limits]\nwall_seconds = 30\n");
    let r = hostile(&t, &format!("swap {kind}"), &[], Some(limits)).await;
    // The swap was made and the sub-job started and ended, whichever way:
    // the host neither blocked on the FIFO nor read /dev/zero without end
    // (`hostile` allows two minutes; the job's wall limit is 30 s).
    assert_eq!(r.status, FinishStatus::Succeeded, "{r:#?}");
    let text = result_text(&r);
    assert!(text.starts_with("FinishStatus::"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_swapped_for_a_link_to_dev_zero_is_not_read() {
    a_swapped_input_is_refused_or_bounded("zero").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_swapped_for_a_fifo_does_not_block_the_host() {
    a_swapped_input_is_refused_or_bounded("fifo").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kilns_own_and_code_running_env_names_are_refused() {
    let t = host().await;
    // Without a grants file no env name is granted, code-running ones
    // with a message that says what they do.
    let r = hostile(&t, "env BASH_ENV /tmp/evil.sh", &[], None).await;
    assert_eq!(r.status, FinishStatus::Failed);
    let reason = r.reason.unwrap();
    assert!(reason.contains("makes a program run code"), "{reason}");

    // A manifest may grant a code-running name...
    let g = grants("programs = [\"fake\"]\nenv = [\"BASH_ENV\", \"KILN_CONFINE_POLICY\"]\n");
    let r = hostile(&t, "env BASH_ENV /tmp/evil.sh", &[], Some(g.clone())).await;
    assert_eq!(r.status, FinishStatus::Succeeded, "{r:#?}");
    assert!(result_text(&r).contains("BASH_ENV=/tmp/evil.sh"));

    // ...never one of Kiln's own, even named.
    let wide = r#"{"read_only":[],"read_write":["/"],"network":"allowed","require":false}"#;
    let r = hostile(&t, &format!("env KILN_CONFINE_POLICY {wide}"), &[], Some(g)).await;
    assert_eq!(r.status, FinishStatus::Failed);
    let reason = r.reason.unwrap();
    assert!(
        reason.contains("Kiln's own and is never passed"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confined_program_cannot_connect_to_a_host_unix_socket() {
    let t = host().await;
    // In the job's own (granted) directory's parent: outside every grant,
    // so the argument is not refused and only confinement can stop it.
    let path = t.jobs.path().join("host.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let g = grants(&format!(
        "programs = [\"fake\"]\nread_dirs = [\"{}\"]\n",
        t.jobs.path().display()
    ));
    let r = hostile(&t, &format!("connect {}", path.display()), &[], Some(g)).await;
    assert_eq!(r.status, FinishStatus::Succeeded, "{r:#?}");
    let text = result_text(&r);
    assert!(text.starts_with("exited 1"), "{text}");
    assert!(
        text.contains("Operation not permitted") || text.contains("Permission denied"),
        "{text}"
    );
    assert!(listener.accept().is_err(), "the program connected");
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn kept_handles_hold_no_more_captured_output_than_the_jobs_limit() {
    let t = host().await;
    // Warm up (compiled components), then measure.
    hostile(&t, "keep 1 10", &[], None).await;
    let before = rss_bytes();
    let cap: u64 = 8 << 20;
    let g = grants(&format!(
        "programs = [\"fake\"]\n[limits]\noutput_bytes = {cap}\n"
    ));
    // 24 programs of 8 MiB each: 192 MiB if every handle kept its own.
    let r = hostile(&t, &format!("keep 24 {}", 8 << 20), &[], Some(g)).await;
    assert_eq!(r.status, FinishStatus::Succeeded, "{r:#?}");
    let text = result_text(&r);
    let held: u64 = text
        .rsplit("holding ")
        .next()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        held <= cap,
        "the handles held {held} bytes, over the job's {cap}"
    );
    let grew = rss_bytes().saturating_sub(before);
    assert!(grew < 128 << 20, "host RSS grew by {} MiB", grew >> 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wide_and_deep_job_tree_stops_at_the_trees_cap() {
    let t = host().await;
    let g = grants("tasks = [\"hostile\"]\n[limits]\ntree_jobs = 30\nsub_jobs = 100\n");
    // 1 + 4 + 16 + 64 jobs if nothing stopped it.
    let r = hostile(&t, "nest 4 3", &[], Some(g)).await;
    assert_eq!(r.status, FinishStatus::Failed, "{r:#?}");
    let reason = r.reason.clone().unwrap();
    assert!(reason.contains("limits.tree_jobs"), "{reason}");
    fn count(r: &JobReport) -> usize {
        1 + r.sub_jobs.iter().map(count).sum::<usize>()
    }
    // The cap is on the jobs that exist at once (a sub-job whose handle
    // was dropped after it ended no longer counts): the tree was stopped
    // well short of its 85.
    assert!(count(&r) < 40, "{} jobs", count(&r));

    let g = grants("tasks = [\"hostile\"]\n[limits]\ntree_depth = 5\n");
    let r = hostile(&t, "nest 1 10", &[], Some(g)).await;
    assert_eq!(r.status, FinishStatus::Failed, "{r:#?}");
    let reason = r.reason.unwrap();
    assert!(reason.contains("limits.tree_depth"), "{reason}");
}

async fn filling_the_disk_stops_at_the_limit(mode: &str) {
    let t = host().await;
    let g = grants("programs = [\"fake\"]\n[limits]\ndisk_bytes = 33554432\n");
    let fill = format!("{mode} 4294967296");
    let (filled, other) = tokio::join!(
        hostile(&t, &fill, &[], Some(g)),
        t.probe("outcome fake sleep 1", None),
    );
    assert_eq!(filled.status, FinishStatus::Failed, "{filled:#?}");
    let reason = filled.reason.unwrap();
    // A program is stopped by its file size limit (SIGXFSZ, signal 25),
    // which is never above the job's disk limit, or by the host's watch.
    assert!(
        reason.contains("disk limit") || reason.contains("signal 25"),
        "{reason}"
    );
    let used: u64 = snapshot(&filled.job_dir)
        .iter()
        .map(|(_, d)| d.len() as u64)
        .sum();
    // The host samples the directory's size (every 50 ms at the closest):
    // what was written in between is over the limit, never the 4 GiB.
    assert!(
        used <= 33554432 + (512 << 20),
        "the job directory holds {used} bytes"
    );
    assert_eq!(other.status, FinishStatus::Succeeded, "{other:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_filling_the_disk_through_wasi_is_stopped() {
    filling_the_disk_stops_at_the_limit("fill-wasi").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_filling_the_disk_is_stopped() {
    filling_the_disk_stops_at_the_limit("fill-program").await;
}
