//! Confinement of the native programs Kiln runs on a plugin's behalf.
//!
//! The host never confines a child itself (that would mean forking its large
//! address space and running a `pre_exec` hook). It spawns the small
//! `kiln-confine` helper instead, which applies a [`Policy`] to itself and
//! execs the program in place, so the program inherits the confinement and
//! the helper's pid.
//!
//! The fast path, [`Launcher`], saves that extra exec: the host works a
//! policy out once (a Landlock ruleset descriptor, the namespace to join,
//! the rlimits) and each program applies it to itself between a vfork-style
//! clone and its exec, from the thread that launches it. It covers every
//! policy on x86_64 in a host with CAP_SYS_ADMIN, and policies that allow
//! the network in any host; the helper covers everything.
//!
//! # Helper contract
//!
//! ```text
//! kiln-confine --policy <policy JSON> [--cgroup <dirs>] -- /absolute/program ARGS...
//! ```
//!
//! - The policy travels as the argument after `--policy`, ahead of the
//!   program's own arguments: only the host that starts the helper writes
//!   it, and the helper never reads a policy (or anything else of its own)
//!   from the environment, which a plugin can ask to set. One argument is
//!   limited to 128 KiB ([`command`] checks). `--cgroup` names the cgroup
//!   directories (`:`-separated) the helper joins before it confines
//!   itself. The program's environment is the helper's, less any
//!   `KILN_CONFINE_*` name.
//! - `--` is required; the program path must be absolute (it is not looked
//!   up in `PATH`); the program gets `argv[0]` = that path and the arguments
//!   verbatim.
//! - The program itself is always granted read and execute (a file rule);
//!   its shared libraries and data need the install prefix in `read_only`.
//! - Descriptors 0-2 pass through; every other inherited descriptor is closed
//!   at exec. SIGPIPE is reset to its default and the signal mask emptied
//!   (the helper, like any Rust program, ignores SIGPIPE).
//! - Exit status when the program never starts: [`EXIT_CONFINE_FAILED`]
//!   (126: bad usage or policy, or confinement the policy requires could not
//!   be applied) or [`EXIT_EXEC_FAILED`] (127: execve failed: missing, not
//!   executable, denied). Either way stderr gets one line starting with
//!   [`STDERR_PREFIX`]. Programs (shells especially) use 126 and 127 too, so
//!   the host should attribute these codes to the helper only when the last
//!   stderr line starts with the prefix.
//! - When `require` is false and something could not be applied, one line
//!   `kiln-confine: warning: ...` goes to stderr and the program runs.
//!
//! Other modes: `kiln-confine --check --policy <json>` applies the policy
//! and prints the resulting [`Applied`] as JSON instead of
//! running anything ([`check`]); `kiln-confine --hold-netns` is the holder of
//! a [`SharedNetns`]; `kiln-confine --probe` prints [`probe`] as JSON.
//!
//! # What the host does
//!
//! - At start: [`probe`] (or [`check`] with a typical policy, which is
//!   definitive) and tell the user once about anything missing, including
//!   [`Support::landlock_gaps`]; start one [`SharedNetns`] and put its
//!   [`SharedNetns::network`] into every policy that denies the network.
//! - Per program: [`command`], then arguments, the allowlisted environment,
//!   stdio, working directory and its own process group; grant the job
//!   directory read-write, the program's install prefix read-only, and set
//!   `TMPDIR` inside a writable grant.
//! - Or, for a policy [`Launcher::eligible`] accepts: keep one [`Launcher`]
//!   per distinct policy (a [`Policy`] is `Hash` + `Eq`) and start each
//!   program with [`Launcher::launch`]; fall back to the helper whenever
//!   [`Launcher::new`] fails.
//!
//! # Cost
//!
//! Going through the helper costs one more exec than a plain spawn; that
//! exec and the dynamic loading of the helper dominate. Applying a typical
//! policy (Landlock with the system paths, rlimits, capabilities) costs tens
//! of microseconds; joining the shared network namespace a few tens more;
//! creating a namespace per spawn costs hundreds, hence [`SharedNetns`].
//! A statically linked helper (`-C target-feature=+crt-static`) starts
//! noticeably faster. A [`Launcher`] pays for opening the policy's paths
//! once, at [`Launcher::new`], and per program only the few system calls
//! that apply it, about as fast as a plain spawn. `tests/bench.rs` measures
//! all of this.

mod caps;
mod error;
mod fds;
mod filesystem;
mod launch;
mod netns;
mod policy;
mod probe;
mod rlimit;
mod seccomp;

pub use error::ConfineError;
pub use fds::cloexec_inherited_fds;
pub use filesystem::{Enforcement, LandlockApplied};
#[doc(hidden)]
pub use launch::clear_handlers_in_clone;
pub use launch::{Launch, LaunchError, Launched, Launcher, kill, null_terminated, reap};
pub use netns::{NetworkApplied, SharedNetns, hold_netns};
pub use policy::{
    Network, NsFile, Policy, Rlimits, SharedNetnsRef, system_read_only_paths,
    system_read_write_paths,
};
pub use probe::{NetnsSupport, Support, landlock_gaps, probe};

use serde::{Deserialize, Serialize};
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

/// Exit status of the helper when the policy is invalid or required
/// confinement cannot be applied; the program did not run.
pub const EXIT_CONFINE_FAILED: i32 = 126;
/// Exit status of the helper when execve of the program failed.
pub const EXIT_EXEC_FAILED: i32 = 127;
/// Start of every line the helper itself writes on stderr.
pub const STDERR_PREFIX: &str = "kiln-confine: ";

