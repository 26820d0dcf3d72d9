//! A large output through stdout: a program writes BYTES (1 GiB by
//! default) to stdout and Kiln, running it for the probe plugin, streams it
//! into the job's `log.txt`. Compared, in the same rounds, with the same
//! program piped into a plain reader that discards the data (the
//! `prog | cat > /dev/null` floor), once through a default 64 KiB pipe read
//! 64 KiB at a time and once through a pipe grown to 1 MiB and read 1 MiB
//! at a time, as Kiln grows and reads its own; and, for reference, into a
//! plain reader that writes a file (the same work as Kiln's, without a
//! host). Each file written is checked by content: its sha256 against that
//! of the bytes the program writes, outside the timing.
//!
//! Also for reference: Kiln's process layer called directly (log files and
//! capture, no plugin, no line events), in this process.
//!
//! Kiln's side runs in a fresh child process (`kiln-bench log-job`), so its
//! RSS is that of a host serving the job and nothing of the rest of the
//! benchmark. Its peak (VmHWM) is reset once the host is up and the plugin
//! loaded, so the number is the job's: a start-up that had to compile the
//! plugin (a cold cache) would otherwise count Cranelift's memory. The
//! process's lifetime peak is reported beside it.

use crate::spawn::{build_host, layer_spec, registry, remove_dir, run_probe};
use crate::stats::median;
use anyhow::{Context, Result, bail, ensure};
use kiln_host::dir_handle::DirHandle;
use kiln_host::process::{Gate, Outcome};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Write size, and the read size of the default-pipe reference: one
/// default pipe buffer, and what Kiln reads at first.
const CHUNK: usize = 64 << 10;
/// The pipe size and read size Kiln grows to under a fast writer.
const BIG_PIPE: usize = 1 << 20;

/// One chunk of what `spew` writes: its output is this, repeated and cut.
fn spew_chunk() -> Vec<u8> {
    let line = b"kiln-bench: a line of program output, as a log would have it...\n";
    line.iter().copied().cycle().take(CHUNK).collect()
}

/// The sha256 of what `spew bytes` writes.
pub fn spew_sha256(bytes: u64) -> String {
    use sha2::Digest;
    let chunk = spew_chunk();
    let mut hasher = sha2::Sha256::new();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        hasher.update(&chunk[..n]);
        left -= n as u64;
    }
    hex::encode(hasher.finalize())
}

/// The file `name` in `dir` holds exactly what `spew` wrote: `sha256` of
/// `bytes` bytes. Opened below the held directory, never through a link:
/// a program writes there.
fn check_content(dir: &Path, name: &str, bytes: u64, sha256: &str) -> Result<()> {
    use sha2::Digest;
    let path = dir.join(name);
    let mut file = DirHandle::open(dir)?.open_file(Path::new(name))?;
    let len = file.metadata()?.len();
    ensure!(
        len == bytes,
        "{} holds {len} bytes, not {bytes}",
        path.display()
    );
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    let got = hex::encode(hasher.finalize());
    ensure!(
        got == sha256,
        "{} has sha256 {got}, but the program wrote {sha256}",
        path.display()
    );
    Ok(())
}

/// Write `bytes` of text lines to stdout (the program the benchmark runs).
pub fn spew(bytes: u64) -> Result<()> {
    use std::os::fd::AsFd;
    let chunk = spew_chunk();
    // Straight to the descriptor: Stdout's line buffering would split the
    // writes at every newline.
    let mut out = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// What the child process reports about its log job.
#[derive(serde::Serialize, serde::Deserialize)]
struct ChildReport {
    seconds: f64,
    rss_before_kib: u64,
    /// VmHWM since just before the job; the lifetime peak when the reset
    /// was refused.
    job_peak_rss_kib: u64,
    lifetime_peak_rss_kib: u64,
}

/// The child's side: a host (confinement as by default) and the probe
/// plugin running `fake BYTES`, where `fake` is this executable's `spew`;
/// prints a [`ChildReport`] as JSON.
pub fn log_job_child(bytes: u64, sha256: &str, jobs_dir: &Path, probe: &Path) -> Result<()> {
    let exe = std::env::current_exe()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let host = build_host(jobs_dir, registry(&exe, &["spew"])?, true, 4, probe).await?;
        let lifetime_before = proc_status_kib("VmHWM")?;
        // "5" resets VmHWM to the current RSS (Linux 4.0 and later).
        if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
            eprintln!("kiln-bench: cannot reset the peak RSS ({e}): the lifetime peak is reported");
        }
        let rss_before_kib = proc_status_kib("VmRSS")?;
        let start = Instant::now();
        let report = run_probe(&host, &format!("outcome fake {bytes}"), None).await?;
        let seconds = start.elapsed().as_secs_f64();
        let result = report.outputs["RESULT"].as_str().unwrap_or_default();
        ensure!(result == "exited 0", "the program ended `{result}`");
        // The peak is read before the check, which reads the whole file.
        let job_peak_rss_kib = proc_status_kib("VmHWM")?;
        check_content(&report.job_dir, "log.txt", bytes, sha256)?;
        remove_dir(&report.job_dir);
        Ok::<_, anyhow::Error>(ChildReport {
            seconds,
            rss_before_kib,
            job_peak_rss_kib,
            lifetime_peak_rss_kib: job_peak_rss_kib.max(lifetime_before),
        })
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// A `kB` field of /proc/self/status.
fn proc_status_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}

