//! The seam between the host and whatever runs native programs: an
//! [`Executor`] opens an [`ExecSession`] for each attempt of a job, with the
//! [`Sandbox`] its programs run in; the session spawns [`ProgramRequest`]s
//! and, when the attempt ends, stops whatever they left running.
//!
//! A request is plain data: a program path, arguments, environment, where
//! its output goes. Neither the executor nor the session sees a job, a
//! plugin or wasmtime; the host has already checked the request against
//! the job's grants. [`LocalExecutor`] runs programs on this machine,
//! confined and in per-session cgroups; an executor for a batch system
//! (Slurm) or a recording wrapper for tests implements the same traits.

use crate::cgroup::{CgroupRoot, JobCgroup};
use crate::confinement::{Confined, Confinement, SessionConfinement};
use crate::{
    CaptureBudget, Gate, LineSink, LogFile, PhaseHook, ProcessShared, SpawnSpec, WarningSink,
    WorkingDir, lock,
};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the programs of one session may touch: directories beyond the
/// system's and their own install prefix, the network, resource limits.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    pub read_only: Vec<PathBuf>,
    pub read_write: Vec<PathBuf>,
    pub network: bool,
    /// Refuse to run a program that cannot be fully confined.
    pub require_confinement: bool,
    /// rlimits of each program (`open_files` unset: what the host started
    /// with).
    pub rlimits: kiln_confine::Rlimits,
    /// Processes all of the session's programs may have at once (a pids
    /// cgroup, where one can be written).
    pub max_processes: Option<u64>,
}

/// One program to run.
pub struct ProgramRequest {
    pub program: PathBuf,
    /// Arguments after the program path.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: WorkingDir,
    /// The open file fed to stdin; `None` is /dev/null.
    pub stdin: Option<Arc<std::fs::File>>,
    /// Created (or appended to) with the stream's first byte.
    pub stdout_log: LogFile,
    pub stderr_log: LogFile,
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// What both streams may keep in memory, shared with other programs.
    pub capture: Arc<CaptureBudget>,
    /// Slots to get before it starts.
    pub gate: Gate,
    /// Receives each line of output as it is produced.
    pub on_line: Option<LineSink>,
    /// Receives warnings nobody else would see (a log file that cannot be
    /// written, confinement that is incomplete).
    pub on_warning: Option<WarningSink>,
    /// Called on every phase change (queued, running, ended).
    pub on_phase: Option<PhaseHook>,
}

/// Why a program was not started.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Policy forbids it here (confinement required but incomplete).
    #[error("{0}")]
    Refused(String),
    /// The executor could not do what was asked.
    #[error("{0}")]
    Failed(String),
}

/// Runs native programs on the host's behalf.
pub trait Executor: Send + Sync {
    /// Open a session: `name` names it (a job id) for the executor's own
    /// bookkeeping (a cgroup); every program spawned in it runs under
    /// `sandbox`.
    fn open(&self, name: &str, sandbox: Sandbox) -> Result<Arc<dyn ExecSession>, ExecError>;
}

/// The programs of one attempt of one job.
pub trait ExecSession: Send + Sync {
    /// Start a program; its outcome, output and stop are on the returned
    /// handle. A program that fails to start once admitted has the outcome
    /// `spawn-failed`.
    fn spawn(&self, request: ProgramRequest) -> Result<Arc<ProcessShared>, ExecError>;
    /// Stop every program still running, and whatever they started, and
    /// wait for them. No program is spawned in the session afterwards.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// How a [`LocalExecutor`] is set up.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The confinement helper; `None` runs programs unconfined.
    pub confine_helper: Option<PathBuf>,
    /// Refuse to run any program that cannot be fully confined.
    pub require_confinement: bool,
    /// Launch confined programs directly where the kernel and the policy
    /// allow (see `kiln_confine::Launcher`); off, every confined program
    /// goes through the helper, at the cost of an extra exec.
    pub launch_directly: bool,
}

/// Runs programs on this machine: confined (Landlock, rlimits, an empty
/// network namespace), each session's in cgroups of its own so that
/// whatever they start dies with the session.
#[derive(Clone)]
pub struct LocalExecutor {
    inner: Arc<LocalInner>,
}

struct LocalInner {
    confinement: Confinement,
    cgroups: Option<CgroupRoot>,
}

