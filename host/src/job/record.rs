//! `job.json`: the job record in every job directory, written when the job
//! starts and again when it ends. It holds what a later run needs to trust
//! the job (its fingerprint and how it ended) and what a person or a test
//! asks of it afterwards: start and end times, attempts, reuse, and the
//! step failures of a pipeline.

use super::pipeline::StepFailure;
use super::{FinishStatus, Job, JobResult, JobState};
use crate::engine::lock;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub const RECORD_FILE: &str = "job.json";

/// The record as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub task: String,
    pub version: String,
    pub state: String,
    /// `succeeded`, `failed`, `interrupted`, `unsatisfactory`; none while
    /// the job runs (or when the host died before its end).
    pub status: Option<String>,
    pub reason: Option<String>,
    /// See [`crate::job::resume`]; none when it could not be computed.
    pub fingerprint: Option<String>,
    /// Seconds since the Unix epoch.
    pub created: f64,
    pub started: Option<f64>,
    pub ended: Option<f64>,
    pub attempts: u32,
    /// The job whose results were reused instead of running this one.
    pub reused_from: Option<String>,
    /// Steps of a pipeline that did not succeed.
    #[serde(default)]
    pub step_failures: Vec<serde_json::Value>,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl JobRecord {
    /// The record of `job`, which ended with `result` if given.
    pub(crate) fn of(job: &Job, result: Option<&JobResult>) -> JobRecord {
        let times = job.times();
        let result = result.cloned().or_else(|| job.result());
        let state = job.state();
        JobRecord {
            id: job.id.clone(),
            task: job.task.name.clone(),
            version: job.task.version.clone(),
            state: state.as_str().to_string(),
            status: result.as_ref().map(|r| r.status.as_str().to_string()),
            reason: result.and_then(|r| r.reason),
            fingerprint: lock(&job.fingerprint).clone(),
            created: unix(times.created),
            started: times.started.map(|(t, _)| unix(t)),
            ended: times.ended.map(|(t, _)| unix(t)),
            attempts: job.attempts(),
            reused_from: job.reused_from(),
            step_failures: job
                .steps
                .failures()
                .iter()
                .map(|f: &StepFailure| serde_json::to_value(f).unwrap_or_default())
                .collect(),
        }
    }

    /// The record in `dir`, if there is a readable one.
    pub fn read(dir: &Path) -> Option<JobRecord> {
        let text = std::fs::read(dir.join(RECORD_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn succeeded(&self) -> bool {
        self.status.as_deref() == Some(FinishStatus::Succeeded.as_str())
            && self.state == JobState::Finished.as_str()
    }
}

/// Write the job's record now, replacing the file whole (write, then
/// rename) so that a reader, or a host killed meanwhile, never sees half of
/// it. Not synced to disk: it is written twice per job, and what it guards
/// against is the host dying, not the machine.
pub(crate) fn write(job: &Job, result: Option<&JobResult>) -> std::io::Result<()> {
    let record = JobRecord::of(job, result);
    let text = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
    super::dir::replace_file(&job.dir, RECORD_FILE, &text, false)
}