pub struct LogResults {
    /// Median over rounds of Kiln's throughput over the plain pipe's: the
    /// default 64 KiB pipe, and one of 1 MiB as Kiln's.
    pub kiln_over_pipe: f64,
    pub kiln_over_big_pipe: f64,
    pub pipe_mib_s: f64,
    pub big_pipe_mib_s: f64,
    pub kiln_mib_s: f64,
    pub pipe_file_mib_s: f64,
    pub layer_mib_s: f64,
    /// The highest peak during the job over the rounds.
    pub peak_rss_mib: f64,
    /// The highest peak of the whole process, start-up included.
    pub lifetime_peak_rss_mib: f64,
    pub rss_before_mib: f64,
    pub jobs: usize,
}

pub async fn measure(
    exe: &Path,
    probe: &Path,
    bytes: u64,
    rounds: usize,
    scratch: &Path,
) -> Result<LogResults> {
    let dir = scratch.join("log");
    std::fs::create_dir_all(&dir)?;
    let mib = bytes as f64 / (1u64 << 20) as f64;
    let sha256 = spew_sha256(bytes);
    let (mut pipe, mut kiln, mut file, mut layer, mut ratio) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut big_pipe, mut big_ratio) = (vec![], vec![]);
    let (mut peak, mut lifetime, mut before) = (0u64, 0u64, 0u64);
    for round in 0..rounds {
        // Alternate which goes first: the page cache and the disk's
        // write-back state favour neither.
        let kiln_first = round % 2 == 1;
        let run_kiln = || {
            let (exe, jobs, probe) = (exe.to_path_buf(), dir.join("jobs"), probe.to_path_buf());
            let sha256 = sha256.clone();
            tokio::task::spawn_blocking(move || kiln_child(&exe, bytes, &sha256, &jobs, &probe))
        };
        let run_pipe = |size: Option<usize>| {
            let exe = exe.to_path_buf();
            tokio::task::spawn_blocking(move || pipe_into(&exe, bytes, None, size))
        };
        let (k, p, b) = if kiln_first {
            let k = run_kiln().await??;
            (k, run_pipe(None).await??, run_pipe(Some(BIG_PIPE)).await??)
        } else {
            let p = run_pipe(None).await??;
            let b = run_pipe(Some(BIG_PIPE)).await??;
            (run_kiln().await??, p, b)
        };
        peak = peak.max(k.job_peak_rss_kib);
        lifetime = lifetime.max(k.lifetime_peak_rss_kib);
        before = before.max(k.rss_before_kib);
        let (k, p, b) = (k.seconds, p.as_secs_f64(), b.as_secs_f64());
        let f = {
            let (exe, path, sha256) = (exe.to_path_buf(), dir.join("plain.txt"), sha256.clone());
            tokio::task::spawn_blocking(move || pipe_to_file(&exe, bytes, &path, &sha256)).await??
        }
        .as_secs_f64();
        let l = layer_to_file(exe, bytes, &sha256, &dir)
            .await?
            .as_secs_f64();
        eprintln!(
            "kiln-bench: round {}/{rounds}: pipe {:.0} MiB/s, 1 MiB pipe {:.0} MiB/s, log.txt {:.0} MiB/s, pipe to a file {:.0} MiB/s, process layer {:.0} MiB/s",
            round + 1,
            mib / p,
            mib / b,
            mib / k,
            mib / f,
            mib / l
        );
        big_pipe.push(mib / b);
        big_ratio.push(b / k);
        pipe.push(mib / p);
        kiln.push(mib / k);
        file.push(mib / f);
        layer.push(mib / l);
        ratio.push(p / k);
    }
    Ok(LogResults {
        kiln_over_pipe: median(&ratio),
        kiln_over_big_pipe: median(&big_ratio),
        pipe_mib_s: median(&pipe),
        big_pipe_mib_s: median(&big_pipe),
        kiln_mib_s: median(&kiln),
        pipe_file_mib_s: median(&file),
        layer_mib_s: median(&layer),
        peak_rss_mib: peak as f64 / 1024.0,
        lifetime_peak_rss_mib: lifetime as f64 / 1024.0,
        rss_before_mib: before as f64 / 1024.0,
        jobs: rounds,
    })
}

