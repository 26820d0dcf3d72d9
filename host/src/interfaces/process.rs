//! `kiln:plugin/process`: spawn registry programs for the guest, under its
//! grants (see [`crate::policy`]), through the job's executor session, and
//! hand back a handle to wait on, kill and read.

use crate::bindings::process::{
    self as wit, Captured as WitCaptured, Host, HostChild, OutputStream, SpawnRequest, StdinSource,
};
use crate::bindings::types::HostError;
use crate::handles::ChildHandle;
use crate::interfaces::{View, failed, invalid, scope, until_cancelled};
use crate::lock;
use kiln_exec::{ExecError, Outcome, Phase, ProcessShared};
use kiln_jobs::{AuditEvent, EventBus, Job, JobState};
use std::sync::Arc;
use wasmtime::component::Resource;

fn outcome_to_wit(o: Outcome) -> wit::Outcome {
    match o {
        Outcome::Exited(c) => wit::Outcome::Exited(c),
        Outcome::Signaled(s) => wit::Outcome::Signaled(s),
        Outcome::TimedOut => wit::Outcome::TimedOut,
        Outcome::Cancelled => wit::Outcome::Cancelled,
        Outcome::SpawnFailed(why) => wit::Outcome::SpawnFailed(why),
    }
}

/// File names for process `n` of a job: the first uses CCP4i2's names.
pub fn file_names(n: u32) -> (String, String, String) {
    if n == 1 {
        ("com.txt".into(), "log.txt".into(), "log_err.txt".into())
    } else {
        (
            format!("com_{n}.txt"),
            format!("log_{n}.txt"),
            format!("log_err_{n}.txt"),
        )
    }
}

impl View<'_, scope::Process<'_>> {
    fn spawn_process(&mut self, req: SpawnRequest) -> Result<ChildHandle, HostError> {
        let b = *self.bound()?;
        let mut spec =
            crate::policy::program_request(b.job, b.programs, &b.attempt.captures, &req)?;
        let program = &req.program;
        let job = b.job;
        let n = job.take_process_number();
        let (com, out, err) = file_names(n);
        if let StdinSource::Script(script) = &req.stdin {
            let mut text = format!("# Task {} {} running {program}\n", job.id, job.task.name);
            text.push_str(script);
            if !text.ends_with('\n') {
                text.push('\n');
            }
            // The program reads the very file written, whatever is put in
            // its place afterwards.
            let written = job
                .dir_handle()
                .and_then(|dir| kiln_jobs::write_job_file(&dir, &com, text.as_bytes()))
                .map_err(|e| failed(format!("failed to write {com}: {e}")))?;
            spec.stdin = Some(Arc::new(written));
        }
        spec.stdout_log.name = out.clone();
        spec.stderr_log.name = err.clone();
        spec.on_line = Some(line_events(b.events.clone(), job.clone(), n));
        spec.on_warning = Some(output_warnings(b.events.clone(), job.clone(), n));
        spec.on_phase = Some(phase_hook(b.events.clone(), job.clone()));
        job.audit(&AuditEvent::Spawn {
            program,
            path: &spec.program,
            args: &spec.args,
            env: spec.env.iter().map(|(k, _)| k.as_str()).collect(),
            process: n,
        });
        let shared = b.attempt.exec.spawn(spec).map_err(|e| match e {
            ExecError::Refused(m) | ExecError::Failed(m) => failed(m),
        })?;
        Ok(ChildHandle {
            number: n,
            process: shared,
            logs: (out, err),
        })
    }

    fn process_of(&self, child: &Resource<ChildHandle>) -> wasmtime::Result<Arc<ProcessShared>> {
        Ok(self.table_ref().get(child)?.process.clone())
    }
}

/// Publish each output line of program `n` as an event, when anyone listens.
fn line_events(events: EventBus, job: Arc<Job>, n: u32) -> kiln_exec::LineSink {
    let bus = events.clone();
    kiln_exec::LineSink {
        wanted: Arc::new(move || bus.has_subscribers()),
        line: Arc::new(move |stderr, line| {
            events.publish_job(
                &job,
                kiln_jobs::EventKind::Output {
                    process: n,
                    stream: if stderr { "stderr" } else { "stdout" },
                    line: line.to_string(),
                },
            );
        }),
    }
}

/// Report trouble with program `n`'s log files as the plugin's own warnings
/// are: a line in the job's `kiln.log` and a `log` event.
fn output_warnings(events: EventBus, job: Arc<Job>, n: u32) -> kiln_exec::WarningSink {
    Arc::new(move |message| events.warn(&job, format!("process {n}: {message}")))
}

