//! Native program execution, behind the [`Executor`] trait (see
//! [`executor`]): the program registry, confinement, per-job cgroups, and
//! the local runner below.
//!
//! Spawn without a shell, stream stdout and stderr
//! into log files as they are produced (each file created with its stream's
//! first output; a program's first 10 ms of output waits in its pipes, so
//! that a short program costs no pipe watching) while keeping a capped copy
//! in memory,
//! enforce a timeout on the whole process group, and report exactly one
//! outcome.
//!
//! Each program runs in its own process group with a cleared environment,
//! stdin from its com file or /dev/null, and only fds 0-2 (Rust's spawn marks
//! every other descriptor close-on-exec). Spawning goes through
//! `posix_spawn` (`process_group` needs no `pre_exec` hook), which matters in
//! a host with wasmtime's large address space. On timeout or kill the group
//! gets SIGTERM, a grace period, then SIGKILL; when the program itself ends,
//! anything left in its group (a grandchild holding stdout open) is killed
//! so it cannot hold the job up.

mod capture;
pub mod cgroup;
mod child;
mod confinement;
pub mod executor;
mod output;
pub mod registry;
mod relay;
mod supervise;

pub use capture::{CaptureBudget, Captured};
pub use cgroup::CgroupHandles;
pub use confinement::{Confined, Confinement, install_prefix};
pub use executor::{
    ExecError, ExecSession, Executor, LocalConfig, LocalExecutor, ProgramRequest, Sandbox,
};
pub use kiln_confine::Rlimits;
pub use output::{LineSink, MAX_LINE, WarningSink};
pub use registry::{ProgramEntry, Registry};

use child::{Child, LaunchedChild, Started};
use output::{Drain, LazyLog, LineSplitter};
use supervise::{supervise, wait_stop};

use capture::Capture;
use kiln_fs::DirHandle;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How a program ended; each case is distinct.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
    TimedOut,
    Cancelled,
    SpawnFailed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Exited(c) => write!(f, "exited with status {c}"),
            Outcome::Signaled(s) => write!(f, "killed by signal {s}"),
            Outcome::TimedOut => f.write_str("timed out"),
            Outcome::Cancelled => f.write_str("cancelled"),
            Outcome::SpawnFailed(why) => write!(f, "failed to start: {why}"),
        }
    }
}

/// Where a program runs.
#[derive(Clone, Debug)]
pub enum WorkingDir {
    /// A directory the host trusts by path.
    Path(PathBuf),
    /// A directory the host holds (a job's): the program starts in it
    /// whatever its path has become.
    Held(Arc<DirHandle>),
}

impl WorkingDir {
    /// The path the program's start enters.
    pub fn path(&self) -> PathBuf {
        match self {
            WorkingDir::Path(p) => p.clone(),
            WorkingDir::Held(d) => d.fd_path(),
        }
    }
}

/// A log file of a program: `name` in a held directory, created there with
/// the stream's first byte, never through a link in its place.
#[derive(Clone, Debug)]
pub struct LogFile {
    pub dir: Arc<DirHandle>,
    pub name: String,
}

impl LogFile {
    /// Where it is, for messages.
    pub fn display(&self) -> PathBuf {
        self.dir.display_path(&self.name)
    }
}

/// Everything needed to run one program.
#[derive(Clone)]
pub struct SpawnSpec {
    pub program: PathBuf,
    /// Arguments after the program path (registry's fixed ones first).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: WorkingDir,
    /// The open file fed to stdin; `None` is /dev/null.
    pub stdin: Option<Arc<std::fs::File>>,
    /// Where stdout goes, created (or appended to) with its first byte: a
    /// program that writes nothing on stdout leaves no file.
    pub stdout_log: LogFile,
    /// The same for stderr.
    pub stderr_log: LogFile,
    pub timeout: Option<Duration>,
    /// What both streams may keep in memory for the plugin to read back,
    /// shared with the job's other programs.
    pub capture: Arc<CaptureBudget>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// How the program is confined; `None` runs it unconfined.
    pub confine: Option<Confined>,
    /// The job's cgroup directories (`:`-separated) the program belongs
    /// in, so that everything it starts can be killed at the job's end.
    pub cgroups: Option<String>,
    /// The same cgroups, open, for a launched program to join.
    pub cgroup_handles: Option<Arc<CgroupHandles>>,
    /// Move the program into `cgroups` after it started (it was not born
    /// inside them).
    pub adopt_after_spawn: bool,
    /// Receives each line of output as it is produced (`true` for stderr).
    pub on_line: Option<LineSink>,
    /// Receives warnings about the output (a log file that cannot be
    /// created or written); `None` leaves them to `tracing` alone.
    pub on_warning: Option<WarningSink>,
}

