//! A running program as the supervisor sees it, however it was started:
//! by tokio (unconfined, or through the confinement helper) or by a
//! `kiln_confine::Launcher` (confined, the usual way). Its output arrives
//! through pipes registered with the runtime either way.

use kiln_confine::{kill, reap};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::ExitStatus;
use tokio::io::unix::AsyncFd;

pub(super) enum Child {
    Spawned(tokio::process::Child),
    Launched(LaunchedChild),
}

/// A started program and the read ends of its stdout and stderr,
/// non-blocking and not registered with the runtime yet: a program that
/// ends quickly is read once it has, without them ever being registered.
pub(super) struct Started {
    pub child: Child,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl Started {
    /// A program tokio spawned with piped stdout and stderr.
    pub fn spawned(mut child: tokio::process::Child) -> io::Result<Started> {
        let missing = || io::Error::other("the program's output pipes are missing");
        let stdout = child.stdout.take().ok_or_else(missing)?.into_owned_fd()?;
        let stderr = child.stderr.take().ok_or_else(missing)?.into_owned_fd()?;
        Ok(Started {
            child: Child::Spawned(child),
            stdout: nonblocking(stdout)?,
            stderr: nonblocking(stderr)?,
        })
    }
}

impl Child {
    /// The process id (and so process group id) until it has been reaped.
    pub fn id(&self) -> Option<u32> {
        match self {
            Child::Spawned(c) => c.id(),
            Child::Launched(c) => c.status.is_none().then_some(c.pid),
        }
    }

    /// Waits for the program to exit and reaps it; cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            Child::Spawned(c) => c.wait().await,
            Child::Launched(c) => c.wait().await,
        }
    }
}

/// A pipe of two descriptors, both close-on-exec: (read, write).
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are new descriptors owned by nothing else.
    Ok(unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    })
}

/// An end of a pipe, made non-blocking.
pub(super) fn nonblocking(fd: OwnedFd) -> io::Result<OwnedFd> {
    // An end of a pipe has no other status flag to keep (O_RDONLY or
    // O_WRONLY is the access mode, which F_SETFL leaves alone): one call,
    // not two.
    // SAFETY: F_SETFL on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// A program a launcher started, waited for through its pidfd. Dropped
/// before it was reaped (its supervisor was cancelled), it is killed and
/// reaped in the background, as tokio does with `kill_on_drop`.
pub(super) struct LaunchedChild {
    pid: u32,
    pidfd: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
}

impl LaunchedChild {
    pub fn new(launched: kiln_confine::Launched) -> io::Result<LaunchedChild> {
        // A pidfd is non-blocking for waitid(WNOHANG) either way; the flag
        // only matters to read(), which nobody calls on it.
        // SAFETY: an OwnedFd keeps its descriptor open and unchanged for
        // as long as the AsyncFd owns it.
        let pidfd = unsafe {
            AsyncFd::register_with_interest(launched.pidfd, tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)?;
        Ok(LaunchedChild {
            pid: launched.pid as u32,
            pidfd: Some(pidfd),
            status: None,
        })
    }

    async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.status {
                return Ok(status);
            }
            let Some(pidfd) = &self.pidfd else {
                return Err(io::Error::other("the program's pidfd is gone"));
            };
            // Readable once the process has exited (at once if it had
            // exited before the pidfd was registered): no reap is tried
            // before that.
            let mut ready = pidfd.readable().await?;
            match reap(pidfd.get_ref().as_fd(), false)? {
                Some(status) => self.status = Some(status),
                None => ready.clear_ready(),
            }
        }
    }
}

impl Drop for LaunchedChild {
    fn drop(&mut self) {
        let Some(pidfd) = self.pidfd.take() else {
            return;
        };
        if self.status.is_some() {
            return;
        }
        // Gone already (ESRCH) is what the reap below finds out.
        let _ = kill(pidfd.get_ref().as_fd());
        if matches!(reap(pidfd.get_ref().as_fd(), false), Ok(Some(_)) | Err(_)) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    while let Ok(mut ready) = pidfd.readable().await {
                        ready.clear_ready();
                        if !matches!(reap(pidfd.get_ref().as_fd(), false), Ok(None)) {
                            return;
                        }
                    }
                });
            }
            Err(_) => {
                let fd = pidfd.into_inner();
                std::thread::spawn(move || reap(fd.as_fd(), true));
            }
        }
    }
}
