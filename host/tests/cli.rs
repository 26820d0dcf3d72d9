//! The `kiln` command line as a user runs it: the demo, `run` with `--json`,
//! failures and bad input with their exit statuses, and `describe`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const EXPECTED_CRYST1: &str = "CRYST1    9.643    9.609   19.029  90.00 101.22  90.00 P 21 21 21";

fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::new(KILN)
        .args(args)
        .current_dir(dir)
        .env(
            "KILN_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-cache"),
        )
        // Tests that want a CCP4i2 installation pass it with --top.
        .env_remove("CCP4I2_TOP")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("demo-data")
        .join(name)
}

/// A registry whose mtzdump, pdbset and refmac5 (a stand-in) are
/// `kiln tool ...`.
fn registry(dir: &Path) -> PathBuf {
    let path = dir.join("programs.toml");
    let entries: String = ["mtzdump", "pdbset", "refmac5"]
        .iter()
        .map(|p| format!("[programs.{p}]\npath = {KILN:?}\nargs = [\"tool\", \"{p}\"]\n\n"))
        .collect();
    std::fs::write(&path, entries).unwrap();
    path
}

#[test]
fn demo_prints_the_job_tree_and_leaves_the_cell_in_xyzout() {
    let tmp = tempfile::tempdir().unwrap();
    let out = kiln(tmp.path(), &["demo"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("Kiln's own small implementations"),
        "{stdout}"
    );
    assert!(stdout.contains("demo_copycell"), "{stdout}");
    assert!(
        stdout.contains("mtzdump") && stdout.contains("pdbset"),
        "{stdout}"
    );
    assert!(stdout.contains("job 1 succeeded"), "{stdout}");
    assert!(stdout.contains(EXPECTED_CRYST1), "{stdout}");
    let job = tmp.path().join("kiln-jobs/job_1");
    for sub in ["job_1", "job_2"] {
        for f in ["params.xml", "com.txt", "log.txt"] {
            assert!(job.join(sub).join(f).is_file(), "{sub}/{f} missing");
        }
    }
    let xyzout = std::fs::read_to_string(job.join("job_2/XYZOUT.pdb")).unwrap();
    assert!(xyzout.lines().any(|l| l.starts_with(EXPECTED_CRYST1)));
}

#[test]
fn run_with_json_reports_id_status_and_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let out_pdb = tmp.path().join("out.pdb");
    let out = kiln(
        tmp.path(),
        &[
            "run",
            "demo_copycell",
            "--param",
            &format!("HKLIN={}", data("5e5z.mtz").display()),
            "--param",
            &format!("XYZIN={}", data("rnase_frag.pdb").display()),
            "--param",
            &format!("XYZOUT={}", out_pdb.display()),
            "--registry",
            reg.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["job_id"], "1");
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["sub_jobs"].as_array().unwrap().len(), 2);
    assert!(doc["outputs"].to_string().contains("out.pdb"), "{doc:#}");
    assert!(doc["job_dir"].as_str().unwrap().ends_with("job_1"));
    let pdb = std::fs::read_to_string(&out_pdb).unwrap();
    assert!(pdb.contains(EXPECTED_CRYST1));
}

#[test]
fn a_failing_job_exits_1_with_the_cause() {
    let tmp = tempfile::tempdir().unwrap();
    // mtzdump is registered as a program that exits 1.
    let reg = tmp.path().join("failing.toml");
    std::fs::write(&reg, "[programs.mtzdump]\npath = \"/bin/false\"\n").unwrap();
    let hklin = format!("HKLIN={}", data("5e5z.mtz").display());
    let out = kiln(
        tmp.path(),
        &[
            "run",
            "mtzdump",
            "--param",
            &hklin,
            "--registry",
            reg.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("failed"), "{stdout}");
    assert!(
        stdout.contains("program mtzdump exited with status 1"),
        "{stdout}"
    );
}

#[test]
fn a_missing_input_fails_validation_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = kiln(
        tmp.path(),
        &["run", "mtzdump", "--param", "HKLIN=missing.mtz"],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("inputData.HKLIN") && stderr.contains("mustExist"),
        "{stderr}"
    );
    assert!(!tmp.path().join("kiln-jobs").exists(), "nothing was run");
}

