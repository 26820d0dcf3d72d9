//! `kiln-bench`: measures Kiln's supervision of native programs side by side
//! with the floor (plain `std::process`) and with CCP4i2's
//! AsyncProcessManager, in one run, and prints the ratios against their
//! targets.
//!
//! Four benchmarks:
//! - spawn-and-wait of N short programs (`/bin/true`) at concurrency 1, 4
//!   and 10: a plain Rust loop (without and with log files), Kiln's process
//!   layer called directly (unconfined, confined as the host does it, and
//!   through the confinement helper), Kiln through a plugin (the `probe`
//!   test plugin's `spawn-many`, unconfined and confined), and CCP4i2
//!   3.0.1's AsyncProcessManager under Python 3; Kiln through a plugin and
//!   CCP4i2 once more with programs that each write one line (`echo`), so
//!   that both create their log files (see [`spawn`]);
//! - 1 GiB written to stdout by a program and streamed by Kiln into the
//!   job's `log.txt`, checked by content, against the same program piped
//!   into a reader that discards it (through a default pipe, and through
//!   one grown to 1 MiB as Kiln grows its own), and Kiln's peak RSS
//!   meanwhile (see [`output`]);
//! - the latency from cancelling a job to all its programs being gone (see
//!   [`cancel`]);
//! - the runtime at a job service's scale: 10,000 jobs waiting at once in
//!   one host, their RSS against 1 GiB, and a job's instantiation against
//!   bare pooled wasmtime's (see [`scale`]);
//! - the job service (`kiln serve`) under loopback load: submit throughput,
//!   status latency, SSE fan-out to 1,000 clients (see [`service`]).
//!
//! Every variant runs once per round and the rounds repeat; each round's
//! programs run in slices the variants take turns at. The machine is shared
//! and noisy, so results are medians, and a ratio is the median over every
//! slice of the ratio of two runs made in the same slice. The bench's own
//! CPU time per program is printed beside the times: it is what Kiln's
//! host adds, and it moves far less with the machine's noise than the
//! elapsed time does. `--quick` is a smoke run (small N, one round).

mod cancel;
mod ccp4i2;
mod output;
mod scale;
mod service;
mod spawn;
mod stats;

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand};
use stats::{Row, Table, median};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// The probe plugin, built by build.rs.
const PROBE_WASM: &str = env!("KILN_BENCH_PROBE_WASM");

/// The targets: Kiln through a plugin within 1.2x of the plain loop, 3x
/// faster than CCP4i2 at its own concurrency, a log at 80% of a plain pipe
/// with a peak RSS under 64 MiB.
const MAX_PLUGIN_OVER_FLOOR: f64 = 1.2;
const MIN_CCP4I2_OVER_KILN: f64 = 3.0;
const MIN_LOG_OVER_PIPE: f64 = 0.8;
const MAX_PEAK_RSS_MIB: f64 = 64.0;
/// At service scale: 10,000 waiting jobs in under 1 GiB, and a job's
/// instantiation within 1.5x of bare pooled wasmtime's.
const MAX_SCALE_RSS_MIB: f64 = 1024.0;
const MAX_INSTANTIATE_OVER_BARE: f64 = 1.5;
/// The job service: 1,000 submits a second accepted and committed, status
/// in under 10 ms at p99, and a job followed by 1,000 SSE clients not
/// slowed by more than a quarter.
const MIN_SUBMITS_PER_S: f64 = 1000.0;
const MAX_STATUS_P99_MS: f64 = 10.0;
const MAX_FANOUT_SLOWDOWN: f64 = 1.25;

