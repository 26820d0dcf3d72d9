//! Kiln's job model: jobs and their states, pipelines of sub-jobs and their
//! failure policies, the signals a sub-job sends its pipeline, the audit
//! trail, the job directory layout, grants, the event bus, fingerprints
//! and resume, and the host's records of jobs behind the [`JobStore`]
//! trait.
//!
//! Nothing here runs code: the host (`kiln-host`) runs a job's plugin, an
//! executor (`kiln-exec`) its programs, a stage (`kiln-stage`) its axes.
//! This crate knows neither wasmtime nor processes.

pub mod audit;
pub mod delivery;
pub mod dir;
pub mod dir_store;
pub mod end_files;
pub mod events;
pub mod grants;
mod job;
pub mod job_log;
pub mod pipeline;
pub mod reconcile;
pub mod record;
pub mod resume;
pub mod signal_queue;
pub mod store;
pub mod task;
pub mod validation;

pub use audit::{Audit, AuditEvent};
pub use delivery::{Delivery, STAGING_DIR};
pub use dir::{
    JobDirError, allocate_top_level, create_numbered, highest_job_number, open_jobs_dir,
    write_file as write_job_file,
};
pub use dir_store::DirStore;
pub use events::{Event, EventBus, EventKind};
pub use grants::{Capability, Grants};
pub use job::{FinishStatus, Job, JobResult, JobState, JobTimes, TreeLimit};
pub use pipeline::{FailurePolicy, StepFailure};
pub use record::JobRecord;
pub use signal_queue::JobSignal;
pub use store::{JobStore, Reconciled, StoredJob};
pub use task::Task;

pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind, not
    // a broken invariant; carry on rather than cascade the panic.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