/// Why the supervisor stopped a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopRequest {
    /// The plugin asked: the outcome is whatever the program does about it.
    Kill,
    /// The job is being cancelled: the outcome is `cancelled`.
    Cancel,
}

/// A program's shared state: its outcome once known, captured output, and
/// the way to stop it.
pub struct ProcessShared {
    /// Set once the program has started.
    pub pid: std::sync::OnceLock<u32>,
    outcome: watch::Sender<Option<Outcome>>,
    stdout: Mutex<Capture>,
    stderr: Mutex<Capture>,
    stop: Mutex<Option<StopRequest>>,
    stop_notify: Notify,
}

impl ProcessShared {
    pub fn try_outcome(&self) -> Option<Outcome> {
        self.outcome.borrow().clone()
    }

    pub async fn wait(&self) -> Outcome {
        let mut rx = self.outcome.subscribe();
        loop {
            if let Some(o) = rx.borrow_and_update().clone() {
                return o;
            }
            if rx.changed().await.is_err() {
                return Outcome::Cancelled;
            }
        }
    }

    /// SIGTERM, grace, SIGKILL to the process group; harmless once ended.
    pub fn kill(&self) {
        self.request_stop(StopRequest::Kill);
    }

    /// Stop for a job cancellation; the outcome becomes `cancelled`.
    pub fn cancel(&self) {
        self.request_stop(StopRequest::Cancel);
    }

    fn request_stop(&self, req: StopRequest) {
        let mut stop = lock(&self.stop);
        if stop.is_none() || req == StopRequest::Cancel {
            *stop = Some(req);
        }
        drop(stop);
        self.stop_notify.notify_one();
    }

    pub fn captured(&self, stderr: bool) -> Captured {
        let cap = if stderr { &self.stderr } else { &self.stdout };
        lock(cap).snapshot()
    }
}

/// How long the outcome waits for the output pipes to close once the
/// program has ended; what the program wrote is in the pipe already.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// How long a program runs before its output pipes are registered with the
/// runtime and drained as produced; see `run`.
const QUIET_START: Duration = Duration::from_millis(10);

/// Drain both streams as produced, each registered with the runtime; both
/// in this one future, beside the supervision: no task of their own to
/// start and hand the end over from.
async fn registered(out: Option<(OwnedFd, Drain)>, err: Option<(OwnedFd, Drain)>) {
    let watch = |stream: Option<(OwnedFd, Drain)>| async move {
        if let Some((fd, drain)) = stream {
            drain.watch(fd).await;
        }
    };
    tokio::join!(watch(out), watch(err));
}

/// Where a program is in its life, for whoever tracks its job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a slot under the host's or the pipeline's process limit.
    Queued,
    Running,
    Ended,
}

/// The process-count limits a program must get a slot under before it
/// starts, acquired in order (the pipeline's, then the host's) so that no
/// two programs can each hold what the other waits for. The semaphores are
/// FIFO: programs start in the order they asked.
#[derive(Clone, Default)]
pub struct Gate {
    pub limits: Vec<Arc<tokio::sync::Semaphore>>,
}

/// Called on every [`Phase`] change.
pub type PhaseHook = Box<dyn Fn(Phase) + Send + Sync>;

/// Start a program once the gate lets it. Never fails: a program that cannot
/// be started gets the outcome `spawn-failed`.
pub fn spawn(spec: SpawnSpec, gate: Gate, on_phase: PhaseHook) -> Arc<ProcessShared> {
    let shared = Arc::new(ProcessShared {
        pid: std::sync::OnceLock::new(),
        outcome: watch::channel(None).0,
        stdout: Mutex::new(Capture::new(spec.capture.clone())),
        stderr: Mutex::new(Capture::new(spec.capture.clone())),
        stop: Mutex::new(None),
        stop_notify: Notify::new(),
    });
    let s = shared.clone();
    tokio::spawn(async move {
        let outcome = run(spec, gate, &s, &on_phase).await;
        s.outcome.send_replace(Some(outcome));
        on_phase(Phase::Ended);
    });
    shared
}

