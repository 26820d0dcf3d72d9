//! The job service: submissions committed before they are answered, a
//! priority queue in front of the host, stops that are recorded before they
//! are acted on, and, on start, the reconciliation of what a service that
//! died left (see [`Service::start`]).

use crate::config::{Principal, Profiles};
use crate::metrics::Metrics;
use crate::problem::{FieldError, Problem};
use crate::recorder::{Recorder, RecorderHandle};
use crate::views::{JobView, OutputView, Progress};
use kiln_host::jobs::reconcile::{interrupt_record, unended};
use kiln_host::jobs::store::{JobStore, StoredJob};
use kiln_host::{ErrorKind, Grants, Host, JobHandle, RunError, RunRequest, TaskRef};
use kiln_sqlite_store::{SqliteStore, Submission, SubmissionPhase, SubmitOutcome};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, Semaphore};

/// Where uploaded input files go in a new job's directory.
pub const INPUTS_DIR: &str = "inputs";

/// What a submission asked for, as kept in the journal to create the job
/// again if the service dies before starting it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRequest {
    pub task: String,
    pub params: Vec<(String, String)>,
    /// The grants profile it runs under.
    pub profile: Option<String>,
}

/// A job to submit.
pub struct SubmitInput {
    pub task: String,
    pub params: Vec<(String, String)>,
    /// The profile the request names, if any.
    pub profile: Option<String>,
    pub priority: i64,
    pub idempotency_key: Option<String>,
}

