//! The host: the engine, the task catalog, the program registry, the stage
//! and the event bus, shared by every job; and the API to run a task.

use crate::catalog::{Catalog, CatalogError, TaskInfo, TaskRef};
use crate::engine::{LoadError, PluginEngine};
use crate::lock;
use kiln_exec::{Executor, LocalConfig, LocalExecutor, Registry};
use kiln_fs::DirHandle;
use kiln_jobs::events::{Event, EventBus, EventKind};
use kiln_jobs::grants::Grants;
use kiln_jobs::store::{JobStore, StoredJob};
use kiln_jobs::{self as job, FinishStatus, Job, JobResult, JobState};
use kiln_stage::{SimulatedStage, Stage};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use tokio_util::sync::CancellationToken;

/// How to build a [`Host`].
pub struct HostConfig {
    /// Where job directories are created.
    pub jobs_dir: PathBuf,
    pub registry: Registry,
    /// Compiled components are kept here between runs; `None` disables the
    /// on-disk cache.
    pub cache_dir: Option<PathBuf>,
    /// The stage serving the axes interface.
    pub stage: Arc<dyn Stage>,
    /// What runs native programs; `None` runs them on this machine as
    /// `local` says.
    pub executor: Option<Arc<dyn Executor>>,
    /// The local executor's settings (confinement helper, whether
    /// confinement is required, direct launches), when `executor` is `None`.
    pub local: LocalConfig,
    /// The host's records of jobs; `None` keeps them in the jobs
    /// directory's `.kiln/` (see [`kiln_jobs::DirStore`]).
    pub store: Option<Arc<dyn JobStore>>,
    /// Native programs running at once across every job (CCP4i2's
    /// maxRunningProcesses); more wait in a FIFO queue.
    pub max_running_processes: usize,
    /// Reuse a finished sub-job with the same fingerprint instead of
    /// running it again (see [`kiln_jobs::resume`]); off is `--fresh`.
    pub resume: bool,
    /// The plugin instances the pooling allocator holds at once; more are
    /// allocated on demand (see [`crate::stats::RuntimeStats`]).
    pub instance_pool: crate::engine::InstancePool,
}

impl HostConfig {
    pub fn new(jobs_dir: impl Into<PathBuf>, registry: Registry) -> HostConfig {
        HostConfig {
            jobs_dir: jobs_dir.into(),
            registry,
            cache_dir: default_cache_dir(),
            stage: Arc::new(SimulatedStage::default_stage()),
            executor: None,
            local: LocalConfig {
                confine_helper: find_helper(),
                require_confinement: false,
                launch_directly: true,
            },
            store: None,
            max_running_processes: 4,
            resume: true,
            instance_pool: crate::engine::InstancePool::default(),
        }
    }
}

/// Where to find the confinement helper: `$KILN_CONFINE_HELPER`, else
/// `kiln-confine` beside the running executable, else where the build put
/// it.
pub fn find_helper() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KILN_CONFINE_HELPER") {
        return Some(PathBuf::from(p));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("kiln-confine")));
    if let Some(p) = beside.filter(|p| p.is_file()) {
        return Some(p);
    }
    let built = PathBuf::from(env!("KILN_CONFINE_BUILT"));
    built.is_file().then_some(built)
}

/// `$KILN_CACHE_DIR`, else `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("KILN_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("kiln"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("kiln"))
}

/// What every job shares.
pub(crate) struct HostShared {
    pub engine: Arc<PluginEngine>,
    pub catalog: Catalog,
    /// What a program request is checked against and queued for.
    pub programs: Programs,
    pub stage: Arc<dyn Stage>,
    pub executor: Arc<dyn Executor>,
    pub events: EventBus,
    pub jobs_dir: PathBuf,
    /// The jobs directory, held, with the host's records; made with the
    /// first job.
    jobs: std::sync::OnceLock<Arc<JobsState>>,
    /// A store given in the configuration, used instead of the jobs
    /// directory's own.
    configured_store: Option<Arc<dyn JobStore>>,
    /// Every job started and not yet dropped, by id.
    live: Mutex<LiveJobs>,
    /// Reuse finished steps ([`HostConfig::resume`]).
    pub resume: bool,
    /// Cancelling this cancels every job.
    pub shutdown: CancellationToken,
}

