//! `kiln:plugin/jobs`: sub-jobs of a pipeline. A sub-job lives in `job_N`
//! below its parent's directory, has id `<parent>.<N>`, its own container,
//! and grants no wider than its parent's.

use crate::bindings::container::Value as WitValue;
use crate::bindings::jobs::{
    CustomSignal, FailurePolicy as WitPolicy, Host, HostSubJob, JobResult as WitJobResult,
    JobState as WitState, Signal as WitSignal,
};
use crate::bindings::signals::Progress as WitProgress;
use crate::bindings::types::HostError;
use crate::handles::SubJobHandle;
use crate::interfaces::container::{container_error, value_from_wit, value_to_wit};
use crate::interfaces::{
    View, cancelled, check_len, denied, failed, invalid, limit, not_found, scope, until_cancelled,
};
use crate::lock;
use kiln_jobs::grants::Capability;
use kiln_jobs::{AuditEvent, FailurePolicy, Job, JobResult, JobSignal, JobState};
use std::sync::Arc;
use wasmtime::component::Resource;

type HostResult<T> = wasmtime::Result<Result<T, HostError>>;

fn state_to_wit(s: JobState) -> WitState {
    match s {
        JobState::Pending => WitState::Pending,
        JobState::Queued => WitState::Queued,
        JobState::Running => WitState::Running,
        JobState::Finished => WitState::Finished,
        JobState::Failed => WitState::Failed,
        JobState::Interrupted => WitState::Interrupted,
        JobState::Unsatisfactory => WitState::Unsatisfactory,
    }
}

fn result_to_wit(r: JobResult, job: &Job) -> WitJobResult {
    WitJobResult {
        status: r.status.into(),
        reason: r.reason,
        attempts: job.attempts(),
        reused_from: job.reused_from(),
    }
}

fn policy_from_wit(p: WitPolicy) -> FailurePolicy {
    match p {
        WitPolicy::FailPipeline => FailurePolicy::FailPipeline,
        WitPolicy::Continue => FailurePolicy::Continue,
        WitPolicy::Retry(r) => FailurePolicy::Retry {
            retries: r.retries,
            backoff_ms: r.backoff_ms,
        },
        WitPolicy::MarkUnsatisfactory => FailurePolicy::MarkUnsatisfactory,
    }
}

fn signal_to_wit(s: JobSignal) -> WitSignal {
    match s {
        JobSignal::Progress {
            fraction,
            phase,
            message,
        } => WitSignal::Progress(WitProgress {
            fraction,
            message,
            phase,
        }),
        JobSignal::Custom { name, payload_json } => {
            WitSignal::Custom(CustomSignal { name, payload_json })
        }
        JobSignal::Finished {
            result,
            attempts,
            reused_from,
        } => WitSignal::Finished(WitJobResult {
            status: result.status.into(),
            reason: result.reason,
            attempts,
            reused_from,
        }),
    }
}

/// Most retries a step may ask for: enough for flaky steps, not enough to
/// keep a pipeline busy forever.
const MAX_RETRIES: u32 = 100;

impl View<'_, scope::Jobs<'_>> {
    async fn make_sub_job(&mut self, task: String) -> Result<SubJobHandle, HostError> {
        check_len("a task name", &task)?;
        let b = self.bound()?;
        let (host, parent) = (b.host.clone(), b.job.clone());
        parent.require(Capability::Task, &task).map_err(denied)?;
        parent
            .room_for_sub_job()
            .map_err(|e| limit(e.to_string()))?;
        let info = host
            .catalog
            .get(&task)
            .await
            .map_err(|e| failed(format!("failed to load sub-task `{task}`: {e}")))?;
        // A sub-job holds what it and its own sub-tasks ask for, but never
        // more than its parent.
        let requests = host
            .catalog
            .requests_closure(&info)
            .await
            .map_err(|e| failed(format!("failed to load the sub-tasks of `{task}`: {e}")))?;
        let grants = parent.grants.for_sub_job(&requests);
        let (n, dir) = parent
            .allocate_child_dir()
            .map_err(|e| failed(e.to_string()))?;
        let job = Job::new(
            format!("{}.{n}", parent.id),
            info.task.clone(),
            dir,
            grants,
            info.new_container(),
            parent.cancel.child_token(),
            Some(&parent),
            None,
        );
        lock(&parent.children).push(job.clone());
        parent.audit(&AuditEvent::SubJob {
            task: &task,
            job: &job.id,
        });
        host.publish_state(&job);
        // Not held while it waits to be started: a plugin may make
        // thousands (limits.tree_jobs).
        job.release_dir();
        Ok(SubJobHandle {
            job,
            task: info,
            started: false,
        })
    }

