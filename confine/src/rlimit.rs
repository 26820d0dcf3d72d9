//! Resource limits (setrlimit), set after everything else that opens
//! descriptors so a small open-files limit cannot break the helper itself.

use crate::error::degrade;
use crate::{ConfineError, Rlimits};
use std::io;

pub(crate) type Resource = libc::__rlimit_resource_t;

/// The limits a policy sets, worked out against this process's own hard
/// limits: what will be in force (soft values) and the `setrlimit` calls
/// that put it there.
pub(crate) fn plan(
    limits: &Rlimits,
    require: bool,
    warnings: &mut Vec<String>,
) -> Result<(Rlimits, Vec<(Resource, libc::rlimit)>), ConfineError> {
    let mut calls = Vec::new();
    // SIGXCPU at the soft limit lets a program write what it has; SIGKILL a
    // second later ends one that ignores it.
    let mut applied = Rlimits {
        cpu_seconds: limit(
            limits.cpu_seconds,
            libc::RLIMIT_CPU,
            "CPU time",
            1,
            &mut calls,
        )?,
        file_size_bytes: limit(
            limits.file_size_bytes,
            libc::RLIMIT_FSIZE,
            "file size",
            0,
            &mut calls,
        )?,
        open_files: limit(
            limits.open_files,
            libc::RLIMIT_NOFILE,
            "open files",
            0,
            &mut calls,
        )?,
        address_space_bytes: limit(
            limits.address_space_bytes,
            libc::RLIMIT_AS,
            "address space",
            0,
            &mut calls,
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
            applied.processes = limit(Some(n), libc::RLIMIT_NPROC, "processes", 0, &mut calls)?;
        }
    }
    Ok((applied, calls))
}

/// Sets the policy's limits on the calling process.
pub(crate) fn set_all(
    limits: &Rlimits,
    require: bool,
    warnings: &mut Vec<String>,
) -> Result<Rlimits, ConfineError> {
    let (applied, calls) = plan(limits, require, warnings)?;
    for (resource, new) in calls {
        // SAFETY: `new` is a valid in-pointer.
        if unsafe { libc::setrlimit(resource, &new) } != 0 {
            return Err(ConfineError::Rlimit {
                resource: name(resource),
                source: io::Error::last_os_error(),
            });
        }
    }
    Ok(applied)
}

/// What the limit on `resource` is called in messages.
pub(crate) fn name(resource: Resource) -> &'static str {
    match resource {
        libc::RLIMIT_CPU => "CPU time",
        libc::RLIMIT_FSIZE => "file size",
        libc::RLIMIT_NOFILE => "open files",
        libc::RLIMIT_AS => "address space",
        libc::RLIMIT_NPROC => "processes",
        _ => "resource",
    }
}

/// Soft = `value` and hard = `value + extra_hard`, both clamped to the
/// inherited hard limit (lowering never needs privilege, and a stricter limit
/// than asked is still within the policy). Returns the soft limit that will
/// be in force.
fn limit(
    value: Option<u64>,
    resource: Resource,
    name: &'static str,
    extra_hard: u64,
    calls: &mut Vec<(Resource, libc::rlimit)>,
) -> Result<Option<u64>, ConfineError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `current` is a valid out-pointer.
    if unsafe { libc::getrlimit(resource, &mut current) } != 0 {
        return Err(ConfineError::Rlimit {
            resource: name,
            source: io::Error::last_os_error(),
        });
    }
    let hard = value.saturating_add(extra_hard).min(current.rlim_max);
    let new = libc::rlimit {
        rlim_cur: value.min(hard),
        rlim_max: hard,
    };
    calls.push((resource, new));
    Ok(Some(new.rlim_cur))
}