/// The jobs a host has started, by id, held weakly.
#[derive(Default)]
pub(crate) struct LiveJobs {
    jobs: HashMap<String, Weak<Job>>,
    /// Its size after the last pruning of dropped jobs.
    pruned_at: usize,
}

/// The programs jobs may run, and the host-wide limit on how many run at
/// once.
pub(crate) struct Programs {
    pub registry: Registry,
    /// Slots for native programs running at once, host-wide.
    pub slots: Arc<tokio::sync::Semaphore>,
}

/// The jobs directory, held, and the host's records of its jobs.
pub(crate) struct JobsState {
    pub root: DirHandle,
    pub store: Arc<dyn JobStore>,
}

impl JobsState {
    fn open(
        jobs_dir: &std::path::Path,
        configured: Option<&Arc<dyn JobStore>>,
    ) -> Result<JobsState, job::JobDirError> {
        let root = job::open_jobs_dir(jobs_dir)?;
        let store: Arc<dyn JobStore> = match configured {
            Some(store) => store.clone(),
            None => Arc::new(
                job::DirStore::open(&root).map_err(|source| job::JobDirError {
                    parent: jobs_dir.display().to_string(),
                    source,
                })?,
            ),
        };
        Ok(JobsState { store, root })
    }
}

impl HostShared {
    /// The jobs directory and the host's records, opened (and made) on
    /// first use.
    pub(crate) fn jobs(&self) -> Result<&Arc<JobsState>, job::JobDirError> {
        if let Some(j) = self.jobs.get() {
            return Ok(j);
        }
        let opened = Arc::new(JobsState::open(
            &self.jobs_dir,
            self.configured_store.as_ref(),
        )?);
        Ok(self.jobs.get_or_init(|| opened))
    }

    /// Note a job that starts, for [`Host::job`] and [`Host::jobs`].
    pub(crate) fn add_live(&self, job: &Arc<Job>) {
        let mut live = lock(&self.live);
        // Pruned when it has doubled since the last pruning, not on every
        // start: a host starting thousands of jobs would otherwise walk
        // them all each time.
        if live.jobs.len() >= live.pruned_at * 2 {
            live.jobs.retain(|_, j| j.strong_count() > 0);
            live.pruned_at = live.jobs.len().max(64);
        }
        live.jobs.insert(job.id.clone(), Arc::downgrade(job));
    }

    /// See [`EventBus::warn`].
    pub(crate) fn warn(&self, job: &Job, message: String) {
        self.events.warn(job, message);
    }

    pub(crate) fn publish(&self, job: &Job, kind: EventKind) {
        self.events.publish_job(job, kind);
    }

    pub(crate) fn publish_state(&self, job: &Job) {
        self.events.publish_state(job);
    }

    pub(crate) fn publish_finished(&self, job: &Job, status: FinishStatus, reason: Option<String>) {
        self.publish(job, EventKind::Finished { status, reason });
    }
}

/// A run to start.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub task: TaskRef,
    /// `NAME=VALUE` pairs: a dotted path or a bare item name, and its value
    /// as text (a path for files).
    pub params: Vec<(String, String)>,
    /// The operator's grants; `None` grants what the task and its sub-tasks
    /// request.
    pub grants: Option<Grants>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("parameter {name}: {detail}")]
    Param { name: String, detail: String },
    #[error("{}", invalid_text(.0))]
    Invalid(Vec<kiln_container::Report>),
    #[error(transparent)]
    JobDir(#[from] job::JobDirError),
    #[error(
        "write_dirs `{dir}` {relation} the jobs directory {jobs}: programs could rewrite other jobs' files and Kiln's own records; grant another directory"
    )]
    WritesJobsDir {
        dir: String,
        relation: &'static str,
        jobs: String,
    },
}

