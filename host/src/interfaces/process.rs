//! `kiln:plugin/process`: spawn registry programs for the guest, under its
//! grants, and hand back a handle to wait on, kill and read.

use crate::bindings::process::{
    self as wit, Captured as WitCaptured, Host, HostChild, OutputStream, SpawnRequest, StdinSource,
};
use crate::bindings::types::HostError;
use crate::dir_handle::DirHandle;
use crate::engine::lock;
use crate::files::Access;
use crate::grants::Capability;
use crate::interfaces::{
    Bound, PluginState, check_len, checked_path, denied, failed, invalid, limit, not_found,
    until_cancelled,
};
use crate::job::{AuditEvent, Job, JobState};
use crate::process::{self, ChildHandle, Gate, Outcome, Phase, ProcessShared, SpawnSpec};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::Resource;

/// Linux refuses a single argument longer than this (MAX_ARG_STRLEN).
const MAX_ONE_ARG: usize = 128 << 10;
/// Time between SIGTERM and SIGKILL when a program is stopped.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(2);

fn outcome_to_wit(o: Outcome) -> wit::Outcome {
    match o {
        Outcome::Exited(c) => wit::Outcome::Exited(c),
        Outcome::Signaled(s) => wit::Outcome::Signaled(s),
        Outcome::TimedOut => wit::Outcome::TimedOut,
        Outcome::Cancelled => wit::Outcome::Cancelled,
        Outcome::SpawnFailed(why) => wit::Outcome::SpawnFailed(why),
    }
}

/// Check a spawn request against the grants, the registry and the limits,
/// and turn it into a spec. Nothing is spawned or written here.
fn prepare(b: &Bound, req: &SpawnRequest) -> Result<(SpawnSpec, String), HostError> {
    let job = &b.job;
    check_len("the program name", &req.program)?;
    if req.program.contains('/') {
        let message = format!(
            "`{}` is a path: programs are named by their program-registry name, never by path",
            req.program
        );
        job.audit(&AuditEvent::Denied {
            capability: "programs",
            name: &req.program,
            message: &message,
        });
        return Err(denied(message));
    }
    job.require(Capability::Program, &req.program)
        .map_err(denied)?;
    let entry = b.host.registry.get(&req.program).ok_or_else(|| {
        not_found(format!(
            "program `{}` is granted but not in the program registry ({})",
            req.program, b.host.registry.source
        ))
    })?;
    if req.args.len() > crate::interfaces::MAX_ARGS {
        return Err(limit(format!(
            "{} arguments; the limit is {}",
            req.args.len(),
            crate::interfaces::MAX_ARGS
        )));
    }
    let mut total = 0usize;
    for a in &req.args {
        if a.len() > MAX_ONE_ARG {
            return Err(limit(format!(
                "an argument of {} bytes; the limit is {MAX_ONE_ARG}",
                a.len()
            )));
        }
        if a.contains('\0') {
            return Err(invalid("an argument contains a NUL byte"));
        }
        // An argument that names a path outside the job's roots is refused
        // here, with a clear reason, before the program could try it.
        if a.starts_with('/') || Path::new(a).components().any(|c| c == Component::ParentDir) {
            checked_path(job, a, Access::Read, &format!("argument `{a}`"))?;
        }
        total += a.len();
    }
    if total > crate::interfaces::MAX_ARG_BYTES {
        return Err(limit(format!(
            "arguments total {total} bytes; the limit is {}",
            crate::interfaces::MAX_ARG_BYTES
        )));
    }
    let mut env: Vec<(String, String)> = entry
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (name, value) in &req.env {
        check_len("an environment value", value)?;
        if let Some(message) = crate::grants::env_never_passed(name) {
            job.audit(&AuditEvent::Denied {
                capability: "env",
                name,
                message: &message,
            });
            return Err(denied(message));
        }
        if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
            return Err(invalid(format!("bad environment variable name `{name}`")));
        }
        job.require(Capability::Env, name).map_err(denied)?;
        env.push((name.clone(), value.clone()));
    }
    let cwd = match &req.working_dir {
        None => job
            .dir_handle()
            .map_err(|e| failed(format!("the job directory: {e}")))?,
        Some(rel) => Arc::new(job_relative_dir(job, rel)?),
    };
    if let Some(StdinSource::Script(s)) = Some(&req.stdin) {
        check_len("the stdin script", s)?;
    }
    if let Some(pin) = &entry.sha256 {
        verify_pin(&entry.path, pin)?;
    }
    let confine = b
        .host
        .confinement
        .confine(job, &entry.path)
        .map_err(failed)?;
    // Programs get a scratch directory inside what they may write.
    if !env.iter().any(|(k, _)| k == "TMPDIR") {
        env.push(("TMPDIR".into(), job.dir.to_string_lossy().into_owned()));
    }
    // The helper joins the job's cgroups by name; a launched program through
    // open handles.
    let (cgroups, cgroup_handles) = job
        .with_cgroup(b.host.cgroups.as_ref(), |cg| match &confine {
            Some(process::Confined::Launcher(_)) => (None, Some(cg.handles())),
            _ => (cg.join_list(), None),
        })
        .unwrap_or_default();
    let mut args = entry.args.clone();
    args.extend(req.args.iter().cloned());
    let job_dir = job
        .dir_handle()
        .map_err(|e| failed(format!("the job directory: {e}")))?;
    let log = |name: String| process::LogFile {
        dir: job_dir.clone(),
        name,
    };
    let spec = SpawnSpec {
        program: entry.path.clone(),
        args,
        env,
        cwd: process::WorkingDir::Held(cwd),
        stdin: None,
        stdout_log: log(String::new()),
        stderr_log: log(String::new()),
        timeout: req.timeout_ms.map(Duration::from_millis),
        capture: job.captures.clone(),
        grace: KILL_GRACE,
        // Launched and helper-run programs join before they exec.
        adopt_after_spawn: confine.is_none(),
        cgroups,
        cgroup_handles,
        confine,
        on_line: None,
        on_warning: None,
    };
    Ok((spec, req.program.clone()))
}