/// Programs of this process waiting for a slot, and holding their slots
/// (starting, running, being stopped): for a job service's metrics.
static WAITING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static RUNNING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts one program in a counter while it lives.
struct Counted(&'static std::sync::atomic::AtomicU64);

impl Counted {
    fn new(c: &'static std::sync::atomic::AtomicU64) -> Counted {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Counted(c)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Native programs of every host in this process: running (holding their
/// slots) and waiting in the queue for one.
pub fn program_counts() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (RUNNING.load(Relaxed), WAITING.load(Relaxed))
}

async fn run(
    spec: SpawnSpec,
    gate: Gate,
    shared: &Arc<ProcessShared>,
    on_phase: &PhaseHook,
) -> Outcome {
    // Slots first: a stop while queued ends the program before it starts.
    let mut permits = Vec::with_capacity(gate.limits.len());
    for limit in &gate.limits {
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let _waiting = Counted::new(&WAITING);
                on_phase(Phase::Queued);
                tokio::select! {
                    p = limit.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return Outcome::SpawnFailed("the host is shutting down".into()),
                    },
                    _ = wait_stop(shared) => return Outcome::Cancelled,
                }
            }
        };
        permits.push(permit);
    }
    let _running = Counted::new(&RUNNING);
    let Started {
        mut child,
        stdout,
        stderr,
    } = match start(&spec).await {
        Ok(started) => started,
        Err(why) => return Outcome::SpawnFailed(why),
    };
    if let Some(pid) = child.id() {
        let _ = shared.pid.set(pid);
    }
    on_phase(Phase::Running);
    let splitter = |stderr| {
        spec.on_line.clone().map(|sink| LineSplitter {
            sink,
            stderr,
            line: Vec::new(),
            overlong: false,
        })
    };
    let drain = |stderr| {
        let log = if stderr {
            &spec.stderr_log
        } else {
            &spec.stdout_log
        };
        Drain::new(
            LazyLog::new(log.clone()),
            shared.clone(),
            stderr,
            splitter(stderr),
            spec.on_warning.clone(),
        )
    };
    let mut out = Some((stdout, drain(false)));
    let mut err = Some((stderr, drain(true)));
    // The output pipes are registered with the runtime only if the program
    // is still running after QUIET_START; a program that ends sooner (most
    // of them, in a pipeline of short steps) is read once, after its end.
    // That saves, per program, registering and deregistering two pipes and
    // the wake-ups their hang-ups cause on top of the exit's. A program
    // that fills a pipe sooner waits for it, once, at most that long.
    let quiet = tokio::time::sleep(QUIET_START);
    tokio::pin!(quiet);
    let mut drains = None;
    let mut drained = false;
    let outcome = {
        let supervised = supervise(&mut child, shared, spec.timeout, spec.grace);
        tokio::pin!(supervised);
        loop {
            tokio::select! {
                outcome = &mut supervised => break outcome,
                () = &mut quiet, if drains.is_none() => {
                    drains = Some(Box::pin(registered(out.take(), err.take())));
                }
                () = async {
                    match drains.as_mut() {
                        Some(drains) => drains.await,
                        None => std::future::pending().await,
                    }
                }, if drains.is_some() && !drained => drained = true,
            }
        }
    };
    // The program is gone: its slots go to the next in the queue.
    drop(permits);
    if drains.is_none() {
        // What it wrote is in the pipes; their ends have come too, unless
        // something outside its group holds a write end (below).
        for stream in [&mut out, &mut err] {
            let ended = stream.as_mut().is_some_and(|(fd, drain)| {
                // A pipe that cannot be read has ended too.
                !matches!(drain.read_now(fd.as_fd()), Ok(false))
            });
            if let Some((_, drain)) = stream.take_if(|_| ended) {
                drain.finish();
            }
        }
        if out.is_some() || err.is_some() {
            drains = Some(Box::pin(registered(out.take(), err.take())));
        } else {
            drained = true;
        }
    }
    // Pipes close when the last holder exits; the group was killed, so
    // this is quick. A holder outside the group (a setsid escapee) keeps
    // them open until the job's end kills it: the drains go on in the
    // background, and the outcome does not wait for them.
    if let (false, Some(mut drains)) = (drained, drains)
        && tokio::time::timeout(DRAIN_AFTER_EXIT, &mut drains)
            .await
            .is_err()
    {
        tokio::spawn(drains);
    }
    if matches!(spec.confine, Some(Confined::Helper { .. })) {
        helper_failure(shared, outcome)
    } else {
        outcome
    }
}