/// A job number and its new directory, given before the job is created
/// (its uploaded files go there first). Dropped without being used, the
/// directory is removed.
pub struct Reservation {
    pub number: u64,
    pub dir: PathBuf,
    used: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.used {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A queued job: higher priority first, then lower number.
#[derive(PartialEq, Eq)]
struct Queued {
    priority: i64,
    number: u64,
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.priority
            .cmp(&other.priority)
            .then(other.number.cmp(&self.number))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// How running jobs end when the service shuts down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Cancel them (they end `interrupted`); queued jobs stay queued, for
    /// the next start.
    Cancel,
    /// Let running and queued jobs finish first.
    Drain,
}

/// The service's settings.
pub struct ServiceConfig {
    /// Top-level jobs running at once; more wait in the queue.
    pub max_running_jobs: usize,
    pub profiles: Profiles,
}

pub struct Service {
    pub host: Host,
    pub store: Arc<SqliteStore>,
    pub jobs_dir: PathBuf,
    pub profiles: Profiles,
    pub metrics: Metrics,
    pub recorder: RecorderHandle,
    next_number: AtomicU64,
    /// Jobs submitted and not yet ended, by number.
    live: Mutex<HashMap<u64, JobHandle>>,
    queue: Mutex<BinaryHeap<Queued>>,
    queued: Notify,
    running: Arc<Semaphore>,
    /// Jobs started and not ended (the dispatcher holds a permit while it
    /// waits for a job, so the semaphore does not say this).
    running_now: AtomicU64,
    accepting: AtomicBool,
    /// Shutting down, letting the queue run out.
    draining: AtomicBool,
    /// Submit times, for the queue-wait histogram.
    submitted_at: Mutex<HashMap<u64, Instant>>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The rule a CCP4i2 validation code stands for.
fn rule_of(code: u32, class: &str) -> &'static str {
    match code {
        100 => "required",
        101 if class.contains("File") => "exists",
        101 => "min",
        102 => "max",
        103 => "choice",
        104 => "characters",
        _ => "value",
    }
}

/// The problem document of a submit the host refused.
pub fn run_error_problem(e: &RunError) -> Problem {
    match e {
        RunError::Invalid(reports) => {
            let mut p = Problem::unprocessable(e.to_string());
            p.errors = Some(
                reports
                    .iter()
                    .map(|r| FieldError {
                        path: r.path.clone(),
                        rule: rule_of(r.code, &r.class_name).to_string(),
                        code: r.code,
                        message: r.message.clone(),
                    })
                    .collect(),
            );
            p
        }
        RunError::Param { name, detail } => {
            let mut p = Problem::unprocessable(e.to_string());
            p.errors = Some(vec![FieldError {
                path: name.clone(),
                rule: "value".into(),
                code: 0,
                message: detail.clone(),
            }]);
            p
        }
        _ => match e.kind() {
            ErrorKind::BadRequest | ErrorKind::BadTask => Problem::unprocessable(e.to_string()),
            ErrorKind::Host => Problem::unavailable(e.to_string()),
        },
    }
}

/// Whether `path` lies in (or is) one of `dirs`.
fn within(path: &Path, dirs: impl IntoIterator<Item = PathBuf>) -> bool {
    dirs.into_iter().any(|d| path.starts_with(d))
}

impl Service {
    /// Start the service on `host` and `store`: reconcile what a service
    /// that died left, then start the queue.
    ///
    /// Every job that was started and did not end is (already, by the
    /// store's reconciliation when the host was built) `interrupted`; its
    /// `finished` event is recorded here if it was not. Every job that was
    /// queued and never started is created again, as the same number, and
    /// queued (once: its submission is the only record that says to run it,
    /// and it says `started` before the job runs). A queued job whose stop
    /// was asked ends `interrupted` without running.
    pub async fn start(
        host: Host,
        store: Arc<SqliteStore>,
        jobs_dir: PathBuf,
        config: ServiceConfig,
        metrics: Metrics,
    ) -> Result<Arc<Service>, Problem> {
        let recorder = Recorder::start(&host, store.clone(), metrics.clone());
        let highest = host
            .highest_job_dir()
            .map_err(|e| Problem::unavailable(e.to_string()))? as u64;
        let high = store.high_water()?.max(highest);
        store.raise_high_water(high).await?;
        let service = Arc::new(Service {
            host,
            store,
            jobs_dir,
            profiles: config.profiles,
            metrics,
            recorder,
            next_number: AtomicU64::new(high + 1),
            live: Mutex::new(HashMap::new()),
            queue: Mutex::new(BinaryHeap::new()),
            queued: Notify::new(),
            running: Arc::new(Semaphore::new(config.max_running_jobs.max(1))),
            running_now: AtomicU64::new(0),
            accepting: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            submitted_at: Mutex::new(HashMap::new()),
        });
        service.reconcile().await?;
        tokio::spawn(service.clone().dispatch());
        Ok(service)
    }

    async fn reconcile(self: &Arc<Self>) -> Result<(), Problem> {
        for sub in self.store.unended_submissions()? {
            let record = JobStore::get(&*self.store, &sub.id.to_string());
            let never_ran = sub.phase == SubmissionPhase::Queued && record.is_none();
            if never_ran && !sub.stop_requested {
                // In a task of its own: a job whose creation panics is
                // ended here with the panic's message, rather than taking
                // the service down at every start.
                let service = self.clone();
                let again = sub.clone();
                let made = tokio::spawn(async move { service.resubmit(&again).await })
                    .await
                    .unwrap_or_else(|e| Err(format!("creating it again panicked: {e}")));
                match made {
                    Ok(()) => continue,
                    Err(reason) => {
                        tracing::warn!("queued job {} cannot be created again: {reason}", sub.id);
                        self.end_unrun(&sub, record, &reason).await?;
                    }
                }
            } else {
                let reason = if never_ran {
                    "stopped before it ran".to_string()
                } else {
                    kiln_host::jobs::reconcile::HOST_DIED.to_string()
                };
                self.end_unrun(&sub, record, &reason).await?;
            }
        }
        Ok(())
    }

    /// Record the end of a job the service cannot run: its record
    /// `interrupted` (unless it had ended) and its `finished` event.
    async fn end_unrun(
        &self,
        sub: &Submission,
        record: Option<StoredJob>,
        reason: &str,
    ) -> Result<(), Problem> {
        let mut stored = match record {
            Some(r) => r,
            None => StoredJob {
                record: kiln_host::jobs::JobRecord {
                    id: sub.id.to_string(),
                    task: sub.task.clone(),
                    version: String::new(),
                    state: "queued".into(),
                    status: None,
                    reason: None,
                    fingerprint: None,
                    created: sub.submitted,
                    started: None,
                    ended: None,
                    attempts: 0,
                    reused_from: None,
                    step_failures: Vec::new(),
                },
                dir: PathBuf::from(format!("job_{}", sub.id)),
                params: None,
                outputs: Vec::new(),
                files: Vec::new(),
            },
        };
        if unended(&stored.record.state) {
            interrupt_record(&mut stored, reason);
        }
        self.recorder
            .finish_recorded(sub.id, stored)
            .await
            .map_err(Problem::from)
    }

    async fn resubmit(self: &Arc<Self>, sub: &Submission) -> Result<(), String> {
        let request: StoredRequest =
            serde_json::from_value(sub.request.clone()).map_err(|e| e.to_string())?;
        let grants = match &request.profile {
            Some(name) => Some(
                self.profiles
                    .by_name
                    .get(name)
                    .cloned()
                    .ok_or_else(|| format!("its grants profile `{name}` is gone"))?,
            ),
            None => None,
        };
        let handle = self
            .host
            .submit_numbered(
                RunRequest {
                    task: TaskRef::Name(request.task.clone()),
                    params: request.params.clone(),
                    grants,
                },
                sub.id as u32,
            )
            .await
            .map_err(|e| e.to_string())?;
        self.enqueue(sub.id, sub.priority, handle);
        tracing::info!(
            "job {} was queued when the service stopped; queued again",
            sub.id
        );
        Ok(())
    }

    fn enqueue(&self, number: u64, priority: i64, handle: JobHandle) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(number, handle);
        self.submitted_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(number, Instant::now());
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Queued { priority, number });
        self.metrics.queued.inc();
        self.queued.notify_one();
    }

    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// The profile a submit runs under: the token's own, or (without
    /// tokens) the one it names, else `default` if the grants file has one.
    pub fn profile_for(
        &self,
        who: &Principal,
        asked: Option<&str>,
    ) -> Result<Option<(String, Grants)>, Problem> {
        let name = match (&who.grants, asked) {
            (Some(own), Some(asked)) if own != asked => {
                return Err(Problem::forbidden(format!(
                    "token `{}` submits under the grants profile `{own}` only, not `{asked}`",
                    who.name
                )));
            }
            (Some(own), _) => Some(own.clone()),
            (None, Some(asked)) => Some(asked.to_string()),
            (None, None) if self.profiles.by_name.contains_key("default") => {
                Some("default".to_string())
            }
            (None, None) => None,
        };
        match name {
            None => Ok(None),
            Some(name) => match self.profiles.by_name.get(&name) {
                Some(g) => Ok(Some((name, g.clone()))),
                None => Err(Problem::unprocessable(format!(
                    "there is no grants profile `{name}`{}",
                    match &self.profiles.path {
                        Some(p) => format!(" in {}", p.display()),
                        None => " (the service has no --grants file)".into(),
                    }
                ))),
            },
        }
    }