/// A working directory inside the job directory: relative, no `..`,
/// existing, reached without a link, and held until the program starts.
fn job_relative_dir(job: &Job, rel: &str) -> Result<DirHandle, HostError> {
    check_len("the working directory", rel)?;
    let p = Path::new(rel);
    if rel.contains('\0')
        || !p
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(invalid(format!(
            "working directory `{rel}` must be a relative path inside the job directory, without `..`"
        )));
    }
    let dir = job
        .dir_handle()
        .map_err(|e| failed(format!("the job directory: {e}")))?;
    dir.open_dir(p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => not_found(format!(
            "working directory `{rel}` does not exist in the job directory"
        )),
        _ => denied(format!("working directory `{rel}`: {e}")),
    })
}

/// Check the file `path` names now against its pin.
///
/// What is promised: at each spawn the file is opened and its identity
/// (device, inode, size, mtime and ctime) read from the open file; the
/// content is hashed, from that same open file, whenever the identity
/// differs from the one last hashed. A write cannot leave ctime as it was
/// (restoring mtime with `utimensat` sets ctime too), so changed content
/// is always hashed again. Not promised: the program is then executed by
/// its path, so a file changed in the instant between this check and the
/// exec is not caught; a pinned program belongs in a directory that only
/// its operator can write.
fn verify_pin(path: &Path, pin: &str) -> Result<(), HostError> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    type Identity = (u64, u64, u64, i64, i64, i64, i64);
    // Hashing a large executable before every spawn would dominate short
    // runs, so the hash of an unchanged file is kept.
    static VERIFIED: std::sync::Mutex<Vec<(PathBuf, Identity, String)>> =
        std::sync::Mutex::new(Vec::new());
    let cannot = |e: std::io::Error| {
        failed(format!(
            "cannot read {} to check its sha256: {e}",
            path.display()
        ))
    };
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    let identity = (
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    );
    let known = lock(&VERIFIED)
        .iter()
        .find(|(p, id, _)| p == path && *id == identity)
        .map(|(_, _, h)| h.clone());
    let actual = match known {
        Some(h) => h,
        None => {
            let mut hasher = Sha256::new();
            std::io::copy(&mut file, &mut hasher).map_err(cannot)?;
            let h = hex::encode(hasher.finalize());
            let mut cache = lock(&VERIFIED);
            cache.retain(|(p, _, _)| p != path);
            cache.push((path.to_path_buf(), identity, h.clone()));
            h
        }
    };
    if !actual.eq_ignore_ascii_case(pin) {
        return Err(denied(format!(
            "{} has sha256 {actual}, but the program registry pins {pin}",
            path.display()
        )));
    }
    Ok(())
}

