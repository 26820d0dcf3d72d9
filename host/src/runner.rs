//! Running one job: instantiate its component in a fresh store bound to the
//! job, call `run` under the job's limits, then settle everything the job
//! left (programs, sub-jobs), write its files and record exactly one end.

use crate::catalog::TaskInfo;
use crate::host::{HostShared, JobsState};
use crate::interfaces::{Bound, PluginState, trap_reason};
use crate::lock;
use kiln_exec::{CaptureBudget, ExecSession};
use kiln_jobs::end_files::{archive_attempt, params_header, write_end_files};
use kiln_jobs::pipeline::SlotWait;
use kiln_jobs::resume::Stop;
use kiln_jobs::store::Finished;
use kiln_jobs::{
    FinishStatus, Job, JobResult, JobSignal, JobState, pipeline, record, resume, write_job_file,
};
use kiln_stage::Motion;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// What one attempt of a job holds beyond the job model, and lets go of at
/// its end: the session its programs run in, the motions it started.
pub(crate) struct Attempt {
    pub exec: Arc<dyn ExecSession>,
    /// Motions started; any still moving stop at the attempt's end.
    pub motions: Mutex<Vec<Arc<dyn Motion>>>,
    /// What the job's programs' captured output may hold in memory, all of
    /// them together (`limits.output_bytes`).
    pub captures: Arc<CaptureBudget>,
}

impl Attempt {
    fn open(
        host: &HostShared,
        job: &Job,
        captures: &Arc<CaptureBudget>,
    ) -> Result<Attempt, String> {
        let sandbox = crate::policy::sandbox(job).map_err(|e| format!("the job directory: {e}"))?;
        let exec = host
            .executor
            .open(&job.id, sandbox)
            .map_err(|e| format!("cannot run the job's programs: {e}"))?;
        Ok(Attempt {
            exec,
            motions: Mutex::new(Vec::new()),
            captures: captures.clone(),
        })
    }
}

/// How long a cancelled guest gets to return on its own (its pending host
/// calls return `cancelled`) before it is dropped.
const GUEST_GRACE: Duration = Duration::from_secs(2);

/// Run a job in the background; its end is observed through [`Job::wait`].
/// A pipeline's step comes with its place in the queue for a slot under
/// the pipeline's cap.
pub(crate) fn start_job(
    host: Arc<HostShared>,
    job: Arc<Job>,
    task: Arc<TaskInfo>,
    slot: Option<SlotWait>,
) {
    host.add_live(&job);
    // Boxed: a pipeline's run starts sub-jobs from inside a host call, so the
    // future type would otherwise contain itself.
    let fut: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(run(host, job, task, slot));
    tokio::spawn(fut);
}