    /// The job with this idempotency key, if one was submitted.
    pub fn idempotent(&self, key: &str) -> Result<Option<u64>, Problem> {
        Ok(self.store.by_idempotency_key(key)?)
    }

    /// A job number and its directory.
    pub fn reserve(&self) -> Result<Reservation, Problem> {
        if !self.accepting() {
            return Err(Problem::unavailable(
                "the service is shutting down and accepts no new jobs",
            ));
        }
        let at_least = self.next_number.fetch_add(1, Ordering::SeqCst);
        let (n, dir) = self
            .host
            .create_job_dir(at_least as u32, false)
            .map_err(|e| Problem::unavailable(e.to_string()))?;
        // Something else took numbers (a `kiln run` on the same jobs
        // directory): carry on above them.
        self.next_number.fetch_max(n as u64 + 1, Ordering::SeqCst);
        Ok(Reservation {
            number: n as u64,
            dir,
            used: false,
        })
    }

    /// Create the job in `reservation`, commit its submission (synced) and
    /// queue it. Returns the job number (another, for an idempotency key
    /// already used).
    pub async fn submit(
        &self,
        who: &Principal,
        mut reservation: Reservation,
        input: SubmitInput,
        profile: Option<(String, Grants)>,
    ) -> Result<u64, Problem> {
        if input.task.contains('/') || input.task.ends_with(".wasm") {
            return Err(Problem::unprocessable(format!(
                "task `{}`: only tasks of the catalogue (GET /tasks) run here, by name",
                input.task
            )));
        }
        if let Some((name, grants)) = &profile
            && !grants.tasks.contains(&input.task)
        {
            return Err(Problem::forbidden(format!(
                "the grants profile `{name}` does not allow the task `{}`; add \"{}\" to its `tasks`",
                input.task, input.task
            )));
        }
        let number = reservation.number;
        let handle = self
            .host
            .submit_numbered(
                RunRequest {
                    task: TaskRef::Name(input.task.clone()),
                    params: input.params.clone(),
                    grants: profile.as_ref().map(|(_, g)| g.clone()),
                },
                number as u32,
            )
            .await
            .map_err(|e| run_error_problem(&e))?;
        self.check_paths(&handle, &reservation.dir, profile.as_ref().map(|(_, g)| g))?;
        let outcome = self
            .store
            .submit(Submission {
                id: number,
                task: input.task.clone(),
                request: serde_json::to_value(StoredRequest {
                    task: input.task.clone(),
                    params: input.params.clone(),
                    profile: profile.as_ref().map(|(n, _)| n.clone()),
                })
                .unwrap_or_default(),
                principal: Some(who.name.clone()),
                priority: input.priority,
                submitted: now(),
                phase: SubmissionPhase::Queued,
                stop_requested: false,
                idempotency_key: input.idempotency_key.clone(),
            })
            .await?;
        match outcome {
            SubmitOutcome::Existing(id) => Ok(id),
            SubmitOutcome::Created => {
                reservation.used = true;
                self.metrics.submits.inc();
                self.enqueue(number, input.priority, handle);
                Ok(number)
            }
        }
    }

