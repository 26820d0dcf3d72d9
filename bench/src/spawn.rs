//! Spawn-and-wait of many short programs (`/bin/true`), every variant at
//! concurrency 1, 4 and 10, interleaved round by round:
//!
//! - the floor: a plain `std::process::Command` loop on C threads, and the
//!   same loop sending each program's stdout and stderr into two new files
//!   (what creating a job's log files costs on this filesystem);
//! - Kiln's process layer called directly (`kiln_host::process::spawn`, log
//!   files, pipes, process group): unconfined; confined as the host does it
//!   (each program launched applying the policy to itself, `kiln_confine::Launcher`);
//!   and confined through the `kiln-confine` helper, the host's path for
//!   policies with rlimits;
//! - Kiln through a plugin: the `probe` plugin's `spawn-many N C fake`
//!   (wait-any over C programs), the whole host path a task takes, with
//!   confinement off and on (on is what the host does by default);
//! - CCP4i2's AsyncProcessManager (see [`crate::ccp4i2`]);
//! - Kiln through a plugin, confined, and CCP4i2 with `echo` instead, one
//!   line from each program: Kiln creates a log file only when a program
//!   writes, CCP4i2's manager opens two for every program, so the silent
//!   comparison spares Kiln a cost CCP4i2 pays; this one does not.

use crate::ccp4i2::Ccp4i2;
use crate::stats::{Table, median};
use anyhow::{Context, Result, bail};
use kiln_confine::{Launcher, Network, Policy, Rlimits, SharedNetns};
use kiln_host::dir_handle::DirHandle;
use kiln_host::grants::Grants;
use kiln_host::process::{CaptureBudget, Confined, Gate, LogFile, Outcome, SpawnSpec, WorkingDir};
use kiln_host::registry::{ProgramEntry, Registry};
use kiln_host::{FinishStatus, Host, HostConfig, JobReport, RunRequest, TaskRef};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Concurrencies measured; 10 is CCP4i2's AsyncProcessManager default.
pub const CONCURRENCIES: [usize; 3] = [1, 4, 10];
/// The concurrency the CCP4i2 comparison is made at.
pub const CCP4I2_OWN: usize = 10;
/// Slices of a round's N programs that the variants take turns at; each
/// plugin slice is one job, whose start and end (about 3 ms) count in its
/// time.
const SLICES: usize = 4;
/// Captured output per program, as the host's default limit.
const CAPTURE_LIMIT: usize = 16 << 20;
const KILL_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    Floor,
    FloorFiles,
    LayerUnconfined,
    LayerConfined,
    LayerHelper,
    PluginUnconfined,
    PluginConfined,
    /// Each program writes one line to stdout, so Kiln creates its
    /// log.txt as CCP4i2's manager always does.
    PluginConfinedLine,
    Ccp4i2,
    Ccp4i2Line,
}

impl Variant {
    /// Run through the probe plugin: one job a run.
    fn is_plugin(self) -> bool {
        matches!(
            self,
            Variant::PluginConfined | Variant::PluginUnconfined | Variant::PluginConfinedLine
        )
    }

    pub const ALL: [Variant; 10] = [
        Variant::Floor,
        Variant::FloorFiles,
        Variant::LayerUnconfined,
        Variant::LayerConfined,
        Variant::LayerHelper,
        Variant::PluginUnconfined,
        Variant::PluginConfined,
        Variant::PluginConfinedLine,
        Variant::Ccp4i2,
        Variant::Ccp4i2Line,
    ];

