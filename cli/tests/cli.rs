//! The `kiln` command line as a user runs it: the demo, `run` with `--json`,
//! failures and bad input with their exit statuses, and `describe`.

mod common;

use common::{KILN, data, kiln, registry, text};
use std::path::Path;
use std::process::Command;

const EXPECTED_CRYST1: &str = "CRYST1    9.643    9.609   19.029  90.00 101.22  90.00 P 21 21 21";

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

/// `kiln run demo_copycell --json` in `dir` on the bundled data, writing
/// XYZOUT to `out`; the report, once it succeeded.
fn copycell_json(dir: &Path, out: &Path) -> serde_json::Value {
    let reg = registry(dir);
    let run = kiln(
        dir,
        &[
            "run",
            "demo_copycell",
            "--param",
            &format!("HKLIN={}", data("5e5z.mtz").display()),
            "--param",
            &format!("XYZIN={}", data("rnase_frag.pdb").display()),
            "--param",
            &format!("XYZOUT={}", out.display()),
            "--registry",
            reg.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(
        run.status.success(),
        "{}\n{}",
        text(&run.stdout),
        text(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).unwrap()
}

#[test]
fn run_with_json_reports_id_status_and_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let out_pdb = tmp.path().join("out.pdb");
    let doc = copycell_json(tmp.path(), &out_pdb);
    assert_eq!(doc["job_id"], "1");
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["sub_jobs"].as_array().unwrap().len(), 2);
    assert!(doc["outputs"].to_string().contains("out.pdb"), "{doc:#}");
    assert!(doc["job_dir"].as_str().unwrap().ends_with("job_1"));
    let pdb = std::fs::read_to_string(&out_pdb).unwrap();
    assert!(pdb.contains(EXPECTED_CRYST1));
}

/// The same run asked for another output: the steps are reused, and the
/// output is still written where this run asked, from the finished job's
/// files; once those are gone the step runs again.
#[test]
fn a_rerun_that_reuses_its_steps_writes_the_outputs_it_asks_for() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |out: &Path| copycell_json(tmp.path(), out);
    let reused = |doc: &serde_json::Value| {
        doc["sub_jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !s["reused_from"].is_null())
            .count()
    };
    let (a, b, c) = (
        tmp.path().join("a.pdb"),
        tmp.path().join("b.pdb"),
        tmp.path().join("c.pdb"),
    );
    let first = run(&a);
    assert_eq!(reused(&first), 0);
    let cell = |p: &Path| {
        let pdb = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(pdb.contains(EXPECTED_CRYST1), "{pdb}");
    };
    cell(&a);

    let second = run(&b);
    assert_eq!(reused(&second), 2, "{second:#}");
    cell(&b);
    assert!(
        second["outputs"]["XYZOUT"].to_string().contains("b.pdb"),
        "{second:#}"
    );

    // The finished steps' own files changed: they are not trusted, the
    // step runs again.
    std::fs::remove_file(&a).unwrap();
    std::fs::remove_file(&b).unwrap();
    let mut dirs = vec![tmp.path().join("kiln-jobs")];
    let mut tampered = 0;
    while let Some(dir) = dirs.pop() {
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.is_dir() {
                dirs.push(f);
            } else if f.extension().is_some_and(|e| e == "pdb") {
                std::fs::write(&f, b"tampered").unwrap();
                tampered += 1;
            }
        }
    }
    assert!(tampered >= 2);
    let third = run(&c);
    assert_eq!(
        third["sub_jobs"][1]["reused_from"],
        serde_json::Value::Null,
        "{third:#}"
    );
    cell(&c);
    assert!(
        third["outputs"]["XYZOUT"].to_string().contains("c.pdb"),
        "{third:#}"
    );
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
    // Every item is set, written and read back, not only the set ones
    // (none, in a definition just read).
    for (file, items) in [("mtzheader", 11), ("pdbset_ui", 3)] {
        let line = stdout
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("{stdout}"));
        assert!(
            line.contains(&format!(
                "{items} items, params round-trip ok ({items} items set and read back equal"
            )),
            "{line}"
        );
    }

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

/// CCP4i2's own definitions give numeric items the default `Auto`; CCP4i2
/// leaves them unset, and so does Kiln, saying so.
#[test]
fn def_check_reads_a_numeric_default_that_is_a_word_as_unset() {
    let tmp = tempfile::tempdir().unwrap();
    let def = tmp.path().join("auto.def.xml");
    std::fs::write(
        &def,
        r#"<?xml version='1.0' encoding='UTF-8'?>
<ccp4:ccp4i2 xmlns:ccp4="http://www.ccp4.ac.uk/ccp4ns">
  <ccp4i2_header><function>DEF</function><pluginName>auto</pluginName></ccp4i2_header>
  <ccp4i2_body id="auto">
    <container id="controlParameters">
      <content id="NPROC">
        <className>CInt</className>
        <qualifiers><default>Auto</default></qualifiers>
      </content>
    </container>
  </ccp4i2_body>
</ccp4:ccp4i2>
"#,
    )
    .unwrap();
    let out = kiln(tmp.path(), &["def", "check", def.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(": ok: "), "{stdout}");
    assert!(
        stdout.contains(
            "controlParameters.NPROC: default \"Auto\" is not an integer (CInt); the item was left unset"
        ),
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
    let mut files: Vec<String> = ["molrep_pipe", "mtzheader", "pdbset_ui", "prosmart_refmac"]
        .iter()
        .map(|n| defs.join(format!("{n}.def.xml")).display().to_string())
        .collect();
    // Shipped with CCP4i2, with numeric defaults `Auto`.
    let xia2 = Path::new(&top).join("wrappers/xia2_dials/script/xia2_dials.def.xml");
    files.push(xia2.display().to_string());
    let mut args = vec!["def", "check", "--top", top.to_str().unwrap()];
    args.extend(files.iter().map(String::as_str));
    let tmp = tempfile::tempdir().unwrap();
    let out = kiln(tmp.path(), &args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains(": ok: ")).count(),
        5,
        "{stdout}"
    );
    assert!(stdout.contains("default \"Auto\" is not"), "{stdout}");
}

/// Like any Unix filter: a write to a reader that has gone ends `kiln` by
/// SIGPIPE, with nothing on stderr (no panic, no error message).
#[test]
fn a_reader_that_goes_away_ends_kiln_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(KILN)
        .arg("params")
        .arg("show")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../ccp4/container/testdata/ccp4mg_general.test1.params.xml"),
        )
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
    assert_eq!(text(&out.stderr), "");
}
