//! The fast path: a [`Launcher`] works a [`Policy`] out once (a Landlock
//! ruleset descriptor, the namespace to join, the rlimits) and each
//! program applies it to itself between a vfork-style
//! clone and its exec, from whatever thread asks, without a helper exec and
//! without a thread to hand over to.
//!
//! # How a program is launched
//!
//! `clone3(CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_CLEAR_SIGHAND
//! [| CLONE_INTO_CGROUP])`,
//! as glibc's `posix_spawn` does it: the child runs on a small stack of its
//! own in the caller's memory while the calling thread waits for its exec,
//! so nothing of the host's large address space is copied. The child makes
//! system calls only, on data the caller prepared (no allocation, no lock,
//! nothing that could be held by another thread of the host), in this order:
//!
//! 1. its own process group; the network namespace (joined, or a fresh
//!    one); the working directory; stdin, stdout and stderr;
//! 2. the rlimits, which apply to the child's process only;
//! 3. no_new_privs, the Landlock domain (`landlock_restrict_self` on the
//!    prepared ruleset), the capabilities (every set emptied);
//! 4. signal handlers back to their defaults, SIGPIPE included, and an
//!    empty signal mask (every signal is blocked from before the clone, so
//!    no handler of the host ever runs in the child). The kernel resets the
//!    handlers in the clone (`CLONE_CLEAR_SIGHAND`), so the child only
//!    takes SIGPIPE back from ignored: one system call where asking for
//!    every signal's disposition took 62 (10-20 us a program, each call
//!    through the seccomp shield). A kernel without the flag (before 5.5)
//!    gets the loop;
//! 5. `execve`.
//!
//! A step that fails stores which one and its errno where the caller reads
//! it once the clone returns, and the child exits with status 127 before
//! exec; the launch then fails with that error and the child is reaped.
//!
//! With `CLONE_INTO_CGROUP` the program is born in the job's cgroup (v2):
//! there is no moment in which it could fork outside it.
//!
//! # What the program gets
//!
//! What the helper would apply, with one more thing: each program has a
//! Landlock domain of its own (its own scope: it cannot signal the host or
//! other programs), and the seccomp shield of the `seccomp` module keeps it
//! from lowering the host's rlimits, which Landlock does not cover.
//!
//! # Limits
//!
//! - x86_64 only (the clone's child side is a few instructions of assembly);
//!   elsewhere [`Launcher::new`] fails and the helper remains.
//! - A network namespace owned by a user namespace cannot be joined (the
//!   kernel refuses `setns` into a user namespace to a child sharing its
//!   parent's memory), and without CAP_SYS_ADMIN no namespace can be
//!   entered at all: such policies are refused with
//!   [`ConfineError::NotForLauncher`]; the helper covers them.
//! - The kernel must have `clone3` (5.3; checked once, and where it is
//!   missing or refused by a seccomp profile the helper remains),
//!   `waitid(P_PIDFD)` to reap through the pidfd (5.4), and
//!   `CLONE_INTO_CGROUP` (5.7) when a cgroup is given: before 5.7 such a
//!   launch fails with EINVAL.

use crate::{Applied, ConfineError, Network, NetworkApplied, Policy, caps, filesystem, rlimit};
use std::ffi::{CStr, CString, c_void};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// A policy prepared for launching programs under it.
#[derive(Debug)]
pub struct Launcher {
    policy: Policy,
    ruleset: Option<OwnedFd>,
    network: NetPlan,
    rlimits: Vec<(rlimit::Resource, libc::rlimit)>,
    clear_caps: bool,
    applied: Applied,
}

#[derive(Debug)]
enum NetPlan {
    Keep,
    Join(OwnedFd),
    Unshare,
}

/// One program to launch. Descriptors are borrowed: the caller keeps its
/// ends (and closes the child's ends once the launch returns).
pub struct Launch<'a> {
    /// Absolute path, run as given (no `PATH` lookup).
    pub program: &'a CStr,
    /// `argv`, the program's path first.
    pub args: &'a [CString],
    /// `NAME=value` entries: the whole environment.
    pub env: &'a [CString],
    pub cwd: &'a CStr,
    pub stdin: BorrowedFd<'a>,
    pub stdout: BorrowedFd<'a>,
    pub stderr: BorrowedFd<'a>,
    /// Start the program in a process group of its own.
    pub process_group: bool,
    /// A cgroup v2 directory the program is born in.
    pub cgroup: Option<BorrowedFd<'a>>,
    /// `tasks` files (cgroup v1) the program moves itself into before its
    /// exec, writing `0`.
    pub join: &'a [BorrowedFd<'a>],
}