/// Linux's limit on one argument string (`MAX_ARG_STRLEN`).
const MAX_ARG_STRING: usize = 32 * 4096;

/// Start of the environment names the helper removes from a program's
/// environment (the host never passes any: they were once its channel).
pub const HELPER_ENV_PREFIX: &str = "KILN_CONFINE_";

/// What [`apply`] enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub landlock: LandlockApplied,
    pub network: NetworkApplied,
    /// The limits in force (soft values, after clamping to the inherited
    /// hard limits); `processes` stays `None` when the kernel ignores it.
    pub rlimits: Rlimits,
    /// Whether the program starts without capabilities (relevant as root).
    pub capabilities_cleared: bool,
    pub no_new_privs: bool,
    /// Confinement that could not be applied (only with `require: false`) or
    /// fell back to a weaker form, one sentence each.
    pub warnings: Vec<String>,
}

/// Confines the calling process according to `policy`: network namespace,
/// Landlock, rlimits, capabilities, no_new_privs, in that order (namespaces
/// need privileges and /proc access the later steps take away).
///
/// Meant for a single-threaded process about to exec (the helper): Landlock
/// applies to the calling thread, rlimits to the whole process, and a user
/// namespace can only be created single-threaded. Inherited descriptors are
/// not touched; see [`cloexec_inherited_fds`].
pub fn apply(policy: &Policy) -> Result<Applied, ConfineError> {
    let mut warnings = Vec::new();
    let prepared = filesystem::prepare(policy, &mut warnings)?;
    let network = netns::isolate(&policy.network, policy.require, &mut warnings)?;
    let landlock = filesystem::restrict(policy, prepared, &mut warnings)?;
    let rlimits = rlimit::set_all(&policy.rlimits, policy.require, &mut warnings)?;
    let capabilities_cleared = match caps::clear() {
        Ok(cleared) => cleared,
        Err(e) => {
            error::degrade(policy.require, &mut warnings, e)?;
            false
        }
    };
    // The landlock crate sets it too, except when Landlock is unavailable.
    let no_new_privs = set_no_new_privs(policy.require, &mut warnings)?;
    Ok(Applied {
        landlock,
        network,
        rlimits,
        capabilities_cleared,
        no_new_privs,
        warnings,
    })
}

/// Set no_new_privs on the calling thread (and what it execs); whether it
/// took. Failing is an error only when confinement is required.
pub(crate) fn set_no_new_privs(
    require: bool,
    warnings: &mut Vec<String>,
) -> Result<bool, ConfineError> {
    // SAFETY: prctl with integer arguments only.
    let set = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == 0;
    if !set {
        error::degrade(
            require,
            warnings,
            ConfineError::NoNewPrivs(io::Error::last_os_error()),
        )?;
    }
    Ok(set)
}

/// Install, on the calling thread and what it execs, the seccomp shield that
/// keeps a program from signalling process `host` or changing any other
/// process's rlimits (see the `seccomp` module). The helper calls it after
/// [`apply`]; it needs no_new_privs, which `apply` sets.
pub fn shield_host(host: i32) -> Result<(), ConfineError> {
    seccomp::shield(host)
}

/// A command that runs `program` confined by `policy` through `helper` (the
/// `kiln-confine` binary), first joining `cgroups` (`:`-separated
/// directories) if given. Its environment is already cleared: add the
/// program's variables, arguments, stdio, working directory and process
/// group, but do not clear the environment again.
pub fn command(
    helper: &Path,
    policy: &Policy,
    cgroups: Option<&std::ffi::OsStr>,
    program: &Path,
) -> Result<Command, ConfineError> {
    if !program.is_absolute() {
        return Err(ConfineError::Policy(format!(
            "program path {} is not absolute",
            program.display()
        )));
    }
    let json = policy_argument(policy)?;
    let mut cmd = Command::new(helper);
    cmd.env_clear().arg("--policy").arg(json);
    if let Some(dirs) = cgroups {
        cmd.arg("--cgroup").arg(dirs);
    }
    cmd.arg("--").arg(program);
    Ok(cmd)
}

/// The policy as the helper's argument, checked against the kernel's limit
/// on one argument string.
fn policy_argument(policy: &Policy) -> Result<String, ConfineError> {
    let json = policy.to_json()?;
    if json.len() + 1 > MAX_ARG_STRING {
        return Err(ConfineError::Policy(format!(
            "policy is {} bytes, over the {MAX_ARG_STRING}-byte limit of one argument",
            json.len()
        )));
    }
    Ok(json)
}

/// Runs `helper --check` with `policy` and returns what it could enforce,
/// without running any program: the definitive answer to what [`probe`]
/// can only estimate (a user namespace, for instance). Blocks for a few
/// milliseconds; call it once at start.
pub fn check(helper: &Path, policy: &Policy) -> Result<Applied, ConfineError> {
    let json = policy_argument(policy)?;
    let out = Command::new(helper)
        .arg("--check")
        .arg("--policy")
        .arg(json)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ConfineError::Helper(format!("cannot run {}: {e}", helper.display())))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr.trim();
        return Err(ConfineError::Helper(if stderr.is_empty() {
            format!("check failed: {}", out.status)
        } else {
            stderr.trim_start_matches(STDERR_PREFIX).to_string()
        }));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| ConfineError::Helper(format!("unreadable check result: {e}")))
}
