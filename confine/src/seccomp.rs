//! The shield: a seccomp filter that keeps the programs Kiln starts from
//! signalling the host, changing its rlimits, or reaching the host's UNIX
//! sockets.
//!
//! Landlock's signal scoping (ABI 6) already keeps a confined program from
//! signalling processes outside its domain, the host included; it does not
//! cover rlimits, and on older kernels it does not exist. The filter
//! refuses with EPERM every way of aiming a signal at the host's process id:
//!
//! - `kill`, `tkill`, `rt_sigqueueinfo`, `pidfd_open` whose target is the
//!   host; `kill` of the host's process group (the host may lead one) and
//!   of every process (`kill(-1)`);
//! - `tgkill`, `rt_tgsigqueueinfo` whose thread group is the host's (the
//!   kernel requires the thread to belong to the group named, so this covers
//!   every host thread);
//! - `fcntl(F_SETOWN)` naming the host (I/O signals, whose number `F_SETSIG`
//!   can make SIGKILL), and `F_SETOWN_EX`, `FIOSETOWN`, `SIOCSPGRP`
//!   altogether (their target sits behind a pointer the filter cannot read;
//!   programs hardly use them);
//! - `prlimit64` setting another process's limits: a program of the same
//!   uid may lower any process's limits, and rlimits are per process, so
//!   naming any thread of the host would do: RLIMIT_CPU below the CPU time
//!   the host has used gets it killed. Reading limits, and setting one's
//!   own through pid 0 (as `setrlimit` does), stay allowed; setting one's
//!   own by pid number is refused with the rest.
//!
//! Signals aimed at another thread of the host by its thread id are left
//! to Landlock's scoping: the filter knows only the process id.
//!
//! UNIX sockets: Landlock before ABI 9 does not govern `connect(2)` or
//! `sendto(2)` to a pathname socket (ABI 6 scopes only abstract ones), and
//! the empty network namespace does not hold them, so a program could reach
//! docker.sock, D-Bus or an ssh-agent outside every grant. The filter
//! refuses `socket(AF_UNIX, ...)` with EPERM, and `socketpair(AF_UNIX, ...)`
//! except of `SOCK_STREAM` (a connected stream pair reaches no one else; a
//! datagram one can still `sendto` any path). `io_uring_setup` gets ENOSYS,
//! since io_uring opens sockets without a system call the filter sees;
//! programs fall back to ordinary calls. On i386, `socketcall`'s
//! `SYS_SOCKET` and `SYS_SOCKETPAIR` are refused whatever the family (their
//! arguments sit behind a pointer). A program loses nothing it should have:
//! glibc falls back from nscd to files, and syslog to nothing.
//!
//! Where it is installed: the helper installs it before it execs the
//! program; a [`crate::Launcher`] installs it once on each thread that
//! launches, whose programs inherit it (installing it in every child costs
//! about 0.1 ms, the kernel compiling the filter anew each time). Such a
//! thread, and the threads it starts later, are held to the same rules,
//! which the host never needs to break; `abort()` then ends the host by
//! SIGSEGV instead of SIGABRT, its raise being refused.
//!
//! Only the low 32 bits of each argument are compared: the kernel reads
//! these arguments as `int`/`unsigned int`, so the high half cannot smuggle
//! a different target past the filter. Foreign system call ABIs are refused
//! outright (x32, and on aarch64 32-bit ARM), except i386 on x86_64, which
//! gets the same rules with its own numbers.
//!
//! What stays open: a `/proc/<pid>` directory descriptor also works as a
//! pidfd on kernels before 6.9, so a policy that grants `/proc` itself lets a
//! program signal the host through `pidfd_send_signal` there where Landlock
//! has no signal scoping.

// Elsewhere only the refusal below is compiled in.
#![cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]

use crate::ConfineError;
use std::io;

// Values of <linux/audit.h>, which the libc crate does not carry.
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
/// Set in the system call number by x32 programs on an x86_64 kernel.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const F_SETOWN: u32 = 8;
const F_SETOWN_EX: u32 = 15;
const FIOSETOWN: u32 = 0x8901;
const SIOCSPGRP: u32 = 0x8902;

// struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]
// (little-endian on every architecture handled here, so the low half of an
// argument comes first).
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const fn arg_low(i: u32) -> u32 {
    16 + 8 * i
}
const fn arg_high(i: u32) -> u32 {
    arg_low(i) + 4
}

const AF_UNIX: u32 = libc::AF_UNIX as u32;
const SOCK_STREAM: u32 = libc::SOCK_STREAM as u32;
/// The bits of a socket type that are the type (the rest are flags).
const SOCK_TYPE_MASK: u32 = 0xf;
/// `socketcall` calls that create sockets.
const SYS_SOCKET: u32 = 1;
const SYS_SOCKETPAIR: u32 = 8;

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// System call numbers of one ABI.
struct Numbers {
    arch: u32,
    kill: u32,
    tkill: u32,
    tgkill: u32,
    rt_sigqueueinfo: u32,
    rt_tgsigqueueinfo: u32,
    pidfd_open: u32,
    /// `fcntl`, and `fcntl64` where it exists.
    fcntl: &'static [u32],
    ioctl: u32,
    prlimit64: u32,
    socket: u32,
    socketpair: u32,
    io_uring_setup: u32,
    /// The multiplexed socket call of i386.
    socketcall: Option<u32>,
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const NATIVE: Numbers = Numbers {
    #[cfg(target_arch = "x86_64")]
    arch: AUDIT_ARCH_X86_64,
    #[cfg(target_arch = "aarch64")]
    arch: AUDIT_ARCH_AARCH64,
    kill: libc::SYS_kill as u32,
    tkill: libc::SYS_tkill as u32,
    tgkill: libc::SYS_tgkill as u32,
    rt_sigqueueinfo: libc::SYS_rt_sigqueueinfo as u32,
    rt_tgsigqueueinfo: libc::SYS_rt_tgsigqueueinfo as u32,
    pidfd_open: libc::SYS_pidfd_open as u32,
    fcntl: &[libc::SYS_fcntl as u32],
    ioctl: libc::SYS_ioctl as u32,
    prlimit64: libc::SYS_prlimit64 as u32,
    socket: libc::SYS_socket as u32,
    socketpair: libc::SYS_socketpair as u32,
    io_uring_setup: libc::SYS_io_uring_setup as u32,
    socketcall: None,
};

/// 32-bit programs on an x86_64 kernel (`int $0x80` from any program, too).
#[cfg(target_arch = "x86_64")]
const I386: Numbers = Numbers {
    arch: AUDIT_ARCH_I386,
    kill: 37,
    tkill: 238,
    tgkill: 270,
    rt_sigqueueinfo: 178,
    rt_tgsigqueueinfo: 335,
    pidfd_open: 434,
    fcntl: &[55, 221],
    ioctl: 54,
    prlimit64: 340,
    socket: 359,
    socketpair: 360,
    io_uring_setup: 425,
    socketcall: Some(102),
};

#[cfg(target_arch = "x86_64")]
const COMPAT: &[Numbers] = &[I386];
#[cfg(target_arch = "aarch64")]
const COMPAT: &[Numbers] = &[];

/// A classic BPF program with symbolic jump targets, resolved by
/// [`Asm::finish`]: hand-counted offsets are too easy to get wrong.
#[derive(Default)]
struct Asm {
    code: Vec<Insn>,
    labels: Vec<Option<usize>>,
}

#[derive(Clone, Copy)]
enum Insn {
    /// A = 32-bit word at this offset of `struct seccomp_data`.
    Load(u32),
    /// if A == k goto label (else next).
    JumpEq(u32, usize),
    /// if A >= k goto label (else next).
    JumpGe(u32, usize),
    /// A &= k.
    And(u32),
    Ret(u32),
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn here(&mut self, label: usize) {
        self.labels[label] = Some(self.code.len());
    }

    fn emit(&mut self, insn: Insn) {
        self.code.push(insn);
    }

