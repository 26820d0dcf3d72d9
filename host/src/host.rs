//! The host: the engine, the task catalog, the program registry, the stage
//! and the event bus, shared by every job; and the API to run a task.

use crate::axes::SimulatedStage;
use crate::catalog::{Catalog, CatalogError, TaskInfo, TaskRef};
use crate::dir_handle::DirHandle;
use crate::engine::{LoadError, PluginEngine};
use crate::events::{Event, EventBus, EventKind};
use crate::grants::Grants;
use crate::job::store::JobStore;
use crate::job::{self, FinishStatus, Job, JobResult, JobState};
use crate::process::Confinement;
use crate::registry::Registry;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
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
    pub stage: SimulatedStage,
    /// The confinement helper; `None` runs programs unconfined.
    pub confine_helper: Option<PathBuf>,
    /// Refuse to run any program that cannot be fully confined.
    pub require_confinement: bool,
    /// Launch confined programs directly where the kernel and the policy
    /// allow (see `kiln_confine::Launcher`); off, every confined program
    /// goes through the helper, which applies the same confinement at the
    /// cost of an extra exec (about 1 ms each).
    pub launch_directly: bool,
    /// Native programs running at once across every job (CCP4i2's
    /// maxRunningProcesses); more wait in a FIFO queue.
    pub max_running_processes: usize,
    /// Reuse a finished sub-job with the same fingerprint instead of
    /// running it again (see [`crate::job::resume`]); off is `--fresh`.
    pub resume: bool,
}

impl HostConfig {
    pub fn new(jobs_dir: impl Into<PathBuf>, registry: Registry) -> HostConfig {
        HostConfig {
            jobs_dir: jobs_dir.into(),
            registry,
            cache_dir: default_cache_dir(),
            stage: SimulatedStage::default_stage(),
            confine_helper: crate::process::find_helper(),
            require_confinement: false,
            launch_directly: true,
            max_running_processes: 4,
            resume: true,
        }
    }
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
    pub registry: Registry,
    pub stage: SimulatedStage,
    pub confinement: Confinement,
    /// Slots for native programs running at once, host-wide.
    pub process_slots: Arc<tokio::sync::Semaphore>,
    /// Where job cgroups are made; `None` where cgroup v2 is not available
    /// (programs are then tracked by process group only).
    pub cgroups: Option<crate::process::cgroup::CgroupRoot>,
    pub events: EventBus,
    pub jobs_dir: PathBuf,
    /// The jobs directory, held, with the host's own records in it; made
    /// with the first job.
    jobs: std::sync::OnceLock<Arc<JobsState>>,
    /// Reuse finished steps ([`HostConfig::resume`]).
    pub resume: bool,
    /// Cancelling this cancels every job.
    pub shutdown: CancellationToken,
}

/// The jobs directory, held, and what the host keeps in it.
pub(crate) struct JobsState {
    pub root: DirHandle,
    /// The records of truth (`.kiln/`), where no plugin can write.
    pub store: Arc<JobStore>,
    /// Succeeded jobs by fingerprint, kept even when resuming is off, so
    /// that a later run can reuse what a `--fresh` one did.
    pub finished: crate::job::resume::FinishedIndex,
    /// The jobs this host started, for the next host to reconcile should
    /// this one die.
    pub started: crate::job::reconcile::StartedJobs,
}

impl JobsState {
    fn open(jobs_dir: &std::path::Path) -> Result<JobsState, job::JobDirError> {
        let root = job::open_jobs_dir(jobs_dir)?;
        let store = Arc::new(JobStore::open(&root).map_err(|source| job::JobDirError {
            parent: jobs_dir.display().to_string(),
            source,
        })?);
        Ok(JobsState {
            finished: crate::job::resume::FinishedIndex::new(store.clone()),
            started: crate::job::reconcile::StartedJobs::new(&store),
            store,
            root,
        })
    }
}

impl HostShared {
    /// The jobs directory and the host's records, opened (and made) on
    /// first use.
    pub(crate) fn jobs(&self) -> Result<&Arc<JobsState>, job::JobDirError> {
        if let Some(j) = self.jobs.get() {
            return Ok(j);
        }
        let opened = Arc::new(JobsState::open(&self.jobs_dir)?);
        Ok(self.jobs.get_or_init(|| opened))
    }

    /// Report trouble with a job that is not its own failure: in its
    /// `kiln.log` when that can be written, and as a `log` event.
    pub(crate) fn warn(&self, job: &Job, message: String) {
        if let Err(e) = job.log_line("warn", &message) {
            self.publish(
                job,
                EventKind::Log {
                    level: "warn".into(),
                    message: format!("cannot write kiln.log: {e}"),
                },
            );
        }
        self.publish(
            job,
            EventKind::Log {
                level: "warn".into(),
                message,
            },
        );
    }

    pub(crate) fn publish(&self, job: &Job, kind: EventKind) {
        self.events.publish(Event {
            job_id: job.id.clone(),
            task: job.task.name.clone(),
            kind,
        });
    }

