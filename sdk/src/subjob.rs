//! Sub-jobs: a pipeline makes jobs of other tasks in `job_N` directories
//! below its own, sets their parameters, starts them and reads their outputs.

use crate::bindings::kiln::plugin::jobs::{self as host, JobState};
pub use crate::bindings::kiln::plugin::jobs::{FailurePolicy, RetryPolicy, Signal};
use crate::error::TaskError;
use crate::task::Job;
use crate::{FinishStatus, Value};

impl Job {
    /// Make a sub-job of `task`; it is pending until started.
    pub fn sub_job(&self, task: &str) -> Result<SubJob, TaskError> {
        let inner = host::make(task)?;
        Ok(SubJob {
            task: task.to_string(),
            inner,
        })
    }
}

/// A sub-job made by this job.
#[derive(Debug)]
pub struct SubJob {
    task: String,
    inner: host::SubJob,
}

/// How a sub-job ended.
#[derive(Debug, Clone)]
pub struct SubJobResult {
    pub status: FinishStatus,
    pub reason: Option<String>,
    /// Times it ran: more than 1 after retries, 0 when it was reused.
    pub attempts: u32,
    /// The finished job (same task, version, parameters and input
    /// contents) whose results were reused instead of running, e.g. `3.2`.
    pub reused_from: Option<String>,
}

impl From<host::JobResult> for SubJobResult {
    fn from(r: host::JobResult) -> Self {
        SubJobResult {
            status: r.status,
            reason: r.reason,
            attempts: r.attempts,
            reused_from: r.reused_from,
        }
    }
}

impl SubJobResult {
    pub fn succeeded(&self) -> bool {
        matches!(self.status, FinishStatus::Succeeded)
    }
}

impl SubJob {
    /// `<parent>.<N>`.
    pub fn id(&self) -> String {
        self.inner.id()
    }

    pub fn task(&self) -> &str {
        &self.task
    }

    /// `job_N`, relative to this job's directory.
    pub fn directory(&self) -> String {
        self.inner.directory()
    }

    pub fn state(&self) -> JobState {
        self.inner.state()
    }

    pub fn set(&self, path: &str, value: impl Into<Value>) -> Result<(), TaskError> {
        Ok(self.inner.set_param(path, &value.into())?)
    }

    /// Copy `source_path` of another sub-job's container into `path` of this
    /// one (e.g. one step's `outputData.CELL` into the next step's
    /// `inputData.CELL`).
    pub fn copy_from(
        &self,
        path: &str,
        source: &SubJob,
        source_path: &str,
    ) -> Result<(), TaskError> {
        Ok(self
            .inner
            .copy_param(path, Some(&source.inner), source_path)?)
    }

    /// Copy `source_path` of the calling job's own container into `path`.
    pub fn copy_from_parent(&self, path: &str, source_path: &str) -> Result<(), TaskError> {
        Ok(self.inner.copy_param(path, None, source_path)?)
    }

    /// Copy `source_path` of this sub-job's container (typically one of its
    /// outputs) into `path` of the calling job's own container.
    pub fn copy_to_parent(&self, source_path: &str, path: &str) -> Result<(), TaskError> {
        Ok(self.inner.copy_to_parent(source_path, path)?)
    }

    /// What this step's failure does to the pipeline (before it starts):
    /// `FailPipeline` (the default), `Continue`, `Retry` (retryable tasks
    /// only) or `MarkUnsatisfactory`.
    pub fn on_failure(&self, policy: FailurePolicy) -> Result<(), TaskError> {
        Ok(self.inner.set_failure_policy(policy)?)
    }

    /// Start the sub-job; it waits, `queued`, while the pipeline's cap on
    /// running sub-jobs is reached.
    pub fn start(&self) -> Result<(), TaskError> {
        Ok(self.inner.start()?)
    }

    pub fn wait(&self) -> Result<SubJobResult, TaskError> {
        Ok(self.inner.wait()?.into())
    }

    /// The sub-job's next signal (progress, custom or `finished`), waiting
    /// for one; each is delivered once, in order, `finished` last.
    pub fn next_signal(&self) -> Result<Signal, TaskError> {
        Ok(self.inner.next_signal()?)
    }

    /// Wait for the custom signal `name` and return its JSON payload; the
    /// signals before it are passed over (each is delivered only once).
    /// `Ok(None)` when the sub-job finished without emitting it.
    pub fn wait_signal(&self, name: &str) -> Result<Option<String>, TaskError> {
        loop {
            match self.next_signal()? {
                Signal::Custom(c) if c.name == name => return Ok(Some(c.payload_json)),
                Signal::Finished(_) => return Ok(None),
                _ => {}
            }
        }
    }

    /// Start, wait, and turn anything but success into an error that names
    /// the sub-job and carries its reason.
    pub fn run(&self) -> Result<(), TaskError> {
        self.start()?;
        let result = self.wait()?;
        if result.succeeded() {
            return Ok(());
        }
        let reason = result
            .reason
            .unwrap_or_else(|| "no reason given".to_string());
        Err(TaskError {
            status: match result.status {
                FinishStatus::Interrupted => FinishStatus::Interrupted,
                FinishStatus::Unsatisfactory => FinishStatus::Unsatisfactory,
                _ => FinishStatus::Failed,
            },
            reason: format!(
                "sub-job {} ({}) {}: {reason}",
                self.id(),
                self.task,
                status_word(result.status)
            ),
        })
    }

    pub fn cancel(&self) {
        self.inner.cancel()
    }

    /// A value of the sub-job's container, typically `outputData.*`.
    pub fn get(&self, path: &str) -> Result<Option<Value>, TaskError> {
        Ok(self.inner.get(path)?)
    }
}

fn status_word(s: FinishStatus) -> &'static str {
    match s {
        FinishStatus::Succeeded => "succeeded",
        FinishStatus::Failed => "failed",
        FinishStatus::Interrupted => "was interrupted",
        FinishStatus::Unsatisfactory => "was unsatisfactory",
    }
}

/// Wait until any of these sub-jobs has ended; returns its index.
pub fn wait_any(jobs: &[&SubJob]) -> Result<usize, TaskError> {
    let handles: Vec<&host::SubJob> = jobs.iter().map(|j| &j.inner).collect();
    Ok(host::wait_any(&handles)? as usize)
}
