//! The fast path: a thread of the host that has confined itself according
//! to one [`Policy`] and creates the programs that policy covers, so they
//! start confined without going through the helper.
//!
//! # Why this is sound
//!
//! Everything a policy sets on Linux except rlimits is a property of a
//! thread (a task), not of the process:
//!
//! - the Landlock domain lives in the thread's credentials;
//!   `landlock_restrict_self` without the `TSYNC` flag (the landlock crate
//!   passes none) restricts the calling thread only;
//! - no_new_privs is a per-task flag;
//! - the capability sets, the bounding and ambient sets included, are part
//!   of the thread's credentials: `capset` on pid 0, `PR_CAPBSET_DROP` and
//!   `PR_CAP_AMBIENT` change the calling thread only;
//! - the network namespace is per task: `setns(CLONE_NEWNET)` and
//!   `unshare(CLONE_NEWNET)` move the calling thread only, and the kernel
//!   allows both in a multithreaded process;
//! - seccomp filters (the signal shield below) are per task when installed
//!   without `SECCOMP_FILTER_FLAG_TSYNC`.
//!
//! A child is a copy of the thread that creates it: `clone`, which
//! `posix_spawn` (std's path: `clone3(CLONE_VM|CLONE_VFORK)` then `execve`)
//! and `fork` both use, copies that thread's credentials, namespaces,
//! no_new_privs flag and seccomp filters, never another thread's. `execve`
//! keeps the Landlock domain, no_new_privs, the namespaces and the filters,
//! and recomputes the capabilities from the emptied bounding set, leaving
//! none. So a program created by the spawner thread starts exactly as
//! confined as one the helper exec'd after applying the same policy, whether
//! std spawns it through `posix_spawn` or falls back to `fork` (which only
//! costs time). The host's other threads are untouched.
//!
//! Rlimits are per process (they live in the shared signal struct): set on
//! the spawner thread they would limit the whole host, `posix_spawn` has no
//! attribute for them, and `prlimit` on the child after the spawn races the
//! program. A policy with any rlimit is therefore refused
//! ([`ConfineError::NotForSpawner`]); use the helper for it.
//!
//! Not per thread, and so the same as a direct spawn: the descriptor table
//! (the program gets 0-2 from the command plus any descriptor of the host
//! that lacks close-on-exec: call [`crate::cloexec_inherited_fds`] at start,
//! as the helper does first thing), the working directory (set it on each
//! command), signal dispositions (`posix_spawn` resets handled signals to
//! their default and std resets SIGPIPE and the signal mask).
//!
//! # Keeping the programs off the host
//!
//! A program shares the spawner thread's Landlock domain, so Landlock's
//! scoping (signals, ptrace, abstract unix sockets) separates it from the
//! host's other threads and from programs of other spawners, but not from
//! the spawner thread itself. Two things take Landlock's place there:
//!
//! - Capabilities. The thread keeps its permitted set while the programs'
//!   is empty, and the kernel lets a process trace (ptrace, `/proc/<pid>/mem`
//!   and `environ`, `process_vm_readv`, `pidfd_getfd`) only a target whose
//!   permitted capabilities are a subset of its own. A host without
//!   capabilities (not root) has nothing to hold over its programs and is
//!   refused; it cannot enter a user namespace from a thread either.
//! - A seccomp filter on the thread, inherited by every program, refusing
//!   signals aimed at the spawner thread or the host, and changes to another
//!   process's rlimits (see `seccomp.rs` for the exact rules): without it a
//!   program could SIGKILL or SIGSTOP the whole host through the thread, or
//!   lower the host's CPU limit below what it has used.
//!
//! # Limits
//!
//! - `/proc/self` cannot be granted: resolved by the spawner thread it would
//!   name the host, and a program's own `/proc/<pid>` does not exist before
//!   it starts. Any granted path that resolves into the host's `/proc` entry
//!   is dropped, so programs cannot read their own `/proc/self` (glibc then
//!   does without the main thread's exact stack bounds).
//! - Programs of one spawner share one Landlock domain (and, with
//!   [`Network::Denied`], one empty network namespace private to the
//!   spawner): Landlock does not stop them from signalling each other or
//!   connecting to each other's abstract unix sockets, which it does for
//!   programs each exec'd by its own helper. One spawner per job keeps this
//!   within a job.
//! - [`Network::Denied`] gets one fresh namespace per spawner rather than
//!   per program; [`Network::DeniedShared`] must not belong to a user
//!   namespace; a stale shared namespace falls back to a fresh one with a
//!   warning, as in the helper.
//! - The spawner thread is itself confined: a closure can open only what the
//!   policy grants (std opens `/dev/null` for `Stdio::null`, which
//!   [`crate::system_read_write_paths`] grants) and has no network. Open
//!   stdin files, logs and the like on another thread and pass them in.
//! - The program is not granted implicitly (the helper grants it per spawn):
//!   it must lie inside a read-only or read-write grant, or the spawn fails
//!   with `EACCES` from the spawn itself instead of the helper's exit
//!   status 127.
//! - The host must not change credentials through glibc (`setuid` and
//!   friends are broadcast to every thread, the spawner thread included).
//!
//! # Thread life
//!
//! The thread runs nothing but what [`Spawner::run`] submits, one closure
//! at a time, and ends when the [`Spawner`] is dropped. Programs still
//! running then are re-parented to another thread of the host, where
//! `waitpid` and pidfds keep working.