    /// Refuse a job that would read a server file outside the directories
    /// its profile grants (or its own uploads), or write one anywhere: a
    /// path in a request is the submitter's claim, not the operator's.
    fn check_paths(
        &self,
        handle: &JobHandle,
        own: &Path,
        profile: Option<&Grants>,
    ) -> Result<(), Problem> {
        let granted = |dirs: &std::collections::BTreeSet<String>| -> Vec<PathBuf> {
            dirs.iter()
                .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| PathBuf::from(d)))
                .collect()
        };
        let readable: Vec<PathBuf> = profile
            .map(|g| granted(&g.read_dirs))
            .unwrap_or_default()
            .into_iter()
            .chain([own.join(INPUTS_DIR)])
            .collect();
        for dir in &handle.grants.read_dirs {
            if !within(Path::new(dir), readable.clone()) {
                return Err(Problem::forbidden(format!(
                    "an input names a file in {dir}, which the grants profile does not let submitters read; upload the file (multipart/form-data) or ask the operator to add the directory to the profile's `read_dirs`"
                )));
            }
        }
        let writable = profile.map(|g| granted(&g.write_dirs)).unwrap_or_default();
        for d in handle
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if !within(&d.to, writable.clone()) {
                return Err(Problem::forbidden(format!(
                    "{} asks for an output at {}, outside the directories the grants profile lets submitters write; leave it unset and download it from GET /jobs/{{id}}/files",
                    d.item,
                    d.to.display()
                )));
            }
        }
        Ok(())
    }

    /// Start queued jobs as running slots free up.
    async fn dispatch(self: Arc<Self>) {
        loop {
            let Ok(permit) = self.running.clone().acquire_owned().await else {
                return;
            };
            let number = loop {
                if !self.accepting() && !self.draining() {
                    return;
                }
                let next = {
                    // Counted as running as it leaves the queue, so that a
                    // shutdown never sees it in neither.
                    let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                    let next = queue.pop();
                    if next.is_some() {
                        self.running_now.fetch_add(1, Ordering::SeqCst);
                    }
                    next
                };
                match next {
                    Some(q) => break q.number,
                    None => self.queued.notified().await,
                }
            };
            self.metrics.queued.dec();
            let handle = self
                .live
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&number)
                .cloned();
            let Some(handle) = handle else {
                self.running_now.fetch_sub(1, Ordering::SeqCst);
                continue;
            };
            if let Some(t) = self
                .submitted_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&number)
            {
                self.metrics.queue_wait.observe(t.elapsed().as_secs_f64());
            }
            // Said on disk before the job runs: a service that dies from
            // here on leaves a job to mark interrupted, never one to run
            // a second time.
            if let Err(e) = self.store.set_phase(number, SubmissionPhase::Started).await {
                tracing::error!("job {number} cannot be marked started, so it is not run: {e}");
                handle.cancel();
            }
            match self.store.submission(number) {
                Ok(Some(s)) if s.stop_requested => handle.cancel(),
                _ => {}
            }
            self.metrics.running.inc();
            self.host.start(&handle);
            let service = self.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                handle.wait().await;
                drop(permit);
                service.metrics.running.dec();
                service.running_now.fetch_sub(1, Ordering::SeqCst);
                service
                    .metrics
                    .durations
                    .observe(started.elapsed().as_secs_f64());
                service.recorder.ensure_finished(number).await;
                service
                    .live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&number);
            });
        }
    }

    /// Whether job `number` was submitted here and has not ended.
    pub fn is_live(&self, number: u64) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&number)
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Ask job `number` to stop: recorded first (a stop is never lost, even
    /// if the service dies now), then the job is cancelled if it runs here.
    /// `None` when there is no such job.
    pub async fn stop(&self, id: &str) -> Result<Option<String>, Problem> {
        let Some(number) = top_number(id) else {
            return Ok(None);
        };
        if !id.contains('.') && !self.store.request_stop(number).await? {
            return Ok(None);
        }
        let handle = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&number)
            .cloned();
        if id.contains('.') {
            if !self.host.cancel(id) && JobStore::get(&*self.store, id).is_none() {
                return Ok(None);
            }
        } else if let Some(h) = handle {
            h.cancel();
        }
        Ok(Some(self.view(id)?.map(|v| v.state).unwrap_or_default()))
    }

    /// Remove an ended job, its records, events and directory. `Err`
    /// conflict while it runs.
    pub async fn delete(&self, id: &str) -> Result<bool, Problem> {
        let Some(number) = top_number(id).filter(|_| !id.contains('.')) else {
            return Ok(false);
        };
        let Some(sub) = self.store.submission(number)? else {
            return Ok(false);
        };
        if self.is_live(number) || sub.phase != SubmissionPhase::Ended {
            return Err(Problem::conflict(format!(
                "job {id} has not ended; stop it first (POST /jobs/{id}/stop)"
            )));
        }
        self.store.delete(number).await?;
        let dir = self.jobs_dir.join(format!("job_{number}"));
        // The directory is the service's own (`job_N` in its jobs
        // directory); a link in its place is removed, never followed.
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(
                        "job {id}'s directory {} could not be removed: {e}",
                        dir.display()
                    );
                }
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&dir);
            }
            Err(_) => {}
        }
        Ok(true)
    }

    /// A job and its sub-jobs.
    pub fn view(&self, id: &str) -> Result<Option<JobView>, Problem> {
        let Some(number) = top_number(id) else {
            return Ok(None);
        };
        let Some(sub) = self.store.submission(number)? else {
            return Ok(None);
        };
        let records: BTreeMap<String, StoredJob> = self
            .store
            .records_of(number)?
            .into_iter()
            .map(|r| (r.record.id.clone(), r))
            .collect();
        let progress: HashMap<String, Progress> = self
            .store
            .last_progress(number)?
            .into_iter()
            .filter_map(|(job, data)| Some((job, serde_json::from_str(&data).ok()?)))
            .collect();
        let live = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&number)
            .map(|h| h.job().clone());
        let mut view = match &live {
            Some(job) => self.view_of_live(job, &records, &progress),
            None => self.view_of_records(&number.to_string(), &sub, &records, &progress),
        };
        view.priority = sub.priority;
        view.submitted_at = Some(sub.submitted);
        view.stop_requested = sub.stop_requested;
        if live.is_none() && records.get(&view.id).is_none() {
            view.state = if sub.phase == SubmissionPhase::Ended {
                "interrupted".into()
            } else {
                "queued".into()
            };
        }
        if id == view.id {
            return Ok(Some(view));
        }
        Ok(find_in(view, id))
    }

    fn outputs_of(&self, stored: Option<&StoredJob>) -> BTreeMap<String, OutputView> {
        let Some(stored) = stored else {
            return BTreeMap::new();
        };
        let dir = self.jobs_dir.join(&stored.dir);
        stored
            .outputs
            .iter()
            .map(|o| {
                let file = Path::new(&o.path)
                    .strip_prefix(&dir)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| o.path.clone());
                (
                    o.item.clone(),
                    OutputView {
                        file,
                        size: o.size,
                        sha256: o.sha256.clone(),
                    },
                )
            })
            .collect()
    }

    fn view_of_live(
        &self,
        job: &kiln_host::jobs::Job,
        records: &BTreeMap<String, StoredJob>,
        progress: &HashMap<String, Progress>,
    ) -> JobView {
        let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).ok();
        let times = job.times();
        let result = job.result();
        let mut state = job.state().as_str().to_string();
        let mut ended_at = times.ended.and_then(|(t, _)| unix(t));
        if result.is_none() {
            // Its end is not said until its result is: a client must never
            // see a final state that then changes.
            ended_at = None;
            if times.started.is_none() {
                state = "queued".into();
            } else if job.state().is_final() {
                state = "running".into();
            }
        }
        JobView {
            id: job.id.clone(),
            task: job.task.name.clone(),
            state,
            status: result.as_ref().map(|r| r.status.as_str().to_string()),
            reason: result.and_then(|r| r.reason),
            priority: 0,
            submitted_at: unix(times.created),
            started_at: times.started.and_then(|(t, _)| unix(t)),
            ended_at,
            stop_requested: false,
            progress: progress.get(&job.id).cloned(),
            outputs: self.outputs_of(records.get(&job.id)),
            sub_jobs: job
                .children()
                .iter()
                .map(|c| self.view_of_live(c, records, progress))
                .collect(),
        }
    }

    fn view_of_records(
        &self,
        id: &str,
        sub: &Submission,
        records: &BTreeMap<String, StoredJob>,
        progress: &HashMap<String, Progress>,
    ) -> JobView {
        let record = records.get(id);
        let children: Vec<&String> = records
            .keys()
            .filter(|k| {
                k.strip_prefix(id)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|rest| !rest.contains('.'))
            })
            .collect();
        let mut sub_jobs: Vec<JobView> = children
            .into_iter()
            .map(|c| self.view_of_records(c, sub, records, progress))
            .collect();
        sub_jobs.sort_by(|a, b| kiln_host::jobs::store::id_order(&a.id, &b.id));
        JobView {
            id: id.to_string(),
            task: record
                .map(|r| r.record.task.clone())
                .unwrap_or_else(|| sub.task.clone()),
            state: record
                .map(|r| r.record.state.clone())
                .unwrap_or_else(|| "queued".into()),
            status: record.and_then(|r| r.record.status.clone()),
            reason: record.and_then(|r| r.record.reason.clone()),
            priority: 0,
            submitted_at: record.map(|r| r.record.created),
            started_at: record.and_then(|r| r.record.started),
            ended_at: record.and_then(|r| r.record.ended),
            stop_requested: false,
            progress: progress.get(id).cloned(),
            outputs: self.outputs_of(record),
            sub_jobs,
        }
    }

    /// Jobs running and queued now.
    pub fn counts(&self) -> (u64, u64) {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let queued = queue.len() as u64;
        let running = self.running_now.load(Ordering::SeqCst);
        (running, queued)
    }

    /// Stop accepting jobs; cancel running ones or let them (and the queue)
    /// finish; then wait until every job's end is recorded.
    pub async fn shut_down(&self, mode: ShutdownMode) {
        // Draining is said before accepting stops: the dispatcher, seeing
        // neither, would end with jobs still queued.
        if mode == ShutdownMode::Drain {
            self.draining.store(true, Ordering::SeqCst);
        }
        self.accepting.store(false, Ordering::SeqCst);
        self.queued.notify_one();
        if mode == ShutdownMode::Cancel {
            let handles: Vec<JobHandle> = {
                let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                let queued: std::collections::HashSet<u64> =
                    queue.iter().map(|q| q.number).collect();
                self.live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .filter(|(n, _)| !queued.contains(n))
                    .map(|(_, h)| h.clone())
                    .collect()
            };
            for h in &handles {
                h.cancel();
            }
        }
        loop {
            let (running, queued) = self.counts();
            let waiting = match mode {
                ShutdownMode::Cancel => running,
                ShutdownMode::Drain => running + queued,
            };
            if waiting == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.recorder.flush().await;
    }
}

/// The top-level job number of an id (`12` of `12.3`).
pub fn top_number(id: &str) -> Option<u64> {
    let valid = !id.is_empty()
        && id
            .split('.')
            .all(|p| !p.is_empty() && p.len() <= 10 && p.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return None;
    }
    id.split('.').next()?.parse().ok()
}

fn find_in(view: JobView, id: &str) -> Option<JobView> {
    if view.id == id {
        return Some(view);
    }
    view.sub_jobs.into_iter().find_map(|c| find_in(c, id))
}
