//! Kiln at a job service's scale, on one host:
//!
//! - N jobs at once (10,000 by default), each a plugin instance asleep in a
//!   host call (the probe's `sleep`, in WASI's poll): the process's RSS
//!   before they start and once every one of them waits, per job, against
//!   1 GiB in all; then all of them cancelled, and the time until every one
//!   has ended. It runs in a process of its own (`scale-jobs`), so the RSS
//!   is the host's alone, with an instance pool sized for the load as a
//!   service would configure it.
//! - A job's instantiation against bare wasmtime's: the time Kiln's engine
//!   spends making a job's instance (store, limits, CPU meter, the instance
//!   in a pool slot), as the host counts it (`RuntimeStats`), against
//!   `instantiate_async` of the same component in a pooling engine with
//!   only WASI linked (its other imports trap), round by round in the same
//!   run. Beside it, the time from a job's start to its plugin's first
//!   signal: what a job adds around its instance (its directory, records,
//!   `input_params.xml`).

use crate::spawn::remove_dir;
use crate::stats::median;
use anyhow::{Context, Result, bail, ensure};
use kiln_host::events::{Event, EventKind};
use kiln_host::{FinishStatus, Host, HostConfig, InstancePool, Registry, RunRequest, TaskRef};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::UnboundedReceiver;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Pool slots beyond the jobs: the warm-up job and describing the probe.
const SPARE_SLOTS: u32 = 16;
/// How long one job may take to reach its sleep.
const REACH_TIMEOUT: Duration = Duration::from_secs(300);

/// The process's share of what its limits count, and its memory.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub rss_kib: u64,
    /// Private memory, and file pages mapped (the compiled component's
    /// data image, mapped copy-on-write into each instance: the same
    /// pages counted once per instance).
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub mappings: u64,
    pub open_files: u64,
    pub threads: u64,
}

impl Snapshot {
    fn take() -> Result<Snapshot> {
        Ok(Snapshot {
            rss_kib: proc_status("VmRSS")?,
            rss_anon_kib: proc_status("RssAnon")?,
            rss_file_kib: proc_status("RssFile")?,
            mappings: std::fs::read_to_string("/proc/self/maps")?.lines().count() as u64,
            open_files: std::fs::read_dir("/proc/self/fd")?.count() as u64,
            threads: proc_status("Threads")?,
        })
    }
}

/// What the `scale-jobs` process measured.
#[derive(Debug, Serialize, Deserialize)]
pub struct WaitReport {
    /// Asked for, and run: fewer when the process's open-file limit or the
    /// kernel's limit on memory mappings would not hold them all.
    pub requested: usize,
    pub jobs: usize,
    pub limited_by: Option<String>,
    pub open_file_limit: u64,
    pub mapping_limit: u64,
    pub before: Snapshot,
    pub waiting: Snapshot,
    pub rss_ended_kib: u64,
    /// From the first submit until every job was in its sleep.
    pub waiting_seconds: f64,
    /// From the first cancel until every job had ended, and how many ended
    /// interrupted.
    pub cancel_seconds: f64,
    pub interrupted: usize,
    pub instances_live: u64,
    pub instances_pooled: u64,
    pub pool_fallbacks: u64,
    pub instances_live_after: u64,
    /// Instances of the bare engine held at once in a process of their own
    /// (instantiated, not in a call), and its RSS before and with them.
    pub bare: Option<(usize, Snapshot, Snapshot)>,
}

impl WaitReport {
    pub fn per_job_kib(&self) -> f64 {
        self.waiting.rss_kib.saturating_sub(self.before.rss_kib) as f64 / self.jobs.max(1) as f64
    }

    /// The RSS with every job asked for waiting: measured, or when fewer
    /// ran, projected from what each one added.
    pub fn rss_requested_kib(&self) -> f64 {
        self.before.rss_kib as f64 + self.per_job_kib() * self.requested as f64
    }
}