/// A launched program: it has exec'd (or the launch would have failed).
#[derive(Debug)]
pub struct Launched {
    pub pid: i32,
    /// Readable once the program has exited; reap it with `waitid(P_PIDFD)`.
    pub pidfd: OwnedFd,
}

/// Why a launch failed: the step, and the error.
#[derive(Debug, thiserror::Error)]
#[error("failed to {step}: {source}")]
pub struct LaunchError {
    pub step: &'static str,
    #[source]
    pub source: io::Error,
}

impl LaunchError {
    /// The program is missing, not executable or not granted: execve
    /// itself failed.
    pub fn exec_failed(&self) -> bool {
        self.step == STEPS[Step::Exec as usize]
    }
}

#[derive(Clone, Copy)]
#[repr(u32)]
enum Step {
    Clone,
    ProcessGroup,
    Network,
    WorkingDir,
    Stdio,
    Cgroup,
    Rlimit,
    NoNewPrivs,
    Landlock,
    Capabilities,
    Signals,
    Exec,
}

const STEPS: [&str; 12] = [
    "start the program (clone3)",
    "give the program its own process group",
    "enter the empty network namespace",
    "enter the working directory",
    "set up stdin, stdout and stderr",
    "join the job's cgroup",
    "set an rlimit",
    "set no_new_privs",
    "enforce the Landlock ruleset",
    "drop capabilities",
    "reset signal handlers",
    "execute the program",
];

impl Launcher {
    /// Whether `policy` can be launched here; cheap (no system call but a
    /// `capget`), so the host can choose the helper up front.
    pub fn eligible(policy: &Policy) -> Result<(), ConfineError> {
        if !cfg!(target_arch = "x86_64") {
            return Err(ConfineError::NotForLauncher(
                "launching is only built for x86_64".into(),
            ));
        }
        if let Some(why) = clone3_missing() {
            return Err(ConfineError::NotForLauncher(why.to_string()));
        }
        let not = |why: &str| Err(ConfineError::NotForLauncher(why.into()));
        match &policy.network {
            Network::Allowed => {}
            Network::DeniedShared(r) if r.user.is_some() => {
                return not(
                    "the shared network namespace belongs to a user namespace, which a program sharing the host's memory until its exec cannot enter",
                );
            }
            Network::Denied | Network::DeniedShared(_) => {
                if caps::permitted()? & (1 << CAP_SYS_ADMIN) == 0 {
                    return not(
                        "entering a network namespace needs CAP_SYS_ADMIN, which this process lacks",
                    );
                }
            }
        }
        Ok(())
    }

    /// Works `policy` out for launching: opens the granted paths into a
    /// Landlock ruleset, the shared namespace, and reads the limits to
    /// clamp to. What cannot be applied here is an error when the policy
    /// requires it and a warning in [`Launcher::applied`] otherwise, as with
    /// the helper.
    pub fn new(policy: &Policy) -> Result<Launcher, ConfineError> {
        Self::eligible(policy)?;
        let mut warnings = Vec::new();
        let (network, net_applied) = match &policy.network {
            Network::Allowed => (NetPlan::Keep, NetworkApplied::Allowed),
            Network::Denied => (NetPlan::Unshare, NetworkApplied::NewNamespace),
            Network::DeniedShared(r) => match crate::netns::open_shared(&r.net) {
                Ok(file) => (NetPlan::Join(file.into()), NetworkApplied::Joined),
                Err(e) => {
                    warnings.push(format!("{e}; creating a private one per program instead"));
                    (NetPlan::Unshare, NetworkApplied::NewNamespace)
                }
            },
        };
        // The ruleset's paths are resolved here, in the host: a grant that
        // resolves into the host's own /proc entry (`/proc/self`,
        // `/dev/fd`, ...) would open the host to every program, and the
        // program's own entry does not exist yet. So those are left out,
        // and a launched program cannot read its own `/proc/self` (glibc
        // does without it).
        // SAFETY: getpid cannot fail.
        let host = unsafe { libc::getpid() };
        let mut grants = policy.clone();
        for paths in [&mut grants.read_only, &mut grants.read_write] {
            paths.retain(|p| !names_process(p, host));
        }
        let (ruleset, landlock) = filesystem::ruleset_fd(&grants, &mut warnings)?;
        let (rlimits_applied, rlimits) =
            rlimit::plan(&policy.rlimits, policy.require, &mut warnings)?;
        let clear_caps = caps::permitted()? != 0;
        // The shield is built here once so that a launch cannot fail on it.
        crate::seccomp::program(host)?;
        Ok(Launcher {
            policy: policy.clone(),
            ruleset,
            network,
            rlimits,
            clear_caps,
            applied: Applied {
                landlock,
                network: net_applied,
                rlimits: rlimits_applied,
                capabilities_cleared: true,
                no_new_privs: true,
                warnings,
            },
        })
    }

