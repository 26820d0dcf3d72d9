//! One job: the unit Kiln runs. A job is one task run in its own directory
//! with its own container; a pipeline's sub-jobs are jobs below it
//! (`job_N`, id `<parent>.<N>`).

use crate::audit::{Audit, AuditEvent};
use crate::delivery::Delivery;
use crate::dir::{JobDirError, create_numbered};
use crate::grants::Grants;
use crate::pipeline::{self, FailurePolicy};
use crate::task::Task;
use crate::{job_log, lock, signal_queue};
use kiln_container::Container;
use kiln_fs::{DirHandle, ReleasableDir, Roots};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Instant, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How a job ended (CCP4i2's finish codes 0, 1, 2, 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishStatus {
    Succeeded,
    Failed,
    Interrupted,
    Unsatisfactory,
}

impl FinishStatus {
    /// CCP4i2's integer finish code.
    pub fn code(self) -> i32 {
        match self {
            FinishStatus::Succeeded => 0,
            FinishStatus::Failed => 1,
            FinishStatus::Interrupted => 2,
            FinishStatus::Unsatisfactory => 4,
        }
    }

    /// The job state a finished job is left in.
    pub fn state(self) -> JobState {
        match self {
            FinishStatus::Succeeded => JobState::Finished,
            FinishStatus::Failed => JobState::Failed,
            FinishStatus::Interrupted => JobState::Interrupted,
            FinishStatus::Unsatisfactory => JobState::Unsatisfactory,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FinishStatus::Succeeded => "succeeded",
            FinishStatus::Failed => "failed",
            FinishStatus::Interrupted => "interrupted",
            FinishStatus::Unsatisfactory => "unsatisfactory",
        }
    }
}

/// Job state, with CCP4i2's database codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Queued,
    Running,
    Finished,
    Failed,
    Interrupted,
    Unsatisfactory,
}

impl JobState {
    /// CCP4i2's database code for the state.
    pub fn code(self) -> i32 {
        match self {
            JobState::Pending => 1,
            JobState::Queued => 2,
            JobState::Running => 3,
            JobState::Finished => 6,
            JobState::Failed => 5,
            JobState::Interrupted => 4,
            JobState::Unsatisfactory => 10,
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(
            self,
            JobState::Pending | JobState::Queued | JobState::Running
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Finished => "finished",
            JobState::Failed => "failed",
            JobState::Interrupted => "interrupted",
            JobState::Unsatisfactory => "unsatisfactory",
        }
    }
}

/// The end of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobResult {
    pub status: FinishStatus,
    pub reason: Option<String>,
}

impl JobResult {
    pub fn succeeded() -> Self {
        JobResult {
            status: FinishStatus::Succeeded,
            reason: None,
        }
    }
    pub fn failed(reason: impl Into<String>) -> Self {
        JobResult {
            status: FinishStatus::Failed,
            reason: Some(reason.into()),
        }
    }
    pub fn interrupted(reason: impl Into<String>) -> Self {
        JobResult {
            status: FinishStatus::Interrupted,
            reason: Some(reason.into()),
        }
    }
}

/// The jobs of one job tree (a top-level job and every sub-job below it)
/// that exist now, against `limits.tree_jobs`.
#[derive(Default)]
pub struct JobTree {
    jobs: AtomicU32,
    /// `outputs/` of the top-level job, where its programs and those of
    /// every job below write the outputs named on the command line.
    staging: Option<Arc<DirHandle>>,
}

/// Why a sub-job could not be made: the whole tree is at its limits.
#[derive(Debug, thiserror::Error)]
pub enum TreeLimit {
    #[error(
        "the job tree already has {0} jobs, its limit (limits.tree_jobs in the grants manifest)"
    )]
    Jobs(u32),
    #[error("sub-jobs may nest {0} deep at most (limits.tree_depth in the grants manifest)")]
    Depth(u32),
}