pub struct ScaleResults {
    pub wait: WaitReport,
    /// Microseconds per instance, medians over rounds.
    pub kiln_instantiate_us: f64,
    pub bare_instantiate_us: f64,
    /// Bare instantiations back to back.
    pub bare_hot_instantiate_us: f64,
    /// Median over rounds of the round's Kiln / bare ratio.
    pub instantiate_ratio: f64,
    /// Median, milliseconds.
    pub start_to_signal_ms: f64,
    pub starts: usize,
    pub rounds: usize,
    /// Jobs that succeeded; the waiting ones end interrupted, as asked.
    pub jobs: usize,
}

pub async fn measure(
    exe: &Path,
    probe: &Path,
    scratch: &Path,
    jobs: usize,
    starts: usize,
    rounds: usize,
) -> Result<ScaleResults> {
    let jobs_dir = scratch.join("jobs-scale");
    eprintln!("kiln-bench: {jobs} jobs waiting at once, in a process of their own...");
    let wait = wait_child(exe, jobs, &jobs_dir, probe, false);
    remove_dir(&jobs_dir);
    let mut wait = wait?;
    let bare = wait_child(exe, wait.jobs, &jobs_dir, probe, true)?;
    wait.bare = bare.bare;
    eprintln!("kiln-bench: job instantiation against bare wasmtime...");
    let inst = instantiation(probe, scratch, starts, rounds).await?;
    Ok(ScaleResults {
        jobs: inst.jobs,
        wait,
        kiln_instantiate_us: median(&inst.kiln_us),
        bare_instantiate_us: median(&inst.bare_us),
        bare_hot_instantiate_us: median(&inst.bare_hot_us),
        instantiate_ratio: median(&inst.ratios),
        start_to_signal_ms: median(&inst.start_to_signal_ms),
        starts,
        rounds,
    })
}