impl LocalExecutor {
    /// Must be called within a tokio runtime.
    pub fn new(config: LocalConfig) -> LocalExecutor {
        crate::close_inherited_fds_on_exec();
        // The host holds every live job's directory open.
        crate::raise_open_file_limit();
        LocalExecutor {
            inner: Arc::new(LocalInner {
                confinement: Confinement::new(
                    config.confine_helper,
                    config.require_confinement,
                    config.launch_directly,
                ),
                cgroups: CgroupRoot::create(),
            }),
        }
    }
}

impl Executor for LocalExecutor {
    fn open(&self, name: &str, sandbox: Sandbox) -> Result<Arc<dyn ExecSession>, ExecError> {
        Ok(Arc::new(LocalSession {
            executor: self.inner.clone(),
            name: name.to_string(),
            sandbox,
            confinement: SessionConfinement::default(),
            cgroup: Mutex::new(None),
            processes: Mutex::new(Vec::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
        }))
    }
}

/// The programs of one session on this machine.
struct LocalSession {
    executor: Arc<LocalInner>,
    name: String,
    sandbox: Sandbox,
    confinement: SessionConfinement,
    /// Made when the first program starts.
    cgroup: Mutex<Option<JobCgroup>>,
    /// Programs still running when last looked at.
    processes: Mutex<Vec<Arc<ProcessShared>>>,
    closed: std::sync::atomic::AtomicBool,
}

impl LocalSession {
    /// Run `f` with the session's cgroups, made on first use; `None`
    /// without cgroup support.
    fn with_cgroup<R>(&self, f: impl FnOnce(&JobCgroup) -> R) -> Option<R> {
        let mut slot = lock(&self.cgroup);
        if slot.is_none() {
            *slot = self
                .executor
                .cgroups
                .as_ref()
                .map(|r| r.job(&self.name, self.sandbox.max_processes));
        }
        slot.as_ref().map(f)
    }
}

impl ExecSession for LocalSession {
    fn spawn(&self, request: ProgramRequest) -> Result<Arc<ProcessShared>, ExecError> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ExecError::Failed(
                "the job's programs are being stopped".into(),
            ));
        }
        // Confinement says its warnings as `tracing` records itself; the
        // request's sink hears them too.
        let warn = |m: &str| {
            if let Some(sink) = &request.on_warning {
                sink(m)
            }
        };
        let confine = self
            .executor
            .confinement
            .confine(&self.confinement, &self.sandbox, &request.program, &warn)
            .map_err(ExecError::Refused)?;
        // The helper joins the cgroups by name; a launched program through
        // open handles.
        let (cgroups, cgroup_handles) = self
            .with_cgroup(|cg| match &confine {
                Some(Confined::Launcher(_)) => (None, Some(cg.handles())),
                _ => (cg.join_list(), None),
            })
            .unwrap_or_default();
        let spec = SpawnSpec {
            program: request.program,
            args: request.args,
            env: request.env,
            cwd: request.cwd,
            stdin: request.stdin,
            stdout_log: request.stdout_log,
            stderr_log: request.stderr_log,
            timeout: request.timeout,
            capture: request.capture,
            grace: request.grace,
            // Launched and helper-run programs join before they exec.
            adopt_after_spawn: confine.is_none(),
            cgroups,
            cgroup_handles,
            confine,
            on_line: request.on_line,
            on_warning: request.on_warning,
        };
        let on_phase = request.on_phase.unwrap_or_else(|| Box::new(|_| {}));
        let process = crate::spawn(spec, request.gate, on_phase);
        // Only programs still running matter at the end; ended ones (and
        // their captured output) live on in their handles alone.
        let mut processes = lock(&self.processes);
        processes.retain(|p| p.try_outcome().is_none());
        processes.push(process.clone());
        Ok(process)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
            let processes = std::mem::take(&mut *lock(&self.processes));
            for p in &processes {
                if p.try_outcome().is_none() {
                    p.cancel();
                }
            }
            for p in &processes {
                p.wait().await;
            }
            // No more programs: the launchers' rulesets close.
            self.confinement.close();
            // Whatever the programs left behind (double-forked or setsid
            // escapees included) dies with the session.
            let cgroup = lock(&self.cgroup).take();
            if let Some(cgroup) = cgroup {
                // The host itself never, should it be a member.
                cgroup.kill_all(&[std::process::id() as i32]).await;
            }
        })
    }
}
