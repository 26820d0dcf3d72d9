//! Kiln's host: loads plugin components, runs them as jobs on a tokio
//! runtime, and serves their imports (container, process, jobs, signals,
//! axes, log) under the capabilities they were granted.
//!
//! The entry point is [`Host`]: build it from a [`HostConfig`], then
//! [`Host::run`] a task by name or component path.

pub mod axes;
pub mod bindings;
pub mod catalog;
pub mod dir_handle;
pub mod engine;
pub mod events;
pub mod files;
pub mod grants;
pub mod guest_cpu;
mod host;
pub mod interfaces;
pub mod job;
pub mod process;
pub mod registry;
pub mod standard;

pub use catalog::TaskRef;
pub use host::{Host, HostConfig, JobReport, RunRequest};
pub use job::{FinishStatus, JobState};