/// Why a host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostStartError {
    #[error(transparent)]
    Engine(#[from] LoadError),
    #[error(transparent)]
    JobsDir(#[from] job::JobDirError),
}

fn invalid_text(reports: &[kiln_container::Report]) -> String {
    let mut text = String::from("the parameters are not valid; nothing was run:");
    for line in job::validation::report_lines(reports) {
        text.push_str("\n  ");
        text.push_str(&line);
    }
    text
}

/// What kind of error a caller has: to choose an exit status now, an HTTP
/// status next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was wrong (an unknown task, a bad parameter, a grant
    /// that is refused): the caller should change it.
    BadRequest,
    /// The task's component could not be loaded or described.
    BadTask,
    /// The host could not do its part (its jobs directory, its engine).
    Host,
}

impl RunError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RunError::Catalog(e) => e.kind(),
            RunError::Param { .. } | RunError::Invalid(_) | RunError::WritesJobsDir { .. } => {
                ErrorKind::BadRequest
            }
            RunError::JobDir(_) => ErrorKind::Host,
        }
    }
}

impl CatalogError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CatalogError::UnknownTask { .. } | CatalogError::Read { .. } => ErrorKind::BadRequest,
            CatalogError::Load(LoadError::Engine(_)) => ErrorKind::Host,
            CatalogError::Load(_)
            | CatalogError::Describe { .. }
            | CatalogError::BadDescription { .. } => ErrorKind::BadTask,
        }
    }
}

/// The end of a job and its sub-jobs, as reported to users.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub job_id: String,
    pub task: String,
    pub status: FinishStatus,
    pub state: JobState,
    pub reason: Option<String>,
    pub job_dir: PathBuf,
    /// outputData of the job's container.
    pub outputs: serde_json::Value,
    pub elapsed_seconds: Option<f64>,
    /// Times the job ran: more than 1 after retries, 0 when reused.
    pub attempts: u32,
    /// The finished job whose results were reused instead of running.
    pub reused_from: Option<String>,
    pub sub_jobs: Vec<JobReport>,
}

impl JobReport {
    fn of(job: &Job) -> JobReport {
        let result = job.result().unwrap_or(JobResult {
            status: FinishStatus::Interrupted,
            reason: Some("no result recorded".into()),
        });
        let values = job.container_json();
        let times = job.times();
        JobReport {
            job_id: job.id.clone(),
            task: job.task.name.clone(),
            status: result.status,
            state: job.state(),
            reason: result.reason,
            job_dir: job.dir.clone(),
            outputs: values
                .get("outputData")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            elapsed_seconds: match (times.started, times.ended) {
                (Some((_, s)), Some((_, e))) => Some(e.duration_since(s).as_secs_f64()),
                _ => None,
            },
            attempts: job.attempts(),
            reused_from: job.reused_from(),
            sub_jobs: job.children().iter().map(|c| JobReport::of(c)).collect(),
        }
    }
}

/// A command-line path made absolute and canonical: the file itself where
/// it exists (the user's links are resolved once, here: below a granted
/// directory the host follows none), else its directory.
fn canonical_path(path: &str) -> Option<PathBuf> {
    let p = std::path::Path::new(path);
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(p)
    };
    if let Ok(real) = std::fs::canonicalize(&abs) {
        return Some(real);
    }
    let parent = abs.parent()?;
    let parent = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
    Some(parent.join(abs.file_name()?))
}

