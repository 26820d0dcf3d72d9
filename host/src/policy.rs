//! The host's policy on programs in one place: what a job's programs may
//! touch (its sandbox), and whether a program request is allowed and what
//! it becomes. The grants of a run and of a sub-job are
//! `kiln_jobs::Grants::for_run` and `for_sub_job`. The WIT interfaces only
//! translate to and from these.

use crate::bindings::process::{SpawnRequest, StdinSource};
use crate::bindings::types::HostError;
use crate::host::Programs;
use crate::interfaces::{check_len, checked_path, denied, failed, invalid, limit, not_found};
use crate::lock;
use kiln_exec::{CaptureBudget, Gate, ProgramRequest, Sandbox};
use kiln_fs::DirHandle;
use kiln_fs::roots::Access;
use kiln_jobs::grants::Capability;
use kiln_jobs::{AuditEvent, Job};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Linux refuses a single argument longer than this (MAX_ARG_STRLEN).
const MAX_ONE_ARG: usize = 128 << 10;
/// Time between SIGTERM and SIGKILL when a program is stopped.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(2);

/// What the programs of `job` may touch: its own directory and the
/// outputs' staging directory read-write, its pipeline's directory
/// read-only, the granted directories, and the limits of its grants.
///
/// The job's directories are named as held (through /proc): their paths
/// may have been swapped for links by the plugin that owns their parent,
/// and Landlock rules follow links when they are made.
pub(crate) fn sandbox(job: &Job) -> std::io::Result<Sandbox> {
    let grants = &job.grants;
    let mut read_only = vec![job.pipeline_dir().fd_path()];
    read_only.extend(grants.read_dirs.iter().map(PathBuf::from));
    let mut read_write = vec![job.dir_handle()?.fd_path()];
    read_write.extend(job.staging_dir().map(|d| d.fd_path()));
    read_write.extend(grants.write_dirs.iter().map(PathBuf::from));
    let limits = &grants.limits;
    Ok(Sandbox {
        read_only,
        read_write,
        network: grants.network,
        require_confinement: grants.require_confinement,
        rlimits: kiln_exec::Rlimits {
            cpu_seconds: limits.program_cpu_seconds,
            // No file larger than the whole job directory may hold.
            file_size_bytes: Some(
                limits
                    .program_file_size_bytes
                    .map_or(limits.disk_bytes, |b| b.min(limits.disk_bytes)),
            ),
            open_files: limits.program_open_files,
            address_space_bytes: limits.program_memory_bytes,
            processes: None,
        },
        max_processes: limits.program_processes,
    })
}

/// Check a spawn request against the grants, the registry and the limits,
/// and turn it into a spec. Nothing is spawned or written here.
pub(crate) fn program_request(
    job: &Job,
    programs: &Programs,
    captures: &Arc<CaptureBudget>,
    req: &SpawnRequest,
) -> Result<ProgramRequest, HostError> {
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
    let entry = programs.registry.get(&req.program).ok_or_else(|| {
        not_found(format!(
            "program `{}` is granted but not in the program registry ({})",
            req.program, programs.registry.source
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
        if let Some(message) = kiln_jobs::grants::env_never_passed(name) {
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
    // Programs get a scratch directory inside what they may write.
    if !env.iter().any(|(k, _)| k == "TMPDIR") {
        env.push(("TMPDIR".into(), job.dir.to_string_lossy().into_owned()));
    }
    let mut args = entry.args.clone();
    args.extend(req.args.iter().cloned());
    let job_dir = job
        .dir_handle()
        .map_err(|e| failed(format!("the job directory: {e}")))?;
    let log = |name: String| kiln_exec::LogFile {
        dir: job_dir.clone(),
        name,
    };
    Ok(ProgramRequest {
        program: entry.path.clone(),
        args,
        env,
        cwd: kiln_exec::WorkingDir::Held(cwd),
        stdin: None,
        stdout_log: log(String::new()),
        stderr_log: log(String::new()),
        timeout: req.timeout_ms.map(Duration::from_millis),
        grace: KILL_GRACE,
        capture: captures.clone(),
        gate: Gate {
            limits: vec![job.pipeline_slots.clone(), programs.slots.clone()],
        },
        on_line: None,
        on_warning: None,
        on_phase: None,
    })
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