#[derive(Parser)]
#[command(
    name = "kiln-bench",
    about = "Kiln's process supervision against a plain Rust loop and CCP4i2's AsyncProcessManager"
)]
struct Cli {
    /// Programs per spawn-and-wait run (default 2000; 100 with --quick).
    #[arg(long)]
    n: Option<usize>,
    /// Rounds of every measurement; results are medians (default 3; 1 with
    /// --quick). The log benchmark runs at least 5 but with --quick: one of
    /// its rounds takes seconds, and single rounds of it vary the most.
    #[arg(long)]
    rounds: Option<usize>,
    /// Bytes written through stdout into log.txt (default 1 GiB; 64 MiB
    /// with --quick).
    #[arg(long)]
    log_bytes: Option<u64>,
    /// Jobs waiting at once in the scale benchmark (default 10000; 500
    /// with --quick).
    #[arg(long)]
    scale_jobs: Option<usize>,
    /// A smoke run: small sizes, one round, and CCP4i2 only if its Python
    /// environment is already in the cache (no download).
    #[arg(long)]
    quick: bool,
    /// Leave out CCP4i2's AsyncProcessManager (no Python, no download).
    #[arg(long)]
    skip_python: bool,
    /// Run only these benchmarks (comma-separated): the spawn-and-wait
    /// variants floor, floor-files, layer-unconfined, layer-confined,
    /// layer-helper, plugin-unconfined, plugin-confined,
    /// plugin-confined-line, ccp4i2, ccp4i2-line; and log, cancel, scale,
    /// service.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    #[command(subcommand)]
    internal: Option<Internal>,
}

/// The benchmark's own helper programs, run by the benchmark.
#[derive(Subcommand)]
enum Internal {
    /// Write BYTES bytes of text to stdout.
    #[command(hide = true)]
    Spew { bytes: u64 },
    /// Run one large-output job in a fresh Kiln host and print its timing
    /// and this process's peak RSS as JSON.
    #[command(hide = true)]
    LogJob {
        bytes: u64,
        /// The sha256 of what the program writes, to check log.txt by.
        sha256: String,
        jobs_dir: PathBuf,
        probe: PathBuf,
    },
    /// Hold JOBS probe jobs waiting at once in a fresh Kiln host, cancel
    /// them, and print this process's RSS meanwhile as JSON.
    #[command(hide = true)]
    ScaleJobs {
        jobs: usize,
        jobs_dir: PathBuf,
        probe: PathBuf,
        /// Hold bare wasmtime instances instead.
        #[arg(long)]
        bare: bool,
    },
}

/// Sizes of one run.
struct Settings {
    n: usize,
    rounds: usize,
    log_bytes: u64,
    log_rounds: usize,
    cancel_rounds: usize,
    scale_jobs: usize,
    /// Jobs started one at a time per round of the instantiation
    /// comparison.
    scale_starts: usize,
    quick: bool,
    python: PythonMode,
    only: Vec<String>,
}