    /// The name `--only` selects it by.
    pub fn key(self) -> &'static str {
        match self {
            Variant::Floor => "floor",
            Variant::FloorFiles => "floor-files",
            Variant::LayerUnconfined => "layer-unconfined",
            Variant::LayerConfined => "layer-confined",
            Variant::LayerHelper => "layer-helper",
            Variant::PluginUnconfined => "plugin-unconfined",
            Variant::PluginConfined => "plugin-confined",
            Variant::PluginConfinedLine => "plugin-confined-line",
            Variant::Ccp4i2 => "ccp4i2",
            Variant::Ccp4i2Line => "ccp4i2-line",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::Floor => "plain Rust std::process loop (floor)",
            Variant::FloorFiles => "plain loop, output to 2 new files each",
            Variant::LayerUnconfined => "Kiln process layer, unconfined",
            Variant::LayerConfined => "Kiln process layer, confined",
            Variant::LayerHelper => "Kiln process layer, confined by the helper",
            Variant::PluginUnconfined => "Kiln through plugin, unconfined",
            Variant::PluginConfined => "Kiln through plugin, confined",
            Variant::PluginConfinedLine => "Kiln through plugin, confined, one line each",
            Variant::Ccp4i2 => "CCP4i2 AsyncProcessManager (Python)",
            Variant::Ccp4i2Line => "CCP4i2 AsyncProcessManager, one line each",
        }
    }
}