    fn sub_job(&self, r: &Resource<SubJobHandle>) -> wasmtime::Result<Arc<Job>> {
        Ok(self.table_ref().get(r)?.job.clone())
    }

    /// The sub-job behind a handle, if it was started (waiting for one
    /// that was not would never end).
    fn started_sub_job(
        &self,
        r: &Resource<SubJobHandle>,
    ) -> wasmtime::Result<Result<Arc<Job>, HostError>> {
        let h = self.table_ref().get(r)?;
        Ok(if h.started {
            Ok(h.job.clone())
        } else {
            Err(invalid(format!(
                "sub-job {} has not been started",
                h.job.id
            )))
        })
    }
}

impl Host for View<'_, scope::Jobs<'_>> {
    async fn self_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.bound().map(|b| b.job.id.clone()).unwrap_or_default())
    }

    async fn make(&mut self, task: String) -> HostResult<Resource<SubJobHandle>> {
        if let Err(e) = self.take_handle() {
            return Ok(Err(e));
        }
        match self.make_sub_job(task).await {
            Ok(h) => Ok(Ok(self.table().push(h)?)),
            Err(e) => {
                self.release_handle();
                Ok(Err(e))
            }
        }
    }

    async fn set_max_running(&mut self, n: u32) -> HostResult<()> {
        let job = match self.bound() {
            Ok(b) => b.job.clone(),
            Err(e) => return Ok(Err(e)),
        };
        Ok(job
            .steps
            .set_cap(n, job.grants.limits.sub_jobs)
            .map_err(|e| match e {
                kiln_jobs::pipeline::CapError::AboveLimit { .. } => limit(e.to_string()),
                _ => invalid(e.to_string()),
            }))
    }

    async fn wait_any(&mut self, jobs: Vec<Resource<SubJobHandle>>) -> HostResult<u32> {
        if jobs.is_empty() {
            return Ok(Err(invalid("wait-any needs at least one sub-job")));
        }
        let mut list = Vec::with_capacity(jobs.len());
        for r in &jobs {
            match self.started_sub_job(r)? {
                Ok(job) => list.push(job),
                Err(e) => return Ok(Err(e)),
            }
        }
        if let Some(i) = list.iter().position(|j| j.result().is_some()) {
            return Ok(Ok(i as u32));
        }
        let token = self.cancel_token();
        let waits = list.iter().map(|j| Box::pin(j.wait()));
        tokio::select! {
            (_, i, _) = futures::future::select_all(waits) => Ok(Ok(i as u32)),
            _ = until_cancelled(&token) => Ok(Err(cancelled())),
        }
    }
}

impl HostSubJob for View<'_, scope::Jobs<'_>> {
    async fn id(&mut self, r: Resource<SubJobHandle>) -> wasmtime::Result<String> {
        Ok(self.sub_job(&r)?.id.clone())
    }

    async fn directory(&mut self, r: Resource<SubJobHandle>) -> wasmtime::Result<String> {
        let job = self.sub_job(&r)?;
        Ok(job
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default())
    }

    async fn state(&mut self, r: Resource<SubJobHandle>) -> wasmtime::Result<WitState> {
        Ok(state_to_wit(self.sub_job(&r)?.state()))
    }

    async fn set_param(
        &mut self,
        r: Resource<SubJobHandle>,
        path: String,
        value: WitValue,
    ) -> HostResult<()> {
        let job = self.sub_job(&r)?;
        Ok((|| {
            check_len("a path", &path)?;
            if job.state() != JobState::Pending {
                return Err(invalid(format!("sub-job {} has already started", job.id)));
            }
            let v = value_from_wit(value, &job, &path)?;
            lock(&job.container).set(&path, v).map_err(container_error)
        })())
    }

    async fn copy_param(
        &mut self,
        r: Resource<SubJobHandle>,
        path: String,
        source: Option<Resource<SubJobHandle>>,
        source_path: String,
    ) -> HostResult<()> {
        let job = self.sub_job(&r)?;
        let source_job = match &source {
            Some(s) => self.sub_job(s)?,
            None => match self.bound() {
                Ok(b) => b.job.clone(),
                Err(e) => return Ok(Err(e)),
            },
        };
        if job.state() != JobState::Pending {
            return Ok(Err(invalid(format!(
                "sub-job {} has already started",
                job.id
            ))));
        }
        // Copy out first: the two containers are never locked together.
        let snapshot = lock(&source_job.container).clone();
        Ok(lock(&job.container)
            .copy_subtree(&path, &snapshot, &source_path)
            .map_err(container_error))
    }