    /// What every program launched gets.
    pub fn applied(&self) -> &Applied {
        &self.applied
    }

    /// The policy, as given to [`Launcher::new`].
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Launches one program, confined; returns once it has exec'd. Blocks
    /// the calling thread for the clone and exec (as `posix_spawn` does),
    /// a few hundred microseconds.
    pub fn launch(&self, l: &Launch<'_>) -> Result<Launched, LaunchError> {
        let argv = null_terminated(l.args);
        let envp = null_terminated(l.env);
        shield_this_thread()?;
        let mut failure = Failure { step: 0, errno: 0 };
        let join: Vec<RawFd> = l.join.iter().map(|fd| fd.as_raw_fd()).collect();
        let mut child = ChildArgs {
            join: &join,
            program: l.program.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            cwd: l.cwd.as_ptr(),
            stdio: [
                l.stdin.as_raw_fd(),
                l.stdout.as_raw_fd(),
                l.stderr.as_raw_fd(),
            ],
            process_group: l.process_group,
            netns: match &self.network {
                NetPlan::Keep => NetRaw::Keep,
                NetPlan::Join(fd) => NetRaw::Join(fd.as_raw_fd()),
                NetPlan::Unshare => NetRaw::Unshare,
            },
            rlimits: &self.rlimits,
            ruleset: self.ruleset.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
            clear_caps: self.clear_caps,
            handlers_cleared: false,
            failure: &mut failure,
        };
        // The child's stack: 16-byte aligned, its top where it starts. Left
        // uninitialised: only the child writes it, before it reads it.
        let mut stack = CHILD_STACKS
            .take()
            .unwrap_or_else(|| Box::new_uninit_slice(CHILD_STACK / 16));
        let mut pidfd: RawFd = -1;
        let mut args = CloneArgs {
            flags: (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64,
            pidfd: &mut pidfd as *mut RawFd as u64,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack.as_mut_ptr() as u64,
            stack_size: CHILD_STACK as u64,
            tls: 0,
            set_tid: 0,
            set_tid_size: 0,
            cgroup: 0,
        };
        if let Some(cg) = l.cgroup {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = cg.as_raw_fd() as u64;
        }
        // Every signal blocked across the clone, glibc's own two included
        // (hence the raw call): a handler of the host must never run on the
        // child's stack. The child empties its own mask.
        let mut old: u64 = 0;
        set_signal_mask(!0, Some(&mut old));
        use std::sync::atomic::Ordering::Relaxed;
        let mut pid;
        loop {
            child.handlers_cleared = !NO_CLEAR_SIGHAND.load(Relaxed);
            if child.handlers_cleared {
                args.flags |= CLONE_CLEAR_SIGHAND;
            } else {
                args.flags &= !CLONE_CLEAR_SIGHAND;
            }
            // SAFETY: `args` describes a stack that outlives the child's use
            // of it (the caller is suspended until the child execs or
            // exits), and `child_main` touches only `child`, which lives as
            // long.
            pid = unsafe {
                clone3(
                    &mut args,
                    child_main,
                    &child as *const ChildArgs as *mut c_void,
                )
            };
            if pid != -(libc::EINVAL as isize) || !child.handlers_cleared {
                break;
            }
            // An unknown flag; if the flag was not the reason, the clone
            // without it fails alike and that error is reported.
            NO_CLEAR_SIGHAND.store(true, Relaxed);
        }
        let clone_error = (pid < 0).then(|| io::Error::from_raw_os_error(-pid as i32));
        set_signal_mask(old, None);
        CHILD_STACKS.set(Some(stack));
        if let Some(source) = clone_error {
            return Err(LaunchError {
                step: STEPS[Step::Clone as usize],
                source,
            });
        }
        // SAFETY: the kernel wrote a new descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        if failure.step != 0 {
            // It exits at once; only the reason it failed matters.
            let _ = reap(pidfd.as_fd(), true);
            return Err(LaunchError {
                step: STEPS[(failure.step as usize).min(STEPS.len() - 1)],
                source: io::Error::from_raw_os_error(failure.errno),
            });
        }
        Ok(Launched {
            pid: pid as i32,
            pidfd,
        })
    }
}