/// Refuse grants that would let programs write the jobs directory (other
/// jobs' directories, and the host's own records in `.kiln/`).
fn refuse_writes_to(grants: &Grants, jobs: &std::path::Path) -> Result<(), RunError> {
    for dir in &grants.write_dirs {
        let real = canonical_path(dir).unwrap_or_else(|| PathBuf::from(dir));
        let relation = if jobs.starts_with(&real) {
            "contains"
        } else if real.starts_with(jobs) {
            "lies inside"
        } else {
            continue;
        };
        return Err(RunError::WritesJobsDir {
            dir: dir.clone(),
            relation,
            jobs: jobs.display().to_string(),
        });
    }
    Ok(())
}

/// Kiln's host. Cheap to clone; every clone serves the same jobs.
#[derive(Clone)]
pub struct Host {
    shared: Arc<HostShared>,
    reconciled: Arc<job::Reconciled>,
}

impl Host {
    /// Build a host with the standard tasks in its catalog. Must be called
    /// within a tokio runtime.
    pub fn new(config: HostConfig) -> Result<Host, HostStartError> {
        // Every job holds its directory open while it exists.
        kiln_exec::raise_open_file_limit();
        let engine = PluginEngine::new(config.cache_dir, &config.instance_pool)?;
        let catalog = Catalog::new(engine.clone());
        // A jobs directory that exists may hold jobs of a host that died.
        let jobs = std::sync::OnceLock::new();
        let mut reconciled = job::Reconciled::default();
        if config.jobs_dir.is_dir() {
            let state = JobsState::open(&config.jobs_dir, config.store.as_ref())?;
            reconciled = state.store.reconcile();
            // Said to the embedder through `Host::reconciled`.
            for dir in &reconciled.marked {
                tracing::info!(
                    "the job in {} was running when its host died; it is now marked interrupted",
                    dir.display()
                );
            }
            for message in &reconciled.failed {
                tracing::info!("{message}");
            }
            let _ = jobs.set(Arc::new(state));
        }
        for (name, bytes) in crate::standard::STANDARD_TASKS {
            catalog.add_embedded(name, bytes);
        }
        let executor = match config.executor {
            Some(e) => e,
            None => Arc::new(LocalExecutor::new(config.local)),
        };
        Ok(Host {
            shared: Arc::new(HostShared {
                engine,
                catalog,
                programs: Programs {
                    registry: config.registry,
                    slots: Arc::new(tokio::sync::Semaphore::new(
                        config.max_running_processes.max(1),
                    )),
                },
                stage: config.stage,
                executor,
                events: EventBus::default(),
                resume: config.resume,
                jobs,
                configured_store: config.store,
                live: Mutex::new(LiveJobs::default()),
                jobs_dir: config.jobs_dir,
                shutdown: CancellationToken::new(),
            }),
            reconciled: Arc::new(reconciled),
        })
    }

    /// What the host found and did about the jobs of hosts that died on
    /// its jobs directory, when it started.
    pub fn reconciled(&self) -> &job::Reconciled {
        &self.reconciled
    }

    pub fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    pub fn registry(&self) -> &Registry {
        &self.shared.programs.registry
    }

    pub fn events(&self) -> &EventBus {
        &self.shared.events
    }

    /// Load and describe a task.
    pub async fn describe(&self, task: &TaskRef) -> Result<Arc<TaskInfo>, CatalogError> {
        self.shared.catalog.resolve(task).await
    }

    /// The grants a run of `task` gets under `manifest` (or by default), and
    /// what it (or a sub-task) requests that is not granted.
    ///
    /// See [`Grants::for_run`]; at submission the directories of files
    /// named on the command line are added.
    pub async fn effective_grants(
        &self,
        task: &TaskInfo,
        manifest: Option<&Grants>,
    ) -> Result<(Grants, Vec<String>), CatalogError> {
        let requested = self.shared.catalog.requests_closure(task).await?;
        let granted = Grants::for_run(&requested, manifest);
        let missing = requested.missing_from(&granted);
        Ok((granted, missing))
    }

