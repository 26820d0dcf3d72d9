//! The guest's handle to a program it started (`kiln:plugin/process.child`).

use super::ProcessShared;
use std::sync::Arc;

pub struct ChildHandle {
    /// Process number within the job, from 1.
    pub number: u32,
    pub process: Arc<ProcessShared>,
    /// Job-directory-relative names of the stdout and stderr logs; a file
    /// exists once its stream has had output.
    pub logs: (String, String),
}
