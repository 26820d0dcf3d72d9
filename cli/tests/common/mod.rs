//! What the command-line tests share: running the `kiln` binary with the
//! suite's compiled-component cache, the bundled data, a registry of Kiln's
//! own programs, and looking at job records and processes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// `program` run in `dir` with the suite's compiled-component cache.
pub fn command_in(dir: &Path, program: &str) -> Command {
    let mut c = Command::new(program);
    c.current_dir(dir)
        .env(
            "KILN_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-cache"),
        )
        // Tests that want a CCP4i2 installation pass it with --top.
        .env_remove("CCP4I2_TOP");
    c
}

pub fn kiln(dir: &Path, args: &[&str]) -> Output {
    command_in(dir, KILN).args(args).output().unwrap()
}

/// Start kiln in the background, its output discarded.
pub fn spawn_kiln(dir: &Path, args: &[String]) -> std::process::Child {
    command_in(dir, KILN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("demo-data")
        .join(name)
}

/// A registry whose mtzdump, pdbset and refmac5 (a stand-in) are
/// `kiln tool ...`.
pub fn registry(dir: &Path) -> PathBuf {
    let path = dir.join("programs.toml");
    let entries: String = ["mtzdump", "pdbset", "refmac5"]
        .iter()
        .map(|p| format!("[programs.{p}]\npath = {KILN:?}\nargs = [\"tool\", \"{p}\"]\n\n"))
        .collect();
    std::fs::write(&path, entries).unwrap();
    path
}

/// `kiln run refine_scan` arguments on the bundled data.
pub fn refine_scan_args(reg: &Path, extra: &[&str]) -> Vec<String> {
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

pub fn kiln_args(dir: &Path, args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kiln(dir, &args)
}

/// Live processes whose working directory is below `dir`.
pub fn programs_in(dir: &Path) -> Vec<u32> {
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
pub fn step_records(jobs: &Path, n: u32) -> Vec<(String, Option<String>, Option<String>)> {
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

/// `kiln serve` on `listen` (`127.0.0.1:0` for a free port) with a jobs
/// directory `jobs` in `dir` and the registry `reg`, and the URL it took.
pub fn serve(dir: &Path, reg: &Path, listen: &str) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut server = command_in(dir, KILN)
        .args([
            "serve",
            "--listen",
            listen,
            "--jobs-dir",
            "jobs",
            "--registry",
        ])
        .arg(reg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("kiln serve: listening on ")
        .unwrap_or_else(|| panic!("kiln serve did not start: {line}"))
        .to_string();
    (server, url)
}
