//! Latency from a cancel request to every program of the job being gone: a
//! probe job keeps several `/bin/sleep 600` running; once all of them show
//! in /proc, the job is cancelled, and the benchmark times how long until
//! the job has ended and until no process of it is left.
//!
//! While the programs run, it also checks on them what confinement did
//! (no_new_privs, a network namespace other than the host's).

use crate::spawn::{build_host, registry, remove_dir, system_program};
use anyhow::{Context, Result, bail, ensure};
use kiln_host::{FinishStatus, RunRequest, TaskRef};
use std::path::Path;
use std::time::{Duration, Instant};

/// Programs running in the cancelled job.
const PROGRAMS: usize = 8;

pub struct CancelResults {
    pub job_ended_ms: Vec<f64>,
    pub gone_ms: Vec<f64>,
    pub programs: usize,
    pub confinement_evidence: Option<String>,
    pub jobs: usize,
}

/// A program of ours, by pid and start time (so a reused pid is not it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    pid: u32,
    start: u64,
}

pub async fn measure(scratch: &Path, probe: &Path, rounds: usize) -> Result<CancelResults> {
    let sleep = system_program("sleep")?;
    let host = build_host(
        &scratch.join("jobs-cancel"),
        registry(&sleep, &[])?,
        true,
        PROGRAMS,
        probe,
    )
    .await?;
    let grants = crate::spawn::grants(PROGRAMS)?;
    let mut results = CancelResults {
        job_ended_ms: Vec::new(),
        gone_ms: Vec::new(),
        programs: PROGRAMS,
        confinement_evidence: None,
        jobs: 0,
    };
    for _ in 0..rounds {
        let job = host
            .submit(RunRequest {
                task: TaskRef::Name("probe".into()),
                params: vec![(
                    "MODE".into(),
                    format!("spawn-many {PROGRAMS} {PROGRAMS} fake 600"),
                )],
                grants: Some(grants.clone()),
            })
            .await?;
        host.start(&job);
        results.jobs += 1;
        let procs = match wait_for_programs(&sleep, PROGRAMS, Duration::from_secs(30)).await {
            Ok(p) => p,
            Err(e) => {
                job.cancel();
                job.wait().await;
                return Err(e);
            }
        };
        if results.confinement_evidence.is_none() {
            results.confinement_evidence = Some(confinement_evidence(&procs));
        }
        let start = Instant::now();
        job.cancel();
        let result = job.wait().await;
        let ended = start.elapsed();
        let deadline = Instant::now() + Duration::from_secs(10);
        while procs.iter().any(alive) {
            if Instant::now() > deadline {
                for p in &procs {
                    // SAFETY: kill has no memory-safety preconditions; the
                    // start time check above makes the pid ours.
                    unsafe { libc::kill(p.pid as i32, libc::SIGKILL) };
                }
                bail!("programs of a cancelled job were still running 10 s later");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let gone = start.elapsed();
        ensure!(
            result.status == FinishStatus::Interrupted,
            "the cancelled job ended {:?}: {}",
            result.status,
            result.reason.unwrap_or_default()
        );
        remove_dir(&job.dir);
        results.job_ended_ms.push(ended.as_secs_f64() * 1e3);
        results.gone_ms.push(gone.as_secs_f64() * 1e3);
    }
    Ok(results)
}

/// Wait until `count` children of this process run `program 600`.
async fn wait_for_programs(program: &Path, count: usize, timeout: Duration) -> Result<Vec<Proc>> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = our_programs(program)?;
        if found.len() >= count {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {count} programs started within {} s",
                found.len(),
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Children of this process whose command line is `program 600`.
fn our_programs(program: &Path) -> Result<Vec<Proc>> {
    let me = std::process::id();
    let want = format!("{}\x00600\x00", program.display());
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Some((ppid, start, state)) = stat(pid) else {
            continue;
        };
        if ppid != me || state == 'Z' {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline == want.as_bytes() {
            out.push(Proc { pid, start });
        }
    }
    Ok(out)
}

/// (ppid, start time, state) from /proc/PID/stat.
fn stat(pid: u32) -> Option<(u32, u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    // Field 22 of stat, the 20th after the command name.
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, start, state))
}

/// Still there, even as a zombie not yet reaped: "gone" means reaped.
fn alive(p: &Proc) -> bool {
    matches!(stat(p.pid), Some((_, start, _)) if start == p.start)
}

/// What /proc shows of the programs' confinement.
fn confinement_evidence(procs: &[Proc]) -> String {
    let own_net = std::fs::read_link("/proc/self/ns/net").ok();
    let mut nnp = 0;
    let mut other_net = 0;
    for p in procs {
        let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid)).unwrap_or_default();
        if status
            .lines()
            .any(|l| l.starts_with("NoNewPrivs:") && l.trim_end().ends_with('1'))
        {
            nnp += 1;
        }
        let net = std::fs::read_link(format!("/proc/{}/ns/net", p.pid)).ok();
        if net.is_some() && net != own_net {
            other_net += 1;
        }
    }
    format!(
        "{nnp} of {} with no_new_privs, {other_net} of {} in a network namespace other than the host's",
        procs.len(),
        procs.len()
    )
}