async fn run(host: Arc<HostShared>, job: Arc<Job>, task: Arc<TaskInfo>, slot: Option<SlotWait>) {
    // Held from here to the job's end (see record_end).
    if let Err(e) = job.hold_dir() {
        let reason = format!("cannot open the job directory: {e}");
        return finish(&host, &job, JobResult::failed(reason)).await;
    }
    let jobs = match host.jobs() {
        Ok(jobs) => jobs.clone(),
        Err(e) => return finish(&host, &job, JobResult::failed(e.to_string())).await,
    };
    if let Err(e) = jobs.store.note_started(&job.id) {
        host.warn(&job, e.to_string());
    }
    if job.parent().is_none() {
        watch_disk(&host, &job);
    }
    let fingerprint = fingerprint_of(&host, &job, &task).await;
    *lock(&job.fingerprint) = fingerprint.clone();
    if job.cancel.is_cancelled() {
        return finish(
            &host,
            &job,
            JobResult::interrupted("cancelled before it ran"),
        )
        .await;
    }
    if let Some(fp) = &fingerprint
        && let Some(result) = try_reuse(&host, &jobs, &job, fp).await
    {
        return finish(&host, &job, result).await;
    }
    // A step waits for a slot under its pipeline's cap.
    let _slot = match slot {
        None => None,
        Some(SlotWait::Ready(permit)) => permit,
        Some(SlotWait::Queued(wait)) => {
            job.set_state(JobState::Queued);
            host.publish_state(&job);
            tokio::select! {
                p = wait => p.ok(),
                _ = job.cancel.cancelled() => {
                    return finish(&host, &job, JobResult::interrupted("cancelled while queued")).await;
                }
            }
        }
    };
    lock(&job.times).started = Some((SystemTime::now(), Instant::now()));
    // The wall limit covers every attempt.
    let deadline = tokio::time::Instant::now() + job.grants.limits.wall();
    let policy = job.failure_policy();
    let first_container = lock(&job.container).clone();
    let captures =
        CaptureBudget::new(usize::try_from(job.grants.limits.output_bytes).unwrap_or(usize::MAX));
    let mut attempt = 1u32;
    let result = loop {
        job.attempts
            .store(attempt, std::sync::atomic::Ordering::SeqCst);
        job.set_state(JobState::Running);
        host.publish_state(&job);
        if let Err(e) = record::write(&*jobs.store, jobs.root.path(), &job, None, None) {
            host.warn(&job, format!("failed to write the job's record: {e}"));
        }
        let input = lock(&job.container).to_params_xml(&params_header(&job));
        let written = job
            .dir_handle()
            .and_then(|dir| write_job_file(&dir, "input_params.xml", input.as_bytes()))
            // Closed now, not held for the attempt: a host of thousands of
            // jobs runs out of descriptors before it runs out of memory.
            .map(drop);
        let result = match (written, Attempt::open(&host, &job, &captures)) {
            (Err(e), _) => JobResult::failed(format!("failed to write input_params.xml: {e}")),
            (Ok(_), Err(e)) => JobResult::failed(e),
            (Ok(_), Ok(run)) => {
                let run = Arc::new(run);
                let result = execute_with_limits(&host, &job, &task, &run, deadline).await;
                settle_attempt(&run).await;
                result
            }
        };
        settle_sub_jobs(&host, &job).await;
        let result = pipeline::pipeline_outcome(&job, result);
        let retry = result.status == FinishStatus::Failed
            && attempt < policy.max_attempts()
            && !job.cancel.is_cancelled();
        if !retry {
            break result;
        }
        host.publish(
            &job,
            kiln_jobs::EventKind::Log {
                level: "warn".into(),
                message: format!(
                    "attempt {attempt} failed ({}); retrying in {} ms",
                    result.reason.as_deref().unwrap_or("no reason given"),
                    policy.backoff(attempt).as_millis()
                ),
            },
        );
        let result = write_end_files(&job, result);
        if let Err(e) = job
            .dir_handle()
            .and_then(|dir| archive_attempt(&dir, attempt))
        {
            break JobResult::failed(format!(
                "{}; and failed to keep attempt {attempt}'s files for a retry: {e}",
                result.reason.as_deref().unwrap_or("failed")
            ));
        }
        job.reset_for_attempt();
        *lock(&job.container) = first_container.clone();
        tokio::select! {
            _ = tokio::time::sleep(policy.backoff(attempt)) => {}
            _ = job.cancel.cancelled() => break JobResult::interrupted("cancelled between attempts"),
        }
        attempt += 1;
    };
    finish(&host, &job, result).await;
}

