mod common;
use common::{TestHost, data};
#[tokio::test(flavor = "multi_thread")]
async fn dump() {
    let t = TestHost::new().await;
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
    let d = std::path::Path::new("/tmp/kiln-dump");
    let _ = std::fs::create_dir_all(d.join("job_1"));
    let _ = std::fs::create_dir_all(d.join("job_2"));
    for f in [
        "params.xml",
        "job_1/params.xml",
        "job_2/params.xml",
        "input_params.xml",
        "job_1/input_params.xml",
    ] {
        let _ = std::fs::copy(report.job_dir.join(f), d.join(f));
    }
    eprintln!("{report:#?}");
}