    /// Create the job (directory, container, parameters) without starting
    /// it. Bad parameters are reported here, before anything runs.
    pub async fn submit(&self, request: RunRequest) -> Result<JobHandle, RunError> {
        self.submit_in(request, None).await
    }

    /// Make the directory of a new top-level job, numbered at least
    /// `at_least` (and, with `scan`, above every `job_N` there): an
    /// embedder that allocates ids itself (a job service, whose ids must
    /// never be reused) reserves one here, puts the job's input files in
    /// it and then calls [`Host::submit_numbered`].
    pub fn create_job_dir(&self, at_least: u32, scan: bool) -> Result<(u32, PathBuf), RunError> {
        let jobs = self.shared.jobs()?;
        let (n, dir) = job::create_numbered(&jobs.root, at_least.max(1), scan)?;
        Ok((n, dir.path().to_path_buf()))
    }

    /// The highest `N` of the `job_N` directories in the jobs directory.
    pub fn highest_job_dir(&self) -> Result<u32, RunError> {
        let jobs = self.shared.jobs()?;
        Ok(job::highest_job_number(&jobs.root))
    }

    /// [`Host::submit`] as job `number`, in its directory `job_<number>`
    /// (made by [`Host::create_job_dir`], or made here); submitting the
    /// same number again after a restart creates the same job afresh.
    pub async fn submit_numbered(
        &self,
        request: RunRequest,
        number: u32,
    ) -> Result<JobHandle, RunError> {
        self.submit_in(request, Some(number)).await
    }

