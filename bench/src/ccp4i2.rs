//! CCP4i2's AsyncProcessManager (`ccp4i2/core/async_process_manager.py` in
//! the PyPI package ccp4i2 3.0.1), run under Python 3 as CCP4i2's own
//! plugin scripts run it.
//!
//! The package is installed at bench time, with pip, into a virtual
//! environment in the cache (`$KILN_BENCH_CACHE`, else
//! `$XDG_CACHE_HOME/kiln-bench`, else `~/.cache/kiln-bench`), never into
//! the repository. It is installed without its dependencies: the manager
//! imports only the standard library, and `ccp4i2/__init__.py` and
//! `ccp4i2/core/__init__.py` import nothing else, while the full set
//! (Django, numpy, gemmi, biopython, ...) would take minutes to install and
//! play no part in running a process.
//!
//! When Python, pip or the network is missing, the benchmark says
//! `skipped: why` and carries on without it.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PACKAGE: &str = "ccp4i2==3.0.1";
const VERSION: &str = "3.0.1";
const DRIVER: &str = include_str!("ccp4i2_driver.py");
/// Creating the environment and downloading a 22 MB wheel.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// A ready Python environment with the manager importable, and the driver.
#[derive(Clone)]
pub struct Ccp4i2 {
    python: PathBuf,
    driver: PathBuf,
    python_version: String,
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("KILN_BENCH_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("kiln-bench"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("kiln-bench"))
}

impl Ccp4i2 {
    /// Find the cached environment, or (when `install`) create it. `Err` is
    /// the line to print instead of CCP4i2's numbers, starting `skipped:`.
    pub fn prepare(install: bool, scratch: &Path) -> Result<Ccp4i2, String> {
        let skip = |why: String| format!("skipped: {why}");
        let cache = cache_dir().ok_or_else(|| skip("no cache directory (HOME is unset)".into()))?;
        let venv = cache.join(format!("ccp4i2-{VERSION}-venv"));
        let python = venv.join("bin").join("python");
        let driver = scratch.join("ccp4i2_driver.py");
        std::fs::write(&driver, DRIVER)
            .map_err(|e| skip(format!("cannot write {}: {e}", driver.display())))?;
        let ready = |python: &Path| -> Result<String> {
            let out = run(
                Command::new(python).args([
                    "-c",
                    "import sys, ccp4i2, ccp4i2.core.async_process_manager\n\
                     print(ccp4i2.__version__, sys.version.split()[0])",
                ]),
                Duration::from_secs(60),
                scratch,
            )?;
            let mut words = out.split_whitespace();
            match (words.next(), words.next()) {
                (Some(VERSION), Some(py)) => Ok(py.to_string()),
                _ => bail!("the environment holds ccp4i2 `{}`", out.trim()),
            }
        };
        if python.is_file()
            && let Ok(python_version) = ready(&python)
        {
            return Ok(Ccp4i2 {
                python,
                driver,
                python_version,
            });
        }
        if !install {
            return Err(skip(format!(
                "CCP4i2 {VERSION} is not in the cache ({}) and --quick does not download it; run once without --quick",
                venv.display()
            )));
        }
        let base = std::env::var_os("KILN_BENCH_PYTHON").unwrap_or_else(|| "python3".into());
        eprintln!(
            "kiln-bench: installing {PACKAGE} (no dependencies) into {}",
            venv.display()
        );
        std::fs::create_dir_all(&cache)
            .map_err(|e| skip(format!("cannot create {}: {e}", cache.display())))?;
        run(
            Command::new(&base)
                .arg("-m")
                .arg("venv")
                .arg("--clear")
                .arg(&venv),
            INSTALL_TIMEOUT,
            scratch,
        )
        .map_err(|e| skip(format!("cannot create a Python virtual environment: {e:#}")))?;
        run(
            Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                PACKAGE,
            ]),
            INSTALL_TIMEOUT,
            scratch,
        )
        .map_err(|e| skip(format!("pip install {PACKAGE} failed: {e:#}")))?;
        let python_version = ready(&python).map_err(|e| {
            skip(format!(
                "cannot import ccp4i2.core.async_process_manager: {e:#}"
            ))
        })?;
        Ok(Ccp4i2 {
            python,
            driver,
            python_version,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "Python {} with ccp4i2 {VERSION} ({})",
            self.python_version,
            self.python.display()
        )
    }

    /// Run `program` with `args` `n` times at concurrency `c` through the
    /// manager; the time from the first start to the last completion
    /// handler, measured inside Python (its start-up and import are not
    /// counted).
    pub fn run(
        &self,
        program: &Path,
        args: &[String],
        n: usize,
        c: usize,
        dir: &Path,
    ) -> Result<Duration> {
        std::fs::create_dir_all(dir)?;
        let out = run(
            Command::new(&self.python)
                .arg(&self.driver)
                .arg(program)
                .arg(n.to_string())
                .arg(c.to_string())
                .arg(dir.join("jobs"))
                .args(args)
                .env("PYTHONDONTWRITEBYTECODE", "1"),
            Duration::from_secs(120) + Duration::from_millis(50 * n as u64),
            dir,
        )?;
        let line = out.lines().last().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("the driver printed `{}`", out.trim()))?;
        if v["complete"] != true || v["failed"] != 0 {
            bail!("CCP4i2's manager did not run every program: {line}");
        }
        let secs = v["elapsed"]
            .as_f64()
            .with_context(|| format!("no elapsed time in `{line}`"))?;
        Ok(Duration::from_secs_f64(secs))
    }
}

/// Run a command to its end within `timeout`, its output in files under
/// `scratch` (no pipe to fill); its stdout, or an error with its stderr.
fn run(cmd: &mut Command, timeout: Duration, scratch: &Path) -> Result<String> {
    let out = tempfile::NamedTempFile::new_in(scratch)?;
    let err = tempfile::NamedTempFile::new_in(scratch)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.reopen()?)
        .stderr(err.reopen()?)
        .spawn()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{:?} took longer than {} s",
                cmd.get_program(),
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(out.path()).unwrap_or_default();
    if !status.success() {
        let stderr = std::fs::read_to_string(err.path()).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{:?} {status}: {}{}",
            cmd.get_program(),
            tail.join(" | "),
            stdout.lines().last().unwrap_or_default()
        );
    }
    Ok(stdout)
}