use crate::{Applied, ConfineError, Network, Policy, Rlimits, caps, filesystem, netns};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc;
use std::thread::{self, JoinHandle, ThreadId};

type Job = Box<dyn FnOnce() + Send>;

/// A thread confined by one policy that spawns programs for the host.
#[derive(Debug)]
pub struct Spawner {
    /// Dropping it ends the thread's loop.
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
    tid: i32,
    policy: Policy,
    applied: Applied,
}

impl Spawner {
    /// Whether `policy` can be applied by a spawner thread in this process;
    /// cheap (one `capget`), so the host can choose the helper up front.
    pub fn eligible(policy: &Policy) -> Result<(), ConfineError> {
        let limited = rlimit_names(&policy.rlimits);
        if !limited.is_empty() {
            return Err(ConfineError::NotForSpawner(format!(
                "rlimits are per process and would limit the host ({} set)",
                limited.join(", ")
            )));
        }
        if let Network::DeniedShared(r) = &policy.network
            && r.user.is_some()
        {
            return Err(ConfineError::NotForSpawner(
                netns::USER_NAMESPACE_FROM_THREAD.into(),
            ));
        }
        if caps::permitted()? == 0 {
            return Err(ConfineError::NotForSpawner(
                "this process has no capabilities (it is not root), so nothing would keep the programs from tracing the spawner thread, which shares their Landlock domain".into(),
            ));
        }
        Ok(())
    }