fn wait_child(
    exe: &Path,
    jobs: usize,
    jobs_dir: &Path,
    probe: &Path,
    bare: bool,
) -> Result<WaitReport> {
    let mut command = Command::new(exe);
    command
        .arg("scale-jobs")
        .arg(jobs.to_string())
        .arg(jobs_dir)
        .arg(probe);
    if bare {
        command.arg("--bare");
    }
    let out = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start the scale-jobs process")?;
    if !out.status.success() {
        bail!("the scale-jobs process failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .with_context(|| format!("the scale-jobs process printed `{}`", text.trim()))
}

fn probe_request(mode: &str) -> RunRequest {
    RunRequest {
        task: TaskRef::Name("probe".into()),
        params: vec![("MODE".into(), mode.into())],
        grants: None,
    }
}

/// A host for jobs that run no programs, its pool `slots` large.
async fn scale_host(jobs_dir: &Path, probe: &Path, slots: u32) -> Result<Host> {
    std::fs::create_dir_all(jobs_dir)
        .with_context(|| format!("cannot create {}", jobs_dir.display()))?;
    let mut config = HostConfig::new(jobs_dir, Registry::default());
    config.local.confine_helper = None;
    config.instance_pool = InstancePool::with_instances(slots);
    let host = Host::new(config).context("failed to start the host")?;
    host.catalog()
        .add_file(probe)
        .await
        .with_context(|| format!("failed to load {}", probe.display()))?;
    Ok(host)
}

/// What the event bus says of a job's way to its sleep.
enum Seen {
    /// Its `sleeping` progress: from then on it waits in a host call.
    Sleeping(String),
    Ended(String, FinishStatus, Option<String>),
    Lagged(u64),
}

/// The host's events that matter here, read on a thread of its own: the
/// bus drops events for a reader that falls behind, and a runtime busy
/// with thousands of jobs might not run a reader task often enough.
fn watch(host: &Host) -> UnboundedReceiver<Seen> {
    let mut rx = host.events().subscribe();
    let (tx, seen) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        loop {
            let event = match rx.blocking_recv() {
                Ok(Event {
                    job_id,
                    kind: EventKind::Progress { phase, .. },
                    ..
                }) if phase == "sleeping" => Seen::Sleeping(job_id),
                Ok(Event {
                    job_id,
                    kind: EventKind::Finished { status, reason },
                    ..
                }) => Seen::Ended(job_id, status, reason),
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => Seen::Lagged(n),
                Err(RecvError::Closed) => return,
            };
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    seen
}

/// Until every job of `ids` is in its sleep.
async fn all_sleeping(seen: &mut UnboundedReceiver<Seen>, ids: &HashSet<String>) -> Result<()> {
    let mut sleeping = HashSet::new();
    while sleeping.len() < ids.len() {
        let event = match tokio::time::timeout(REACH_TIMEOUT, seen.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => bail!("the host's event bus closed"),
            Err(_) => bail!(
                "{} of {} jobs in their sleep, none more within {} s",
                sleeping.len(),
                ids.len(),
                REACH_TIMEOUT.as_secs()
            ),
        };
        match event {
            Seen::Sleeping(id) if ids.contains(&id) => {
                sleeping.insert(id);
            }
            Seen::Ended(id, status, reason) if ids.contains(&id) => bail!(
                "job {id} ended {status:?} before its sleep: {}",
                reason.unwrap_or_default()
            ),
            Seen::Lagged(n) => bail!("the reader of the host's events fell {n} events behind"),
            _ => {}
        }
    }
    Ok(())
}

/// Jobs started first to learn what one job holds of the process's
/// limited resources, and what is left of them for other work.
const CALIBRATION_JOBS: usize = 100;
const SPARE_FILES: u64 = 512;
const SPARE_MAPPINGS: u64 = 2048;

/// The child's side: `jobs` probe jobs sleeping at once, then cancelled;
/// with `bare`, as many bare wasmtime instances held instead. Prints a
/// [`WaitReport`] as JSON.
pub fn wait_jobs_child(jobs: usize, jobs_dir: &Path, probe: &Path, bare: bool) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = if bare {
        runtime.block_on(hold_bare(jobs, probe))?
    } else {
        runtime.block_on(hold_jobs(jobs, jobs_dir, probe))?
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn hold_jobs(requested: usize, jobs_dir: &Path, probe: &Path) -> Result<WaitReport> {
    let slots = u32::try_from(requested)?.saturating_add(SPARE_SLOTS);
    let host = scale_host(jobs_dir, probe, slots).await?;
    let mut seen = watch(&host);
    // One job through first: what every job shares (the plugin's code
    // paged in, the runtime's threads) belongs in the baseline.
    let warm = host.run(probe_request("sleep 0")).await?;
    ensure!(
        warm.status == FinishStatus::Succeeded,
        "the warm-up job ended {:?}: {}",
        warm.status,
        warm.reason.unwrap_or_default()
    );
    // The host raised the soft limit to the hard one.
    let open_file_limit = open_file_limit()?;
    let mapping_limit = std::fs::read_to_string("/proc/sys/vm/max_map_count")?
        .trim()
        .parse::<u64>()?;
    let before = Snapshot::take()?;
    let start = Instant::now();
    let mut handles = Vec::with_capacity(requested);
    let mut target = requested.min(CALIBRATION_JOBS);
    let mut limited_by = None;
    let mut calibrated = false;
    loop {
        let first_new = handles.len();
        while handles.len() < target {
            // Days: the cancel below is what ends them.
            let job = host.submit(probe_request("sleep 86400000")).await?;
            host.start(&job);
            handles.push(job);
        }
        let ids: HashSet<String> = handles[first_new..].iter().map(|j| j.id.clone()).collect();
        if let Err(e) = all_sleeping(&mut seen, &ids).await {
            for job in &handles {
                job.cancel();
            }
            return Err(e);
        }
        if calibrated || target == requested {
            break;
        }
        calibrated = true;
        let now = Snapshot::take()?;
        let n = handles.len() as f64;
        let per_job = |used: u64, had: u64| (used.saturating_sub(had) as f64 / n).max(0.01);
        let room = |limit: u64, used: u64, spare: u64, each: f64| {
            (limit.saturating_sub(used).saturating_sub(spare) as f64 / each) as usize
        };
        let files = room(
            open_file_limit,
            now.open_files,
            SPARE_FILES,
            per_job(now.open_files, before.open_files),
        );
        let maps = room(
            mapping_limit,
            now.mappings,
            SPARE_MAPPINGS,
            per_job(now.mappings, before.mappings),
        );
        let fit = handles.len() + files.min(maps);
        if fit < requested {
            limited_by = Some(if files <= maps {
                format!(
                    "open files: {:.1} a job, RLIMIT_NOFILE {open_file_limit}",
                    per_job(now.open_files, before.open_files)
                )
            } else {
                format!(
                    "memory mappings: {:.1} a job, vm.max_map_count {mapping_limit}",
                    per_job(now.mappings, before.mappings)
                )
            });
        }
        target = requested.min(fit);
    }
    let waiting_seconds = start.elapsed().as_secs_f64();
    let waiting = Snapshot::take()?;
    let stats = host.runtime_stats();

    let cancelled = Instant::now();
    for job in &handles {
        job.cancel();
    }
    let mut interrupted = 0;
    for job in &handles {
        if job.wait().await.status == FinishStatus::Interrupted {
            interrupted += 1;
        }
    }
    let cancel_seconds = cancelled.elapsed().as_secs_f64();
    let jobs = handles.len();
    drop(handles);
    Ok(WaitReport {
        requested,
        jobs,
        limited_by,
        open_file_limit,
        mapping_limit,
        before,
        waiting,
        rss_ended_kib: proc_status("VmRSS")?,
        waiting_seconds,
        cancel_seconds,
        interrupted,
        instances_live: stats.instances_live,
        instances_pooled: stats.instances_pooled,
        pool_fallbacks: stats.pooled_exhausted_fallbacks + stats.pool_misfits,
        instances_live_after: host.runtime_stats().instances_live,
        bare: None,
    })
}

/// `n` bare instances held at once: wasmtime's own share of a job's
/// memory.
async fn hold_bare(n: usize, probe: &Path) -> Result<WaitReport> {
    let engine = BareEngine::new(probe, u32::try_from(n)?.saturating_add(SPARE_SLOTS))?;
    // One through first, as for the jobs.
    engine.instantiate(1).await?;
    let before = Snapshot::take()?;
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(engine.instantiated().await?);
    }
    let with = Snapshot::take()?;
    drop(held);
    Ok(WaitReport {
        requested: n,
        jobs: 0,
        limited_by: None,
        open_file_limit: 0,
        mapping_limit: 0,
        before: Snapshot::default(),
        waiting: Snapshot::default(),
        rss_ended_kib: 0,
        waiting_seconds: 0.0,
        cancel_seconds: 0.0,
        interrupted: 0,
        instances_live: 0,
        instances_pooled: 0,
        pool_fallbacks: 0,
        instances_live_after: 0,
        bare: Some((n, before, with)),
    })
}

fn open_file_limit() -> Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    Ok(limit.rlim_cur)
}

/// A number (kB for sizes) from /proc/self/status.
fn proc_status(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}

struct Instantiation {
    kiln_us: Vec<f64>,
    bare_us: Vec<f64>,
    bare_hot_us: Vec<f64>,
    ratios: Vec<f64>,
    start_to_signal_ms: Vec<f64>,
    jobs: usize,
}

/// The store of the bare instances: WASI only.
struct Bare {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Rounds of `n` jobs one after another (`sleep 0`), each followed by one
/// bare instantiation, so both are measured in the same conditions (a
/// job's instance is made between file writes and thread wake-ups, with
/// the caches cold); then `n` bare instantiations back to back, the
/// floor with everything hot.
async fn instantiation(
    probe: &Path,
    scratch: &Path,
    n: usize,
    rounds: usize,
) -> Result<Instantiation> {
    let jobs_dir = scratch.join("jobs-instantiate");
    let host = scale_host(&jobs_dir, probe, InstancePool::default().max_instances).await?;
    let bare = BareEngine::new(probe, InstancePool::default().max_instances)?;
    let mut seen = watch(&host);
    let mut out = Instantiation {
        kiln_us: Vec::new(),
        bare_us: Vec::new(),
        bare_hot_us: Vec::new(),
        ratios: Vec::new(),
        start_to_signal_ms: Vec::new(),
        jobs: 0,
    };
    // A warm-up round, not counted.
    for round in 0..=rounds {
        let before = host.runtime_stats();
        let mut bare_time = Duration::ZERO;
        for _ in 0..n {
            let job = host.submit(probe_request("sleep 0")).await?;
            let start = Instant::now();
            host.start(&job);
            all_sleeping(&mut seen, &HashSet::from([job.id.clone()])).await?;
            let to_signal = start.elapsed();
            let result = job.wait().await;
            ensure!(
                result.status == FinishStatus::Succeeded,
                "job {} ended {:?}: {}",
                job.id,
                result.status,
                result.reason.unwrap_or_default()
            );
            bare_time += bare.instantiate(1).await?;
            // The job directory is kept to the end: a number freed would
            // be given to the next job, and the bus tells jobs apart by id.
            out.jobs += 1;
            if round > 0 {
                out.start_to_signal_ms.push(to_signal.as_secs_f64() * 1e3);
            }
        }
        let after = host.runtime_stats();
        // The first job also loads (and describes) the tasks the probe may
        // make sub-jobs of, for its fingerprint: a round not counted.
        let made = after.instantiations - before.instantiations;
        ensure!(made >= n as u64, "{made} instances made for {n} jobs");
        let kiln = (after.instantiate_nanos - before.instantiate_nanos) as f64 / made as f64 / 1e3;
        let bare_us = bare_time.as_secs_f64() * 1e6 / n as f64;
        let hot = bare.instantiate(n).await?.as_secs_f64() * 1e6 / n as f64;
        if round > 0 {
            out.kiln_us.push(kiln);
            out.bare_us.push(bare_us);
            out.bare_hot_us.push(hot);
            out.ratios.push(kiln / bare_us);
        }
    }
    remove_dir(&jobs_dir);
    Ok(out)
}

/// Wasmtime as Kiln configures it (component model, epoch interruption,
/// the guest stack, a pool shaped as Kiln's), with WASI and nothing else.
struct BareEngine {
    engine: Engine,
    pre: wasmtime::component::InstancePre<Bare>,
}

impl BareEngine {
    fn new(probe: &Path, slots: u32) -> Result<BareEngine> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(4))
            .total_memories(slots)
            .total_tables(slots.saturating_mul(2))
            .total_stacks(slots)
            .max_memories_per_module(4)
            .max_tables_per_module(4);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = wt(Engine::new(&config))?;
        let component = wt(Component::from_file(&engine, probe))
            .with_context(|| format!("cannot compile {}", probe.display()))?;
        let mut linker = Linker::new(&engine);
        wt(wasmtime_wasi::p2::add_to_linker_async(&mut linker))?;
        wt(linker.define_unknown_imports_as_traps(&component))?;
        let pre = wt(linker.instantiate_pre(&component))?;
        Ok(BareEngine { engine, pre })
    }

    /// A store with the component instantiated in it.
    async fn instantiated(&self) -> Result<Store<Bare>> {
        let mut store = Store::new(
            &self.engine,
            Bare {
                ctx: WasiCtxBuilder::new().build(),
                table: ResourceTable::new(),
            },
        );
        store.set_epoch_deadline(u64::MAX / 2);
        wt(self.pre.instantiate_async(&mut store).await)?;
        Ok(store)
    }

    /// The time `n` instantiations took, each in a store of its own (made
    /// within the time, as Kiln's are).
    async fn instantiate(&self, n: usize) -> Result<Duration> {
        let mut total = Duration::ZERO;
        for _ in 0..n {
            let state = Bare {
                ctx: WasiCtxBuilder::new().build(),
                table: ResourceTable::new(),
            };
            let start = Instant::now();
            let mut store = Store::new(&self.engine, state);
            store.set_epoch_deadline(u64::MAX / 2);
            wt(self.pre.instantiate_async(&mut store).await)?;
            total += start.elapsed();
        }
        Ok(total)
    }
}

/// Wasmtime's error as anyhow's.
fn wt<T>(result: wasmtime::Result<T>) -> Result<T> {
    result.map_err(|e| anyhow::anyhow!("{e:#}"))
}