impl Settings {
    fn wants(&self, key: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|k| k == key)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PythonMode {
    Skip,
    /// Use the cached environment only.
    CachedOnly,
    /// Install it with pip when missing.
    Install,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.internal {
        Some(Internal::Spew { bytes }) => output::spew(bytes),
        Some(Internal::LogJob {
            bytes,
            sha256,
            jobs_dir,
            probe,
        }) => output::log_job_child(bytes, &sha256, &jobs_dir, &probe),
        Some(Internal::ScaleJobs {
            jobs,
            jobs_dir,
            probe,
            bare,
        }) => scale::wait_jobs_child(jobs, &jobs_dir, &probe, bare),
        None => run_benchmarks(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_benchmarks(cli: &Cli) -> Result<()> {
    let rounds = cli.rounds.unwrap_or(if cli.quick { 1 } else { 3 }).max(1);
    let settings = Settings {
        n: cli.n.unwrap_or(if cli.quick { 100 } else { 2000 }),
        rounds,
        log_bytes: cli
            .log_bytes
            .unwrap_or(if cli.quick { 64 << 20 } else { 1 << 30 }),
        log_rounds: if cli.quick { rounds } else { rounds.max(5) },
        cancel_rounds: if cli.quick { 1 } else { 5 },
        scale_jobs: cli
            .scale_jobs
            .unwrap_or(if cli.quick { 500 } else { 10_000 }),
        scale_starts: if cli.quick { 50 } else { 200 },
        quick: cli.quick,
        python: match (cli.skip_python, cli.quick) {
            (true, _) => PythonMode::Skip,
            (false, true) => PythonMode::CachedOnly,
            (false, false) => PythonMode::Install,
        },
        only: cli.only.clone(),
    };
    let known: Vec<&str> = spawn::Variant::ALL
        .iter()
        .map(|v| v.key())
        .chain(["log", "cancel", "scale", "service"])
        .collect();
    if let Some(bad) = settings.only.iter().find(|k| !known.contains(&k.as_str())) {
        bail!("--only {bad}: not one of {}", known.join(", "));
    }
    if settings.n == 0 {
        bail!("--n must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let started = Instant::now();
    let report = runtime.block_on(benchmarks(&settings))?;
    print!("{report}");
    println!(
        "every job succeeded ({} jobs, {:.0} s in all)",
        report.jobs,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Everything measured, ready to print.
struct Report {
    machine: Vec<(String, String)>,
    spawn: Table,
    host_cpu: Table,
    notes: Vec<String>,
    targets: Vec<Row>,
    jobs: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f)?;
        for (k, v) in &self.machine {
            writeln!(f, "{k:<14} {v}")?;
        }
        writeln!(f)?;
        write!(f, "{}", self.spawn)?;
        writeln!(f)?;
        write!(f, "{}", self.host_cpu)?;
        for note in &self.notes {
            writeln!(f, "  {note}")?;
        }
        writeln!(f)?;
        stats::write_targets(f, &self.targets)
    }
}

async fn benchmarks(s: &Settings) -> Result<Report> {
    let scratch = tempfile::Builder::new()
        .prefix("kiln-bench-")
        .tempdir()
        .context("failed to create a scratch directory")?;
    let exe = std::env::current_exe().context("cannot find the benchmark's own executable")?;
    // A copy: a build elsewhere in the workspace may rewrite the original
    // mid-run, and a changed component would be compiled again, its time
    // and memory counted against the host.
    let probe = scratch.path().join("probe.wasm");
    std::fs::copy(PROBE_WASM, &probe).with_context(|| {
        format!("cannot copy the probe plugin {PROBE_WASM}: rebuild kiln-bench")
    })?;
    let probe = probe.as_path();

    let mut machine = machine_info();
    machine.push((
        "scratch".into(),
        format!(
            "{} ({}; set TMPDIR to move it)",
            scratch.path().display(),
            filesystem(scratch.path())
        ),
    ));

    // CCP4i2 first: a pip install is the slow, network-bound part.
    let python = match s.python {
        PythonMode::Skip => Err("skipped: --skip-python".to_string()),
        _ if !s.wants("ccp4i2") && !s.wants("ccp4i2-line") => {
            Err("skipped: not in --only".to_string())
        }
        mode => {
            eprintln!("kiln-bench: preparing CCP4i2's AsyncProcessManager...");
            ccp4i2::Ccp4i2::prepare(mode == PythonMode::Install, scratch.path())
        }
    };
    match &python {
        Ok(p) => machine.push(("python".into(), p.describe())),
        Err(why) => machine.push(("ccp4i2".into(), why.clone())),
    }

    eprintln!("kiln-bench: starting the hosts...");
    let bench = spawn::SpawnBench::new(scratch.path(), probe).await?;
    machine.push(("confinement".into(), bench.confinement.clone()));
    machine.push(("kiln limits".into(), bench.limits_summary()));

    // Spawn and wait, all variants interleaved round by round.
    let spawned =
        spawn::measure(&bench, python.as_ref().ok(), s.n, s.rounds, |k| s.wants(k)).await?;
    bench.clean_up();
    let mut jobs = spawned.jobs;
    let mut notes = spawned.notes.clone();
    let mut targets = Vec::new();
    for c in [1, 4] {
        let label = format!("Kiln through plugin (confined) / plain loop, c={c}");
        targets.push(match spawned.plugin_over_floor(c) {
            Some(r) => Row::ratio(&label, Some(r), "<=", MAX_PLUGIN_OVER_FLOOR, "x"),
            None => Row::skipped(&label, "not run"),
        });
    }
    // Silent programs (Kiln creates no log file for them, CCP4i2's manager
    // opens two each) and programs that write one line (both create them).
    for (programs, ratio) in [
        ("silent", spawned.ccp4i2_over_plugin(spawn::CCP4I2_OWN)),
        (
            "one line each",
            spawned.ccp4i2_over_plugin_one_line(spawn::CCP4I2_OWN),
        ),
    ] {
        let label = format!(
            "CCP4i2 AsyncProcessManager / Kiln through plugin, c={}, {programs}",
            spawn::CCP4I2_OWN
        );
        targets.push(match ratio {
            Some(r) => Row::ratio(&label, Some(r), ">=", MIN_CCP4I2_OVER_KILN, "x"),
            None => Row::skipped(
                &label,
                python.as_ref().err().map_or("not run", |s| s.as_str()),
            ),
        });
    }

    let label = format!(
        "log.txt throughput / plain pipe ({} MiB, median of {})",
        s.log_bytes >> 20,
        s.log_rounds
    );
    let big_label = "log.txt throughput / plain pipe grown to 1 MiB, as Kiln's";
    if s.wants("log") {
        eprintln!(
            "kiln-bench: {} bytes through stdout into log.txt...",
            s.log_bytes
        );
        let log = output::measure(&exe, probe, s.log_bytes, s.log_rounds, scratch.path()).await?;
        jobs += log.jobs;
        targets.push(Row::ratio(
            &label,
            Some(log.kiln_over_pipe),
            ">=",
            MIN_LOG_OVER_PIPE,
            "",
        ));
        targets.push(Row::ratio(
            big_label,
            Some(log.kiln_over_big_pipe),
            ">=",
            MIN_LOG_OVER_PIPE,
            "",
        ));
        targets.push(Row::info(
            "  every log.txt and file checked by sha256 of the bytes written",
            "yes".to_string(),
        ));
        targets.push(Row::ratio(
            "Kiln peak RSS during the log job",
            Some(log.peak_rss_mib),
            "<",
            MAX_PEAK_RSS_MIB,
            " MiB",
        ));
        targets.push(Row::info(
            "  MiB/s: plain pipe / 1 MiB pipe / Kiln plugin to log.txt",
            format!(
                "{:.0} / {:.0} / {:.0}",
                log.pipe_mib_s, log.big_pipe_mib_s, log.kiln_mib_s
            ),
        ));
        targets.push(Row::info(
            "  MiB/s: plain pipe to a file / Kiln process layer alone",
            format!("{:.0} / {:.0}", log.pipe_file_mib_s, log.layer_mib_s),
        ));
        targets.push(Row::info(
            "  Kiln RSS before the job / peak since start-up",
            format!(
                "{:.1} / {:.1} MiB",
                log.rss_before_mib, log.lifetime_peak_rss_mib
            ),
        ));
    } else {
        targets.push(Row::skipped(&label, "not run"));
        targets.push(Row::skipped(big_label, "not run"));
        targets.push(Row::skipped("Kiln peak RSS during the log job", "not run"));
    }

    if s.wants("cancel") {
        eprintln!("kiln-bench: cancel latency...");
        let cancel = cancel::measure(scratch.path(), probe, s.cancel_rounds).await?;
        jobs += cancel.jobs;
        if let Some(evidence) = &cancel.confinement_evidence {
            notes.push(format!("confinement seen on running programs: {evidence}"));
        }
        targets.push(Row::info(
            &format!(
                "cancel to job ended ({} programs, median of {})",
                cancel.programs, s.cancel_rounds
            ),
            format!("{:.1} ms", median(&cancel.job_ended_ms)),
        ));
        targets.push(Row::info(
            "cancel to every program gone",
            format!("{:.1} ms", median(&cancel.gone_ms)),
        ));
    }
    if s.wants("service") {
        eprintln!("kiln-bench: the job service...");
        let b = service::measure(probe, scratch.path(), s.quick).await?;
        jobs += b.submits + 4;
        targets.push(Row::ratio(
            &format!(
                "submits accepted and committed ({} from {} clients)",
                b.submits, b.submit_clients
            ),
            Some(b.submits_per_s),
            ">=",
            MIN_SUBMITS_PER_S,
            " jobs/s",
        ));
        targets.push(Row::info(
            "  submit latency p50 / p99",
            format!("{:.2} / {:.2} ms", b.submit_p50_ms, b.submit_p99_ms),
        ));
        targets.push(Row::ratio(
            &format!(
                "status latency p99 ({} GETs from {} clients)",
                b.status_requests, b.status_clients
            ),
            Some(b.status_p99_ms),
            "<",
            MAX_STATUS_P99_MS,
            " ms",
        ));
        targets.push(Row::info(
            "  status latency p50",
            format!("{:.2} ms", b.status_p50_ms),
        ));
        for (what, f, target) in [
            (
                "progress 100/s for 2 s",
                &b.paced,
                Some(MAX_FANOUT_SLOWDOWN),
            ),
            ("a burst of progress", &b.burst, None),
        ] {
            let label = format!(
                "job ({what}, {} events) with {} SSE clients / alone",
                f.events, b.fanout_subscribers
            );
            let ratio = f.with_s / f.alone_s;
            targets.push(match target {
                Some(t) => Row::ratio(&label, Some(ratio), "<=", t, "x"),
                None => Row::info(&label, format!("{ratio:.2}x")),
            });
            targets.push(Row::info(
                "  run time alone / followed; clients with every event; reconnects",
                format!(
                    "{:.3} s / {:.3} s; {} of {}; {}",
                    f.alone_s, f.with_s, f.complete, b.fanout_subscribers, f.reconnects
                ),
            ));
        }
    }
    let scale_label = format!("RSS with {} jobs waiting in a host call", s.scale_jobs);
    let inst_label = "job instantiation / bare pooled wasmtime instantiation";
    if s.wants("scale") {
        let scale = scale::measure(
            &exe,
            probe,
            scratch.path(),
            s.scale_jobs,
            s.scale_starts,
            s.rounds,
        )
        .await?;
        jobs += scale.jobs;
        let w = &scale.wait;
        let mib = |kib: f64| kib / 1024.0;
        let label = match &w.limited_by {
            None => scale_label.clone(),
            Some(_) => format!("{scale_label} (projected from {} run)", w.jobs),
        };
        targets.push(Row::ratio(
            &label,
            Some(mib(w.rss_requested_kib())),
            "<",
            MAX_SCALE_RSS_MIB,
            " MiB",
        ));
        if let Some(why) = &w.limited_by {
            targets.push(Row::info(
                &format!(
                    "  only {} of {} jobs fit this machine's limits",
                    w.jobs, w.requested
                ),
                why.clone(),
            ));
        }
        targets.push(Row::info(
            &format!("  RSS before / with {} waiting / after they ended", w.jobs),
            format!(
                "{:.1} / {:.1} / {:.1} MiB",
                mib(w.before.rss_kib as f64),
                mib(w.waiting.rss_kib as f64),
                mib(w.rss_ended_kib as f64)
            ),
        ));
        let each = |now: u64, then: u64| now.saturating_sub(then) as f64 / w.jobs.max(1) as f64;
        targets.push(Row::info(
            "  per waiting job: RSS (anonymous + file-backed)",
            format!(
                "{:.1} KiB ({:.1} + {:.1})",
                w.per_job_kib(),
                each(w.waiting.rss_anon_kib, w.before.rss_anon_kib),
                each(w.waiting.rss_file_kib, w.before.rss_file_kib)
            ),
        ));
        if let Some((n, before, with)) = &w.bare {
            let each = |now: u64, then: u64| now.saturating_sub(then) as f64 / (*n).max(1) as f64;
            targets.push(Row::info(
                "  per bare wasmtime instance, held: RSS (anonymous + file-backed)",
                format!(
                    "{:.1} KiB ({:.1} + {:.1})",
                    each(with.rss_kib, before.rss_kib),
                    each(with.rss_anon_kib, before.rss_anon_kib),
                    each(with.rss_file_kib, before.rss_file_kib)
                ),
            ));
        }
        targets.push(Row::info(
            "  per waiting job: open files / memory mappings",
            format!(
                "{:.1} / {:.1}",
                each(w.waiting.open_files, w.before.open_files),
                each(w.waiting.mappings, w.before.mappings)
            ),
        ));
        targets.push(Row::info(
            "  instances live (in the pool) / pool fallbacks",
            format!(
                "{} ({}) / {}",
                w.instances_live, w.instances_pooled, w.pool_fallbacks
            ),
        ));
        targets.push(Row::info(
            "  from the first submit to all waiting",
            format!("{:.1} s", w.waiting_seconds),
        ));
        targets.push(Row::info(
            &format!(
                "  cancel to all {} ended (the guest's 2 s grace included)",
                w.jobs
            ),
            format!(
                "{:.2} s, {} interrupted, {} instances left",
                w.cancel_seconds, w.interrupted, w.instances_live_after
            ),
        ));
        ensure!(
            w.interrupted == w.jobs && w.instances_live_after == 0,
            "of {} cancelled jobs, {} ended interrupted and {} instances are left",
            w.jobs,
            w.interrupted,
            w.instances_live_after
        );
        targets.push(Row::ratio(
            &format!(
                "{inst_label} ({} jobs, median of {})",
                scale.starts, scale.rounds
            ),
            Some(scale.instantiate_ratio),
            "<=",
            MAX_INSTANTIATE_OVER_BARE,
            "x",
        ));
        targets.push(Row::info(
            "  us per instance: Kiln's engine / bare, after each job / bare, back to back",
            format!(
                "{:.1} / {:.1} / {:.1}",
                scale.kiln_instantiate_us, scale.bare_instantiate_us, scale.bare_hot_instantiate_us
            ),
        ));
        targets.push(Row::info(
            "  job start to the plugin's first signal (median)",
            format!("{:.2} ms", scale.start_to_signal_ms),
        ));
    } else {
        targets.push(Row::skipped(&scale_label, "not run"));
        targets.push(Row::skipped(inst_label, "not run"));
    }
    if s.quick {
        notes.push("--quick: sizes too small for the targets to mean much".into());
    }
    Ok(Report {
        machine,
        spawn: spawned.table(s.n, s.rounds),
        host_cpu: spawned.host_cpu_table(s.rounds),
        notes,
        targets,
        jobs,
    })
}

/// nproc, CPU model and kernel.
fn machine_info() -> Vec<(String, String)> {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    vec![
        ("nproc".into(), nproc),
        ("cpu".into(), cpu),
        ("kernel".into(), kernel),
    ]
}

/// The filesystem type of `path`, for the record: file creation costs
/// differ a lot between them.
fn filesystem(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return "unknown filesystem".into();
    };
    // SAFETY: statfs writes into the zeroed struct it is given; the path is
    // a valid NUL-terminated string.
    let magic = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c_path.as_ptr(), &mut st) != 0 {
            return "unknown filesystem".into();
        }
        st.f_type as i64
    };
    match magic {
        0xEF53 => "ext4".into(),
        0x0102_1994 => "tmpfs".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x794C_7630 => "overlayfs".into(),
        other => format!("filesystem 0x{other:x}"),
    }
}