/// A path that exists among the usual places of a system program.
pub fn system_program(name: &str) -> Result<PathBuf> {
    ["/bin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("no {name} in /bin or /usr/bin"))
}

/// A registry with one program, `fake` (the name the probe plugin asks
/// for), running `path` with `args` first.
pub fn registry(path: &Path, args: &[&str]) -> Result<Registry> {
    let mut r = Registry::default();
    r.source = "kiln-bench's registry".into();
    add_program(&mut r, "fake", path, args)?;
    Ok(r)
}

fn add_program(r: &mut Registry, name: &str, path: &Path, args: &[&str]) -> Result<()> {
    r.insert(
        name,
        ProgramEntry {
            path: path.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Default::default(),
            sha256: None,
        },
    )?;
    Ok(())
}

/// What the one-line variants run: `echo` with one word, which writes one
/// line to stdout and nothing to stderr.
const LINE_WORD: &str = "kiln-bench";
const LINE_PROGRAM: &str = "fake-line";

/// A host as the `kiln` binary builds one (compiled components cached in
/// the usual place), with the probe plugin in its catalog.
pub async fn build_host(
    jobs_dir: &Path,
    registry: Registry,
    confined: bool,
    max_running: usize,
    probe: &Path,
) -> Result<Host> {
    std::fs::create_dir_all(jobs_dir)
        .with_context(|| format!("cannot create {}", jobs_dir.display()))?;
    let mut config = HostConfig::new(jobs_dir, registry);
    if !confined {
        config.local.confine_helper = None;
    }
    config.max_running_processes = max_running;
    let host = Host::new(config).context("failed to start the host")?;
    host.catalog()
        .add_file(probe)
        .await
        .with_context(|| format!("failed to load {}", probe.display()))?;
    Ok(host)
}

/// The grants every plugin run gets: the programs `fake` and `fake-line`,
/// and as many programs at once as the highest concurrency measured.
pub fn grants(processes: usize) -> Result<Grants> {
    Ok(Grants::from_toml(
        &format!("programs = [\"fake\", \"{LINE_PROGRAM}\"]\n[limits]\nprocesses = {processes}\n"),
        "kiln-bench's grants",
    )?)
}

/// Run `mode` in the probe plugin and fail unless the job succeeded. The
/// job directory is left for the caller to remove, outside any timing.
pub async fn run_probe(host: &Host, mode: &str, grants: Option<&Grants>) -> Result<JobReport> {
    let report = host
        .run(RunRequest {
            task: TaskRef::Name("probe".into()),
            params: vec![("MODE".into(), mode.into())],
            grants: grants.cloned(),
        })
        .await
        .with_context(|| format!("probe `{mode}` did not start"))?;
    if report.status != FinishStatus::Succeeded {
        bail!(
            "probe `{mode}` (job {}) ended {:?}: {}",
            report.job_id,
            report.status,
            report.reason.unwrap_or_default()
        );
    }
    Ok(report)
}

/// The hosts, the policy and the scratch space the variants share.
pub struct SpawnBench {
    program: PathBuf,
    /// `echo`, for the one-line variants.
    line_program: PathBuf,
    scratch: PathBuf,
    confined: Host,
    unconfined: Host,
    grants: Grants,
    /// Programs a plugin gets running at once, whatever it asks: the
    /// pipeline's `limits.processes` after the grants are worked out.
    plugin_limit: usize,
    max_running: usize,
    /// For the process layer called directly, a policy built as the host
    /// builds one for a job (the system paths, the program's install
    /// prefix, the runs' directory read-write, no network), applied by a
    /// launcher as the host does where it can ...
    layer_launcher: Option<Confined>,
    /// ... and by the helper.
    layer_helper: Option<Confined>,
    /// How the host confines programs here, as one line.
    pub confinement: String,
    /// Kept alive while the policy refers to it.
    _netns: Option<SharedNetns>,
    runs: AtomicUsize,
    /// The hosts' jobs directories.
    jobs: (PathBuf, PathBuf),
}

impl SpawnBench {
    pub async fn new(scratch: &Path, probe: &Path) -> Result<SpawnBench> {
        let program = system_program("true")?;
        let line_program = system_program("echo")?;
        let max_c = CONCURRENCIES.iter().copied().max().unwrap_or(1);
        let jobs = (
            scratch.join("jobs-confined"),
            scratch.join("jobs-unconfined"),
        );
        let programs = || -> Result<Registry> {
            let mut r = registry(&program, &[])?;
            add_program(&mut r, LINE_PROGRAM, &line_program, &[LINE_WORD])?;
            Ok(r)
        };
        let confined = build_host(&jobs.0, programs()?, true, max_c, probe).await?;
        let unconfined = build_host(&jobs.1, programs()?, false, max_c, probe).await?;
        let grants = grants(max_c)?;
        let task = confined.describe(&TaskRef::Name("probe".into())).await?;
        let (effective, _) = confined.effective_grants(&task, Some(&grants)).await?;
        let plugin_limit = effective.limits.processes as usize;

        let layer_dir = scratch.join("layer");
        std::fs::create_dir_all(&layer_dir)?;
        let (layer_helper, layer_launcher, confinement, netns) = match kiln_host::find_helper() {
            None => (
                None,
                None,
                "OFF: the helper kiln-confine was not found".to_string(),
                None,
            ),
            Some(helper) => {
                let netns = SharedNetns::start(&helper).ok();
                let network = netns.as_ref().map_or(Network::Denied, |n| n.network());
                let mut read_only = kiln_confine::system_read_only_paths();
                read_only.push(kiln_host::process::install_prefix(&program));
                read_only.push(layer_dir.clone());
                let mut read_write = kiln_confine::system_read_write_paths();
                read_write.push(layer_dir.clone());
                let policy = Policy {
                    read_only,
                    read_write,
                    rlimits: Rlimits::default(),
                    network,
                    require: false,
                };
                let (launcher, how) = match Launcher::new(&policy) {
                    Ok(l) => {
                        let a = l.applied();
                        let how = format!(
                            "on: programs launched confined (Landlock ABI {} {:?}, network {:?}, no_new_privs {}); the helper {} where that is not possible",
                            a.landlock.abi,
                            a.landlock.enforcement,
                            a.network,
                            a.no_new_privs,
                            helper.display()
                        );
                        (Some(Confined::Launcher(Arc::new(l))), how)
                    }
                    Err(e) => (
                        None,
                        format!(
                            "on: through the helper {} (cannot launch directly: {e})",
                            helper.display()
                        ),
                    ),
                };
                let helper = Confined::Helper { helper, policy };
                let launcher = launcher.or_else(|| Some(helper.clone()));
                (Some(helper), launcher, how, netns)
            }
        };
        Ok(SpawnBench {
            program,
            line_program,
            scratch: layer_dir,
            confined,
            unconfined,
            grants,
            plugin_limit,
            max_running: max_c,
            layer_launcher,
            layer_helper,
            confinement,
            _netns: netns,
            runs: AtomicUsize::new(0),
            jobs,
        })
    }

    pub fn limits_summary(&self) -> String {
        format!(
            "a plugin's pipeline runs at most {} programs at once (limits.processes; the grants asked for {}), the host at most {} (max_running_processes)",
            self.plugin_limit,
            CONCURRENCIES.iter().max().unwrap_or(&1),
            self.max_running
        )
    }

    /// Run `n` programs at concurrency `c` once; the time per program.
    async fn run_once(
        &self,
        v: Variant,
        n: usize,
        c: usize,
        python: Option<&Ccp4i2>,
    ) -> Result<Duration> {
        let elapsed = match v {
            Variant::Floor | Variant::FloorFiles => {
                let program = self.program.clone();
                let dir = (v == Variant::FloorFiles).then(|| self.run_dir());
                tokio::task::spawn_blocking(move || floor(&program, n, c, dir.as_deref())).await??
            }
            Variant::LayerUnconfined => self.layer(n, c, None).await?,
            Variant::LayerConfined | Variant::LayerHelper => {
                let confine = if v == Variant::LayerConfined {
                    &self.layer_launcher
                } else {
                    &self.layer_helper
                };
                let Some(confine) = confine else {
                    bail!("the helper kiln-confine was not found");
                };
                self.layer(n, c, Some(confine.clone())).await?
            }
            Variant::PluginUnconfined | Variant::PluginConfined | Variant::PluginConfinedLine => {
                let host = if v == Variant::PluginUnconfined {
                    &self.unconfined
                } else {
                    &self.confined
                };
                let line = v == Variant::PluginConfinedLine;
                let program = if line { LINE_PROGRAM } else { "fake" };
                let start = Instant::now();
                let report = run_probe(
                    host,
                    &format!("spawn-many {n} {c} {program}"),
                    Some(&self.grants),
                )
                .await?;
                let elapsed = start.elapsed();
                if line {
                    check_logs_written(&report.job_dir, n)?;
                }
                elapsed
            }
            Variant::Ccp4i2 | Variant::Ccp4i2Line => {
                let Some(py) = python else {
                    bail!("CCP4i2 is not available");
                };
                let py = py.clone();
                let (program, args) = if v == Variant::Ccp4i2Line {
                    (self.line_program.clone(), vec![LINE_WORD.to_string()])
                } else {
                    (self.program.clone(), Vec::new())
                };
                let dir = self.run_dir();
                tokio::task::spawn_blocking(move || py.run(&program, &args, n, c, &dir)).await??
            }
        };
        Ok(elapsed / n as u32)
    }

    /// Kiln's process layer on its own: C tasks, each spawning and waiting
    /// for one program after another, with a log file pair per program as
    /// a job has.
    async fn layer(&self, n: usize, c: usize, confine: Option<Confined>) -> Result<Duration> {
        let dir = self.run_dir();
        std::fs::create_dir_all(&dir)?;
        // Held, as a job's directory is.
        let dir = Arc::new(DirHandle::open(&dir)?);
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..c {
            let next = next.clone();
            let dir = dir.clone();
            let program = self.program.clone();
            let confine = confine.clone();
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<(), anyhow::Error>(());
                    }
                    let spec = layer_spec(
                        &program,
                        Vec::new(),
                        &dir,
                        &format!("log_{i}.txt"),
                        &format!("log_err_{i}.txt"),
                        confine.clone(),
                    );
                    let p = kiln_host::process::spawn(spec, Gate::default(), Box::new(|_| {}));
                    match p.wait().await {
                        Outcome::Exited(0) => {}
                        other => bail!("program {i} {other}"),
                    }
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        Ok(start.elapsed())
    }

    /// A new directory for one run's files. Runs keep their files until
    /// the phase ends: on ext4 without a journal, creating files right
    /// after deleting thousands makes the kernel scan past the recently
    /// deleted inodes (`recently_deleted`), which would charge one variant
    /// for another's clean-up.
    fn run_dir(&self) -> PathBuf {
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        self.scratch.join(format!("run-{n}"))
    }

    /// Remove every run's files and every job directory.
    pub fn clean_up(&self) {
        for dir in [&self.scratch, &self.jobs.0, &self.jobs.1] {
            remove_dir(dir);
        }
    }
}

/// What Kiln's process layer is asked to run when called directly: the
/// program in `dir` with its logs there, TMPDIR there (as the host sets it),
/// the host's default capture limit and kill grace, and no cgroup (the
/// host's cgroups belong to jobs).
pub fn layer_spec(
    program: &Path,
    args: Vec<String>,
    dir: &Arc<DirHandle>,
    stdout_log: &str,
    stderr_log: &str,
    confine: Option<Confined>,
) -> SpawnSpec {
    let log = |name: &str| LogFile {
        dir: dir.clone(),
        name: name.into(),
    };
    SpawnSpec {
        program: program.to_path_buf(),
        args,
        env: vec![("TMPDIR".into(), dir.path().display().to_string())],
        cwd: WorkingDir::Held(dir.clone()),
        stdin: None,
        stdout_log: log(stdout_log),
        stderr_log: log(stderr_log),
        timeout: None,
        capture: CaptureBudget::new(CAPTURE_LIMIT),
        grace: KILL_GRACE,
        confine,
        cgroups: None,
        cgroup_handles: None,
        adopt_after_spawn: false,
        on_line: None,
        on_warning: None,
    }
}

/// The floor: C threads, each running the program with `std::process` and
/// waiting for it, until N have run; with `files`, each program's stdout
/// and stderr go straight into two new files there.
fn floor(program: &Path, n: usize, c: usize, files: Option<&Path>) -> Result<Duration> {
    use std::process::{Command, Stdio};
    if let Some(dir) = files {
        std::fs::create_dir_all(dir)?;
    }
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..c)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        let (out, err) = match files {
                            Some(dir) => (
                                Stdio::from(std::fs::File::create(
                                    dir.join(format!("log_{i}.txt")),
                                )?),
                                Stdio::from(std::fs::File::create(
                                    dir.join(format!("log_err_{i}.txt")),
                                )?),
                            ),
                            None => (Stdio::null(), Stdio::null()),
                        };
                        // The environment a program gets from Kiln: a
                        // cleared one (an inherited one can be costlier,
                        // with cargo's LD_LIBRARY_PATH say).
                        let status = Command::new(program)
                            .env_clear()
                            .env("TMPDIR", std::env::temp_dir())
                            .stdin(Stdio::null())
                            .stdout(out)
                            .stderr(err)
                            .status()
                            .with_context(|| format!("cannot run {}", program.display()))?;
                        if !status.success() {
                            bail!("{} {status}", program.display());
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a floor thread panicked"))??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(start.elapsed())
}

/// Every one of a one-line job's `n` programs wrote its line into a
/// log.txt of its own (checked outside the timing): the variant did what
/// it claims to measure.
fn check_logs_written(job_dir: &Path, n: usize) -> Result<()> {
    use std::io::Read;
    let want = format!("{LINE_WORD}\n");
    let dir = DirHandle::open(job_dir)?;
    let mut written = 0;
    for name in dir.names()? {
        let name = name.to_string_lossy();
        if name == "log.txt" || (name.starts_with("log_") && !name.starts_with("log_err")) {
            // Below the held directory, never through a link.
            let mut text = String::new();
            dir.open_file(Path::new(&*name))?
                .read_to_string(&mut text)?;
            if text != want {
                bail!("{name} in {} holds {text:?}", job_dir.display());
            }
            written += 1;
        }
    }
    if written != n {
        bail!(
            "{written} of {n} programs wrote their log.txt in {}",
            job_dir.display()
        );
    }
    Ok(())
}

pub fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        eprintln!("kiln-bench: cannot remove {}: {e}", dir.display());
    }
}

