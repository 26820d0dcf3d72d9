//! The error a task returns to end its run as failed (or unsatisfactory, or
//! interrupted when the host is cancelling it).

use crate::bindings::kiln::plugin::types::{ErrorKind, FinishStatus, HostError};
use std::fmt;

/// Why a task's run did not succeed. Host-call errors convert into it with
/// `?`; a `cancelled` host error makes the job `interrupted`.
#[derive(Debug, Clone)]
pub struct TaskError {
    pub status: FinishStatus,
    pub reason: String,
}

impl TaskError {
    /// The job failed.
    pub fn failed(reason: impl Into<String>) -> Self {
        TaskError {
            status: FinishStatus::Failed,
            reason: reason.into(),
        }
    }

    /// The job ran but its result is not good enough (CCP4i2's
    /// unsatisfactory).
    pub fn unsatisfactory(reason: impl Into<String>) -> Self {
        TaskError {
            status: FinishStatus::Unsatisfactory,
            reason: reason.into(),
        }
    }

    /// Prefix the reason with what was being done, e.g. `"step mtzdump"`.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.reason = format!("{what}: {}", self.reason);
        self
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for TaskError {}

impl From<HostError> for TaskError {
    fn from(e: HostError) -> Self {
        let status = match e.kind {
            ErrorKind::Cancelled => FinishStatus::Interrupted,
            _ => FinishStatus::Failed,
        };
        TaskError {
            status,
            reason: e.message,
        }
    }
}

impl From<crate::template::TemplateError> for TaskError {
    fn from(e: crate::template::TemplateError) -> Self {
        TaskError::failed(format!("command template: {e}"))
    }
}