    async fn copy_to_parent(
        &mut self,
        r: Resource<SubJobHandle>,
        source_path: String,
        path: String,
    ) -> HostResult<()> {
        let job = self.sub_job(&r)?;
        let parent = match self.bound() {
            Ok(b) => b.job.clone(),
            Err(e) => return Ok(Err(e)),
        };
        let snapshot = lock(&job.container).clone();
        Ok(lock(&parent.container)
            .copy_subtree(&path, &snapshot, &source_path)
            .map_err(container_error))
    }

    async fn set_failure_policy(
        &mut self,
        r: Resource<SubJobHandle>,
        policy: WitPolicy,
    ) -> HostResult<()> {
        let job = self.sub_job(&r)?;
        let policy = policy_from_wit(policy);
        Ok((|| {
            if job.state() != JobState::Pending {
                return Err(invalid(format!("sub-job {} has already started", job.id)));
            }
            if let FailurePolicy::Retry { retries, .. } = policy {
                if !job.task.retryable {
                    return Err(invalid(format!(
                        "sub-job {} ({}) cannot be retried: the task does not describe itself as retryable",
                        job.id, job.task.name
                    )));
                }
                if retries > MAX_RETRIES {
                    return Err(limit(format!(
                        "a step may be retried at most {MAX_RETRIES} times, not {retries}"
                    )));
                }
            }
            *crate::lock(&job.policy) = policy;
            Ok(())
        })())
    }

    async fn next_signal(&mut self, r: Resource<SubJobHandle>) -> HostResult<WitSignal> {
        let job = match self.started_sub_job(&r)? {
            Ok(job) => job,
            Err(e) => return Ok(Err(e)),
        };
        let token = self.cancel_token();
        tokio::select! {
            s = job.signals.next() => Ok(match s {
                Some(s) => Ok(signal_to_wit(s)),
                None => Err(not_found(format!(
                    "sub-job {} has no more signals: its `finished` was delivered",
                    job.id
                ))),
            }),
            _ = until_cancelled(&token) => Ok(Err(cancelled())),
        }
    }

    async fn start(&mut self, r: Resource<SubJobHandle>) -> HostResult<()> {
        let (host, parent) = match self.bound() {
            Ok(b) => (b.host.clone(), b.job.clone()),
            Err(e) => return Ok(Err(e)),
        };
        if let Some(step) = parent.steps.failing_step() {
            return Ok(Err(failed(format!(
                "no more steps start: the pipeline is failing because {}",
                step.describe()
            ))));
        }
        let h = self.table().get_mut(&r)?;
        if h.started {
            return Ok(Err(invalid(format!(
                "sub-job {} was already started",
                h.job.id
            ))));
        }
        // A sub-job's parameters are checked as a top-level job's are,
        // before anything of it runs.
        // Its files are looked at as the host will read them: through the
        // job's roots, regular files reached without a link.
        let roots = &h.job.roots;
        let errors = kiln_jobs::validation::validation_errors(&lock(&h.job.container), &|p| {
            roots.open_file(p).is_ok()
        });
        if !errors.is_empty() {
            let list = kiln_jobs::validation::report_lines(&errors);
            return Ok(Err(invalid(format!(
                "sub-job {} ({}) has invalid parameters: {}",
                h.job.id,
                h.job.task.name,
                list.join("; ")
            ))));
        }
        h.started = true;
        let job = h.job.clone();
        let task = h.task.clone();
        // Started from now on: its parameters are fixed, and if the
        // pipeline ends it is cancelled and waited for, not dropped as
        // never started.
        job.set_state(JobState::Queued);
        let slot = parent.steps.queue_for_slot().await;
        crate::runner::start_job(host, job, task, Some(slot));
        Ok(Ok(()))
    }

    async fn wait(&mut self, r: Resource<SubJobHandle>) -> HostResult<WitJobResult> {
        let job = match self.started_sub_job(&r)? {
            Ok(job) => job,
            Err(e) => return Ok(Err(e)),
        };
        let token = self.cancel_token();
        tokio::select! {
            res = job.wait() => Ok(Ok(result_to_wit(res, &job))),
            _ = until_cancelled(&token) => Ok(Err(cancelled())),
        }
    }

    async fn cancel(&mut self, r: Resource<SubJobHandle>) -> wasmtime::Result<()> {
        self.sub_job(&r)?.cancel();
        Ok(())
    }

    async fn get(
        &mut self,
        r: Resource<SubJobHandle>,
        path: String,
    ) -> HostResult<Option<WitValue>> {
        let job = self.sub_job(&r)?;
        Ok(lock(&job.container)
            .get(&path)
            .map(|v| v.map(value_to_wit))
            .map_err(container_error))
    }

    async fn drop(&mut self, r: Resource<SubJobHandle>) -> wasmtime::Result<()> {
        // The sub-job itself belongs to its parent job and is settled at the
        // parent's end.
        self.table().delete(r)?;
        self.release_handle();
        Ok(())
    }
}