/// Seconds per program, per variant and concurrency, one entry per round.
pub struct SpawnResults {
    times: BTreeMap<(Variant, usize), Vec<f64>>,
    /// The bench process's own CPU seconds per program, per round.
    host_cpu: BTreeMap<(Variant, usize), Vec<f64>>,
    /// Seconds per program in each slice of each round, in the order run:
    /// the same index is the same slice for every variant.
    per_slice: BTreeMap<(Variant, usize), Vec<f64>>,
    pub notes: Vec<String>,
    pub jobs: usize,
}

/// Run every variant at every concurrency, `rounds` times, after a warm-up
/// round (plugin compiled or loaded from the cache, page cache warm).
pub async fn measure(
    bench: &SpawnBench,
    python: Option<&Ccp4i2>,
    n: usize,
    rounds: usize,
    wanted: impl Fn(&str) -> bool,
) -> Result<SpawnResults> {
    let variants: Vec<Variant> = Variant::ALL
        .into_iter()
        .filter(|v| wanted(v.key()))
        .filter(|v| !matches!(v, Variant::Ccp4i2 | Variant::Ccp4i2Line) || python.is_some())
        .filter(|v| {
            !matches!(v, Variant::LayerConfined | Variant::LayerHelper)
                || bench.layer_helper.is_some()
        })
        .collect();
    let mut jobs = 0;
    let mut times: BTreeMap<(Variant, usize), Vec<f64>> = BTreeMap::new();
    let mut host_cpu: BTreeMap<(Variant, usize), Vec<f64>> = BTreeMap::new();
    let mut per_slice: BTreeMap<(Variant, usize), Vec<f64>> = BTreeMap::new();
    if variants.is_empty() {
        return Ok(SpawnResults {
            times,
            host_cpu,
            per_slice,
            notes: Vec::new(),
            jobs,
        });
    }
    eprintln!("kiln-bench: spawn-and-wait warm-up...");
    if variants.contains(&Variant::PluginUnconfined) {
        eprintln!(
            "kiln-bench: (the unconfined variants' host has no helper on purpose: its programs run unconfined)"
        );
    }
    for &v in &variants {
        bench
            .run_once(v, n.min(20), 2, python)
            .await
            .with_context(|| format!("warm-up of {}", v.label()))?;
        if v.is_plugin() {
            jobs += 1;
        }
    }
    // Each round's N programs run in slices, the variants taking turns
    // slice by slice, so that a slow spell of this shared machine falls on
    // every variant of the round alike rather than on whichever ran then.
    let slices = SLICES.min(n);
    for round in 0..rounds {
        for &c in &CONCURRENCIES {
            eprintln!(
                "kiln-bench: round {}/{rounds}, c={c}: {} variants in {slices} slices...",
                round + 1,
                variants.len()
            );
            let mut total: BTreeMap<Variant, Duration> = BTreeMap::new();
            let mut cpu: BTreeMap<Variant, f64> = BTreeMap::new();
            for slice in 0..slices {
                let size = n / slices + usize::from(slice < n % slices);
                // Rotate the order each slice so no variant always follows
                // the same neighbour (page cache, CPU frequency).
                let k = (round + c + slice) % variants.len();
                for &v in variants[k..].iter().chain(&variants[..k]) {
                    let cpu_before = own_cpu_seconds();
                    let per = bench
                        .run_once(v, size, c, python)
                        .await
                        .with_context(|| format!("{} at c={c}", v.label()))?;
                    *cpu.entry(v).or_default() += own_cpu_seconds() - cpu_before;
                    per_slice.entry((v, c)).or_default().push(per.as_secs_f64());
                    if v.is_plugin() {
                        jobs += 1;
                    }
                    *total.entry(v).or_default() += per * size as u32;
                }
            }
            for (v, t) in total {
                times
                    .entry((v, c))
                    .or_default()
                    .push(t.as_secs_f64() / n as f64);
            }
            for (v, seconds) in cpu {
                host_cpu.entry((v, c)).or_default().push(seconds / n as f64);
            }
        }
    }
    let mut notes = Vec::new();
    let effective = bench.plugin_limit.min(bench.max_running);
    let plugins = variants.iter().any(|v| v.is_plugin());
    for &c in &CONCURRENCIES {
        if plugins && c > effective {
            notes.push(format!(
                "c={c} through a plugin: the plugin keeps {c} programs started, the host runs {effective} at once and queues the rest"
            ));
        }
    }
    if python.is_some() && variants.contains(&Variant::Ccp4i2) {
        notes.push(format!(
            "CCP4i2 at c={CCP4I2_OWN} is its own default (_max_concurrent); other concurrencies resize its semaphore"
        ));
    }
    Ok(SpawnResults {
        times,
        host_cpu,
        per_slice,
        notes,
        jobs,
    })
}

