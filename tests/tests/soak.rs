//! Soak: many short runs mixed with cancels and timeouts leave no zombie,
//! no stray process and a stable descriptor count. `KILN_SOAK_N` sets the
//! number of runs (300 by default; the README's soak command runs 10,000).

mod common;

use common::TestHost;
use kiln_host::{FinishStatus, RunRequest, TaskRef};
use std::time::Duration;

fn request(mode: &str, timeout_ms: Option<u32>) -> RunRequest {
    let mut params = vec![("MODE".to_string(), mode.to_string())];
    if let Some(ms) = timeout_ms {
        params.push(("TIMEOUT_MS".into(), ms.to_string()));
    }
    RunRequest {
        task: TaskRef::Name("probe".into()),
        params,
        grants: None,
    }
}

/// Our child processes: (pid, state, command line).
fn children() -> Vec<(u32, String, String)> {
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rsplit_once(')').map(|(_, a)| a.to_string()) else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(me) {
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            out.push((pid, fields[0].to_string(), cmd));
        }
    }
    out
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// What the process's descriptors point at, for a failure message.
fn fd_targets() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            std::fs::read_link(e.path()).map_or_else(|e| e.to_string(), |p| p.display().to_string())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn many_short_runs_with_cancels_and_timeouts_leak_nothing() {
    let n: usize = std::env::var("KILN_SOAK_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let t = TestHost::new().await;
    // Warm up: compiled components, the shared network namespace.
    assert_eq!(
        t.probe("outcome fake exit 0", None).await.status,
        FinishStatus::Succeeded
    );
    let fds_before = fd_count();
    let targets_before = fd_targets();

    let mut batch = Vec::new();
    for i in 0..n {
        let host = t.host.clone();
        batch.push(tokio::spawn(async move {
            let (req, cancel, want) = match i % 3 {
                0 => (request("outcome fake exit 0", None), false, "exited 0"),
                1 => (
                    request("outcome fake sleep 5", Some(20)),
                    false,
                    "timed-out",
                ),
                _ => (request("outcome fake sleep 600", None), true, "cancelled"),
            };
            let job = host.submit(req).await.unwrap();
            host.start(&job);
            if cancel {
                tokio::time::sleep(Duration::from_millis(10)).await;
                job.cancel();
            }
            let status = job.wait().await.status;
            // A cancel that lands before the program starts ends the job
            // as well: interrupted is all that is asked of it.
            let got = match status {
                FinishStatus::Interrupted => "cancelled".to_string(),
                FinishStatus::Succeeded => common::result_text(&host.report(&job)),
                other => format!("{other:?}: {:?}", host.report(&job).reason),
            };
            (i, want, got)
        }));
        // Bounded concurrency: a few dozen jobs in flight.
        if batch.len() == 32 {
            for j in batch.drain(..) {
                let (i, want, got) = j.await.unwrap();
                assert_eq!(got, want, "run {i}");
            }
        }
    }
    for j in batch.drain(..) {
        let (i, want, got) = j.await.unwrap();
        assert_eq!(got, want, "run {i}");
    }

    // Give the kernel a moment to finish reaping.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stray: Vec<_> = children()
            .into_iter()
            .filter(|(_, _, cmd)| !cmd.contains("--hold-netns"))
            .collect();
        if stray.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "children left: {stray:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The last jobs' tasks drop their directory handles just after the
    // jobs were seen to end.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fd_count() > fds_before + 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fds_after = fd_count();
    assert!(
        fds_after <= fds_before + 4,
        "descriptors grew from {fds_before} to {fds_after}: {targets_before:#?} then {:#?}",
        fd_targets()
    );
}