    fn finish(self) -> Result<Vec<libc::sock_filter>, ConfineError> {
        const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
        const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
        const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
        const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
        const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
        let bad = |why: &str| ConfineError::Unavailable {
            what: "the shield",
            why: why.to_string(),
        };
        let mut out = Vec::with_capacity(self.code.len());
        for (pos, insn) in self.code.iter().enumerate() {
            let jump = |label: usize| -> Result<u8, ConfineError> {
                let target = self
                    .labels
                    .get(label)
                    .copied()
                    .flatten()
                    .ok_or_else(|| bad("jump to an unplaced label"))?;
                // BPF jumps go forward only, by at most 255 instructions.
                target
                    .checked_sub(pos + 1)
                    .and_then(|d| u8::try_from(d).ok())
                    .ok_or_else(|| bad("jump out of range"))
            };
            out.push(match *insn {
                Insn::Load(k) => bpf(LD_W_ABS, 0, 0, k),
                Insn::JumpEq(k, l) => bpf(JEQ_K, jump(l)?, 0, k),
                Insn::JumpGe(k, l) => bpf(JGE_K, jump(l)?, 0, k),
                Insn::And(k) => bpf(AND_K, 0, 0, k),
                Insn::Ret(k) => bpf(RET_K, 0, 0, k),
            });
        }
        Ok(out)
    }
}

fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter protecting process `host_pid`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn program(host_pid: i32) -> Result<Vec<libc::sock_filter>, ConfineError> {
    use Insn::*;
    let pid = host_pid as u32;
    // kill(-pgid) signals a process group; the host may lead one.
    let group = host_pid.wrapping_neg() as u32;

    let mut a = Asm::default();
    let deny = a.label();
    let enosys = a.label();
    let kill_args = a.label();
    let either_arg0 = a.label();
    let host_arg0 = a.label();
    let fcntl_args = a.label();
    let owner_arg = a.label();
    let ioctl_args = a.label();
    let prlimit_args = a.label();
    let prlimit_high = a.label();
    let socket_args = a.label();
    let socketpair_args = a.label();
    let socketcall_args = a.label();
    let pair_type = a.label();
    let allow = a.label();
    let tables: Vec<(&Numbers, usize)> = std::iter::once(&NATIVE)
        .chain(COMPAT.iter())
        .map(|n| (n, a.label()))
        .collect();

    a.emit(Load(OFFSET_ARCH));
    for (n, start) in &tables {
        a.emit(JumpEq(n.arch, *start));
    }
    a.emit(Ret(RET_ENOSYS));
    for (n, start) in &tables {
        a.here(*start);
        a.emit(Load(OFFSET_NR));
        if n.arch == AUDIT_ARCH_X86_64 {
            a.emit(JumpGe(X32_SYSCALL_BIT, enosys));
        }
        a.emit(JumpEq(n.kill, kill_args));
        a.emit(JumpEq(n.tkill, either_arg0));
        a.emit(JumpEq(n.rt_sigqueueinfo, either_arg0));
        a.emit(JumpEq(n.pidfd_open, either_arg0));
        a.emit(JumpEq(n.tgkill, host_arg0));
        a.emit(JumpEq(n.rt_tgsigqueueinfo, host_arg0));
        for nr in n.fcntl {
            a.emit(JumpEq(*nr, fcntl_args));
        }
        a.emit(JumpEq(n.ioctl, ioctl_args));
        a.emit(JumpEq(n.prlimit64, prlimit_args));
        a.emit(JumpEq(n.socket, socket_args));
        a.emit(JumpEq(n.socketpair, socketpair_args));
        a.emit(JumpEq(n.io_uring_setup, enosys));
        if let Some(nr) = n.socketcall {
            a.emit(JumpEq(nr, socketcall_args));
        }
        a.emit(Ret(RET_ALLOW));
    }

    a.here(socket_args);
    a.emit(Load(arg_low(0)));
    a.emit(JumpEq(AF_UNIX, deny));
    a.emit(Ret(RET_ALLOW));

    a.here(socketpair_args);
    a.emit(Load(arg_low(0)));
    a.emit(JumpEq(AF_UNIX, pair_type));
    a.emit(Ret(RET_ALLOW));
    a.here(pair_type);
    a.emit(Load(arg_low(1)));
    a.emit(And(SOCK_TYPE_MASK));
    a.emit(JumpEq(SOCK_STREAM, allow));
    a.emit(Ret(RET_EPERM));

    a.here(socketcall_args);
    a.emit(Load(arg_low(0)));
    a.emit(JumpEq(SYS_SOCKET, deny));
    a.emit(JumpEq(SYS_SOCKETPAIR, deny));
    a.emit(Ret(RET_ALLOW));

    // kill(-1) signals every process the caller may signal, the host too.
    a.here(kill_args);
    a.emit(Load(arg_low(0)));
    a.emit(JumpEq(u32::MAX, deny));
    a.emit(JumpEq(group, deny));
    a.emit(JumpEq(pid, deny));
    a.emit(Ret(RET_ALLOW));

    a.here(either_arg0);
    a.emit(Load(arg_low(0)));
    a.emit(JumpEq(pid, deny));
    a.emit(Ret(RET_ALLOW));

    a.here(host_arg0);
    a.emit(Load(arg_low(0)));
    a.emit(JumpEq(pid, deny));
    a.emit(Ret(RET_ALLOW));

    a.here(fcntl_args);
    a.emit(Load(arg_low(1)));
    a.emit(JumpEq(F_SETOWN_EX, deny));
    a.emit(JumpEq(F_SETOWN, owner_arg));
    a.emit(Ret(RET_ALLOW));

    a.here(owner_arg);
    a.emit(Load(arg_low(2)));
    a.emit(JumpEq(pid, deny));
    a.emit(JumpEq(group, deny));
    a.emit(Ret(RET_ALLOW));

    a.here(ioctl_args);
    a.emit(Load(arg_low(1)));
    a.emit(JumpEq(FIOSETOWN, deny));
    a.emit(JumpEq(SIOCSPGRP, deny));
    a.emit(Ret(RET_ALLOW));

    // prlimit64(pid, resource, new, old): pid 0 is the caller; a null `new`
    // (a 64-bit pointer on 64-bit ABIs) only reads.
    a.here(prlimit_args);
    a.emit(Load(arg_low(0)));
    a.emit(JumpEq(0, allow));
    a.emit(Load(arg_low(2)));
    a.emit(JumpEq(0, prlimit_high));
    a.emit(Ret(RET_EPERM));
    a.here(prlimit_high);
    a.emit(Load(arg_high(2)));
    a.emit(JumpEq(0, allow));
    a.emit(Ret(RET_EPERM));

    a.here(allow);
    a.emit(Ret(RET_ALLOW));
    a.here(deny);
    a.emit(Ret(RET_EPERM));
    a.here(enosys);
    a.emit(Ret(RET_ENOSYS));
    a.finish()
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) fn program(_host_pid: i32) -> Result<Vec<libc::sock_filter>, ConfineError> {
    Err(ConfineError::Unavailable {
        what: "the shield",
        why: "it is only built for x86_64 and aarch64".into(),
    })
}

/// Installs the shield on the calling thread only (no `TSYNC`), for it and
/// every process it creates. Needs no_new_privs or CAP_SYS_ADMIN.
pub(crate) fn shield(host_pid: i32) -> Result<(), ConfineError> {
    const PR_SET_SECCOMP: libc::c_int = 22;
    let filter = program(host_pid)?;
    let len = u16::try_from(filter.len()).map_err(|_| ConfineError::Unavailable {
        what: "the shield",
        why: "the filter is too long".into(),
    })?;
    let prog = libc::sock_fprog {
        len,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `len` valid instructions that outlive the
    // call; the kernel copies them.
    let r = unsafe {
        libc::prctl(
            PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog,
            0,
            0,
        )
    };
    if r != 0 {
        return Err(ConfineError::Unavailable {
            what: "the shield",
            why: format!("seccomp: {}", io::Error::last_os_error()),
        });
    }
    Ok(())
}

#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tests {
    use super::*;

    #[test]
    fn program_resolves_and_ends_in_returns() {
        let p = program(1234).unwrap();
        assert!(p.len() < 200, "{}", p.len());
        let ret = (libc::BPF_RET | libc::BPF_K) as u16;
        assert_eq!(p.last().map(|i| i.code), Some(ret));
    }
}
