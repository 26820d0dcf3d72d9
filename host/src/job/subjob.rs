//! The guest's handle to a sub-job it made (`kiln:plugin/jobs.sub-job`).

use super::Job;
use std::sync::Arc;

pub struct SubJobHandle {
    pub job: Arc<Job>,
    pub started: bool,
}