/// One job, shared by its runner, its parent's handle and the host.
pub struct Job {
    /// `12`, `12.1`, ...
    pub id: String,
    pub task: Arc<Task>,
    /// Absolute path the job directory had when it was made; for people.
    /// The host reaches the directory only through its held handle (see
    /// [`Job::dir_handle`]): the parent's plugin may swap this path.
    pub dir: PathBuf,
    pub grants: Grants,
    pub container: Mutex<Container>,
    pub cancel: CancellationToken,
    state: Mutex<JobState>,
    done: watch::Sender<Option<JobResult>>,
    ending: std::sync::atomic::AtomicBool,
    next_child: AtomicU32,
    next_process: AtomicU32,
    pub children: Mutex<Vec<Arc<Job>>>,
    pub times: Mutex<JobTimes>,
    pub audit: Audit,
    /// Where the job may name files: its own directory (read-write, held),
    /// its pipeline's top directory (read, held), and the granted
    /// directories.
    pub roots: Roots,
    /// The top directory of the pipeline this job belongs to, held.
    pipeline_dir: Arc<DirHandle>,
    /// `kiln.log`.
    pub log: job_log::JobLog,
    /// The jobs of this job's tree, this one counted.
    tree: Arc<JobTree>,
    /// Why the job is being stopped, when it is for a limit the host
    /// watches (not a user's cancel): the job then fails with it.
    abort: Mutex<Option<String>>,
    /// Slots for programs running at once in this job's whole pipeline
    /// (`limits.processes`), shared by the pipeline's jobs.
    pub pipeline_slots: Arc<tokio::sync::Semaphore>,
    /// This job's programs that are running, and waiting for a slot.
    pub programs_running: std::sync::atomic::AtomicUsize,
    pub programs_queued: std::sync::atomic::AtomicUsize,
    /// The pipeline this job is a step of.
    parent: Option<Weak<Job>>,
    /// What this job's failure does to its pipeline.
    pub policy: Mutex<FailurePolicy>,
    /// This job's own steps, when it is a pipeline.
    pub steps: pipeline::PipelineSteps,
    /// Signals on their way to the pipeline (sub-jobs only).
    pub signals: signal_queue::SignalQueue,
    /// See [`resume`]; set when the job starts.
    pub fingerprint: Mutex<Option<String>>,
    /// The job whose results this one took over instead of running.
    pub reused_from: Mutex<Option<String>>,
    /// Outputs named on the command line, copied where asked at the end.
    pub deliveries: Mutex<Vec<Delivery>>,
    /// Attempts made so far (retries count).
    pub attempts: AtomicU32,
}

/// When a job was made, started and ended.
#[derive(Debug, Clone, Copy)]
pub struct JobTimes {
    pub created: SystemTime,
    pub started: Option<(SystemTime, Instant)>,
    pub ended: Option<(SystemTime, Instant)>,
}