/// File names for process `n` of a job: the first uses CCP4i2's names.
fn file_names(n: u32) -> (String, String, String) {
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

impl PluginState {
    fn spawn_process(&mut self, req: SpawnRequest) -> Result<ChildHandle, HostError> {
        let b = self.bound()?;
        let (mut spec, program) = prepare(b, &req)?;
        let job = &b.job;
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
                .and_then(|dir| crate::job::write_job_file(&dir, &com, text.as_bytes()))
                .map_err(|e| failed(format!("failed to write {com}: {e}")))?;
            spec.stdin = Some(Arc::new(written));
        }
        spec.stdout_log.name = out.clone();
        spec.stderr_log.name = err.clone();
        spec.on_line = Some(line_events(b.host.clone(), job.clone(), n));
        spec.on_warning = Some(output_warnings(b.host.clone(), job.clone(), n));
        job.audit(&AuditEvent::Spawn {
            program: &program,
            path: &spec.program,
            args: &spec.args,
            env: spec.env.iter().map(|(k, _)| k.as_str()).collect(),
            process: n,
        });
        let gate = Gate {
            limits: vec![job.pipeline_slots.clone(), b.host.process_slots.clone()],
        };
        let shared = process::spawn(spec, gate, phase_hook(b.host.clone(), job.clone()));
        // Only programs still running matter at the job's end; ended ones
        // (and their captured output) live on in their handles alone.
        let mut processes = lock(&job.processes);
        processes.retain(|p| p.try_outcome().is_none());
        processes.push(shared.clone());
        drop(processes);
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
fn line_events(host: Arc<crate::host::HostShared>, job: Arc<Job>, n: u32) -> process::LineSink {
    let bus = host.clone();
    process::LineSink {
        wanted: Arc::new(move || bus.events.has_subscribers()),
        line: Arc::new(move |stderr, line| {
            host.publish(
                &job,
                crate::events::EventKind::Output {
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
fn output_warnings(
    host: Arc<crate::host::HostShared>,
    job: Arc<Job>,
    n: u32,
) -> process::WarningSink {
    Arc::new(move |message| host.warn(&job, format!("process {n}: {message}")))
}

/// Keep the job's state in step with its programs: `queued` while its only
/// programs wait for a slot, `running` again once one starts.
fn phase_hook(host: Arc<crate::host::HostShared>, job: Arc<Job>) -> process::PhaseHook {
    use std::sync::atomic::Ordering::SeqCst;
    let last = std::sync::Mutex::new(None::<Phase>);
    Box::new(move |phase| {
        let previous = lock(&last).replace(phase);
        match (previous, phase) {
            (_, Phase::Queued) => {
                job.programs_queued.fetch_add(1, SeqCst);
                if job.programs_running.load(SeqCst) == 0 && job.state() == JobState::Running {
                    job.set_state(JobState::Queued);
                    host.publish_state(&job);
                }
            }
            (previous, Phase::Running) => {
                if previous == Some(Phase::Queued) {
                    job.programs_queued.fetch_sub(1, SeqCst);
                }
                job.programs_running.fetch_add(1, SeqCst);
                if job.state() == JobState::Queued {
                    job.set_state(JobState::Running);
                    host.publish_state(&job);
                }
            }
            (Some(Phase::Running), Phase::Ended) => {
                job.programs_running.fetch_sub(1, SeqCst);
            }
            (Some(Phase::Queued), Phase::Ended) => {
                job.programs_queued.fetch_sub(1, SeqCst);
                if job.programs_queued.load(SeqCst) == 0 && job.state() == JobState::Queued {
                    job.set_state(JobState::Running);
                    host.publish_state(&job);
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

impl Host for PluginState {
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

impl HostChild for PluginState {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_program_is_checked_again_once_it_changes() {
        use sha2::{Digest, Sha256};
        let tmp = tempfile::tempdir().unwrap();
        let prog = tmp.path().join("prog");
        std::fs::write(&prog, b"one").unwrap();
        let pin = hex::encode(Sha256::digest(b"one"));
        assert!(verify_pin(&prog, &pin).is_ok());
        assert!(verify_pin(&prog, &pin).is_ok());
        std::fs::write(&prog, b"other").unwrap();
        let e = verify_pin(&prog, &pin).unwrap_err();
        assert!(e.message.contains("registry pins"), "{}", e.message);
    }
}
