//! Running native programs by registry name: a builder for the request, a
//! handle to the running program, and its outcome.

use crate::Outcome;
use crate::bindings::kiln::plugin::process::{
    self as host, Child, OutputStream, SpawnRequest, StdinSource,
};
use crate::error::TaskError;
use crate::task::Job;

impl Job {
    /// Start building a run of the registry program `name`.
    pub fn program(&self, name: &str) -> ProgramBuilder {
        ProgramBuilder {
            request: SpawnRequest {
                program: name.to_string(),
                args: Vec::new(),
                stdin: StdinSource::None,
                env: Vec::new(),
                working_dir: None,
                timeout_ms: None,
            },
        }
    }
}

/// A program run being put together; [`spawn`](Self::spawn) or
/// [`run`](Self::run) sends it to the host.
#[derive(Debug, Clone)]
pub struct ProgramBuilder {
    request: SpawnRequest,
}

impl ProgramBuilder {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.request.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.request.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The keyword script the program reads on stdin (written to the job's
    /// com file first). Without one, stdin is /dev/null.
    pub fn stdin(mut self, script: impl Into<String>) -> Self {
        self.request.stdin = StdinSource::Script(script.into());
        self
    }

    /// An environment variable for the program; its name must be granted.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.request.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Working directory relative to the job directory.
    pub fn working_dir(mut self, dir: &str) -> Self {
        self.request.working_dir = Some(dir.to_string());
        self
    }

    /// Kill the program after this many milliseconds.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.request.timeout_ms = Some(ms);
        self
    }

    /// Start the program and return at once.
    pub fn spawn(self) -> Result<Process, TaskError> {
        let name = self.request.program.clone();
        let child = host::spawn(&self.request)?;
        Ok(Process { name, child })
    }

    /// Start the program and wait for it to end.
    pub fn run(self) -> Result<Finished, TaskError> {
        Ok(self.spawn()?.wait())
    }
}

/// A running program.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
}

impl Process {
    pub fn wait(self) -> Finished {
        let outcome = self.child.wait();
        Finished {
            name: self.name,
            outcome,
            child: self.child,
        }
    }

    pub fn try_wait(&self) -> Option<Outcome> {
        self.child.try_wait()
    }

    pub fn kill(&self) {
        self.child.kill()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Wait until any of these programs has ended; returns its index.
pub fn wait_any_process(processes: &[&Process]) -> Result<usize, TaskError> {
    let children: Vec<&Child> = processes.iter().map(|p| &p.child).collect();
    Ok(host::wait_any(&children)? as usize)
}

/// A program that has ended, with what it wrote.
#[derive(Debug)]
pub struct Finished {
    name: String,
    outcome: Outcome,
    child: Child,
}

impl Finished {
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// Exited with status 0.
    pub fn success(&self) -> bool {
        matches!(self.outcome, Outcome::Exited(0))
    }

    /// `Ok` when the program exited 0, otherwise an error naming the program,
    /// how it ended and the last lines of its stderr.
    pub fn check(&self) -> Result<(), TaskError> {
        if self.success() {
            return Ok(());
        }
        let how = match &self.outcome {
            Outcome::Exited(code) => format!("exited with status {code}"),
            Outcome::Signaled(sig) => format!("was killed by signal {sig}"),
            Outcome::TimedOut => "timed out".to_string(),
            Outcome::Cancelled => {
                return Err(TaskError {
                    status: crate::FinishStatus::Interrupted,
                    reason: format!("{} was cancelled", self.name),
                });
            }
            Outcome::SpawnFailed(why) => format!("could not be started: {why}"),
        };
        let stderr = self.stderr_text();
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        let mut reason = format!("program {} {how}", self.name);
        if !tail.is_empty() {
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            reason.push_str(": ");
            reason.push_str(&tail.join(" / "));
        }
        Err(TaskError::failed(reason))
    }

    /// Captured stdout, as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.child.output(OutputStream::Stdout).data).into_owned()
    }

    /// Captured stderr, as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.child.output(OutputStream::Stderr).data).into_owned()
    }

    /// Job-directory-relative names of the stdout and stderr log files. A
    /// file is created with the first output on its stream: a program that
    /// wrote nothing there leaves none.
    pub fn log_files(&self) -> (String, String) {
        self.child.log_files()
    }
}