fn kiln_child(
    exe: &Path,
    bytes: u64,
    sha256: &str,
    jobs_dir: &Path,
    probe: &Path,
) -> Result<ChildReport> {
    let out = Command::new(exe)
        .arg("log-job")
        .arg(bytes.to_string())
        .arg(sha256)
        .arg(jobs_dir)
        .arg(probe)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start the log job's process")?;
    if !out.status.success() {
        bail!("the log job's process failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .with_context(|| format!("the log job's process printed `{}`", text.trim()))
}

/// Kiln's process layer on its own, unconfined, without line events: what
/// the log path costs before the plugin interface adds to it.
async fn layer_to_file(exe: &Path, bytes: u64, sha256: &str, dir: &Path) -> Result<Duration> {
    let run = dir.join("layer");
    std::fs::create_dir_all(&run)?;
    let held = std::sync::Arc::new(kiln_host::dir_handle::DirHandle::open(&run)?);
    let spec = layer_spec(
        exe,
        vec!["spew".into(), bytes.to_string()],
        &held,
        "log.txt",
        "log_err.txt",
        None,
    );
    let start = Instant::now();
    let outcome = kiln_host::process::spawn(spec, Gate::default(), Box::new(|_| {}))
        .wait()
        .await;
    let elapsed = start.elapsed();
    ensure!(outcome == Outcome::Exited(0), "spew {outcome}");
    check_content(&run, "log.txt", bytes, sha256)?;
    remove_dir(&run);
    Ok(elapsed)
}

/// The program piped into a plain reader that writes a file.
fn pipe_to_file(exe: &Path, bytes: u64, path: &Path, sha256: &str) -> Result<Duration> {
    let file = std::fs::File::create(path)?;
    let elapsed = pipe_into(exe, bytes, Some(file), None)?;
    let (dir, name) = (
        path.parent().context("a file in no directory")?,
        path.file_name().context("no file name")?,
    );
    check_content(dir, &name.to_string_lossy(), bytes, sha256)?;
    std::fs::remove_file(path)?;
    Ok(elapsed)
}

/// The program piped into a plain reader, which discards what it reads
/// (the floor) or writes it to `sink`. With `pipe_size`, the pipe is grown
/// to it and read that much at a time; else it is the default pipe, read
/// [`CHUNK`] at a time.
fn pipe_into(
    exe: &Path,
    bytes: u64,
    mut sink: Option<std::fs::File>,
    pipe_size: Option<usize>,
) -> Result<Duration> {
    use std::os::fd::AsRawFd;
    let start = Instant::now();
    let mut child = Command::new(exe)
        .arg("spew")
        .arg(bytes.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut pipe = child.stdout.take().context("no stdout pipe")?;
    if let Some(size) = pipe_size {
        // SAFETY: F_SETPIPE_SZ only resizes the pipe's buffer.
        let set = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
        ensure!(
            set >= size as libc::c_int,
            "cannot grow the pipe to {size} bytes: {}",
            std::io::Error::last_os_error()
        );
    }
    let mut buf = vec![0u8; pipe_size.unwrap_or(CHUNK)];
    let mut total = 0u64;
    loop {
        let n = pipe.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(f) = sink.as_mut() {
            f.write_all(&buf[..n])?;
        }
        total += n as u64;
    }
    let status = child.wait()?;
    let elapsed = start.elapsed();
    ensure!(status.success(), "spew {status}");
    ensure!(total == bytes, "read {total} bytes, not {bytes}");
    Ok(elapsed)
}