/// Run `f` (which reads what the plugin wrote) on a blocking thread,
/// within the job's wall limit and until it is cancelled; `None` if it did
/// not finish in time. `f` must give up once its stop is raised.
async fn bounded<T: Send + 'static>(
    job: &Job,
    f: impl FnOnce(&AtomicBool) -> T + Send + 'static,
) -> Option<T> {
    let stop: Stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let task = tokio::task::spawn_blocking(move || f(&s));
    let result = tokio::select! {
        r = task => r.ok(),
        _ = tokio::time::sleep(job.grants.limits.wall()) => None,
        _ = job.cancel.cancelled() => None,
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    result
}

/// The job's fingerprint (see [`resume`]): its input files are read
/// through its roots, within its time limits.
async fn fingerprint_of(host: &HostShared, job: &Arc<Job>, task: &TaskInfo) -> Option<String> {
    let code = code_identity(host, job, task).await;
    let container = lock(&job.container).clone();
    let j = job.clone();
    bounded(job, move |stop| {
        resume::fingerprint(
            &j.task.name,
            &j.task.version,
            &code,
            &container,
            &j.roots,
            stop,
        )
    })
    .await
    .flatten()
}

/// How often a job tree's directory is measured at most, and at least.
const DISK_CHECK_MIN: Duration = Duration::from_millis(50);
const DISK_CHECK_MAX: Duration = Duration::from_secs(2);
/// The fastest the directory is assumed to grow, bytes a second: the next
/// measurement comes before the headroom left could fill at this rate.
const DISK_FILL_RATE: u64 = 2 << 30;

/// Measure a top-level job's directory (its sub-jobs' included) while it
/// runs, and fail the job once it holds more than `limits.disk_bytes`,
/// whoever wrote it. The next measurement comes sooner the less room is
/// left, and never sooner than ten times the last one took.
fn watch_disk(host: &Arc<HostShared>, job: &Arc<Job>) {
    let (job, _host) = (job.clone(), host.clone());
    tokio::spawn(async move {
        let limit = job.grants.limits.disk_bytes;
        let mut pause = DISK_CHECK_MIN;
        loop {
            tokio::select! {
                _ = job.wait() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            let Ok(dir) = job.dir_handle() else {
                pause = DISK_CHECK_MAX;
                continue;
            };
            let started = Instant::now();
            let bytes = match tokio::task::spawn_blocking(move || dir.usage()).await {
                Ok(Ok((bytes, _))) => bytes,
                // Too deep to measure: it cannot be kept under the limit.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidInput => {
                    job.abort(format!("disk limit: {e}"));
                    return;
                }
                _ => {
                    pause = DISK_CHECK_MAX;
                    continue;
                }
            };
            if bytes > limit {
                job.abort(format!(
                    "disk limit: the job directory {} holds {bytes} bytes, more than limits.disk_bytes ({limit})",
                    job.dir.display()
                ));
                return;
            }
            let room = Duration::from_secs_f64((limit - bytes) as f64 / DISK_FILL_RATE as f64);
            pause = room
                .clamp(DISK_CHECK_MIN, DISK_CHECK_MAX)
                .max(started.elapsed() * 10);
        }
    });
}

/// What would run for this job, for its fingerprint: the components of its
/// task and of every sub-task it may make (by hash), and the registry
/// entries of the programs it may spawn, with their files' size and
/// modification time. A rebuilt plugin or a replaced program makes the
/// job run again rather than reuse an old result.
async fn code_identity(host: &HostShared, job: &Job, task: &TaskInfo) -> serde_json::Value {
    let mut tasks = serde_json::Map::new();
    tasks.insert(task.name.clone(), task.plugin.hash.clone().into());
    for name in &job.grants.tasks {
        let hash = match host.catalog.get(name).await {
            Ok(info) => info.plugin.hash.clone(),
            Err(e) => format!("unavailable: {e}"),
        };
        tasks.insert(name.clone(), hash.into());
    }
    let mut programs = serde_json::Map::new();
    for name in &job.grants.programs {
        let entry = host.programs.registry.get(name).map(|e| {
            let file = std::fs::metadata(&e.path).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                serde_json::json!({"size": m.len(), "mtime": m.mtime(), "mtime_ns": m.mtime_nsec()})
            });
            serde_json::json!({
                "path": e.path, "args": e.args, "env": e.env, "sha256": e.sha256, "file": file,
            })
        });
        programs.insert(name.clone(), entry.unwrap_or_default());
    }
    serde_json::json!({"tasks": tasks, "programs": programs})
}

/// For a step, when resuming is on and a step that succeeded with the same
/// fingerprint exists: take its outputs over. `Some` is how the step ends;
/// `None` runs it.
async fn try_reuse(
    host: &Arc<HostShared>,
    jobs: &JobsState,
    job: &Arc<Job>,
    fingerprint: &str,
) -> Option<JobResult> {
    job.parent()?;
    if !host.resume {
        return None;
    }
    let old = jobs.store.find_finished(fingerprint, &job.id)?;
    let old_id = old.record.id.clone();
    let mut container = lock(&job.container).clone();
    let (j, root) = (job.clone(), jobs.root.try_clone().ok()?);
    let delivered = bounded(job, move |stop| {
        resume::copy_job_files(&old, &root, &j.roots, stop)?;
        resume::deliver_outputs(&mut container, &old, &root, &j.roots, stop).map(|()| container)
    })
    .await
    .unwrap_or_else(|| Err("stopped by the job's time limit or a cancel".into()));
    match delivered {
        Ok(container) => {
            *lock(&job.container) = container;
            *lock(&job.reused_from) = Some(old_id.clone());
            lock(&job.times).started = Some((SystemTime::now(), Instant::now()));
            // For whoever watches (the live tree), not a signal of the job's.
            host.publish(
                job,
                kiln_jobs::events::EventKind::Progress {
                    fraction: Some(1.0),
                    phase: "reused".into(),
                    message: format!("results of job {old_id}"),
                },
            );
            Some(JobResult::succeeded())
        }
        Err(e) => {
            host.warn(job, format!("not reusing job {old_id}: {e}; running it"));
            None
        }
    }
}

