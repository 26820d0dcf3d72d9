//! The host types behind the WIT resources a guest holds: a program it
//! spawned, a sub-job it made, a motion it started. Each lives in the
//! instance's resource table; dropping one does not stop what it names
//! (the job owns that, and settles it at its end).

use crate::catalog::TaskInfo;
use kiln_exec::ProcessShared;
use kiln_jobs::Job;
use kiln_stage::Motion;
use std::sync::Arc;

/// `kiln:plugin/process.child`.
pub struct ChildHandle {
    /// The job's process number (1, 2, ...), naming its files.
    pub number: u32,
    pub process: Arc<ProcessShared>,
    /// (stdout, stderr) log file names.
    pub logs: (String, String),
}

/// `kiln:plugin/jobs.sub-job`.
pub struct SubJobHandle {
    pub job: Arc<Job>,
    /// The sub-job's task, with the code that runs it.
    pub task: Arc<TaskInfo>,
    pub started: bool,
}

/// `kiln:plugin/axes.motion`.
pub struct MotionHandle {
    pub motion: Arc<dyn Motion>,
}