    async fn submit_in(
        &self,
        request: RunRequest,
        number: Option<u32>,
    ) -> Result<JobHandle, RunError> {
        let task = self.shared.catalog.resolve(&request.task).await?;
        let plugin_task = task.clone();
        let (mut grants, _) = self
            .effective_grants(&task, request.grants.as_ref())
            .await?;
        let mut container = task.new_container();
        let mut deliveries = Vec::new();
        for (name, value) in &request.params {
            let param_err = |detail: String| RunError::Param {
                name: name.clone(),
                detail,
            };
            let path = container
                .set_from_str(name, value)
                .map_err(|e| param_err(e.to_string()))?;
            // Naming an input file on the command line grants its directory
            // to read. An output is written in the job's own directory and
            // copied where asked when the job succeeds (see job::delivery):
            // its directory is never granted to programs.
            if let Ok(Some(kiln_container::Value::File(mut f))) = container.get(&path) {
                let real = canonical_path(&f.path).ok_or_else(|| {
                    param_err(format!("cannot find the directory of `{}`", f.path))
                })?;
                let parent = real
                    .parent()
                    .ok_or_else(|| param_err(format!("`{}` names no file", f.path)))?;
                if path.starts_with("outputData") {
                    if !parent.is_dir() {
                        return Err(param_err(format!(
                            "the directory {} of `{}` does not exist; create it first",
                            parent.display(),
                            f.path
                        )));
                    }
                    deliveries.push(job::Delivery {
                        item: path.clone(),
                        to: real.clone(),
                    });
                } else {
                    grants.read_dirs.insert(parent.display().to_string());
                }
                f.path = real.display().to_string();
                container
                    .set(&path, kiln_container::Value::File(f))
                    .map_err(|e| param_err(e.to_string()))?;
            }
        }
        let errors =
            job::validation::validation_errors(&container, &|p| std::path::Path::new(p).exists());
        if !errors.is_empty() {
            return Err(RunError::Invalid(errors));
        }
        let jobs = self.shared.jobs()?;
        refuse_writes_to(&grants, jobs.root.path())?;
        for d in &deliveries {
            if d.to.starts_with(jobs.root.path()) {
                return Err(RunError::Param {
                    name: d.item.clone(),
                    detail: format!(
                        "`{}` lies inside the jobs directory {}, whose files are Kiln's; write outputs elsewhere",
                        d.to.display(),
                        jobs.root.path().display()
                    ),
                });
            }
        }
        let (n, dir) = match number {
            None => job::allocate_top_level(&jobs.root)?,
            Some(n) => {
                let name = format!("job_{n}");
                let dir = match jobs.root.create_dir(&name) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        jobs.root.open_dir(std::path::Path::new(&name))
                    }
                    other => other,
                };
                let dir = dir.map_err(|source| job::JobDirError {
                    parent: jobs.root.path().display().to_string(),
                    source,
                })?;
                (n, dir)
            }
        };
        // The programs write each output in the job's `outputs/`, by the
        // name asked for (the item's name first where two share one).
        let staging = if deliveries.is_empty() {
            None
        } else {
            Some(
                match dir.create_dir(job::STAGING_DIR) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        dir.open_dir(std::path::Path::new(job::STAGING_DIR))
                    }
                    other => other,
                }
                .map_err(|source| job::JobDirError {
                    parent: dir.path().display().to_string(),
                    source,
                })?,
            )
        };
        let mut staged_names = std::collections::HashSet::new();
        for d in &deliveries {
            let name =
                d.to.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
            let name = if staged_names.insert(name.clone()) {
                name
            } else {
                format!("{}_{name}", d.item.rsplit('.').next().unwrap_or("output"))
            };
            staged_names.insert(name.clone());
            if let Ok(Some(kiln_container::Value::File(f))) = container.get(&d.item) {
                let staged = kiln_container::FileValue {
                    path: dir
                        .path()
                        .join(job::STAGING_DIR)
                        .join(&name)
                        .display()
                        .to_string(),
                    ..f
                };
                container
                    .set(&d.item, kiln_container::Value::File(staged))
                    .map_err(|e| RunError::Param {
                        name: d.item.clone(),
                        detail: e.to_string(),
                    })?;
            }
        }
        let job = Job::new(
            n.to_string(),
            task.task.clone(),
            dir,
            grants,
            container,
            self.shared.shutdown.child_token(),
            None,
            staging,
        );
        *lock(&job.deliveries) = deliveries;
        self.shared.publish_state(&job);
        Ok(JobHandle {
            job,
            task: plugin_task,
        })
    }

    /// Start a submitted job.
    pub fn start(&self, job: &JobHandle) {
        crate::runner::start_job(self.shared.clone(), job.job.clone(), job.task.clone(), None);
    }

    /// Submit, start and wait for a job.
    pub async fn run(&self, request: RunRequest) -> Result<JobReport, RunError> {
        let job = self.submit(request).await?;
        self.start(&job);
        job.wait().await;
        Ok(JobReport::of(&job))
    }

    /// The report of a job that has ended.
    pub fn report(&self, job: &Job) -> JobReport {
        JobReport::of(job)
    }

    /// A job by id: a running one (or one that ended in this host and is
    /// still held), else what the store recorded of it.
    pub fn job(&self, id: &str) -> Option<JobSummary> {
        let live = lock(&self.shared.live).jobs.get(id).and_then(Weak::upgrade);
        if let Some(job) = live {
            return Some(JobSummary::of_live(&job));
        }
        let jobs = self.shared.jobs().ok()?;
        jobs.store
            .get(id)
            .map(|s| JobSummary::of_stored(&s, &self.shared.jobs_dir))
    }

    /// Every job: those this host runs, and those its store recorded
    /// (past jobs, and jobs of earlier hosts), in id order.
    pub fn jobs(&self) -> Result<Vec<JobSummary>, job::JobDirError> {
        let jobs = self.shared.jobs()?;
        let stored = jobs.store.list().map_err(|source| job::JobDirError {
            parent: self.shared.jobs_dir.display().to_string(),
            source,
        })?;
        let mut by_id: std::collections::BTreeMap<String, JobSummary> = stored
            .iter()
            .map(|s| {
                (
                    s.record.id.clone(),
                    JobSummary::of_stored(s, &self.shared.jobs_dir),
                )
            })
            .collect();
        let live: Vec<Arc<Job>> = lock(&self.shared.live)
            .jobs
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for job in live {
            by_id.insert(job.id.clone(), JobSummary::of_live(&job));
        }
        let mut all: Vec<JobSummary> = by_id.into_values().collect();
        all.sort_by(|a, b| job::store::id_order(&a.id, &b.id));
        Ok(all)
    }

    /// The events of job `id` and its sub-jobs from now on, until its
    /// `finished`.
    pub fn subscribe(&self, id: &str) -> JobEvents {
        JobEvents {
            id: id.to_string(),
            rx: self.shared.events.subscribe(),
            done: false,
        }
    }

    /// Cancel a job by id; false when no running job has it.
    pub fn cancel(&self, id: &str) -> bool {
        let live = lock(&self.shared.live).jobs.get(id).and_then(Weak::upgrade);
        live.inspect(|j| j.cancel()).is_some()
    }

    /// Cancel every job.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }
}