async fn execute_with_limits(
    host: &Arc<HostShared>,
    job: &Arc<Job>,
    task: &TaskInfo,
    attempt: &Arc<Attempt>,
    deadline: tokio::time::Instant,
) -> JobResult {
    let limits = job.grants.limits.clone();
    let exec = execute(host.clone(), job.clone(), task, attempt.clone());
    tokio::pin!(exec);
    tokio::select! {
        r = &mut exec => r,
        _ = job.cancel.cancelled() => {
            let _ = tokio::time::timeout(GUEST_GRACE, &mut exec).await;
            match job.abort_reason() {
                Some(reason) => JobResult::failed(reason),
                None => JobResult::interrupted("cancelled"),
            }
        }
        _ = tokio::time::sleep_until(deadline) => {
            // Stops the job's programs and sub-jobs, and makes the guest's
            // pending calls return `cancelled`.
            job.cancel.cancel();
            let _ = tokio::time::timeout(GUEST_GRACE, &mut exec).await;
            JobResult::failed(format!(
                "time limit: the job ran for more than {} s of wall time (limits.wall_seconds)",
                limits.wall_seconds
            ))
        }
    }
}

async fn execute(
    host: Arc<HostShared>,
    job: Arc<Job>,
    task: &TaskInfo,
    attempt: Arc<Attempt>,
) -> JobResult {
    let limits = job.grants.limits.clone();
    let guest_output = PluginState::guest_output_sink();
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(guest_output.clone())
        .stderr(guest_output.clone());
    // The job directory is the guest's only view of the filesystem: the
    // one held, whatever its path has become.
    let preopened = match job.dir_handle() {
        Ok(dir) => wasi
            .preopened_dir(dir.fd_path(), "/job", FsPerms::ReadWrite)
            .map(drop)
            .map_err(|e| format!("{e:#}")),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = preopened {
        return JobResult::failed(format!("failed to open the job directory: {e}"));
    }
    let memory = usize::try_from(limits.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let state = PluginState::new(
        wasi.build(),
        Some(Bound {
            host: host.clone(),
            job: job.clone(),
            attempt,
        }),
        memory,
        Some(guest_output),
    );
    // A live instance until `store` is dropped at the end of this function.
    let (mut store, instance) = host
        .engine
        .instantiate(&task.plugin, state, limits.cpu())
        .await;
    let instance = match instance {
        Ok(i) => i,
        Err(e) => return JobResult::failed(trap_reason(&e, store.data())),
    };
    match instance.call_run(&mut store).await {
        Ok(outcome) => JobResult {
            status: outcome.status.into(),
            reason: outcome.reason,
        },
        Err(e) => JobResult::failed(trap_reason(&e, store.data())),
    }
}

/// Stop what an attempt of the job left running: axes, programs and
/// whatever they forked.
async fn settle_attempt(attempt: &Attempt) {
    // A job leaves no axis moving.
    for motion in lock(&attempt.motions).drain(..) {
        motion.stop();
    }
    attempt.exec.close().await;
}

/// Stop the sub-jobs an attempt of the job left: cancel and wait for the
/// running ones, end those never started.
async fn settle_sub_jobs(host: &Arc<HostShared>, job: &Arc<Job>) {
    for child in job.children() {
        if child.result().is_some() {
            continue;
        }
        if child.state() == JobState::Pending {
            // Made but never started: it ends with its parent.
            settle_never_started(host, &child);
            continue;
        }
        child.cancel();
        child.wait().await;
    }
}

/// Write the job's files and record its end once. A step that succeeded
/// with a fingerprint also records its outputs, with their content hashes,
/// for a later run to reuse.
async fn finish(host: &Arc<HostShared>, job: &Arc<Job>, result: JobResult) {
    let result = deliver_asked_outputs(job, result).await;
    let result = write_end_files(job, result);
    let mut finished = None;
    if result.status == FinishStatus::Succeeded {
        // Every job that succeeded records its outputs, for whoever reads
        // its record (the job service shows them); a step that a later run
        // could reuse also keeps the rest of its files.
        let reusable = job.parent().is_some() && job.fingerprint().is_some();
        let container = lock(&job.container).clone();
        let params = container.to_params_xml(&params_header(job));
        let j = job.clone();
        let hashed = bounded(job, move |stop| {
            let outputs = resume::output_files(&container, &j.roots, stop)?;
            let files = if reusable {
                let dir = j.dir_handle().map_err(|e| e.to_string())?;
                resume::job_files(&dir, stop)?
            } else {
                Vec::new()
            };
            Ok::<_, String>((outputs, files))
        });
        match hashed.await {
            Some(Ok((outputs, files))) => {
                finished = Some(Finished {
                    params,
                    outputs,
                    files,
                })
            }
            failed => {
                let why = match failed {
                    Some(Err(why)) => why,
                    _ => "its outputs could not be hashed in time".into(),
                };
                let consequence = if reusable {
                    "this job will not be reused"
                } else {
                    "its outputs are not in its record"
                };
                host.warn(job, format!("{consequence}: {why}"));
            }
        }
    }
    record_end(host, job, result, finished);
}

/// For a job that succeeded, copy the outputs named on the command line to
/// where they were asked for; a failure to fails the job.
async fn deliver_asked_outputs(job: &Arc<Job>, result: JobResult) -> JobResult {
    let deliveries = lock(&job.deliveries).clone();
    if result.status != FinishStatus::Succeeded || deliveries.is_empty() {
        return result;
    }
    let mut container = lock(&job.container).clone();
    let j = job.clone();
    let delivered = bounded(job, move |_stop| {
        kiln_jobs::delivery::deliver(&deliveries, &mut container, &j.roots).map(|()| container)
    })
    .await;
    match delivered {
        Some(Ok(container)) => {
            *lock(&job.container) = container;
            result
        }
        Some(Err(why)) => JobResult::failed(why),
        None => JobResult::failed("its outputs could not be copied where asked in time"),
    }
}

pub(crate) fn settle_never_started(host: &Arc<HostShared>, job: &Arc<Job>) {
    record_end(
        host,
        job,
        JobResult::interrupted("never started: its parent job ended first"),
        None,
    );
}

/// Record the end once: the job record, state, the pipeline's policy, then
/// the `finished` signal, then wake the waiters, so whoever waited sees the
/// signal already published.
fn record_end(
    host: &Arc<HostShared>,
    job: &Arc<Job>,
    result: JobResult,
    finished: Option<Finished>,
) {
    if !job.claim_end() {
        return;
    }
    // Every audit line is on disk before the job's end is.
    job.audit.close();
    lock(&job.times).ended = Some((SystemTime::now(), Instant::now()));
    job.set_state(result.status.state());
    match host.jobs() {
        Ok(jobs) => {
            let reusable = finished.is_some() && job.parent().is_some();
            // The record says succeeded before the index names the job, so
            // a host killed in between leaves nothing pointing at an
            // unfinished job.
            let recorded =
                record::write(&*jobs.store, jobs.root.path(), job, Some(&result), finished);
            if let (true, Some(fp)) = (reusable, job.fingerprint())
                && let Err(e) = jobs.store.add_finished(&fp, &job.id)
            {
                host.warn(
                    job,
                    format!("failed to add the job to the index of finished jobs: {e}"),
                );
            }
            if let Err(e) = recorded {
                host.warn(job, format!("failed to write the job's record: {e}"));
            }
        }
        Err(e) => host.warn(job, format!("failed to record the job's end: {e}")),
    }
    if let Some(parent) = job.parent() {
        pipeline::step_ended(&parent, job, &result);
    }
    host.publish_state(job);
    job.signals.close(JobSignal::Finished {
        result: result.clone(),
        attempts: job.attempts(),
        reused_from: job.reused_from(),
    });
    host.publish_finished(job, result.status, result.reason.clone());
    job.finish(result);
    // Ended: a later use finds the directory again below its parent's.
    job.release_dir();
}
