//! Kiln's runtime: loads plugin components, runs them as jobs on a tokio
//! runtime, and serves their imports (container, process, jobs, signals,
//! axes, log) under the capabilities they were granted.
//!
//! The entry point is [`Host`]: build it from a [`HostConfig`] (which takes
//! the executor that runs native programs, the stage behind the axes and
//! the job store as trait objects), then [`Host::submit`] and
//! [`Host::start`] a task, or [`Host::run`] it; [`Host::job`],
//! [`Host::jobs`] and [`Host::subscribe`] find and watch jobs. This is the
//! only crate that knows wasmtime: the job model is `kiln-jobs`, program
//! execution `kiln-exec`, stages `kiln-stage`.

pub mod bindings;
pub mod catalog;
pub mod engine;
pub mod guest_cpu;
mod guest_output;
mod handles;
mod host;
pub mod interfaces;
mod policy;
mod runner;
pub mod standard;
pub mod stats;

pub use catalog::{TaskInfo, TaskRef};
pub use engine::InstancePool;
pub use guest_output::GuestOutput;
pub use handles::{ChildHandle, MotionHandle, SubJobHandle};
pub use host::{
    ErrorKind, Host, HostConfig, HostStartError, JobEvents, JobHandle, JobReport, JobSummary,
    RunError, RunRequest, Watched, default_cache_dir, find_helper,
};
pub use stats::RuntimeStats;

// The crates below, for embedders that name their types.
pub use kiln_exec as exec;
pub use kiln_exec::{ProgramEntry, Registry};
pub use kiln_fs as fs;
pub use kiln_jobs as jobs;
pub use kiln_jobs::{Event, EventKind, FinishStatus, Grants, JobState};
pub use kiln_stage as stage;
// Under the names the runtime's modules had before they became crates.
pub use kiln_exec as process;
pub use kiln_exec::registry;
pub use kiln_fs::dir_handle;
pub use kiln_jobs as job;
pub use kiln_jobs::{events, grants};

pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind, not
    // a broken invariant; carry on rather than cascade the panic.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
