//! Pipelines from the command line: the live job tree, and a run killed
//! with SIGKILL then resumed.

mod common;

use common::{
    KILN, command_in, kiln, kiln_args, programs_in, refine_scan_args, registry, spawn_kiln,
    step_records, text,
};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn run_draws_a_live_tree_or_plain_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let fast = ["--param", "NCYCLES=1", "--param", "WEIGHTS=0.2 0.4"];
    // Long enough (each refinement 0.3 s) for the tree, redrawn every
    // 0.1 s, to be drawn more than once.
    let slower = ["--param", "NCYCLES=6", "--param", "WEIGHTS=0.2 0.4"];

    let mut args = refine_scan_args(&reg, &slower);
    args.extend(["--progress".into(), "tree".into(), "--fresh".into()]);
    let out = kiln_args(tmp.path(), &args);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", text(&out.stdout));
    // Frames redrawn in place; the last shows every job finished.
    assert!(
        stderr.contains("\x1b[2K") && stderr.contains("A\r"),
        "{stderr:?}"
    );
    let last = stderr.rsplit("\x1b[J").nth(1).unwrap();
    let lines: Vec<&str> = last
        .split('\n')
        .map(|l| l.rsplit("\x1b[2K").next().unwrap())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| {
            l.trim_start_matches([' ', '└'])
                .split_whitespace()
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, ["1", "1.1", "1.1.1", "1.1.2", "1.2", "1.3"], "{last}");
    for line in &lines {
        assert!(
            line.contains("finished") && line.contains("[####################] 100%"),
            "{line}"
        );
    }

    // Not a terminal: a plain line per change, no control codes.
    let out = kiln_args(tmp.path(), &refine_scan_args(&reg, &fast));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
    assert!(stderr.contains("[2 refine_scan] running"), "{stderr}");
    assert!(stderr.contains("  [2.2 refmac] "), "{stderr}");
}

#[test]
fn on_a_terminal_the_tree_is_the_default() {
    // `script` (util-linux) gives kiln a pseudo-terminal.
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let args = refine_scan_args(&reg, &["--param", "NCYCLES=1", "--param", "WEIGHTS=0.3"]);
    let command = std::iter::once(KILN.to_string())
        .chain(args)
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let out = command_in(tmp.path(), "script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("`script` from util-linux runs kiln on a pseudo-terminal");
    let all = text(&out.stdout);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("\x1b[2K") && all.contains("[####################] 100%"),
        "{all:?}"
    );
}

#[test]
fn a_killed_run_resumes_rerunning_only_the_unfinished_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let jobs = tmp.path().join("kiln-jobs");
    // Eight refinements of about 1 s, two at a time.
    let slow = [
        "--param",
        "NCYCLES=20",
        "--param",
        "MAXNJOBS=2",
        "--progress",
        "none",
    ];
    let mut first = spawn_kiln(tmp.path(), &refine_scan_args(&reg, &slow));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = step_records(&jobs, 1)
            .iter()
            .filter(|(_, status, _)| status.as_deref() == Some("succeeded"))
            .count();
        // Killed while the next refinements' programs run, one of them
        // just started: it is still running once the kill has been seen.
        if done >= 2
            && programs_in(&jobs.join("job_1"))
                .into_iter()
                .any(|pid| running_for(pid).is_some_and(|t| t < Duration::from_millis(300)))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no two refinements finished in time"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended by itself"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap(); // SIGKILL: no clean-up of any kind
    // Not reaped yet, as when a killed host's parent has not collected it:
    // a zombie is a dead host all the same.
    let zombie = || {
        std::fs::read_to_string(format!("/proc/{}/stat", first.id()))
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !zombie() {
        assert!(Instant::now() < deadline, "the killed host did not die");
        std::thread::sleep(Duration::from_millis(5));
    }
    let finished_before: Vec<String> = step_records(&jobs, 1)
        .into_iter()
        .filter(|(_, status, _)| status.as_deref() == Some("succeeded"))
        .map(|(id, _, _)| id)
        .collect();
    assert!(
        (2..8).contains(&finished_before.len()),
        "{finished_before:?}"
    );
    let record = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("job.json")).unwrap()).unwrap()
    };
    assert_eq!(
        record(&jobs.join("job_1"))["state"],
        "running",
        "the killed run never ended"
    );
    assert!(
        !programs_in(&jobs.join("job_1")).is_empty(),
        "its programs outlived it"
    );

    // The next host to start on the jobs directory kills what the dead one
    // left running and marks its unended jobs interrupted.
    let out = kiln(tmp.path(), &["describe", "refine_scan"]);
    first.wait().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("marked interrupted"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(programs_in(&jobs.join("job_1")), Vec::<u32>::new());
    let pipeline = record(&jobs.join("job_1"));
    assert_eq!(pipeline["state"], "interrupted");
    assert!(pipeline["reason"].as_str().unwrap().contains("host"));
    for (id, status, _) in step_records(&jobs, 1) {
        assert!(status.is_some(), "job {id} still has no end");
    }

    let mut args = refine_scan_args(&reg, &slow);
    args.push("--json".into());
    let out = kiln_args(tmp.path(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["job_id"], "2");
    let subs = doc["sub_jobs"].as_array().unwrap();
    assert_eq!(subs[0]["reused_from"], "1.1", "the preparation is reused");
    let mut reran = 0;
    for (k, step) in subs[1..].iter().enumerate() {
        let old_id = format!("1.{}", k + 2);
        if finished_before.contains(&old_id) {
            assert_eq!(step["reused_from"], old_id.as_str(), "{step:#}");
            assert_eq!(step["attempts"], 0);
        } else {
            assert!(step["reused_from"].is_null(), "{step:#}");
            assert_eq!(step["attempts"], 1);
            reran += 1;
        }
        assert_eq!(step["status"], "succeeded");
    }
    assert_eq!(reran, 8 - finished_before.len());

    // The same result as a run from scratch.
    let prepared = std::fs::read(subs[0]["outputs"]["XYZOUT"]["path"].as_str().unwrap()).unwrap();
    let best = ["0.05", "0.1", "0.2", "0.3", "0.5", "0.8", "1.2", "2.0"]
        .iter()
        .map(|w| w.parse::<f64>().unwrap())
        .min_by(|a, b| {
            let r = |w| kiln_ccp4_programs::refmac5::simulate(&prepared, w).r_free;
            r(*a).total_cmp(&r(*b))
        })
        .unwrap();
    assert_eq!(
        doc["outputs"]["BEST_WEIGHT"].as_f64(),
        Some(best),
        "{doc:#}"
    );
}

/// How long process `pid` has been running, from /proc.
fn running_for(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted after the command's closing parenthesis.
    let started: u64 = stat.rsplit_once(") ")?.1.split(' ').nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(Duration::from_secs_f64(
        (uptime - started as f64 / ticks).max(0.0),
    ))
}
