//! Network isolation: put the helper (and so the program it execs) into an
//! empty network namespace, either a fresh one or one the host keeps alive
//! in a holder process ([`SharedNetns`]) and every helper joins.
//!
//! Root (or CAP_SYS_ADMIN) unshares the network namespace directly; other
//! users create a user namespace with it, mapping only their own uid and gid
//! so files they create keep their owner.

use crate::error::degrade;
use crate::{ConfineError, Network, NsFile, SharedNetnsRef};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

/// The network state the program got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkApplied {
    /// The policy allows the network; the host's namespace is kept.
    Allowed,
    /// A fresh empty network namespace.
    NewNamespace,
    /// A fresh empty network namespace inside a fresh user namespace.
    NewUserNamespace,
    /// The host's shared empty network namespace.
    Joined,
    /// The policy denies the network but no namespace could be entered.
    NotIsolated,
}

pub(crate) fn isolate(
    network: &Network,
    require: bool,
    warnings: &mut Vec<String>,
) -> Result<NetworkApplied, ConfineError> {
    let shared = match network {
        Network::Allowed => return Ok(NetworkApplied::Allowed),
        Network::Denied => None,
        Network::DeniedShared(r) => Some(r),
    };
    if let Some(r) = shared {
        match join(r) {
            Ok(()) => return Ok(NetworkApplied::Joined),
            // A fresh namespace isolates just as well, only slower.
            Err(e) => warnings.push(format!("{e}; creating a private one instead")),
        }
    }
    match unshare_net() {
        Ok(how) => Ok(how),
        Err(e) => {
            degrade(require, warnings, e)?;
            Ok(NetworkApplied::NotIsolated)
        }
    }
}

/// Moves the calling thread into a new, empty network namespace. For a
/// non-root caller it must be the only thread (user namespaces demand it).
pub(crate) fn unshare_net() -> Result<NetworkApplied, ConfineError> {
    // SAFETY: plain syscall, no pointers.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
        return Ok(NetworkApplied::NewNamespace);
    }
    let direct = io::Error::last_os_error();
    if direct.raw_os_error() != Some(libc::EPERM) {
        return Err(ConfineError::Network(format!(
            "unshare(CLONE_NEWNET): {direct}"
        )));
    }
    // SAFETY: as above; getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        return Err(ConfineError::Network(format!(
            "unshare(CLONE_NEWNET): {direct}; with a user namespace: {e}"
        )));
    }
    let map = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text)
            .map_err(|e| ConfineError::Network(format!("writing /proc/self/{file}: {e}")))
    };
    // Unprivileged gid_map writes need setgroups disabled first.
    map("setgroups", "deny".into())?;
    map("uid_map", format!("{uid} {uid} 1"))?;
    map("gid_map", format!("{gid} {gid} 1"))?;
    Ok(NetworkApplied::NewUserNamespace)
}

fn join(r: &SharedNetnsRef) -> Result<(), ConfineError> {
    // The user namespace first: it owns the network namespace, and entering
    // it gives the capability setns(CLONE_NEWNET) needs.
    if let Some(user) = &r.user {
        setns(user, libc::CLONE_NEWUSER)?;
    }
    setns(&r.net, libc::CLONE_NEWNET)
}

/// Opens the shared namespace `ns` names, checking it is still the one the
/// host created (a pid can be reused once its holder exits).
pub(crate) fn open_shared(ns: &NsFile) -> Result<File, ConfineError> {
    let fail = |what: String| {
        ConfineError::Network(format!(
            "cannot join the shared namespace {}: {what}",
            ns.path.display()
        ))
    };
    let file = File::open(&ns.path).map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if (meta.dev(), meta.ino()) != (ns.dev, ns.ino) {
        return Err(fail(
            "it is not the namespace the host created (its holder exited?)".into(),
        ));
    }
    Ok(file)
}