#[test]
fn def_check_and_params_show_read_ccp4i2_files() {
    let defs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ccp4/container/testdata");
    let tmp = tempfile::tempdir().unwrap();
    let out = kiln(
        tmp.path(),
        &[
            "def",
            "check",
            defs.join("mtzheader.def.xml").to_str().unwrap(),
            defs.join("pdbset_ui.def.xml").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains(": ok: ") && l.contains("params round-trip ok"))
            .count(),
        2,
        "{stdout}"
    );

    // An include without the CCP4i2 installation: an error naming it.
    let out = kiln(
        tmp.path(),
        &[
            "def",
            "check",
            defs.join("molrep_pipe.def.xml").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stdout)
            .contains("include not resolved: wrappers/molrep_mr/script/molrep_mr.def.xml")
    );

    let out = kiln(
        tmp.path(),
        &[
            "params",
            "show",
            defs.join("ccp4mg_general.test1.params.xml")
                .to_str()
                .unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("pluginName: coot_rebuild"), "{stdout}");
    assert!(
        stdout.contains("inputData.XYZIN.baseName = XYZOUT.pdb"),
        "{stdout}"
    );
}

#[test]
fn bad_input_exits_2_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let out = kiln(tmp.path(), &["run", "no_such_task"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unknown task `no_such_task`"), "{stderr}");
    assert!(stderr.contains("demo_copycell"), "{stderr}");

    let out = kiln(tmp.path(), &["run", "mtzdump", "--param", "NOPE=1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("NOPE"), "{}", text(&out.stderr));

    let out = kiln(tmp.path(), &["run", "mtzdump", "--param", "HKLIN"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("NAME=VALUE"));

    let bad = tmp.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm truncated").unwrap();
    let out = kiln(tmp.path(), &["run", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a valid WebAssembly component"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn describe_with_grants_reports_what_is_requested_but_not_granted() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("grants.toml");
    std::fs::write(
        &manifest,
        "programs = [\"mtzdump\"]\ntasks = [\"mtzdump\", \"pdbset\"]\n",
    )
    .unwrap();
    let out = kiln(
        tmp.path(),
        &[
            "describe",
            "demo_copycell",
            "--grants",
            manifest.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Requested but not granted:"), "{stdout}");
    assert!(
        stdout.contains(
            "program `pdbset` is not granted: add \"pdbset\" to `programs` in the grants manifest"
        ),
        "{stdout}"
    );

    std::fs::write(&manifest, "programs = [\"mtzdump\"]\nshell = true\n").unwrap();
    let out = kiln(
        tmp.path(),
        &[
            "describe",
            "demo_copycell",
            "--grants",
            manifest.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown field `shell`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn describe_lists_the_requested_capabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let out = kiln(tmp.path(), &["describe", "demo_copycell"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("sub-tasks: mtzdump, pdbset"), "{stdout}");
    assert!(
        stdout.contains("with its sub-tasks, programs: mtzdump, pdbset"),
        "{stdout}"
    );
    assert!(stdout.contains("<ccp4i2"), "{stdout}");
}

#[test]
fn def_check_resolves_includes_from_a_ccp4i2_installation() {
    // CI installs CCP4i2's definitions (the PyPI package) and sets this.
    let Some(top) = std::env::var_os("CCP4I2_TOP") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must set CCP4I2_TOP (see .ci/run)"
        );
        eprintln!("skipped: CCP4I2_TOP is not set");
        return;
    };
    let defs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ccp4/container/testdata");
    let files: Vec<String> = ["molrep_pipe", "mtzheader", "pdbset_ui", "prosmart_refmac"]
        .iter()
        .map(|n| defs.join(format!("{n}.def.xml")).display().to_string())
        .collect();
    let mut args = vec!["def", "check", "--top", top.to_str().unwrap()];
    args.extend(files.iter().map(String::as_str));
    let tmp = tempfile::tempdir().unwrap();
    let out = kiln(tmp.path(), &args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains(": ok: ")).count(),
        4,
        "{stdout}"
    );
}

#[test]
fn a_reader_that_goes_away_ends_kiln_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "{KILN} params show {} | true",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../ccp4/container/testdata/ccp4mg_general.test1.params.xml")
                .display()
        ))
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `kiln run refine_scan` arguments on the bundled data.
fn refine_scan_args(reg: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "run".into(),
        "refine_scan".into(),
        "--param".into(),
        format!("HKLIN={}", data("5e5z.mtz").display()),
        "--param".into(),
        format!("XYZIN={}", data("rnase_frag.pdb").display()),
        "--registry".into(),
        reg.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn kiln_args(dir: &Path, args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kiln(dir, &args)
}

#[test]
fn run_draws_a_live_tree_or_plain_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let fast = ["--param", "NCYCLES=1", "--param", "WEIGHTS=0.2 0.4"];

    let mut args = refine_scan_args(&reg, &fast);
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
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(tmp.path())
        .env(
            "KILN_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-cache"),
        )
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

/// Live processes whose working directory is below `dir`.
fn programs_in(dir: &Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat.rsplit_once(") Z").is_some();
            !zombie && cwd.is_ok_and(|c| c.starts_with(&dir))
        })
        .collect()
}

/// The job records of the refinement steps of pipeline job `n`: (job id,
/// status, reused from).
fn step_records(jobs: &Path, n: u32) -> Vec<(String, Option<String>, Option<String>)> {
    let dir = jobs.join(format!("job_{n}"));
    (2..)
        .map(|k| dir.join(format!("job_{k}")))
        .take_while(|d| d.is_dir())
        .filter_map(|d| {
            let r: serde_json::Value =
                serde_json::from_slice(&std::fs::read(d.join("job.json")).ok()?).ok()?;
            Some((
                r["id"].as_str()?.to_string(),
                r["status"].as_str().map(str::to_string),
                r["reused_from"].as_str().map(str::to_string),
            ))
        })
        .collect()
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
    let mut first = Command::new(KILN)
        .args(refine_scan_args(&reg, &slow))
        .current_dir(tmp.path())
        .env(
            "KILN_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-cache"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = step_records(&jobs, 1)
            .iter()
            .filter(|(_, status, _)| status.as_deref() == Some("succeeded"))
            .count();
        // Killed while the next refinements' programs run.
        if done >= 2 && !programs_in(&jobs.join("job_1")).is_empty() {
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
    first.wait().unwrap();
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
