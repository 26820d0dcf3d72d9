//! The guest's handle to a program it started (`kiln:plugin/process.child`).

use super::ProcessShared;
use std::sync::Arc;

pub struct ChildHandle {
    /// Process number within the job, from 1.
    pub number: u32,
    pub process: Arc<ProcessShared>,
    /// Job-directory-relative names of the stdout and stderr logs.
    pub logs: (String, String),
}