    /// Starts the thread and confines it according to `policy`; returns
    /// once it is ready, with what was applied. Costs a thread start plus
    /// applying the policy, about what the helper spends on it per spawn
    /// (0.1 to 0.2 ms with the system paths); [`Network::Denied`] adds a
    /// new namespace (0.4 ms, several when namespaces are being torn down).
    ///
    /// Errors: [`ConfineError::NotForSpawner`] when the policy needs the
    /// helper (see [`Spawner::eligible`]); otherwise what applying the
    /// policy failed on, as the helper would report it. Either way the
    /// thread has ended, and the helper remains the way to run the program.
    pub fn start(policy: &Policy) -> Result<Spawner, ConfineError> {
        Self::eligible(policy)?;
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread_policy = policy.clone();
        let thread = thread::Builder::new()
            .name("kiln-spawner".into())
            .spawn(move || {
                let confined = confine_this_thread(&thread_policy);
                let ok = confined.is_ok();
                // A thread that failed half-way is partly confined: it must
                // not run anything, so it ends here.
                if ready_tx.send(confined).is_err() || !ok {
                    return;
                }
                for job in queue {
                    job();
                }
            })
            .map_err(|e| ConfineError::Spawner(format!("cannot start the thread: {e}")))?;
        let thread_id = thread.thread().id();
        match ready_rx.recv() {
            Ok(Ok((applied, tid))) => Ok(Spawner {
                jobs: Some(jobs),
                thread: Some(thread),
                thread_id,
                tid,
                policy: policy.clone(),
                applied,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(ConfineError::Spawner(
                    "the thread ended while confining itself".into(),
                ))
            }
        }
    }

    /// Runs `f` on the spawner thread and returns its result; the caller
    /// blocks meanwhile (a spawn takes a few hundred microseconds). Calls
    /// from several threads queue up. A panic in `f` resumes in the caller;
    /// the thread survives it.
    ///
    /// `f` should spawn and return, nothing else: whatever it does runs
    /// confined, threads it starts (a runtime's blocking pool, say) inherit
    /// the confinement, and files it opens must be granted. With tokio:
    /// `spawner.run(move || { let _g = handle.enter(); cmd.spawn() })`.
    ///
    /// Fails only when the thread is gone, which nothing but a closure that
    /// ends the thread itself can cause; `f` is then not run.
    pub fn run<F, R>(&self, f: F) -> Result<R, ConfineError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        // From a closure already on the thread: queueing would deadlock.
        if thread::current().id() == self.thread_id {
            return Ok(f());
        }
        let gone = || ConfineError::Spawner("the thread has ended".into());
        let jobs = self.jobs.as_ref().ok_or_else(gone)?;
        let (reply_tx, reply_rx) = mpsc::sync_channel::<thread::Result<R>>(1);
        let job: Job = Box::new(move || {
            let result = panic::catch_unwind(AssertUnwindSafe(f));
            // The caller waits for this; it cannot have gone away.
            let _ = reply_tx.send(result);
        });
        jobs.send(job).map_err(|_| gone())?;
        match reply_rx.recv() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(payload)) => panic::resume_unwind(payload),
            Err(_) => Err(gone()),
        }
    }

    /// Queues `f` to run on the spawner thread and returns at once, for a
    /// caller that must not block (an async runtime's worker): `f` hands
    /// its result back itself, through a channel say. The same rules as
    /// for [`Spawner::run`] apply to what `f` does. A panic in `f` is
    /// caught (the thread survives it) and `f`'s captures are dropped, so
    /// a waiting receiver sees its sender gone.
    ///
    /// Fails only when the thread is gone; `f` is then not run.
    pub fn submit<F>(&self, f: F) -> Result<(), ConfineError>
    where
        F: FnOnce() + Send + 'static,
    {
        let gone = || ConfineError::Spawner("the thread has ended".into());
        let jobs = self.jobs.as_ref().ok_or_else(gone)?;
        let job: Job = Box::new(move || {
            let _ = panic::catch_unwind(AssertUnwindSafe(f));
        });
        jobs.send(job).map_err(|_| gone())
    }

    /// What the thread applied (and so every program it starts gets).
    pub fn applied(&self) -> &Applied {
        &self.applied
    }

    /// The policy the thread applied, as given to [`Spawner::start`].
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The thread's kernel id (as in `/proc/<pid>/task/<tid>`).
    pub fn tid(&self) -> i32 {
        self.tid
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            // Dropped by a closure on the thread itself: it ends by itself
            // once that closure returns.
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

fn rlimit_names(r: &Rlimits) -> Vec<&'static str> {
    [
        ("cpu_seconds", r.cpu_seconds.is_some()),
        ("file_size_bytes", r.file_size_bytes.is_some()),
        ("open_files", r.open_files.is_some()),
        ("address_space_bytes", r.address_space_bytes.is_some()),
        ("processes", r.processes.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

/// Applies `policy` to the calling thread, in the helper's order (the
/// namespace needs CAP_SYS_ADMIN and /proc, which Landlock and the
/// capability drop take away), then the signal shield. Returns what was
/// applied and the thread's kernel id.
fn confine_this_thread(policy: &Policy) -> Result<(Applied, i32), ConfineError> {
    // SAFETY: getpid and gettid cannot fail.
    let (pid, tid) = unsafe { (libc::getpid(), libc::syscall(libc::SYS_gettid) as i32) };
    let mut warnings = Vec::new();
    let network = netns::isolate_thread(&policy.network, policy.require, &mut warnings)?;

    let mut grants = policy.clone();
    for paths in [&mut grants.read_only, &mut grants.read_write] {
        paths.retain(|p| !names_this_process(p, pid, tid));
    }
    let landlock = filesystem::restrict(&grants, &mut warnings)?;

    // Unlike the helper, no degrading here even when the policy allows it:
    // programs keeping capabilities could trace this thread and so the host.
    match caps::clear() {
        Ok(true) => {}
        Ok(false) => {
            return Err(ConfineError::NotForSpawner(
                "the programs would keep capabilities".into(),
            ));
        }
        Err(e) => return Err(ConfineError::NotForSpawner(e.to_string())),
    }
    if caps::permitted()? == 0 {
        return Err(ConfineError::NotForSpawner(
            "the spawner thread has no capabilities left to shield it from the programs".into(),
        ));
    }

    let no_new_privs = crate::set_no_new_privs(policy.require, &mut warnings)?;
    crate::seccomp::shield(pid, tid)?;
    Ok((
        Applied {
            landlock,
            network,
            rlimits: Rlimits::default(),
            capabilities_cleared: true,
            no_new_privs,
            warnings,
        },
        tid,
    ))
}

/// Whether `path` resolves into this process's own `/proc` entry
/// (`/proc/self`, `/proc/thread-self`, `/dev/fd`, ...): granted from the
/// spawner thread it would open the host to the programs.
fn names_this_process(path: &Path, pid: i32, tid: i32) -> bool {
    // A path that does not resolve is left for Landlock to report.
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    real.starts_with(format!("/proc/{pid}")) || real.starts_with(format!("/proc/{tid}"))
}
