//! The job record: its state, how it ended, its fingerprint, start and end
//! times, attempts, reuse, and the step failures of a pipeline. Written
//! when the job starts and again when it ends, into the host's store (the
//! record of truth, see [`crate::store`]) and, as `job.json`, into the job
//! directory: a copy for people and tests, which the host never reads back
//! (the plugin can rewrite it).

use crate::lock;
use crate::pipeline::StepFailure;
use crate::store::{Finished, JobStore, StoredJob};
use crate::{FinishStatus, Job, JobResult, JobState};
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
    /// See [`crate::resume`]; none when it could not be computed.
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

#[cfg(test)]
impl JobRecord {
    /// A record of task `t` version 1 in `state`, for tests to adjust.
    pub fn example(id: &str, state: &str) -> JobRecord {
        JobRecord {
            id: id.into(),
            task: "t".into(),
            version: "1".into(),
            state: state.into(),
            status: None,
            reason: None,
            fingerprint: None,
            created: 0.0,
            started: None,
            ended: None,
            attempts: 1,
            reused_from: None,
            step_failures: Vec::new(),
        }
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl JobRecord {
    /// The record of `job`, which ended with `result` if given.
    pub fn of(job: &Job, result: Option<&JobResult>) -> JobRecord {
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

    /// The copy in the job directory `dir`, if there is a readable one;
    /// for people and tests: the plugin may have rewritten it.
    pub fn read(dir: &Path) -> Option<JobRecord> {
        let text = std::fs::read(dir.join(RECORD_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn succeeded(&self) -> bool {
        self.status.as_deref() == Some(FinishStatus::Succeeded.as_str())
            && self.state == JobState::Finished.as_str()
    }
}

/// Write the job's record now, into the store and as the job directory's
/// copy. `finished` is, for a step that succeeded, its final parameters and
/// output files (what a later run may reuse). A failure to write the copy
/// is returned after the store's record was written.
pub fn write(
    store: &dyn JobStore,
    jobs_dir: &Path,
    job: &Job,
    result: Option<&JobResult>,
    finished: Option<Finished>,
) -> std::io::Result<()> {
    let record = JobRecord::of(job, result);
    let text = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
    let (params, outputs, files) = match finished {
        Some(f) => (Some(f.params), f.outputs, f.files),
        None => (None, Vec::new(), Vec::new()),
    };
    store.put(&StoredJob {
        record,
        dir: job
            .dir
            .strip_prefix(jobs_dir)
            .unwrap_or(&job.dir)
            .to_path_buf(),
        params,
        outputs,
        files,
    })?;
    job.dir_handle()?
        .replace(RECORD_FILE, &text, false)
        .map(drop)
}
