//! Supervising a running program: wait for it, its timeout or a stop
//! request; stop its process group with SIGTERM, a grace period, then
//! SIGKILL; and turn how it ended into an [`Outcome`].

use super::{Child, Outcome, ProcessShared, StopRequest};
use crate::lock;
use std::process::ExitStatus;
use std::time::Duration;

pub(super) async fn supervise(
    child: &mut Child,
    shared: &ProcessShared,
    timeout: Option<Duration>,
    grace: Duration,
) -> Outcome {
    let pgid = child.id().map(|p| p as i32);
    let timer = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    enum Why {
        Exited(std::io::Result<ExitStatus>),
        TimedOut,
        Stopped(StopRequest),
    }
    let why = tokio::select! {
        status = child.wait() => Why::Exited(status),
        _ = timer => Why::TimedOut,
        req = wait_stop(shared) => Why::Stopped(req),
    };
    let (status, ended_by) = match why {
        Why::Exited(status) => (status, None),
        Why::TimedOut => (terminate(child, pgid, grace).await, Some(Outcome::TimedOut)),
        Why::Stopped(StopRequest::Cancel) => (
            terminate(child, pgid, grace).await,
            Some(Outcome::Cancelled),
        ),
        // A kill the plugin asked for: how the program ended is the outcome.
        Why::Stopped(StopRequest::Kill) => (terminate(child, pgid, grace).await, None),
    };
    // Whatever else is still in the group (grandchildren) goes too.
    if let Some(g) = pgid {
        signal_group(g, libc::SIGKILL);
    }
    ended_by.unwrap_or_else(|| exit_outcome(status))
}

pub(super) async fn wait_stop(shared: &ProcessShared) -> StopRequest {
    loop {
        let notified = shared.stop_notify.notified();
        if let Some(req) = *lock(&shared.stop) {
            return req;
        }
        notified.await;
    }
}

/// SIGTERM to the group, then SIGKILL after `grace`.
async fn terminate(
    child: &mut Child,
    pgid: Option<i32>,
    grace: Duration,
) -> std::io::Result<ExitStatus> {
    if let Some(g) = pgid {
        signal_group(g, libc::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            if let Some(g) = pgid {
                signal_group(g, libc::SIGKILL);
            }
            child.wait().await
        }
    }
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: killpg has no memory-safety preconditions; ESRCH (group gone)
    // is the expected result once everything has exited.
    unsafe {
        libc::killpg(pgid, sig);
    }
}

fn exit_outcome(status: std::io::Result<ExitStatus>) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => Outcome::Exited(c),
            (None, Some(sig)) => Outcome::Signaled(sig),
            (None, None) => Outcome::Exited(-1),
        },
        Err(e) => Outcome::SpawnFailed(format!("failed to wait for the program: {e}")),
    }
}