thread_local! {
    /// The stack launches from this thread lend their child. The child is
    /// done with it once `clone3` returns (the caller is suspended until it
    /// execs or exits), so one serves every launch from the thread: no
    /// allocation, and no fresh pages to fault in, per program.
    static CHILD_STACKS: std::cell::Cell<Option<Box<[std::mem::MaybeUninit<u128>]>>> =
        const { std::cell::Cell::new(None) };
    /// Whether this thread carries the seccomp shield.
    static SHIELDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs the seccomp shield on the calling thread, once: every program
/// it launches inherits the filter. Installing it in each child instead
/// costs about 0.1 ms per program (the kernel compiles the filter anew).
/// The thread itself, and every thread it starts from then on, is held to
/// the same rules, which a host never needs to break: no signal to its own
/// process id or group (`raise` and `abort`'s SIGABRT included: `abort`
/// then ends the process by SIGSEGV), no `tgkill` within the host, no
/// changing another process's rlimits. A host without CAP_SYS_ADMIN must
/// set no_new_privs on the thread first: what that thread and its later
/// threads exec can then never gain privileges (setuid programs).
fn shield_this_thread() -> Result<(), LaunchError> {
    if SHIELDED.get() {
        return Ok(());
    }
    let fail = |source| LaunchError {
        step: "install the seccomp shield on the launching thread",
        source,
    };
    // Without CAP_SYS_ADMIN a filter needs no_new_privs on the thread;
    // it only keeps the thread's own execs from gaining privileges.
    // SAFETY: prctl with integer arguments only.
    if !caps::effective(CAP_SYS_ADMIN)
        && unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0
    {
        return Err(fail(io::Error::last_os_error()));
    }
    // SAFETY: getpid cannot fail.
    let host = unsafe { libc::getpid() };
    crate::seccomp::shield(host).map_err(|e| fail(io::Error::other(e.to_string())))?;
    SHIELDED.set(true);
    Ok(())
}

/// Sets the calling thread's signal mask (bit `n - 1`: signal `n`), every
/// signal included (glibc's wrappers keep its own two, 32 and 33, out),
/// returning the previous one in `old`.
fn set_signal_mask(mask: u64, old: Option<&mut u64>) {
    let old = old.map_or(std::ptr::null_mut(), |o| o as *mut u64);
    // SAFETY: rt_sigprocmask with an 8-byte set (the kernel's sigset_t on
    // the architectures built for) and a valid or null out-pointer; it
    // cannot fail with these arguments.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask as *const u64,
            old,
            std::mem::size_of::<u64>(),
        );
    }
}

/// Why `clone3` cannot be used here, if it cannot: a kernel before 5.3, or
/// a seccomp profile that refuses it (some container runtimes' do). Asked
/// once, with arguments the kernel rejects before doing anything.
fn clone3_missing() -> Option<&'static str> {
    static MISSING: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    MISSING
        .get_or_init(|| {
            // SAFETY: a null argument block of size 0 is refused with EINVAL
            // by a kernel that has clone3; nothing is created.
            let r = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
            let e = io::Error::last_os_error();
            match (r, e.raw_os_error()) {
                (-1, Some(libc::EINVAL)) => None,
                _ => Some(format!("clone3 is not available here ({e})")),
            }
        })
        .as_deref()
}

