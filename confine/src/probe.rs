//! What this machine can enforce, checked in-process and cheaply (one
//! syscall for Landlock, one short-lived thread for network namespaces) so
//! the host can tell the user once at start.

use crate::filesystem::{kernel_abi, unavailable_reason};
use serde::{Deserialize, Serialize};

/// Confinement this machine supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Support {
    /// The kernel's Landlock ABI version; 0 when unavailable.
    pub landlock_abi: u32,
    /// Why Landlock is unavailable, when it is.
    pub landlock_unavailable: Option<String>,
    pub network_namespaces: NetnsSupport,
}

/// How the helper can get an empty network namespace here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetnsSupport {
    /// unshare(CLONE_NEWNET) works (tested).
    Unshare,
    /// Through a user namespace; the sysctls allow it, but a multithreaded
    /// process cannot create a user namespace to test it: [`crate::check`]
    /// or [`crate::SharedNetns::start`] gives the definitive answer.
    UserNamespace,
    Unavailable(String),
}

impl Support {
    /// Confinement features the running kernel lacks compared with the
    /// newest Landlock ABI, one sentence each; empty when none.
    pub fn landlock_gaps(&self) -> Vec<String> {
        landlock_gaps(self.landlock_abi)
    }
}

/// See [`Support::landlock_gaps`].
pub fn landlock_gaps(abi: u32) -> Vec<String> {
    let gaps: [(u32, &str); 7] = [
        (
            1,
            "Landlock is unavailable: the filesystem is not restricted",
        ),
        (
            2,
            "files cannot be renamed or linked between directories at all (ABI 2 allows it within grants)",
        ),
        (
            3,
            "truncate(2) is not restricted: files in read-only trees can be truncated (ABI 3)",
        ),
        (
            4,
            "TCP bind/connect are not restricted by Landlock; a denied network relies on the namespace alone (ABI 4)",
        ),
        (5, "ioctl on device files is not restricted (ABI 5)"),
        (
            6,
            "signals to outside processes and connections to outside abstract unix sockets are not restricted (ABI 6)",
        ),
        (
            9,
            "connecting to pathname unix sockets outside the grants is not restricted (ABI 9)",
        ),
    ];
    let mut out: Vec<String> = gaps
        .iter()
        .filter(|(needed, _)| abi < *needed)
        .map(|(_, text)| text.to_string())
        .collect();
    if abi == 0 {
        out.truncate(1);
    }
    out
}

/// What this machine supports. Landlock: one syscall. Network namespaces:
/// when the process has CAP_SYS_ADMIN, a scratch thread tries
/// unshare(CLONE_NEWNET) (namespaces are per thread, so nothing else moves);
/// otherwise the user-namespace sysctls are read.
pub fn probe() -> Support {
    let (landlock_abi, landlock_unavailable) = match kernel_abi() {
        Ok(v) => (v, None),
        Err(e) => (0, Some(unavailable_reason(&e))),
    };
    Support {
        landlock_abi,
        landlock_unavailable,
        network_namespaces: probe_netns(),
    }
}

fn probe_netns() -> NetnsSupport {
    const CAP_SYS_ADMIN: u32 = 21;
    let privileged = effective_caps().is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0);
    if privileged {
        let tried = std::thread::Builder::new()
            .name("kiln-netns-probe".into())
            .spawn(|| {
                // SAFETY: plain syscall; the namespace dies with this thread.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            })
            .map_err(|e| e.to_string())
            .and_then(|h| h.join().map_err(|_| "probe thread panicked".to_string()));
        return match tried {
            Ok(Ok(())) => NetnsSupport::Unshare,
            Ok(Err(e)) => NetnsSupport::Unavailable(format!("unshare(CLONE_NEWNET): {e}")),
            Err(e) => NetnsSupport::Unavailable(e),
        };
    }
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    if read("/proc/sys/user/max_user_namespaces") == Some(0) {
        return NetnsSupport::Unavailable("user.max_user_namespaces is 0".into());
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
        return NetnsSupport::Unavailable("kernel.unprivileged_userns_clone is 0".into());
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
        return NetnsSupport::Unavailable(
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns)"
                .into(),
        );
    }
    NetnsSupport::UserNamespace
}

/// The effective capability set of this process (from /proc, so the answer
/// holds for any thread).
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}
