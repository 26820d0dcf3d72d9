//! Shared set-up: a host wired to the fake program registry (the multi-call
//! `kiln-fake`), the test plugins, and a scratch jobs directory.

#![allow(dead_code)]

use kiln_host::grants::Grants;
use kiln_host::registry::{ProgramEntry, Registry};
use kiln_host::{Host, HostConfig, JobReport, RunRequest, TaskRef};
use std::path::{Path, PathBuf};

pub const FAKE: &str = env!("CARGO_BIN_EXE_kiln-fake");
pub const PLUGIN_DIR: &str = env!("KILN_TEST_PLUGIN_DIR");

/// The bundled demo data.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cli/demo-data")
        .join(name)
        .canonicalize()
        .unwrap()
}

pub fn probe_wasm() -> PathBuf {
    Path::new(PLUGIN_DIR).join("probe.wasm")
}

fn entry(path: &Path, args: &[&str]) -> ProgramEntry {
    ProgramEntry {
        path: path.to_path_buf(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Default::default(),
        sha256: None,
    }
}

/// The file `sneaky-write` tries to create, outside every grant.
pub fn outside_file() -> PathBuf {
    PathBuf::from(format!("/tmp/kiln-outside-{}", std::process::id()))
}

/// `fake`, `mtzdump`, `pdbset`, `refmac5` (a stand-in) from kiln-fake; `missing` (no such file) and
/// `not-executable` (a file without the x bit); `sneaky-read` (cat
/// /etc/passwd) and `sneaky-write` (write a file in /tmp), whose fixed
/// arguments only confinement can stop.
pub fn fake_registry(scratch: &Path) -> Registry {
    let fake = Path::new(FAKE);
    let mut r = Registry::default();
    r.source = "the conformance suite's fake registry".into();
    r.insert("fake", entry(fake, &[])).unwrap();
    r.insert("mtzdump", entry(fake, &["mtzdump"])).unwrap();
    r.insert("pdbset", entry(fake, &["pdbset"])).unwrap();
    r.insert("refmac5", entry(fake, &["refmac5"])).unwrap();
    r.insert(
        "missing",
        entry(Path::new("/nonexistent/kiln-missing-program"), &[]),
    )
    .unwrap();
    let not_exec = scratch.join("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\nexit 0\n").unwrap();
    r.insert("not-executable", entry(&not_exec, &[])).unwrap();
    r.insert(
        "sneaky-read",
        entry(Path::new("/bin/cat"), &["/etc/passwd"]),
    )
    .unwrap();
    let outside = outside_file();
    r.insert(
        "sneaky-write",
        entry(fake, &["write-file", outside.to_str().unwrap(), "escaped"]),
    )
    .unwrap();
    r
}

pub struct TestHost {
    pub host: Host,
    pub jobs: tempfile::TempDir,
}

impl TestHost {
    pub async fn new() -> TestHost {
        Self::with_registry(|r| r).await
    }

    pub async fn with_registry(edit: impl FnOnce(Registry) -> Registry) -> TestHost {
        Self::with_config(edit, |c| c).await
    }

    pub async fn with_config(
        edit: impl FnOnce(Registry) -> Registry,
        configure: impl FnOnce(HostConfig) -> HostConfig,
    ) -> TestHost {
        let jobs = tempfile::tempdir().unwrap();
        let registry = edit(fake_registry(jobs.path()));
        let mut config = configure(HostConfig::new(jobs.path().join("jobs"), registry));
        // One compiled-component cache for the whole suite: compiling is
        // the slow part of a debug-built host.
        config.cache_dir = Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-cache"));
        let host = Host::new(config).unwrap();
        host.catalog().add_file(&probe_wasm()).await.unwrap();
        TestHost { host, jobs }
    }

    pub async fn run(
        &self,
        task: &str,
        params: &[(&str, &str)],
        grants: Option<Grants>,
    ) -> JobReport {
        self.host
            .run(RunRequest {
                task: TaskRef::Name(task.to_string()),
                params: params
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                grants,
            })
            .await
            .unwrap()
    }

    /// Processes still running in this host's job directories (every
    /// program's working directory is its job's), waiting up to 5 s for
    /// stragglers being killed; fails listing them.
    pub async fn assert_no_leftovers(&self) {
        let jobs = self.jobs.path().canonicalize().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let left = processes_under(&jobs);
            if left.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "processes left behind: {left:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Run the probe plugin in `mode`.
    pub async fn probe(&self, mode: &str, grants: Option<Grants>) -> JobReport {
        self.run("probe", &[("MODE", mode)], grants).await
    }
}

/// The job record (`job.json`) in a job directory.
pub fn record(dir: &Path) -> kiln_host::job::JobRecord {
    kiln_host::job::JobRecord::read(dir)
        .unwrap_or_else(|| panic!("no readable job.json in {}", dir.display()))
}

/// The most jobs whose [started, ended] spans overlap at one moment.
pub fn most_at_once(records: &[kiln_host::job::JobRecord]) -> usize {
    let mut edges: Vec<(f64, i32)> = Vec::new();
    for r in records {
        let (s, e) = (r.started.expect("started"), r.ended.expect("ended"));
        edges.push((s, 1));
        edges.push((e, -1));
    }
    // An end and a start at the same instant do not overlap.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// outputData.RESULT of a probe run.
pub fn result_text(report: &JobReport) -> String {
    report.outputs["RESULT"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no RESULT in {:#}", report.outputs))
}

pub fn grants(toml: &str) -> Grants {
    Grants::from_toml(toml, "test manifest").unwrap()
}

/// Live (not zombie) processes whose working directory is below `dir`:
/// (pid, command line).
pub fn processes_under(dir: &Path) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            continue;
        };
        if !cwd.starts_with(dir) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .and_then(|(_, a)| a.split_whitespace().next())
            .is_some_and(|s| s == "Z");
        if !zombie {
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            out.push((pid, cmd));
        }
    }
    out
}

/// A program's log file in `dir`; a missing one is empty (it is created
/// with the program's first output on its stream).
pub fn read_log(dir: &Path, name: &str) -> Vec<u8> {
    match std::fs::read(dir.join(name)) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", dir.join(name).display()),
    }
}

/// Wait (up to 20 s) until a program runs with its working directory in
/// `dir` (a job directory): the program has started. (Its log files are no
/// sign: they appear with its first output.)
pub async fn wait_for_program(dir: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while processes_under(dir).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        !processes_under(dir).is_empty(),
        "no program started in {}",
        dir.display()
    );
}