/// A submitted job, with the task that runs it: start it with
/// [`Host::start`]; it derefs to the [`Job`] to wait on, cancel and read.
#[derive(Clone)]
pub struct JobHandle {
    job: Arc<Job>,
    task: Arc<TaskInfo>,
}

impl std::ops::Deref for JobHandle {
    type Target = Job;
    fn deref(&self) -> &Job {
        &self.job
    }
}

impl JobHandle {
    pub fn job(&self) -> &Arc<Job> {
        &self.job
    }
}

/// One job as a list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    pub id: String,
    pub task: String,
    pub state: String,
    /// How it ended, once it has.
    pub status: Option<String>,
    pub reason: Option<String>,
    pub job_dir: PathBuf,
    /// Whether this host is running it now.
    pub live: bool,
}

impl JobSummary {
    fn of_live(job: &Job) -> JobSummary {
        let result = job.result();
        JobSummary {
            id: job.id.clone(),
            task: job.task.name.clone(),
            state: job.state().as_str().to_string(),
            status: result.as_ref().map(|r| r.status.as_str().to_string()),
            reason: result.and_then(|r| r.reason),
            job_dir: job.dir.clone(),
            live: job.result().is_none(),
        }
    }

    fn of_stored(stored: &StoredJob, jobs_dir: &std::path::Path) -> JobSummary {
        let r = &stored.record;
        JobSummary {
            id: r.id.clone(),
            task: r.task.clone(),
            state: r.state.clone(),
            status: r.status.clone(),
            reason: r.reason.clone(),
            job_dir: jobs_dir.join(&stored.dir),
            live: false,
        }
    }
}

/// The events of one job and its sub-jobs (see [`Host::subscribe`]).
pub struct JobEvents {
    id: String,
    rx: tokio::sync::broadcast::Receiver<Event>,
    done: bool,
}

/// What [`JobEvents::next`] gives.
#[derive(Debug, Clone)]
pub enum Watched {
    Event(Event),
    /// The subscriber fell behind and this many events (of any job) were
    /// lost.
    Missed(u64),
}

impl JobEvents {
    /// The next event of the job or one of its sub-jobs; `None` after the
    /// job's own `finished`.
    pub async fn next(&mut self) -> Option<Watched> {
        use tokio::sync::broadcast::error::RecvError;
        if self.done {
            return None;
        }
        loop {
            match self.rx.recv().await {
                Ok(event) => {
                    let own = event.job_id == self.id;
                    let below = event
                        .job_id
                        .strip_prefix(self.id.as_str())
                        .is_some_and(|rest| rest.starts_with('.'));
                    if !own && !below {
                        continue;
                    }
                    if own && matches!(event.kind, EventKind::Finished { .. }) {
                        self.done = true;
                    }
                    return Some(Watched::Event(event));
                }
                Err(RecvError::Lagged(n)) => return Some(Watched::Missed(n)),
                Err(RecvError::Closed) => return None,
            }
        }
    }
}
