//! The confinement policy the host hands to the helper, and the system paths
//! every dynamically linked program needs to start.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a confined program may do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Files and directory trees the program may read and execute.
    #[serde(default)]
    pub read_only: Vec<PathBuf>,
    /// Files and directory trees the program may read, write, create in,
    /// delete from and execute.
    #[serde(default)]
    pub read_write: Vec<PathBuf>,
    #[serde(default)]
    pub rlimits: Rlimits,
    pub network: Network,
    /// When true, any confinement the kernel cannot apply is an error and the
    /// program does not run. When false it is reported as one warning line on
    /// stderr and the program runs with what could be applied. Features that
    /// only newer Landlock ABIs have are never errors (see
    /// [`crate::Support::landlock_gaps`]).
    pub require: bool,
}

impl Policy {
    /// A policy granting only [`system_read_only_paths`] and
    /// [`system_read_write_paths`], no network, no limits, required.
    pub fn system() -> Policy {
        Policy {
            read_only: system_read_only_paths(),
            read_write: system_read_write_paths(),
            rlimits: Rlimits::default(),
            network: Network::Denied,
            require: true,
        }
    }

    /// The policy as the helper's `--policy` argument.
    pub fn to_json(&self) -> Result<String, crate::ConfineError> {
        serde_json::to_string(self).map_err(|e| crate::ConfineError::Policy(e.to_string()))
    }

    /// Parses the helper's `--policy` argument.
    pub fn from_json(text: &str) -> Result<Policy, crate::ConfineError> {
        serde_json::from_str(text).map_err(|e| crate::ConfineError::Policy(e.to_string()))
    }
}

/// Resource limits; `None` leaves the inherited limit alone. Each is set as
/// both the soft and the hard limit (CPU: hard is one second above soft), and
/// never above the inherited hard limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimits {
    /// `RLIMIT_CPU`: SIGXCPU after this many seconds of CPU time, SIGKILL one
    /// second later. Per process: children get their own budget.
    #[serde(default)]
    pub cpu_seconds: Option<u64>,
    /// `RLIMIT_FSIZE`: a write beyond this size gets SIGXFSZ (or EFBIG when
    /// the signal is ignored).
    #[serde(default)]
    pub file_size_bytes: Option<u64>,
    /// `RLIMIT_NOFILE`: the highest descriptor number plus one.
    #[serde(default)]
    pub open_files: Option<u64>,
    /// `RLIMIT_AS`: virtual address space per process.
    #[serde(default)]
    pub address_space_bytes: Option<u64>,
    /// `RLIMIT_NPROC`: the kernel counts every process and thread of the real
    /// user id, system-wide, and never applies it to uid 0; it is therefore a
    /// coarse fork-bomb stop for a dedicated non-root user only.
    #[serde(default)]
    pub processes: Option<u64>,
}

/// Network access of the program.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Network {
    /// The host's network namespace.
    Allowed,
    /// A fresh, empty network namespace (only a loopback interface, down), and
    /// with Landlock ABI 4 or later TCP bind and connect are denied as well.
    Denied,
    /// Like `Denied`, but joining an empty namespace the host created once
    /// ([`crate::SharedNetns`]) instead of creating one per program.
    DeniedShared(SharedNetnsRef),
}

/// Where a shared empty network namespace lives and how to recognise it, so
/// that a stale path (its holder gone, the pid reused) is never joined.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedNetnsRef {
    pub net: NsFile,
    /// Set when the namespace belongs to a user namespace the helper has to
    /// enter first (the host is not root).
    #[serde(default)]
    pub user: Option<NsFile>,
}

/// A namespace file such as `/proc/<pid>/ns/net` with the identity (`st_dev`,
/// `st_ino`) it had when the namespace was created.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NsFile {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
}

