//! `kiln-confine`: confine this process according to the policy given as
//! its `--policy` argument, then exec the program in place. The contract
//! (argv, environment, exit codes) is documented on the `kiln_confine`
//! crate. Nothing of the helper's own is read from the environment: the
//! program's requested variables are in it.

#![no_main]

use kiln_confine::{
    EXIT_CONFINE_FAILED, EXIT_EXEC_FAILED, HELPER_ENV_PREFIX, Policy, STDERR_PREFIX,
    null_terminated,
};
use std::ffi::{CString, OsString};
use std::fmt::Display;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

const USAGE: &str = "usage: kiln-confine --policy <json> [--cgroup <dirs>] -- /absolute/program [args...]\n   \
     or: kiln-confine --check --policy <json>\n   \
     or: kiln-confine --hold-netns | --probe";

// Without std's runtime start-up: it would read /proc/self/maps for the
// main thread's stack guard and install a stack-overflow handler, wasted on
// a process that execs within a millisecond. On glibc std still captures
// argv and the environment on its own.
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // A closed stderr or stdout is an error to report, not a reason to die
    // before the program runs; `reset_signals` restores the default for it.
    // SAFETY: setting a disposition in a single-threaded process.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    match bytes.as_slice() {
        [b"--policy", policy, rest @ ..] => {
            let (cgroups, rest) = match rest {
                [b"--cgroup", dirs, rest @ ..] => (Some(OsString::from_vec(dirs.to_vec())), rest),
                _ => (None, rest),
            };
            match rest {
                [b"--", command @ ..] if !command.is_empty() => run(
                    policy,
                    cgroups,
                    command
                        .iter()
                        .map(|c| OsString::from_vec(c.to_vec()))
                        .collect(),
                ),
                _ => fail(USAGE),
            }
        }
        [b"--check", b"--policy", policy] => check(policy),
        [b"--hold-netns"] => match kiln_confine::hold_netns() {
            Ok(()) => 0,
            Err(e) => fail(e),
        },
        [b"--probe"] => print_json(&kiln_confine::probe()),
        _ => fail(USAGE),
    }
}

/// Applies the policy and execs; returns only with an exit status on failure.
fn run(policy: &[u8], cgroups: Option<OsString>, command: Vec<OsString>) -> i32 {
    if let Err(e) = kiln_confine::cloexec_inherited_fds() {
        return fail(e);
    }
    let mut policy = match read_policy(policy) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let mut command = command.into_iter();
    let Some(program) = command.next().map(PathBuf::from) else {
        return fail(USAGE);
    };
    if !program.is_absolute() {
        return fail(format_args!(
            "program path {} is not absolute",
            program.display()
        ));
    }
    // Everything exec needs is built before confining: allocations can fail
    // under the address-space limit.
    let argv = match cstrings(std::iter::once(program.clone().into_os_string()).chain(command)) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let envp = match cstrings(
        std::env::vars_os()
            .filter(|(k, _)| !k.as_bytes().starts_with(HELPER_ENV_PREFIX.as_bytes()))
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                kv
            }),
    ) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let argv_ptrs = null_terminated(&argv);
    let envp_ptrs = null_terminated(&envp);

    // Join the job's cgroup first (Landlock would then refuse the write):
    // the program and everything it starts stay findable from here on.
    if let Some(dirs) = cgroups {
        for dir in std::env::split_paths(&dirs) {
            let procs = dir.join("cgroup.procs");
            if let Err(e) = std::fs::write(&procs, "0") {
                if policy.require {
                    return fail(format_args!(
                        "cannot join the cgroup {}: {e}",
                        procs.display()
                    ));
                }
                say(format_args!(
                    "warning: cannot join the cgroup {}: {e}",
                    procs.display()
                ));
            }
        }
    }
    // A missing program is reported by execve (exit 127), not as a bad grant.
    if program.exists() {
        policy.read_only.push(program.clone());
    }
    match kiln_confine::apply(&policy) {
        Ok(applied) if !applied.warnings.is_empty() => say(format_args!(
            "warning: confinement incomplete: {}",
            applied.warnings.join("; ")
        )),
        Ok(_) => {}
        Err(e) => return fail(e),
    }
    // The shield launched programs carry too, aimed at the host that started
    // this helper (its parent): the program may neither signal the host nor
    // change any other process's rlimits (Landlock covers neither).
    // SAFETY: getppid cannot fail.
    let host = unsafe { libc::getppid() };
    if let Err(e) = kiln_confine::shield_host(host) {
        if policy.require {
            return fail(e);
        }
        say(format_args!("warning: confinement incomplete: {e}"));
    }
    // A second pass costs one syscall and covers anything opened without
    // O_CLOEXEC since the first.
    if let Err(e) = kiln_confine::cloexec_inherited_fds() {
        return fail(e);
    }
    reset_signals();
    // SAFETY: both arrays are NUL-terminated lists of valid C strings that
    // outlive the call.
    unsafe { libc::execve(argv[0].as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    let e = io::Error::last_os_error();
    say(format_args!("cannot execute {}: {e}", program.display()));
    EXIT_EXEC_FAILED
}

fn check(policy: &[u8]) -> i32 {
    match read_policy(policy).and_then(|p| kiln_confine::apply(&p).map_err(|e| e.to_string())) {
        Ok(applied) => print_json(&applied),
        Err(e) => fail(e),
    }
}

fn read_policy(text: &[u8]) -> Result<Policy, String> {
    let text = std::str::from_utf8(text).map_err(|_| "the policy is not UTF-8".to_string())?;
    Policy::from_json(text).map_err(|e| e.to_string())
}

fn cstrings(items: impl Iterator<Item = OsString>) -> Result<Vec<CString>, String> {
    items
        .map(|s| CString::new(s.into_vec()).map_err(|_| "argument contains a NUL byte".into()))
        .collect()
}

/// Ignored signals stay ignored across exec: neither the helper's nor its
/// parent's ignored SIGPIPE may reach the program.
fn reset_signals() {
    // SAFETY: resetting a disposition and emptying the mask of this
    // single-threaded process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> i32 {
    match serde_json::to_string(value) {
        Ok(mut text) => {
            text.push('\n');
            let mut out = io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => 0,
                Err(e) => fail(format_args!("writing stdout: {e}")),
            }
        }
        Err(e) => fail(e),
    }
}

/// One line on stderr, written at once so it does not interleave; a closed
/// stderr is not worth dying over.
fn say(msg: impl Display) {
    let line = format!("{STDERR_PREFIX}{msg}\n");
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

fn fail(msg: impl Display) -> i32 {
    say(msg);
    EXIT_CONFINE_FAILED
}
