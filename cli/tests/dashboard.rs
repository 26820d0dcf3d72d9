//! The dashboard in a real browser: `check_dashboard.py` (Playwright for
//! Python, driving Debian's headless Chromium) against a `kiln serve` this
//! test starts, and restarts when the script asks. It submits
//! demo_copycell through the generated form with two uploads and
//! downloads its output; sees a field-level error; watches a refine_scan
//! with its plot and stops it from the page; and keeps an open page
//! working across a server restart. `.ci/run` installs Playwright and
//! Chromium and names them in `KILN_PLAYWRIGHT_PYTHON` and
//! `KILN_CHROMIUM`. With `KILN_SCREENSHOTS=DIR` the script saves the
//! README's screenshots there.

mod common;

use common::{data, registry, serve};
use kiln_test_support::{Need, Test};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn python() -> PathBuf {
    std::env::var_os("KILN_PLAYWRIGHT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

fn chromium() -> PathBuf {
    std::env::var_os("KILN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

const BROWSER: Need = Need {
    name: "browser",
    check: || {
        let playwright = Command::new(python())
            .args(["-c", "import playwright.sync_api"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !playwright {
            return Err(format!(
                "{} cannot import playwright (pip install playwright, or set KILN_PLAYWRIGHT_PYTHON)",
                python().display()
            ));
        }
        if !chromium().is_file() {
            return Err(format!(
                "no Chromium at {} (apt-get install chromium, or set KILN_CHROMIUM)",
                chromium().display()
            ));
        }
        Ok(())
    },
};

fn the_dashboard_works_in_a_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let (mut server, url) = serve(tmp.path(), &reg, "127.0.0.1:0");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/check_dashboard.py");
    let mut command = Command::new(python());
    command
        .arg(&script)
        .arg(&url)
        .arg(data(""))
        .arg(chromium())
        .arg(tmp.path().join("jobs"));
    if let Some(shots) = std::env::var_os("KILN_SCREENSHOTS") {
        command.arg(shots);
    }
    let mut check = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_check = check.stdin.take().unwrap();
    for line in BufReader::new(check.stdout.take().unwrap()).lines() {
        if line.unwrap().trim() == "RESTART" {
            let _ = server.kill();
            let _ = server.wait();
            let listen = url.strip_prefix("http://").unwrap();
            server = serve(tmp.path(), &reg, listen).0;
            writeln!(to_check, "OK").unwrap();
        }
    }
    let status = check.wait().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        status.success(),
        "the browser checks failed ({status}); see above"
    );
}

fn main() -> std::process::ExitCode {
    kiln_test_support::run(vec![
        Test::new(
            "the_dashboard_works_in_a_browser",
            the_dashboard_works_in_a_browser,
        )
        .needs(BROWSER),
    ])
}