/// Read-only paths any dynamically linked program needs, limited to those
/// that exist here, with symlinks resolved now (except `/proc/self`) and
/// paths inside another one dropped.
///
/// - `/usr`, `/lib`, `/lib64`, `/bin`, `/sbin`: binaries, the dynamic loader,
///   shared libraries, locale and timezone data, Python's standard library.
/// - `/etc/ld.so.cache` (the loader's library index; without it the loader
///   still works but searches the default directories), `/etc/localtime`
///   (a symlink; the rule lands on its target under `/usr`) and
///   `/etc/locale.alias` (Debian's `/usr/share/locale/locale.alias` points
///   there; glibc reads it for `setlocale`).
/// - `/dev/zero`, `/dev/urandom`, `/dev/random`.
/// - `/proc/self`: resolved when the helper applies the policy, so it grants
///   the program's own `/proc/<pid>` (the helper execs in place, keeping its
///   pid), not its children's. glibc reads `/proc/self/maps` for the main
///   thread's stack bounds; other processes' entries stay hidden, and
///   Landlock's ptrace rules keep `/proc/<pid>/environ` of the host closed.
///   A [`crate::Launcher`] drops it: resolved there it would name the host.
/// - `/sys/devices/system/cpu`: glibc's `get_nprocs` (`sysconf`,
///   `os.cpu_count()`, OpenMP's default thread count) reads `online` there.
///
/// Deliberately absent: the rest of `/etc` (`/etc/passwd`, `/etc/shadow`,
/// `/etc/group`: `getpwuid` fails, which `cat`, `python3` and gemmi do not
/// need; name resolution files such as `/etc/resolv.conf` and `/etc/hosts`,
/// which only matter when the network is granted), `/etc/ld.so.conf*` (read by
/// `ldconfig`, never by the loader), `/dev/shm` (POSIX shared memory and
/// named semaphores), `/tmp` (set `TMPDIR` to a writable directory instead),
/// and the rest of `/proc` and `/sys`.
pub fn system_read_only_paths() -> Vec<PathBuf> {
    existing(&[
        "/usr",
        "/lib",
        "/lib64",
        "/lib32",
        "/libx32",
        "/bin",
        "/sbin",
        "/etc/ld.so.cache",
        "/etc/localtime",
        "/etc/locale.alias",
        "/dev/zero",
        "/dev/urandom",
        "/dev/random",
        "/proc/self",
        "/sys/devices/system/cpu",
    ])
}

/// Read-write paths any program may need: `/dev/null`, which programs and
/// shells open for writing to discard output.
pub fn system_read_write_paths() -> Vec<PathBuf> {
    existing(&["/dev/null"])
}

/// The paths that exist, symlinks resolved, without those inside another
/// (on merged-/usr systems `/bin`, `/lib`, `/lib64` and `/sbin` point into
/// `/usr`): each path costs the helper a few syscalls per spawn.
fn existing(paths: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = paths
        .iter()
        .map(Path::new)
        .filter_map(|p| {
            if p.starts_with("/proc/self") {
                // Must stay symbolic: resolved here it would name the host.
                p.symlink_metadata().ok().map(|_| p.to_path_buf())
            } else {
                std::fs::canonicalize(p).ok()
            }
        })
        .collect();
    out.sort();
    out.dedup();
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_unknown_fields() {
        let mut p = Policy::system();
        p.rlimits.open_files = Some(64);
        p.network = Network::DeniedShared(SharedNetnsRef {
            net: NsFile {
                path: "/proc/1/ns/net".into(),
                dev: 4,
                ino: 4026531840,
            },
            user: None,
        });
        let text = p.to_json().unwrap();
        assert_eq!(Policy::from_json(&text).unwrap(), p);

        let err = Policy::from_json(r#"{"network":"denied","require":true,"shell":true}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `shell`"), "{err}");
        let minimal = Policy::from_json(r#"{"network":"allowed","require":false}"#).unwrap();
        assert!(minimal.read_only.is_empty() && minimal.rlimits == Rlimits::default());
    }

    #[test]
    fn system_paths_exclude_secrets() {
        let ro = system_read_only_paths();
        assert!(ro.iter().any(|p| p == Path::new("/usr")));
        assert!(ro.iter().any(|p| p == Path::new("/proc/self")));
        for p in &ro {
            assert!(
                !ro.iter().any(|q| q != p && p.starts_with(q)),
                "{p:?} is nested"
            );
        }
        for p in ro.iter().chain(system_read_write_paths().iter()) {
            assert!(!Path::new("/etc/shadow").starts_with(p), "{p:?}");
            assert!(!Path::new("/etc/passwd").starts_with(p), "{p:?}");
        }
    }
}