/// User and system CPU seconds of this process's own threads so far; the
/// programs it runs are not in it (their time is theirs, also between the
/// clone and the exec of a launch).
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes a plain struct it is given room for.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

impl SpawnResults {
    /// The median of `a / b` over every slice of every round, each ratio
    /// of two runs made one after the other in the same slice: a slow spell
    /// of the machine (seconds long here) then spoils a few pairs rather
    /// than a round's totals.
    fn paired_ratio(&self, a: (Variant, usize), b: (Variant, usize)) -> Option<f64> {
        let slices = |v: (Variant, usize)| self.per_slice.get(&v).map(Vec::as_slice).unwrap_or(&[]);
        let (a, b) = (slices(a), slices(b));
        let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        (!ratios.is_empty()).then(|| median(&ratios))
    }

    pub fn plugin_over_floor(&self, c: usize) -> Option<f64> {
        self.paired_ratio((Variant::PluginConfined, c), (Variant::Floor, c))
    }

    pub fn ccp4i2_over_plugin(&self, c: usize) -> Option<f64> {
        self.paired_ratio((Variant::Ccp4i2, c), (Variant::PluginConfined, c))
    }

    /// The same with programs that each write one line.
    pub fn ccp4i2_over_plugin_one_line(&self, c: usize) -> Option<f64> {
        self.paired_ratio((Variant::Ccp4i2Line, c), (Variant::PluginConfinedLine, c))
    }