/// Whether `path` resolves into process `pid`'s `/proc` entry (one of its
/// threads' included).
fn names_process(path: &std::path::Path, pid: i32) -> bool {
    // A path that does not resolve is left for Landlock to report.
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(rest) = real.strip_prefix("/proc") else {
        return false;
    };
    let Some(first) = rest.components().next() else {
        return false;
    };
    let Some(n) = first
        .as_os_str()
        .to_str()
        .and_then(|s| s.parse::<i32>().ok())
    else {
        return false;
    };
    // A thread's id names its process's entry too.
    n == pid || std::path::Path::new(&format!("/proc/{pid}/task/{n}")).exists()
}

/// The pointer array execve takes: each string, then a null. The strings
/// must outlive the array.
pub fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Sends SIGKILL to the process behind `pidfd` (a [`Launched`] program's);
/// the pidfd names it even if its pid has been reused.
pub fn kill(pidfd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: integer arguments and a null siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reaps the process behind `pidfd` (a [`Launched`] program's) if it has
/// exited, or, `blocking`, once it has; its exit status, or `None` while it
/// runs.
pub fn reap(pidfd: BorrowedFd<'_>, blocking: bool) -> io::Result<Option<ExitStatus>> {
    let flags = libc::WEXITED | if blocking { 0 } else { libc::WNOHANG };
    // SAFETY: a zeroed siginfo is a valid out-parameter; P_PIDFD takes the
    // descriptor as the id.
    let info = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        if libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            flags,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        info
    };
    // SAFETY: waitid filled in a SIGCHLD siginfo (or left it zeroed).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    // As a wait status: an exit code in the second byte, or the signal.
    let raw = match info.si_code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_DUMPED => status | 0x80,
        _ => status,
    };
    Ok(Some(ExitStatus::from_raw(raw)))
}

const CHILD_STACK: usize = 32 << 10;
const CAP_SYS_ADMIN: u32 = 21;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

/// Set once a clone with `CLONE_CLEAR_SIGHAND` was refused (EINVAL from a
/// kernel before 5.5): later launches reset the handlers in the child.
static NO_CLEAR_SIGHAND: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every later launch of this process reset the signal handlers in
/// the child, as on a kernel before 5.5 (`false`), or go back to letting
/// the clone do it where the kernel can (`true`). For tests of that path.
#[doc(hidden)]
pub fn clear_handlers_in_clone(yes: bool) {
    NO_CLEAR_SIGHAND.store(!yes, std::sync::atomic::Ordering::Relaxed);
}

/// `struct clone_args` of <linux/sched.h> (version 2, with `cgroup`).
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Where the child reports the step it failed at (0: none).
struct Failure {
    step: u32,
    errno: i32,
}

enum NetRaw {
    Keep,
    Join(RawFd),
    Unshare,
}

/// Everything the child reads, prepared by the caller.
struct ChildArgs<'a> {
    join: &'a [RawFd],
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdio: [RawFd; 3],
    process_group: bool,
    netns: NetRaw,
    rlimits: &'a [(rlimit::Resource, libc::rlimit)],
    ruleset: RawFd,
    clear_caps: bool,
    /// The kernel reset the signal handlers in the clone.
    handlers_cleared: bool,
    failure: *mut Failure,
}

