//! The standard tasks end to end in the real host: demo_copycell runs
//! mtzdump then pdbset as sub-jobs against the fake registry's format-faithful
//! programs, and leaves CCP4i2's job files behind.

mod common;

use common::{TestHost, data};
use kiln_host::events::EventKind;
use kiln_host::{FinishStatus, JobState};

const EXPECTED_CRYST1: &str = "CRYST1    9.643    9.609   19.029  90.00 101.22  90.00 P 21 21 21";

#[tokio::test(flavor = "multi_thread")]
async fn demo_copycell_writes_the_mtz_cell_into_cryst1_and_keeps_the_rest() {
    let t = TestHost::new().await;
    let mut events = t.host.events().subscribe();
    let mtz = data("5e5z.mtz");
    let pdb = data("rnase_frag.pdb");
    let out = t.jobs.path().join("out.pdb");
    let report = t
        .run(
            "demo_copycell",
            &[
                ("HKLIN", mtz.to_str().unwrap()),
                ("XYZIN", pdb.to_str().unwrap()),
                ("XYZOUT", out.to_str().unwrap()),
            ],
            None,
        )
        .await;
    assert_eq!(report.status, FinishStatus::Succeeded, "{report:#?}");
    assert_eq!(report.state, JobState::Finished);

    // The output: CRYST1 replaced (space group and Z kept), every other
    // record copied unchanged.
    let input = std::fs::read_to_string(&pdb).unwrap();
    let output = std::fs::read_to_string(&out).unwrap();
    let cryst1_in = input.lines().find(|l| l.starts_with("CRYST1")).unwrap();
    let cryst1_out = output.lines().find(|l| l.starts_with("CRYST1")).unwrap();
    assert!(cryst1_out.starts_with(EXPECTED_CRYST1), "{cryst1_out:?}");
    assert_eq!(cryst1_out[54..], cryst1_in[54..], "space group and Z kept");
    let others_in: Vec<&str> = input.lines().filter(|l| !l.starts_with("CRYST1")).collect();
    let others_out: Vec<&str> = output
        .lines()
        .filter(|l| !l.starts_with("CRYST1"))
        .collect();
    assert_eq!(others_in, others_out);

    // Sub-jobs 1 and 2 in job_1 and job_2, each with CCP4i2's files.
    assert_eq!(report.sub_jobs.len(), 2);
    let id = &report.job_id;
    for (n, task) in [(1, "mtzdump"), (2, "pdbset")] {
        let sub = &report.sub_jobs[n - 1];
        assert_eq!(sub.job_id, format!("{id}.{n}"));
        assert_eq!(sub.task, task);
        assert_eq!(sub.status, FinishStatus::Succeeded);
        let dir = report.job_dir.join(format!("job_{n}"));
        assert_eq!(sub.job_dir, dir);
        // log_err.txt only appears with output on stderr.
        for f in ["params.xml", "input_params.xml", "com.txt", "log.txt"] {
            assert!(dir.join(f).is_file(), "{} missing", dir.join(f).display());
        }
        let com = std::fs::read_to_string(dir.join("com.txt")).unwrap();
        assert!(
            com.starts_with(&format!("# Task {id}.{n} {task} running {task}\n")),
            "{com}"
        );
    }
    let com2 = std::fs::read_to_string(report.job_dir.join("job_2/com.txt")).unwrap();
    assert!(
        com2.contains("CELL 9.643 9.609 19.029 90 101.224 90"),
        "{com2}"
    );
    let audit1 = std::fs::read_to_string(report.job_dir.join("job_1/audit.jsonl")).unwrap();
    let spawn: serde_json::Value = audit1
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["event"] == "spawn")
        .unwrap_or_else(|| panic!("no spawn in {audit1}"));
    assert_eq!(spawn["program"], "mtzdump");
    assert_eq!(spawn["process"], 1);
    assert_eq!(
        spawn["args"],
        // The fake registry names the program first; then the plugin's words.
        serde_json::json!(["mtzdump", "HKLIN", mtz.to_str().unwrap()]),
        "{audit1}"
    );
    assert_eq!(spawn["path"], common::FAKE);
    let audit = std::fs::read_to_string(report.job_dir.join("audit.jsonl")).unwrap();
    assert_eq!(
        audit.lines().filter(|l| l.contains("\"sub_job\"")).count(),
        2,
        "{audit}"
    );
    let log1 = std::fs::read_to_string(report.job_dir.join("job_1/log.txt")).unwrap();
    assert!(
        log1.contains("* Dataset ID, project/crystal/dataset names"),
        "{log1}"
    );

    // params.xml records the explicitly set values, CCP4i2 style.
    let params1 = std::fs::read_to_string(report.job_dir.join("job_1/params.xml")).unwrap();
    assert!(params1.contains("<function>PARAMS</function>"), "{params1}");
    assert!(
        params1.contains("<baseName>5e5z.mtz</baseName>"),
        "{params1}"
    );
    assert!(params1.contains("<a>9.643</a>"), "{params1}");
    assert!(report.job_dir.join("params.xml").is_file());

    // `finished` exactly once per job, with its status.
    let mut finished = std::collections::BTreeMap::new();
    while let Ok(e) = events.try_recv() {
        if let EventKind::Finished { status, .. } = e.kind {
            *finished.entry(e.job_id.clone()).or_insert(0) += 1;
            assert_eq!(status, FinishStatus::Succeeded);
        }
    }
    let expected: std::collections::BTreeMap<String, i32> = [
        (id.clone(), 1),
        (format!("{id}.1"), 1),
        (format!("{id}.2"), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(finished, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_reports_the_cell_and_its_output_file() {
    let t = TestHost::new().await;
    let mtz = data("5e5z.mtz");
    let pdb = data("rnase_frag.pdb");
    let report = t
        .run(
            "demo_copycell",
            &[
                ("HKLIN", mtz.to_str().unwrap()),
                ("XYZIN", pdb.to_str().unwrap()),
            ],
            None,
        )
        .await;
    assert_eq!(report.status, FinishStatus::Succeeded, "{report:#?}");
    let outputs = report.outputs.to_string();
    assert!(outputs.contains("101.224"), "{outputs}");
    // Without XYZOUT set, pdbset writes XYZOUT.pdb in its own job directory.
    let xyzout = report.job_dir.join("job_2/XYZOUT.pdb");
    assert!(outputs.contains(xyzout.to_str().unwrap()), "{outputs}");
    assert!(
        std::fs::read_to_string(xyzout)
            .unwrap()
            .contains(EXPECTED_CRYST1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mtzdump_reads_the_cell_of_another_real_mtz_file() {
    let t = TestHost::new().await;
    let mtz = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ccp4/programs/testdata/rnase25_freer.mtz")
        .canonicalize()
        .unwrap();
    let report = t
        .run("mtzdump", &[("HKLIN", mtz.to_str().unwrap())], None)
        .await;
    assert_eq!(report.status, FinishStatus::Succeeded, "{report:#?}");
    let cell = report.outputs.to_string();
    for v in ["64.897", "78.323", "38.792"] {
        assert!(cell.contains(v), "{cell}");
    }
}
