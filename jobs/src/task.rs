//! What the job model knows of a task: its name, version, title, container
//! definition and what it asks to be granted. The code that runs it (a
//! compiled component) is the host's, not the job's.

use crate::grants::Grants;
use kiln_container::Container;

/// A described task.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub version: String,
    pub title: String,
    /// The container definition, CCP4i2 def.xml text.
    pub definition: String,
    /// What the task asks to be granted.
    pub requests: Grants,
    /// Whether pipelines may retry the task after a failure.
    pub retryable: bool,
    /// Where the task's code came from (task name or path), for messages.
    pub origin: String,
    /// The container built from `definition`, copied for each job.
    pub container: Container,
}

impl Task {
    /// A fresh container built from the task's definition.
    pub fn new_container(&self) -> Container {
        self.container.clone()
    }
}