impl Job {
    // Every argument is a distinct part of a new job; a builder would only
    // rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        task: Arc<Task>,
        dir: DirHandle,
        grants: Grants,
        container: Container,
        cancel: CancellationToken,
        pipeline: Option<&Arc<Job>>,
        staging: Option<DirHandle>,
    ) -> Arc<Job> {
        // A sub-job's directory is released while it waits to start and
        // once it has ended (see ReleasableDir); a top-level job's is held.
        let (job_dir, pipeline_dir) = match pipeline {
            Some(p) => (
                ReleasableDir::below(p.roots.job_dir().clone(), dir),
                p.pipeline_dir.clone(),
            ),
            None => {
                let held = Arc::new(dir);
                (ReleasableDir::held(held.clone()), held)
            }
        };
        let tree = pipeline.map_or_else(
            || {
                Arc::new(JobTree {
                    jobs: AtomicU32::new(0),
                    staging: staging.map(Arc::new),
                })
            },
            |p| p.tree.clone(),
        );
        tree.jobs.fetch_add(1, Ordering::SeqCst);
        let pipeline_slots = match pipeline {
            Some(p) => p.pipeline_slots.clone(),
            None => Arc::new(tokio::sync::Semaphore::new(
                grants.limits.processes.max(1) as usize
            )),
        };
        let read_only: Vec<PathBuf> = grants.read_dirs.iter().map(PathBuf::from).collect();
        let read_write: Vec<PathBuf> = grants.write_dirs.iter().map(PathBuf::from).collect();
        let roots = Roots::new(
            job_dir.clone(),
            pipeline.map(|_| pipeline_dir.clone()),
            tree.staging.clone(),
            &read_only,
            &read_write,
        );
        let dir = job_dir.path().to_path_buf();
        Arc::new(Job {
            id,
            task,
            container: Mutex::new(container),
            cancel,
            state: Mutex::new(JobState::Pending),
            done: watch::channel(None).0,
            ending: std::sync::atomic::AtomicBool::new(false),
            next_child: AtomicU32::new(1),
            next_process: AtomicU32::new(1),
            children: Mutex::new(Vec::new()),
            times: Mutex::new(JobTimes {
                created: SystemTime::now(),
                started: None,
                ended: None,
            }),
            audit: Audit::new(job_dir.clone()),
            log: job_log::JobLog::new(job_dir, grants.limits.log_bytes),
            roots,
            pipeline_dir,
            tree,
            abort: Mutex::new(None),
            pipeline_slots,
            programs_running: Default::default(),
            programs_queued: Default::default(),
            parent: pipeline.map(Arc::downgrade),
            policy: Mutex::new(FailurePolicy::default()),
            steps: pipeline::PipelineSteps::new(grants.limits.sub_jobs),
            signals: Default::default(),
            fingerprint: Mutex::new(None),
            reused_from: Mutex::new(None),
            deliveries: Mutex::new(Vec::new()),
            attempts: AtomicU32::new(0),
            grants,
            dir,
        })
    }

    /// The pipeline this job is a step of, while it exists.
    pub fn parent(&self) -> Option<Arc<Job>> {
        self.parent.as_ref().and_then(Weak::upgrade)
    }

    pub fn failure_policy(&self) -> FailurePolicy {
        *lock(&self.policy)
    }

    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::SeqCst)
    }

    pub fn reused_from(&self) -> Option<String> {
        lock(&self.reused_from).clone()
    }

    pub fn fingerprint(&self) -> Option<String> {
        lock(&self.fingerprint).clone()
    }

    /// Forget what the last attempt made (sub-jobs, programs) so that the
    /// next starts as the first did; their directories were archived.
    pub fn reset_for_attempt(&self) {
        lock(&self.children).clear();
        self.steps.reset(self.grants.limits.sub_jobs);
        self.next_child.store(1, Ordering::SeqCst);
        self.next_process.store(1, Ordering::SeqCst);
    }

    pub fn state(&self) -> JobState {
        *lock(&self.state)
    }

    pub fn set_state(&self, state: JobState) {
        *lock(&self.state) = state;
    }

    /// The result once the job has ended.
    pub fn result(&self) -> Option<JobResult> {
        self.done.borrow().clone()
    }

    /// Wait for the job's end.
    pub async fn wait(&self) -> JobResult {
        let mut rx = self.done.subscribe();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`, so this cannot happen while we
                // hold `&self`; stay total anyway.
                return JobResult::failed("job record dropped");
            }
        }
    }

    /// Claim the right to end the job: true for the first caller only, who
    /// then records the end with [`Job::finish`].
    pub fn claim_end(&self) -> bool {
        !self.ending.swap(true, Ordering::SeqCst)
    }

    /// Publish the result to everyone waiting; called once, after the end
    /// was claimed and announced.
    pub fn finish(&self, result: JobResult) {
        self.done.send_replace(Some(result));
    }

    /// Ask the job to stop; harmless when it has already ended.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Create the next `job_N` directory below this job's, continuing after
    /// any that exist already.
    pub fn allocate_child_dir(&self) -> Result<(u32, DirHandle), JobDirError> {
        let wanted = self.next_child.fetch_add(1, Ordering::SeqCst);
        let parent = self.dir_handle().map_err(|source| JobDirError {
            parent: self.dir.display().to_string(),
            source,
        })?;
        let (n, dir) = create_numbered(&parent, wanted, wanted == 1)?;
        self.next_child.fetch_max(n + 1, Ordering::SeqCst);
        Ok((n, dir))
    }

    /// Whether the job tree has room for one more sub-job of this job.
    pub fn room_for_sub_job(&self) -> Result<(), TreeLimit> {
        let limits = &self.grants.limits;
        let depth = self.id.matches('.').count() as u32 + 1;
        if depth > limits.tree_depth {
            return Err(TreeLimit::Depth(limits.tree_depth));
        }
        let jobs = self.tree.jobs.load(Ordering::SeqCst);
        if jobs >= limits.tree_jobs {
            return Err(TreeLimit::Jobs(jobs));
        }
        Ok(())
    }

    /// The job directory: every host-side open in it goes through this
    /// handle. An error when the directory, released while the job was
    /// not running, is no longer the one the host made.
    pub fn dir_handle(&self) -> std::io::Result<Arc<DirHandle>> {
        self.roots.job_dir().get()
    }

    /// Hold the job directory open while the job runs.
    pub fn hold_dir(&self) -> std::io::Result<()> {
        self.roots.job_dir().hold()
    }

    /// Stop holding the job directory (a sub-job made and not started, or
    /// ended); it is found again below its parent's when needed.
    pub fn release_dir(&self) {
        self.roots.job_dir().release()
    }

    /// Append a line to the job's `kiln.log`; a failure is reported on the
    /// event bus by the caller (it never fails the job).
    pub fn log_line(&self, level: &str, message: &str) -> std::io::Result<()> {
        self.log.append(level, message)
    }

    /// Stop the job for a limit the host watches: it fails with `reason`
    /// (the first one given), its programs and sub-jobs are stopped.
    pub fn abort(&self, reason: String) {
        lock(&self.abort).get_or_insert(reason);
        self.cancel.cancel();
    }

    /// Why the job was stopped by [`Job::abort`], if it was.
    pub fn abort_reason(&self) -> Option<String> {
        lock(&self.abort).clone()
    }

    pub fn take_process_number(&self) -> u32 {
        self.next_process.fetch_add(1, Ordering::SeqCst)
    }

    /// A snapshot of the container's values as JSON.
    pub fn container_json(&self) -> serde_json::Value {
        lock(&self.container).to_json()
    }

    pub fn children(&self) -> Vec<Arc<Job>> {
        lock(&self.children).clone()
    }

    pub fn audit(&self, event: &AuditEvent<'_>) {
        self.audit.record(&self.id, event);
    }

    /// `Ok` when `name` is granted; otherwise the denial, audited.
    pub fn require(&self, cap: crate::grants::Capability, name: &str) -> Result<(), String> {
        self.grants.check(cap, name).inspect_err(|message| {
            self.audit(&AuditEvent::Denied {
                capability: cap.manifest_key(),
                name,
                message,
            })
        })
    }

    /// Where the outputs named on the command line are written, held: in
    /// the top-level job's directory, writable by every job of the tree.
    pub fn staging_dir(&self) -> Option<&Arc<DirHandle>> {
        self.tree.staging.as_ref()
    }

    /// The top directory of the pipeline this job belongs to, held.
    pub fn pipeline_dir(&self) -> &Arc<DirHandle> {
        &self.pipeline_dir
    }

    pub fn times(&self) -> JobTimes {
        *lock(&self.times)
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // Its place in the tree is free again (a retry's dropped attempt).
        self.tree.jobs.fetch_sub(1, Ordering::SeqCst);
    }
}
