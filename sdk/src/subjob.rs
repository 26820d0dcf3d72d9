//! Sub-jobs: a pipeline makes jobs of other tasks in `job_N` directories
//! below its own, sets their parameters, starts them and reads their outputs.

use crate::bindings::kiln::plugin::jobs::{self as host, JobState};
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

    pub fn start(&self) -> Result<(), TaskError> {
        Ok(self.inner.start()?)
    }

    pub fn wait(&self) -> Result<SubJobResult, TaskError> {
        let r = self.inner.wait()?;
        Ok(SubJobResult {
            status: r.status,
            reason: r.reason,
        })
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