/// Open stdin and start the program: launched confined, through the
/// helper, or unconfined.
async fn start(spec: &SpawnSpec) -> Result<Started, String> {
    let stdin = match &spec.stdin {
        Some(file) => Some(
            file.try_clone()
                .map_err(|e| format!("cannot hand the stdin file over: {e}"))?,
        ),
        None => None,
    };
    if let Some(Confined::Launcher(launcher)) = &spec.confine {
        return launch(launcher, spec, stdin);
    }
    // A missing or non-executable program is told apart here, clearly,
    // rather than from the helper's exit status.
    check_executable(&spec.program)?;
    let mut cmd = match &spec.confine {
        // The helper's command has a cleared environment already.
        Some(Confined::Helper { helper, policy }) => tokio::process::Command::from(
            // The helper joins the cgroups before it execs: nothing
            // escapes in between.
            kiln_confine::command(
                helper,
                policy,
                spec.cgroups.as_deref().map(std::ffi::OsStr::new),
                &spec.program,
            )
            .map_err(|e| format!("failed to prepare confinement: {e}"))?,
        ),
        Some(Confined::Launcher(_)) | None => {
            let mut c = tokio::process::Command::new(&spec.program);
            c.env_clear();
            c
        }
    };
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(spec.cwd.path())
        .stdin(stdin.map_or_else(Stdio::null, Stdio::from))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| spawn_error_text(&spec.program, &e))?;
    if let (true, Some(cgroups), Some(pid)) = (spec.adopt_after_spawn, &spec.cgroups, child.id()) {
        // Moved right after it started: a child it forks within those
        // microseconds stays outside (still confined, and in its group).
        for dir in std::env::split_paths(cgroups) {
            let _ = std::fs::write(dir.join("cgroup.procs"), pid.to_string());
        }
    }
    Started::spawned(child).map_err(|e| format!("failed to set up the program's output: {e}"))
}

/// Launch the program confined from this thread (see
/// `kiln_confine::Launcher`), in the job's cgroups before it execs.
fn launch(
    launcher: &kiln_confine::Launcher,
    spec: &SpawnSpec,
    stdin: Option<std::fs::File>,
) -> Result<Started, String> {
    use std::ffi::CString;
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;
    let nul = |what: &str| format!("{what} contains a NUL byte");
    let c = |bytes: &[u8], what: &str| CString::new(bytes).map_err(|_| nul(what));
    let program = c(spec.program.as_os_str().as_bytes(), "the program path")?;
    let mut args = Vec::with_capacity(spec.args.len() + 1);
    args.push(program.clone());
    for a in &spec.args {
        args.push(c(a.as_bytes(), "an argument")?);
    }
    let env = spec
        .env
        .iter()
        .map(|(k, v)| c(format!("{k}={v}").as_bytes(), "an environment variable"))
        .collect::<Result<Vec<_>, _>>()?;
    let cwd = c(
        spec.cwd.path().as_os_str().as_bytes(),
        "the working directory",
    )?;
    let io = |e: std::io::Error| format!("failed to set up the program's output: {e}");
    let (out_read, out_write) = child::pipe().map_err(io)?;
    let (err_read, err_write) = child::pipe().map_err(io)?;
    let null = dev_null().map_err(|e| format!("cannot open /dev/null: {e}"))?;
    let stdin = stdin.as_ref().map_or(null.as_fd(), |f| f.as_fd());
    let handles = spec.cgroup_handles.as_deref();
    let join: Vec<_> = handles
        .and_then(|h| h.v1_tasks.as_ref())
        .map(|f| f.as_fd())
        .into_iter()
        .collect();
    let launched = launcher
        .launch(&kiln_confine::Launch {
            program: &program,
            args: &args,
            env: &env,
            cwd: &cwd,
            stdin,
            stdout: out_write.as_fd(),
            stderr: err_write.as_fd(),
            process_group: true,
            cgroup: handles.and_then(|h| h.v2_dir.as_ref()).map(|f| f.as_fd()),
            join: &join,
        })
        .map_err(|e| {
            if e.exec_failed() {
                // Which of missing, not a file, not executable.
                check_executable(&spec.program)
                    .err()
                    .unwrap_or_else(|| spawn_error_text(&spec.program, &e.source))
            } else {
                format!("{}: {e}", spec.program.display())
            }
        })?;
    // The program has its own copies; the pipes end when it is done.
    drop((out_write, err_write));
    Ok(Started {
        child: Child::Launched(LaunchedChild::new(launched).map_err(io)?),
        stdout: child::nonblocking(out_read).map_err(io)?,
        stderr: child::nonblocking(err_read).map_err(io)?,
    })
}

