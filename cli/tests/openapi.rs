//! The served OpenAPI document against the running service, by
//! schemathesis (a schema-driven tester): every operation called with
//! generated requests, valid and not, and no answer may be a server error
//! or contradict the document (status code, content type, body schema,
//! headers). `.ci/run` installs schemathesis and names it in
//! `KILN_SCHEMATHESIS`.

mod common;

use common::{KILN, registry};
use kiln_test_support::{Need, Test};
use std::path::PathBuf;
use std::process::Command;

fn schemathesis() -> Option<PathBuf> {
    std::env::var_os("KILN_SCHEMATHESIS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| PathBuf::from(d).join("schemathesis"))
                .find(|p| p.is_file())
        })
}

const SCHEMATHESIS: Need = Need {
    name: "schemathesis",
    check: || match schemathesis() {
        Some(_) => Ok(()),
        None => Err(
            "schemathesis is not installed (pip install schemathesis, or set KILN_SCHEMATHESIS)"
                .into(),
        ),
    },
};

fn the_served_document_holds_for_every_operation() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let (mut server, url) = common::serve(tmp.path(), &reg, "127.0.0.1:0");
    // A finished job, so that operations on jobs reach more than a 404.
    let out = common::command_in(tmp.path(), KILN)
        .args([
            "submit",
            "demo_copycell",
            "--server",
            &url,
            "--watch",
            "--progress",
            "none",
        ])
        .arg("--file")
        .arg(format!("HKLIN={}", common::data("5e5z.mtz").display()))
        .arg("--file")
        .arg(format!(
            "XYZIN={}",
            common::data("rnase_frag.pdb").display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(schemathesis().unwrap())
        .args(["run", &format!("{url}/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            "--max-examples",
            "8",
            "--seed",
            "1",
            "--request-timeout",
            "20",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() -> std::process::ExitCode {
    kiln_test_support::run(vec![
        Test::new(
            "the_served_document_holds_for_every_operation",
            the_served_document_holds_for_every_operation,
        )
        .needs(SCHEMATHESIS),
    ])
}
