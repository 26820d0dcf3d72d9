//! Landlock: restrict the filesystem to the granted trees, and (when the
//! network is denied) TCP bind/connect, plus signal and abstract-socket
//! scoping, using every right the running kernel's ABI knows.

use crate::error::degrade;
use crate::{ConfineError, Network, Policy};
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, PathBeneath, Ruleset, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr, RulesetStatus, Scope,
};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How much of the requested Landlock ruleset the kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    Full,
    Partial,
    None,
}

/// Landlock as applied to the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockApplied {
    /// The kernel's Landlock ABI version; 0 when Landlock is unavailable.
    pub abi: u32,
    pub enforcement: Enforcement,
}

/// The running kernel's Landlock ABI version, or the errno saying why there
/// is none (ENOSYS: not built in, EOPNOTSUPP: disabled at boot).
pub(crate) fn kernel_abi() -> Result<u32, io::Error> {
    // SAFETY: the version query takes no attribute pointer and size 0.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    if v < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v as u32)
    }
}

pub(crate) fn unavailable_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => {
            "Landlock is disabled in this kernel (boot parameter lsm=)".into()
        }
        Some(libc::ENOSYS) => "this kernel is built without Landlock".into(),
        _ => format!("Landlock version query failed: {e}"),
    }
}

/// The policy's ruleset, created but not enforced yet, and the kernel's
/// Landlock ABI; no ruleset where Landlock is unavailable (recorded as a
/// warning, or an error when the policy requires it).
fn ruleset(
    policy: &Policy,
    warnings: &mut Vec<String>,
) -> Result<(Option<RulesetCreated>, u32), ConfineError> {
    let version = match kernel_abi() {
        Ok(v) if v > 0 => v,
        Ok(_) => {
            not_enforced(policy, warnings, "the kernel reports Landlock ABI 0".into())?;
            return Ok((None, 0));
        }
        Err(e) => {
            not_enforced(policy, warnings, unavailable_reason(&e))?;
            return Ok((None, 0));
        }
    };
    // Asking exactly for what this kernel's ABI offers (rather than for the
    // newest ABI the crate knows, which best-effort mode would silently trim)
    // makes the status `Full` mean "everything this kernel can do"; the
    // features older ABIs lack are listed by `Support::landlock_gaps`.
    let abi = ABI::from(version as i32);
    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi);
    let file = AccessFs::from_file(abi);

    let mut ruleset = Ruleset::default().handle_access(all)?;
    if !matches!(policy.network, Network::Allowed) {
        let net = AccessNet::from_all(abi);
        // No net rule follows: every TCP bind and connect is denied.
        if !net.is_empty() {
            ruleset = ruleset.handle_access(net)?;
        }
    }
    let scopes = Scope::from_all(abi);
    if !scopes.is_empty() {
        ruleset = ruleset.scope(scopes)?;
    }
    let mut created = ruleset.create()?;
    for (paths, access) in [(&policy.read_only, read), (&policy.read_write, all)] {
        for path in paths {
            let (fd, is_dir) = open_path(path)?;
            // Directory-only rights on a file rule make the kernel reject it.
            let access: BitFlags<AccessFs> = if is_dir { access } else { access & file };
            created = created.add_rule(PathBeneath::new(fd, access))?;
        }
    }
    Ok((Some(created), version))
}

/// The policy's ruleset as a descriptor, for a launcher to enforce on each
/// program with `landlock_restrict_self` (which needs no_new_privs or
/// CAP_SYS_ADMIN). Everything the ruleset asks for is in this kernel's ABI,
/// so enforcing it is `Full`.
pub(crate) fn ruleset_fd(
    policy: &Policy,
    warnings: &mut Vec<String>,
) -> Result<(Option<OwnedFd>, LandlockApplied), ConfineError> {
    let (created, abi) = ruleset(policy, warnings)?;
    let fd: Option<OwnedFd> = created.and_then(Into::into);
    let enforcement = if fd.is_some() {
        Enforcement::Full
    } else {
        Enforcement::None
    };
    Ok((fd, LandlockApplied { abi, enforcement }))
}

/// The policy's ruleset with every granted path opened, ready for
/// [`restrict`].
pub(crate) struct Prepared {
    created: Option<RulesetCreated>,
    version: u32,
}

/// Opens the granted paths into the policy's ruleset. This comes before the
/// process enters a user namespace of its own: from there the kernel no
/// longer lets it look through another process's `/proc/<pid>/fd`, which is
/// how the host names the directories it holds open.
pub(crate) fn prepare(
    policy: &Policy,
    warnings: &mut Vec<String>,
) -> Result<Prepared, ConfineError> {
    let (created, version) = ruleset(policy, warnings)?;
    Ok(Prepared { created, version })
}

/// Enforces a prepared ruleset on the calling thread.
pub(crate) fn restrict(
    policy: &Policy,
    prepared: Prepared,
    warnings: &mut Vec<String>,
) -> Result<LandlockApplied, ConfineError> {
    let Prepared { created, version } = prepared;
    let Some(created) = created else {
        return Ok(LandlockApplied {
            abi: 0,
            enforcement: Enforcement::None,
        });
    };
    let status = created.restrict_self()?;
    if !status.no_new_privs {
        degrade(
            policy.require,
            warnings,
            ConfineError::NoNewPrivs(io::Error::other("prctl refused")),
        )?;
    }
    let enforcement = match status.ruleset {
        RulesetStatus::FullyEnforced => Enforcement::Full,
        RulesetStatus::PartiallyEnforced => Enforcement::Partial,
        RulesetStatus::NotEnforced => Enforcement::None,
    };
    if enforcement != Enforcement::Full {
        degrade(
            policy.require,
            warnings,
            ConfineError::Unavailable {
                what: "Landlock",
                why: format!("ABI {version} ruleset only {enforcement:?} enforced"),
            },
        )?;
    }
    Ok(LandlockApplied {
        abi: version,
        enforcement,
    })
}

fn not_enforced(
    policy: &Policy,
    warnings: &mut Vec<String>,
    why: String,
) -> Result<(), ConfineError> {
    degrade(
        policy.require,
        warnings,
        ConfineError::Unavailable {
            what: "Landlock",
            why,
        },
    )
}

/// An `O_PATH` descriptor for a rule: it needs no read permission and cannot
/// block (FIFOs), and it follows symlinks so the rule lands on the target.
fn open_path(path: &Path) -> Result<(File, bool), ConfineError> {
    let err = |source| ConfineError::GrantedPath {
        path: path.to_path_buf(),
        source,
    };
    let fd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .map_err(err)?;
    let is_dir = fd.metadata().map_err(err)?.is_dir();
    Ok((fd, is_dir))
}