/// One descriptor of /dev/null for every program's stdin: reading it has
/// no position to share.
fn dev_null() -> std::io::Result<&'static std::fs::File> {
    static NULL: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    if let Some(f) = NULL.get() {
        return Ok(f);
    }
    let f = std::fs::File::open("/dev/null")?;
    Ok(NULL.get_or_init(|| f))
}

/// Mark every descriptor above 2 close-on-exec. Descriptors the host was
/// started with (a jobserver pipe, a shell's stray fd) would otherwise leak
/// into every program, because spawning keeps inherited descriptors that
/// lack the flag; everything Rust opens has it already.
pub fn close_inherited_fds_on_exec() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD only change the descriptor's flags; a
        // descriptor closed meanwhile (the directory listing's own) makes
        // them fail with EBADF, which is harmless.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// The soft limit on open files this process started with, before
/// [`raise_open_file_limit`]; programs are given it back.
static ORIGINAL_OPEN_FILES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Raise this process's soft limit on open files to its hard limit, once:
/// the host holds every live job's directory open. Programs get the
/// original limit back (see [`original_open_files`]), as some close every
/// descriptor up to it.
pub fn raise_open_file_limit() {
    ORIGINAL_OPEN_FILES.get_or_init(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit with a valid struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return 1024;
            }
            let original = lim.rlim_cur;
            if lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            original
        }
    });
}

/// The soft limit on open files the host started with, for its programs.
pub fn original_open_files() -> Option<u64> {
    ORIGINAL_OPEN_FILES.get().copied()
}

/// The helper exits 126 (confinement failed) or 127 (exec failed) with a
/// last stderr line of its own; then the program never ran.
fn helper_failure(shared: &ProcessShared, outcome: Outcome) -> Outcome {
    if !matches!(outcome, Outcome::Exited(126 | 127)) {
        return outcome;
    }
    let stderr = shared.captured(true);
    let text = String::from_utf8_lossy(&stderr.data);
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) if line.starts_with(kiln_confine::STDERR_PREFIX) => {
            Outcome::SpawnFailed(line.to_string())
        }
        _ => outcome,
    }
}

fn check_executable(program: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(program) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{} does not exist", program.display()))
        }
        Err(e) => Err(format!("{}: {e}", program.display())),
        Ok(m) if !m.is_file() => Err(format!("{} is not a file", program.display())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err(format!(
            "{} is not executable (permission denied)",
            program.display()
        )),
        Ok(_) => Ok(()),
    }
}

