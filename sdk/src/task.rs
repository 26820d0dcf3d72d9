//! The task contract: what a plugin implements ([`Task`]), what it says about
//! itself ([`Description`]), and the handle to its running job ([`Job`]).

use crate::Level;
use crate::bindings::kiln::plugin::types::{
    CapabilityRequest, FinishStatus, RunOutcome, TaskDescription,
};
use crate::bindings::kiln::plugin::{jobs, log, signals};
use crate::error::TaskError;

/// A Kiln task or pipeline. Export it with [`export_task!`](crate::export_task).
pub trait Task {
    /// Name, version, container definition and requested capabilities.
    fn describe() -> Description;
    /// Do the work. `Ok` ends the job succeeded; an error ends it with the
    /// error's status and reason.
    fn run(job: &Job) -> Result<(), TaskError>;
}

/// What a task says about itself; built with chained setters.
#[derive(Debug, Clone)]
pub struct Description {
    inner: TaskDescription,
}

impl Description {
    pub fn new(name: &str, version: &str, title: &str) -> Self {
        Description {
            inner: TaskDescription {
                name: name.to_string(),
                version: version.to_string(),
                title: title.to_string(),
                definition: String::new(),
                requests: CapabilityRequest {
                    programs: Vec::new(),
                    tasks: Vec::new(),
                    axes: Vec::new(),
                    env: Vec::new(),
                    read_dirs: Vec::new(),
                    write_dirs: Vec::new(),
                    network: false,
                },
                retryable: false,
            },
        }
    }

    /// The container definition, as CCP4i2 def.xml text.
    pub fn definition(mut self, def_xml: &str) -> Self {
        self.inner.definition = def_xml.to_string();
        self
    }

    /// Registry names of the programs the task runs.
    pub fn programs<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.inner
            .requests
            .programs
            .extend(names.into_iter().map(String::from));
        self
    }

    /// Tasks the pipeline makes sub-jobs of.
    pub fn tasks<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.inner
            .requests
            .tasks
            .extend(names.into_iter().map(String::from));
        self
    }

    /// Axis ids the task reads or moves.
    pub fn axes<'a>(mut self, ids: impl IntoIterator<Item = &'a str>) -> Self {
        self.inner
            .requests
            .axes
            .extend(ids.into_iter().map(String::from));
        self
    }

    /// Environment variable names passed to programs.
    pub fn env<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.inner
            .requests
            .env
            .extend(names.into_iter().map(String::from));
        self
    }

    /// Host directories read besides the inputs.
    pub fn read_dirs<'a>(mut self, dirs: impl IntoIterator<Item = &'a str>) -> Self {
        self.inner
            .requests
            .read_dirs
            .extend(dirs.into_iter().map(String::from));
        self
    }

    /// Host directories written besides the job directory.
    pub fn write_dirs<'a>(mut self, dirs: impl IntoIterator<Item = &'a str>) -> Self {
        self.inner
            .requests
            .write_dirs
            .extend(dirs.into_iter().map(String::from));
        self
    }

    /// Native programs need the network.
    pub fn network(mut self) -> Self {
        self.inner.requests.network = true;
        self
    }

    /// The task may run again after a failure without harm (it writes only
    /// into its own job directory), so pipelines may retry it.
    pub fn retryable(mut self) -> Self {
        self.inner.retryable = true;
        self
    }
}

/// The running job: its container, programs, sub-jobs, progress and log.
/// Every method is a call into the host; the job itself lives there.
#[derive(Debug, Default)]
pub struct Job {
    _private: (),
}

impl Job {
    /// This job's id, e.g. `12` or `12.1`.
    pub fn id(&self) -> String {
        jobs::self_id()
    }

    /// Report progress: `fraction` from 0.0 to 1.0 when known, `phase` a
    /// short name of the current phase. Fails only when this job's pipeline
    /// has not read its earlier signals (`limits.signals`).
    pub fn progress(
        &self,
        fraction: Option<f32>,
        phase: &str,
        message: &str,
    ) -> Result<(), TaskError> {
        Ok(signals::emit_progress(&signals::Progress {
            fraction,
            message: message.to_string(),
            phase: phase.to_string(),
        })?)
    }

    /// Run at most `n` of this job's sub-jobs at once (CCP4i2's MAXNJOBS);
    /// more wait, `queued`, in start order. Call before starting any.
    pub fn max_running_sub_jobs(&self, n: u32) -> Result<(), TaskError> {
        Ok(jobs::set_max_running(n)?)
    }

    /// Emit a custom named signal with a JSON payload.
    pub fn signal(&self, name: &str, payload_json: &str) -> Result<(), TaskError> {
        Ok(signals::emit(name, payload_json)?)
    }

    pub fn log(&self, level: Level, message: &str) {
        log::log(level, message);
    }

    pub fn info(&self, message: &str) {
        log::log(Level::Info, message);
    }

    pub fn warn(&self, message: &str) {
        log::log(Level::Warn, message);
    }
}

#[doc(hidden)]
pub fn describe_task<T: Task>() -> TaskDescription {
    T::describe().inner
}

#[doc(hidden)]
pub fn run_task<T: Task>() -> RunOutcome {
    let job = Job::default();
    match T::run(&job) {
        Ok(()) => RunOutcome {
            status: FinishStatus::Succeeded,
            reason: None,
        },
        Err(e) => RunOutcome {
            status: e.status,
            reason: Some(e.reason),
        },
    }
}

/// Export a [`Task`] as the component's `describe` and `run`.
///
/// ```ignore
/// struct MyTask;
/// impl kiln_sdk::Task for MyTask { /* ... */ }
/// kiln_sdk::export_task!(MyTask);
/// ```
#[macro_export]
macro_rules! export_task {
    ($task:ty) => {
        #[doc(hidden)]
        pub struct __KilnExportedTask;

        impl $crate::bindings::Guest for __KilnExportedTask {
            fn describe() -> $crate::bindings::kiln::plugin::types::TaskDescription {
                $crate::__private::describe_task::<$task>()
            }
            fn run() -> $crate::bindings::kiln::plugin::types::RunOutcome {
                $crate::__private::run_task::<$task>()
            }
        }

        $crate::bindings::__export_plugin_world!(__KilnExportedTask with_types_in $crate::bindings);
    };
}
