//! Resource limits (setrlimit), set after everything else that opens
//! descriptors so a small open-files limit cannot break the helper itself.

use crate::error::degrade;
use crate::{ConfineError, Rlimits};
use std::io;

type Resource = libc::__rlimit_resource_t;

pub(crate) fn set_all(
    limits: &Rlimits,
    require: bool,
    warnings: &mut Vec<String>,
) -> Result<Rlimits, ConfineError> {
    // SIGXCPU at the soft limit lets a program write what it has; SIGKILL a
    // second later ends one that ignores it.
    let mut applied = Rlimits {
        cpu_seconds: set(limits.cpu_seconds, libc::RLIMIT_CPU, "CPU time", 1)?,
        file_size_bytes: set(limits.file_size_bytes, libc::RLIMIT_FSIZE, "file size", 0)?,
        open_files: set(limits.open_files, libc::RLIMIT_NOFILE, "open files", 0)?,
        address_space_bytes: set(
            limits.address_space_bytes,
            libc::RLIMIT_AS,
            "address space",
            0,
        )?,
        processes: None,
    };
    if let Some(n) = limits.processes {
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } == 0 {
            degrade(
                require,
                warnings,
                ConfineError::Unavailable {
                    what: "the processes limit",
                    why: "the kernel never applies RLIMIT_NPROC to uid 0".into(),
                },
            )?;
        } else {
            applied.processes = set(Some(n), libc::RLIMIT_NPROC, "processes", 0)?;
        }
    }
    Ok(applied)
}

/// Sets soft = `value` and hard = `value + extra_hard`, both clamped to the
/// inherited hard limit (lowering never needs privilege, and a stricter limit
/// than asked is still within the policy). Returns the soft limit in force.
fn set(
    value: Option<u64>,
    resource: Resource,
    name: &'static str,
    extra_hard: u64,
) -> Result<Option<u64>, ConfineError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let err = |source| ConfineError::Rlimit {
        resource: name,
        source,
    };
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `current` is a valid out-pointer.
    if unsafe { libc::getrlimit(resource, &mut current) } != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    let hard = value.saturating_add(extra_hard).min(current.rlim_max);
    let new = libc::rlimit {
        rlim_cur: value.min(hard),
        rlim_max: hard,
    };
    // SAFETY: `new` is a valid in-pointer.
    if unsafe { libc::setrlimit(resource, &new) } != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(Some(new.rlim_cur))
}