/// Keep the job's state in step with its programs: `queued` while its only
/// programs wait for a slot, `running` again once one starts.
fn phase_hook(events: EventBus, job: Arc<Job>) -> kiln_exec::PhaseHook {
    use std::sync::atomic::Ordering::SeqCst;
    let last = std::sync::Mutex::new(None::<Phase>);
    Box::new(move |phase| {
        let previous = lock(&last).replace(phase);
        match (previous, phase) {
            (_, Phase::Queued) => {
                job.programs_queued.fetch_add(1, SeqCst);
                if job.programs_running.load(SeqCst) == 0 && job.state() == JobState::Running {
                    job.set_state(JobState::Queued);
                    events.publish_state(&job);
                }
            }
            (previous, Phase::Running) => {
                if previous == Some(Phase::Queued) {
                    job.programs_queued.fetch_sub(1, SeqCst);
                }
                job.programs_running.fetch_add(1, SeqCst);
                if job.state() == JobState::Queued {
                    job.set_state(JobState::Running);
                    events.publish_state(&job);
                }
            }
            (Some(Phase::Running), Phase::Ended) => {
                job.programs_running.fetch_sub(1, SeqCst);
            }
            (Some(Phase::Queued), Phase::Ended) => {
                job.programs_queued.fetch_sub(1, SeqCst);
                if job.programs_queued.load(SeqCst) == 0 && job.state() == JobState::Queued {
                    job.set_state(JobState::Running);
                    events.publish_state(&job);
                }
            }
            _ => {}
        }
    })
}

/// Wait for a program, or for the job's cancellation, which stops it.
async fn wait_process(
    p: Arc<ProcessShared>,
    cancel: Option<tokio_util::sync::CancellationToken>,
) -> Outcome {
    let Some(cancel) = cancel else {
        return p.wait().await;
    };
    tokio::select! {
        o = p.wait() => o,
        _ = cancel.cancelled() => {
            p.cancel();
            p.wait().await
        }
    }
}

impl Host for View<'_, scope::Process<'_>> {
    async fn spawn(
        &mut self,
        request: SpawnRequest,
    ) -> wasmtime::Result<Result<Resource<ChildHandle>, HostError>> {
        if let Err(e) = self.take_handle() {
            return Ok(Err(e));
        }
        match self.spawn_process(request) {
            Ok(handle) => Ok(Ok(self.table().push(handle)?)),
            Err(e) => {
                self.release_handle();
                Ok(Err(e))
            }
        }
    }

    async fn wait_any(
        &mut self,
        children: Vec<Resource<ChildHandle>>,
    ) -> wasmtime::Result<Result<u32, HostError>> {
        if children.is_empty() {
            return Ok(Err(invalid("wait-any needs at least one process")));
        }
        let procs = children
            .iter()
            .map(|c| self.process_of(c))
            .collect::<wasmtime::Result<Vec<_>>>()?;
        if let Some(i) = procs.iter().position(|p| p.try_outcome().is_some()) {
            return Ok(Ok(i as u32));
        }
        let cancel = self.cancel_token();
        let waits = procs.iter().map(|p| Box::pin(p.wait()));
        tokio::select! {
            (_, i, _) = futures::future::select_all(waits) => Ok(Ok(i as u32)),
            _ = until_cancelled(&cancel) => Ok(Err(crate::interfaces::cancelled())),
        }
    }
}

impl HostChild for View<'_, scope::Process<'_>> {
    async fn number(&mut self, child: Resource<ChildHandle>) -> wasmtime::Result<u32> {
        Ok(self.table_ref().get(&child)?.number)
    }

    async fn wait(&mut self, child: Resource<ChildHandle>) -> wasmtime::Result<wit::Outcome> {
        let p = self.process_of(&child)?;
        // The usual case after wait-any: nothing to wait for.
        if let Some(o) = p.try_outcome() {
            return Ok(outcome_to_wit(o));
        }
        Ok(outcome_to_wit(wait_process(p, self.cancel_token()).await))
    }

    async fn try_wait(
        &mut self,
        child: Resource<ChildHandle>,
    ) -> wasmtime::Result<Option<wit::Outcome>> {
        Ok(self.process_of(&child)?.try_outcome().map(outcome_to_wit))
    }

    async fn kill(&mut self, child: Resource<ChildHandle>) -> wasmtime::Result<()> {
        self.process_of(&child)?.kill();
        Ok(())
    }

    async fn output(
        &mut self,
        child: Resource<ChildHandle>,
        which: OutputStream,
    ) -> wasmtime::Result<WitCaptured> {
        let c = self
            .process_of(&child)?
            .captured(matches!(which, OutputStream::Stderr));
        Ok(WitCaptured {
            data: c.data,
            truncated: c.truncated,
        })
    }

    /// The names whether or not the files exist: each is created with the
    /// first output on its stream.
    async fn log_files(
        &mut self,
        child: Resource<ChildHandle>,
    ) -> wasmtime::Result<(String, String)> {
        Ok(self.table_ref().get(&child)?.logs.clone())
    }

    async fn drop(&mut self, child: Resource<ChildHandle>) -> wasmtime::Result<()> {
        // Dropping the handle does not stop the program: the job still owns
        // it and stops it at the job's end.
        self.table().delete(child)?;
        self.release_handle();
        Ok(())
    }
}