    pub(crate) fn publish_state(&self, job: &Job) {
        self.publish(job, EventKind::State { state: job.state() });
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
    for line in report_lines(reports) {
        text.push_str("\n  ");
        text.push_str(&line);
    }
    text
}

/// The errors (not warnings) of a container's validation, files included:
/// a file exists when `exists` says so.
pub(crate) fn validation_errors(
    container: &kiln_container::Container,
    exists: &dyn Fn(&str) -> bool,
) -> Vec<kiln_container::Report> {
    container
        .validate_files(&|f| exists(&f.path))
        .into_iter()
        .filter(|r| r.severity.is_error())
        .collect()
}

/// The invalid-parameter report of a container's errors, one line each.
pub(crate) fn report_lines(reports: &[kiln_container::Report]) -> Vec<String> {
    reports
        .iter()
        .map(|r| format!("{}: {} (code {})", r.path, r.message, r.code))
        .collect()
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
}

impl Host {
    /// Build a host with the standard tasks in its catalog. Must be called
    /// within a tokio runtime.
    pub fn new(config: HostConfig) -> Result<Host, HostStartError> {
        crate::process::close_inherited_fds_on_exec();
        // Every job holds its directory open while it exists.
        crate::process::raise_open_file_limit();
        let engine = PluginEngine::new(config.cache_dir)?;
        let catalog = Catalog::new(engine.clone());
        // A jobs directory that exists may hold jobs of a host that died.
        let jobs = std::sync::OnceLock::new();
        if config.jobs_dir.is_dir() {
            let state = JobsState::open(&config.jobs_dir)?;
            let (marked, failed) = crate::job::reconcile::reconcile(&state.store, &state.root);
            for dir in marked {
                eprintln!(
                    "kiln: job in {} was running when its host died; it is now marked interrupted",
                    dir.display()
                );
            }
            for message in failed {
                eprintln!("kiln: {message}");
            }
            let _ = jobs.set(Arc::new(state));
        }
        for (name, bytes) in crate::standard::STANDARD_TASKS {
            catalog.add_embedded(name, bytes);
        }
        Ok(Host {
            shared: Arc::new(HostShared {
                engine,
                catalog,
                registry: config.registry,
                stage: config.stage,
                confinement: Confinement::new(
                    config.confine_helper,
                    config.require_confinement,
                    config.launch_directly,
                ),
                cgroups: crate::process::cgroup::CgroupRoot::create(),
                process_slots: Arc::new(tokio::sync::Semaphore::new(
                    config.max_running_processes.max(1),
                )),
                events: EventBus::default(),
                resume: config.resume,
                jobs,
                jobs_dir: config.jobs_dir,
                shutdown: CancellationToken::new(),
            }),
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    pub fn registry(&self) -> &Registry {
        &self.shared.registry
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
    /// Programs, sub-tasks, axes and env names are what is requested,
    /// intersected with the manifest when there is one. Directories are the
    /// manifest's (plus, at submission, those of files named on the command
    /// line); the network needs both the request and the manifest.
    pub async fn effective_grants(
        &self,
        task: &TaskInfo,
        manifest: Option<&Grants>,
    ) -> Result<(Grants, Vec<String>), CatalogError> {
        let requested = self.shared.catalog.requests_closure(task).await?;
        let granted = match manifest {
            Some(m) => {
                let mut g = requested.intersect(m);
                // Which host directories exist is the operator's knowledge,
                // not the task's: directories come from the manifest alone.
                g.read_dirs = m.read_dirs.clone();
                g.write_dirs = m.write_dirs.clone();
                // So are limits: a manifest may raise them as well as lower.
                g.limits = m.limits.clone();
                g
            }
            // No manifest: what the tasks request, except directories, the
            // network and environment names, which only a manifest grants
            // (an environment variable can make a program run other code).
            None => {
                let mut g = requested.clone();
                g.read_dirs.clear();
                g.write_dirs.clear();
                g.env.clear();
                g.network = false;
                g
            }
        };
        let missing = requested.missing_from(&granted);
        Ok((granted, missing))
    }

    /// Create the job (directory, container, parameters) without starting
    /// it. Bad parameters are reported here, before anything runs.
    pub async fn submit(&self, request: RunRequest) -> Result<Arc<Job>, RunError> {
        let task = self.shared.catalog.resolve(&request.task).await?;
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
        let errors = validation_errors(&container, &|p| std::path::Path::new(p).exists());
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
        let (n, dir) = job::allocate_top_level(&jobs.root)?;
        // The programs write each output in the job's `outputs/`, by the
        // name asked for (the item's name first where two share one).
        let staging = if deliveries.is_empty() {
            None
        } else {
            Some(
                dir.create_dir(job::STAGING_DIR)
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
            task,
            dir,
            grants,
            container,
            self.shared.shutdown.child_token(),
            None,
            staging,
        );
        *crate::engine::lock(&job.deliveries) = deliveries;
        self.shared.publish_state(&job);
        Ok(job)
    }

    /// Start a submitted job.
    pub fn start(&self, job: &Arc<Job>) {
        job::start_job(self.shared.clone(), job.clone(), None);
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

    /// Cancel every job.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }
}