/// `clone3` whose child calls `child(arg)` on the new stack and never
/// returns; the parent gets the child's pid or `-errno`.
///
/// # Safety
///
/// `args` must hold `CLONE_VM | CLONE_VFORK` and a stack for the child;
/// `child` must not return and may only make system calls on `arg`.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3(
    args: &mut CloneArgs,
    child: extern "C" fn(*mut c_void) -> !,
    arg: *mut c_void,
) -> isize {
    let ret: isize;
    // SAFETY: the caller's contract. In the child the kernel has set the
    // stack pointer to the top of the (16-byte aligned) stack, so the call
    // enters `child` with the alignment the ABI expects.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 as isize => ret,
            in("rdi") args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") arg,
            in("r13") child,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3(
    _args: &mut CloneArgs,
    _child: extern "C" fn(*mut c_void) -> !,
    _arg: *mut c_void,
) -> isize {
    -(libc::ENOSYS as isize)
}

/// The child between clone and exec: system calls only.
extern "C" fn child_main(arg: *mut c_void) -> ! {
    // SAFETY: `arg` is the caller's `ChildArgs`, alive until this child
    // execs or exits (the caller is suspended until then).
    let a = unsafe { &*(arg as *const ChildArgs<'_>) };
    let step = match unsafe { confine_and_exec(a) } {
        Ok(never) => match never {},
        Err(step) => step,
    };
    // SAFETY: reading this thread's errno, then reporting through memory
    // the suspended caller reads after the clone returns.
    unsafe {
        let errno = *libc::__errno_location();
        std::ptr::write_volatile(
            a.failure,
            Failure {
                step: step as u32,
                errno,
            },
        );
        libc::_exit(127)
    }
}

enum Never {}

/// # Safety
///
/// Only in the child of [`clone3`]: every call below is a plain system call
/// on prepared data.
unsafe fn confine_and_exec(a: &ChildArgs<'_>) -> Result<Never, Step> {
    let ok = |r: libc::c_long, step: Step| if r < 0 { Err(step) } else { Ok(()) };
    unsafe {
        if a.process_group {
            ok(libc::setpgid(0, 0) as _, Step::ProcessGroup)?;
        }
        match a.netns {
            NetRaw::Keep => {}
            NetRaw::Join(fd) => ok(libc::setns(fd, libc::CLONE_NEWNET) as _, Step::Network)?,
            NetRaw::Unshare => ok(libc::unshare(libc::CLONE_NEWNET) as _, Step::Network)?,
        }
        ok(libc::chdir(a.cwd) as _, Step::WorkingDir)?;
        // A source among 0-2 that another target would overwrite is moved
        // up first (the child's descriptor table is its own).
        let mut src = a.stdio;
        for s in &mut src {
            if (0..=2).contains(s) {
                let moved = libc::fcntl(*s, libc::F_DUPFD_CLOEXEC, 3);
                ok(moved as _, Step::Stdio)?;
                *s = moved;
            }
        }
        for (target, s) in src.iter().enumerate() {
            ok(libc::dup2(*s, target as i32) as _, Step::Stdio)?;
        }
        for fd in a.join {
            ok(libc::write(*fd, b"0".as_ptr().cast(), 1) as _, Step::Cgroup)?;
        }
        for (resource, limit) in a.rlimits {
            ok(libc::setrlimit(*resource, limit) as _, Step::Rlimit)?;
        }
        ok(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as _,
            Step::NoNewPrivs,
        )?;
        if a.ruleset >= 0 {
            ok(
                libc::syscall(libc::SYS_landlock_restrict_self, a.ruleset, 0u32),
                Step::Landlock,
            )?;
        }
        if a.clear_caps {
            // Empty effective, permitted and inheritable sets (which empties
            // the ambient one) with no_new_privs leave the program none: at
            // exec the kernel grants at most what the caller permitted, even
            // to root, even for a binary with file capabilities. One call,
            // where emptying the bounding set too would take one per
            // capability, each copying the credentials.
            let mut header = CapHeader {
                version: 0x2008_0522,
                pid: 0,
            };
            let data = [CapData::default(); 2];
            ok(
                libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
                Step::Capabilities,
            )?;
        }
        // Handlers do not survive exec, but a signal arriving between the
        // mask's end and the exec would run one here; ignored signals do
        // survive, and SIGPIPE is ignored by every Rust program.
        let mut action: libc::sigaction = std::mem::zeroed();
        if a.handlers_cleared {
            // The kernel reset the handlers; of the ignored signals only
            // SIGPIPE goes back to its default.
            action.sa_sigaction = libc::SIG_DFL;
            ok(
                libc::sigaction(libc::SIGPIPE, &action, std::ptr::null_mut()) as _,
                Step::Signals,
            )?;
        } else {
            for sig in 1..=libc::SIGRTMAX() {
                if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                    continue;
                }
                if libc::sigaction(sig, std::ptr::null(), &mut action) != 0 {
                    continue;
                }
                if action.sa_sigaction != libc::SIG_DFL
                    && (action.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
                {
                    action.sa_sigaction = libc::SIG_DFL;
                    action.sa_flags = 0;
                    ok(
                        libc::sigaction(sig, &action, std::ptr::null_mut()) as _,
                        Step::Signals,
                    )?;
                }
            }
        }
        set_signal_mask(0, None);
        libc::execve(a.program, a.argv, a.envp);
        Err(Step::Exec)
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