fn spawn_error_text(program: &std::path::Path, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => format!("{} does not exist", program.display()),
        std::io::ErrorKind::PermissionDenied => {
            format!(
                "{} is not executable (permission denied)",
                program.display()
            )
        }
        _ => format!("{}: {e}", program.display()),
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind, not
    // a broken invariant; carry on rather than cascade the panic.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(dir: &std::path::Path, name: &str) -> LogFile {
        LogFile {
            dir: Arc::new(DirHandle::open(dir).unwrap()),
            name: name.into(),
        }
    }

    fn sh(dir: &std::path::Path, script: &str) -> SpawnSpec {
        sh_capped(dir, script, 1 << 20)
    }

    fn sh_capped(dir: &std::path::Path, script: &str, capture: usize) -> SpawnSpec {
        SpawnSpec {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            env: Vec::new(),
            cwd: WorkingDir::Path(dir.to_path_buf()),
            stdin: None,
            stdout_log: log(dir, "log.txt"),
            stderr_log: log(dir, "log_err.txt"),
            timeout: Some(Duration::from_secs(30)),
            capture: CaptureBudget::new(capture),
            grace: Duration::from_secs(1),
            confine: None,
            cgroups: None,
            cgroup_handles: None,
            adopt_after_spawn: false,
            on_line: None,
            on_warning: None,
        }
    }

    /// Assert that the log at `path` holds `seq 1 n`, whole and in order;
    /// returns that text.
    fn assert_log_counts_to(path: &std::path::Path, n: u32) -> String {
        let expected: String = (1..=n).map(|i| format!("{i}\n")).collect();
        let log = std::fs::read_to_string(path).unwrap();
        assert!(
            log == expected,
            "{}: {} bytes, not {}",
            path.display(),
            log.len(),
            expected.len()
        );
        expected
    }

    #[tokio::test]
    async fn a_log_file_appears_with_the_first_output_on_its_stream() {
        let tmp = tempfile::tempdir().unwrap();
        let quiet = spawn(sh(tmp.path(), "exit 0"), Gate::default(), Box::new(|_| {}));
        assert_eq!(quiet.wait().await, Outcome::Exited(0));
        assert!(!tmp.path().join("log.txt").exists());
        assert!(!tmp.path().join("log_err.txt").exists());

        let p = spawn(
            sh(tmp.path(), "echo oops >&2"),
            Gate::default(),
            Box::new(|_| {}),
        );
        assert_eq!(p.wait().await, Outcome::Exited(0));
        assert!(!tmp.path().join("log.txt").exists());
        assert_eq!(
            std::fs::read(tmp.path().join("log_err.txt")).unwrap(),
            b"oops\n"
        );
        assert_eq!(p.captured(true).data, b"oops\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn output_written_just_before_the_exit_is_never_lost() {
        // The data and the hang-up reach the host together; the end must
        // never be taken for an empty pipe while output is waiting in it.
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..200 {
            let mut spec = sh(tmp.path(), &format!("echo out{i}; echo err{i} >&2"));
            spec.stdout_log = log(tmp.path(), &format!("log_{i}.txt"));
            spec.stderr_log = log(tmp.path(), &format!("log_err_{i}.txt"));
            let p = spawn(spec, Gate::default(), Box::new(|_| {}));
            assert_eq!(p.wait().await, Outcome::Exited(0));
            assert_eq!(p.captured(false).data, format!("out{i}\n").as_bytes());
            assert_eq!(p.captured(true).data, format!("err{i}\n").as_bytes());
            let log = std::fs::read(tmp.path().join(format!("log_{i}.txt"))).unwrap();
            assert_eq!(log, format!("out{i}\n").as_bytes());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn output_beyond_what_a_pipe_holds_at_the_start_is_all_kept() {
        // Both pipes fill long before they are watched (QUIET_START): the
        // program waits, then everything reaches the logs and the capture.
        let tmp = tempfile::tempdir().unwrap();
        let script =
            "head -c 300000 /dev/zero | tr '\\0' a; head -c 300000 /dev/zero | tr '\\0' b >&2";
        let p = spawn(sh(tmp.path(), script), Gate::default(), Box::new(|_| {}));
        assert_eq!(p.wait().await, Outcome::Exited(0));
        let out = std::fs::read(tmp.path().join("log.txt")).unwrap();
        let err = std::fs::read(tmp.path().join("log_err.txt")).unwrap();
        assert!(out.len() == 300_000 && out.iter().all(|&b| b == b'a'));
        assert!(err.len() == 300_000 && err.iter().all(|&b| b == b'b'));
        assert_eq!(p.captured(false).data, out);
        assert_eq!(p.captured(true).data, err);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn output_past_the_capture_cap_reaches_the_log_whole_and_in_order() {
        // Past the cap the rest is relayed from the pipe into the file.
        let tmp = tempfile::tempdir().unwrap();
        let spec = sh_capped(tmp.path(), "seq 1 300000; echo end >&2", 4096);
        let p = spawn(spec, Gate::default(), Box::new(|_| {}));
        assert_eq!(p.wait().await, Outcome::Exited(0));
        let expected = assert_log_counts_to(&tmp.path().join("log.txt"), 300_000);
        let captured = p.captured(false);
        assert!(captured.truncated);
        assert!(captured.data.starts_with(&expected.as_bytes()[..4096]));
        // The cap is the job's, both streams': stdout took all of it.
        assert!(p.captured(true).truncated);
        assert_eq!(
            std::fs::read(tmp.path().join("log_err.txt")).unwrap(),
            b"end\n"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_capture_cap_the_log_keeps_up_while_the_program_pauses() {
        // Everything the program wrote before a pause is in the log during
        // the pause, not only once it writes again or ends.
        // Whether the last output waits on a busy writer is up to timing:
        // several runs make a lag show.
        for _ in 0..5 {
            let tmp = tempfile::tempdir().unwrap();
            let spec = sh_capped(
                tmp.path(),
                "seq 1 500000; echo paused; while [ ! -e go ]; do sleep 0.01; done",
                4096,
            );
            let p = spawn(spec, Gate::default(), Box::new(|_| {}));
            let log = tmp.path().join("log.txt");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !std::fs::read(&log).is_ok_and(|l| l.ends_with(b"500000\npaused\n")) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "log.txt lags: {:?} bytes",
                    std::fs::metadata(&log).map(|m| m.len())
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            std::fs::write(tmp.path().join("go"), b"").unwrap();
            assert_eq!(p.wait().await, Outcome::Exited(0));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_listener_arriving_past_the_capture_cap_gets_lines_and_the_log_stays_whole() {
        // Past the cap, with nobody listening, the output is relayed into
        // the log; a listener arriving then gets lines again, and the log
        // has everything once, in order, relayed and read alike.
        let tmp = tempfile::tempdir().unwrap();
        let wanted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let (w, l) = (wanted.clone(), lines.clone());
        let mut spec = sh_capped(
            tmp.path(),
            "seq 1 200000; : > relayed; while [ ! -e go ]; do sleep 0.01; done; seq 200001 400000",
            4096,
        );
        spec.on_line = Some(LineSink {
            wanted: Arc::new(move || w.load(std::sync::atomic::Ordering::SeqCst)),
            line: Arc::new(move |_, line: &str| lock(&l).push(line.to_string())),
        });
        let p = spawn(spec, Gate::default(), Box::new(|_| {}));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !tmp.path().join("relayed").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the program never got on"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        wanted.store(true, std::sync::atomic::Ordering::SeqCst);
        std::fs::write(tmp.path().join("go"), b"").unwrap();
        assert_eq!(p.wait().await, Outcome::Exited(0));
        assert_log_counts_to(&tmp.path().join("log.txt"), 400_000);
        let lines = lock(&lines).clone();
        // The first chunk after the listener came may have been relayed
        // already, and its first line cut: the rest must be there, whole.
        assert_eq!(lines.last().map(String::as_str), Some("400000"));
        let whole: Vec<u32> = lines[1..].iter().map(|l| l.parse().unwrap()).collect();
        assert!(whole.windows(2).all(|w| w[1] == w[0] + 1), "lines skip");
        assert!(whole[0] > 200_000, "lines from before the listener came");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn output_of_an_escapee_after_the_program_ended_still_reaches_the_log() {
        // The program ends at once, read without its pipes ever watched;
        // a process outside its group still holds stdout, so that pipe is
        // watched from then on.
        let tmp = tempfile::tempdir().unwrap();
        // It waits until the escapee has left its group (which is killed
        // at its end), then ends.
        let script = "setsid sh -c ': > left; sleep 0.3; echo late' & \
                      while [ ! -e left ]; do :; done; echo early";
        let p = spawn(sh(tmp.path(), script), Gate::default(), Box::new(|_| {}));
        assert_eq!(p.wait().await, Outcome::Exited(0));
        assert!(p.captured(false).data.starts_with(b"early\n"));
        let log = tmp.path().join("log.txt");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read(&log).unwrap() != b"early\nlate\n" {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                std::fs::read_to_string(&log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(p.captured(false).data, b"early\nlate\n");
    }

    #[tokio::test]
    async fn a_log_that_cannot_be_created_is_reported_and_the_output_kept_in_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
        let w = warnings.clone();
        let mut spec = sh(tmp.path(), "echo one; echo two");
        std::fs::create_dir(tmp.path().join("log.txt")).unwrap();
        spec.on_warning = Some(Arc::new(move |m: &str| lock(&w).push(m.to_string())));
        let p = spawn(spec, Gate::default(), Box::new(|_| {}));
        assert_eq!(p.wait().await, Outcome::Exited(0));
        assert_eq!(p.captured(false).data, b"one\ntwo\n");
        let warnings = lock(&warnings).clone();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("cannot create") && warnings[0].contains("log.txt"),
            "{warnings:?}"
        );
    }
}