fn setns(ns: &NsFile, kind: libc::c_int) -> Result<(), ConfineError> {
    let file = open_shared(ns)?;
    // SAFETY: a valid namespace descriptor and a namespace type.
    if unsafe { libc::setns(file.as_raw_fd(), kind) } != 0 {
        return Err(ConfineError::Network(format!(
            "cannot join the shared namespace {}: {}",
            ns.path.display(),
            io::Error::last_os_error()
        )));
    }
    Ok(())
}

fn ns_file(kind: &str) -> Result<NsFile, ConfineError> {
    let path = std::path::PathBuf::from(format!("/proc/{}/ns/{kind}", std::process::id()));
    let meta = std::fs::metadata(&path)
        .map_err(|e| ConfineError::Network(format!("{}: {e}", path.display())))?;
    Ok(NsFile {
        path,
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// The holder side of [`SharedNetns`], run by `kiln-confine --hold-netns`:
/// enters a new empty network namespace, writes its [`SharedNetnsRef`] as
/// one JSON line on stdout, then waits for stdin to reach end-of-file (the
/// host dropped its handle or died) and returns.
pub fn hold_netns() -> Result<(), ConfineError> {
    crate::cloexec_inherited_fds()?;
    let how = unshare_net()?;
    let reference = SharedNetnsRef {
        net: ns_file("net")?,
        user: match how {
            NetworkApplied::NewUserNamespace => Some(ns_file("user")?),
            _ => None,
        },
    };
    let mut line = serde_json::to_string(&reference)
        .map_err(|e| ConfineError::Helper(format!("encoding the namespace reference: {e}")))?;
    line.push('\n');
    let mut out = io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| ConfineError::Helper(format!("writing the namespace reference: {e}")))?;
    let mut buf = [0u8; 64];
    let mut stdin = io::stdin().lock();
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(()),
        }
    }
}

/// An empty network namespace kept alive by a `kiln-confine --hold-netns`
/// process, for helpers to join instead of creating one each.
///
/// The holder runs in its own process group (a terminal's Ctrl-C does not
/// reach it) and exits when this handle is dropped or the host dies (its
/// stdin pipe closes). Helpers verify the namespace's identity before joining,
/// so a reused pid is never mistaken for it; when joining fails they fall
/// back to a private namespace with a warning.
#[derive(Debug)]
pub struct SharedNetns {
    child: Child,
    stdin: Option<ChildStdin>,
    reference: SharedNetnsRef,
}

impl SharedNetns {
    /// Starts the holder; `helper` is the `kiln-confine` binary.
    pub fn start(helper: &Path) -> Result<SharedNetns, ConfineError> {
        let mut child = Command::new(helper)
            .arg("--hold-netns")
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| ConfineError::Helper(format!("cannot start {}: {e}", helper.display())))?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        let read = match child.stdout.take() {
            Some(out) => BufReader::new(out).read_line(&mut line),
            None => Ok(0),
        };
        let parsed = read
            .map_err(|e| e.to_string())
            .and_then(|_| serde_json::from_str::<SharedNetnsRef>(&line).map_err(|e| e.to_string()));
        match parsed {
            Ok(reference) => Ok(SharedNetns {
                child,
                stdin,
                reference,
            }),
            Err(why) => {
                drop(stdin);
                let _ = child.kill();
                let mut stderr = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut stderr);
                }
                let _ = child.wait();
                let stderr = stderr.trim();
                Err(ConfineError::Helper(if stderr.is_empty() {
                    format!("network namespace holder: {why}")
                } else {
                    stderr.to_string()
                }))
            }
        }
    }

    /// The policy value that makes helpers join this namespace.
    pub fn network(&self) -> Network {
        Network::DeniedShared(self.reference.clone())
    }

    pub fn reference(&self) -> &SharedNetnsRef {
        &self.reference
    }

    /// The holder's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the holder still runs (and so the namespace still exists).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for SharedNetns {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