    pub fn table(&self, n: usize, rounds: usize) -> Table {
        Table {
            title: format!(
                "Spawn and wait, N={n} x /bin/true (one-line rows: echo {LINE_WORD}), microseconds per program: median (min-max) of {rounds} round(s)"
            ),
            columns: CONCURRENCIES.iter().map(|c| format!("c={c}")).collect(),
            rows: rows(&self.times, Variant::ALL.into_iter()),
        }
    }

    /// CPU time of the bench process itself: what each variant costs the
    /// host beside the programs' own time. CCP4i2's manager runs in a
    /// Python process of its own, so it has no row.
    pub fn host_cpu_table(&self, rounds: usize) -> Table {
        Table {
            title: format!(
                "Host CPU per program (this process's user+system time, the programs' own excluded), microseconds: median (min-max) of {rounds} round(s)"
            ),
            columns: CONCURRENCIES.iter().map(|c| format!("c={c}")).collect(),
            rows: rows(
                &self.host_cpu,
                Variant::ALL
                    .into_iter()
                    .filter(|v| !matches!(v, Variant::Ccp4i2 | Variant::Ccp4i2Line)),
            ),
        }
    }
}

/// One row per variant measured: the median (min-max) over rounds, in
/// microseconds.
fn rows(
    per_round: &BTreeMap<(Variant, usize), Vec<f64>>,
    variants: impl Iterator<Item = Variant>,
) -> Vec<(String, Vec<String>)> {
    let mut rows = Vec::new();
    for v in variants {
        let cells: Vec<String> = CONCURRENCIES
            .iter()
            .map(|&c| {
                let t = per_round.get(&(v, c)).map(Vec::as_slice).unwrap_or(&[]);
                if t.is_empty() {
                    return "-".into();
                }
                let us = |x: f64| x * 1e6;
                let lo = t.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if t.len() == 1 {
                    format!("{:.0}", us(t[0]))
                } else {
                    format!("{:.0} ({:.0}-{:.0})", us(median(t)), us(lo), us(hi))
                }
            })
            .collect();
        if cells.iter().any(|c| c != "-") {
            rows.push((v.label().to_string(), cells));
        }
    }
    rows
}
