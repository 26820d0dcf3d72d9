//! `kiln-fake`: the multi-call program behind the conformance suite's fake
//! program registry.
//!
//! The first argument selects the behaviour (the registry passes it as a
//! fixed leading argument); the remaining arguments belong to the behaviour.
//!
//! | behaviour | effect |
//! |---|---|
//! | `mtzdump ARGS...` | Kiln's mtzdump (`HKLIN <file>`, keywords on stdin); exits with its code |
//! | `pdbset ARGS...` | Kiln's pdbset (`XYZIN <in> XYZOUT <out>`, keywords on stdin); exits with its code |
//! | `refmac5 ARGS...` | Kiln's refmac5 stand-in (simulated refinement, see kiln-ccp4-programs); exits with its code |
//! | `exit N` | exits with code N (the OS keeps the low 8 bits) |
//! | `sleep SECS` | sleeps SECS seconds (a decimal number), exits 0 |
//! | `spew N [stdout\|stderr\|both]` | writes N bytes to the stream(s) (default stdout), both at once for `both`, exits 0 |
//! | `ignore-term SECS` | ignores SIGTERM, prints `ready` on stdout, sleeps SECS, exits 0 |
//! | `fork-grandchild SECS` | forks a process that keeps stdout open and sleeps SECS; prints its pid and exits 0 at once |
//! | `setsid-grandchild SECS` | the same, but the forked process first leaves the process group with `setsid()` |
//! | `print-argv` | prints every argument as received, `argv[0]` and the behaviour name included, one per line |
//! | `print-env` | prints the environment as `NAME=VALUE` lines, sorted by name |
//! | `echo-stdin` | copies stdin to stdout until end of input |
//! | `list-fds` | prints the process's open file descriptors, one number per line, ascending |
//! | `read-file PATH` | prints the file's contents; exits 1 with the error on stderr if it cannot be read |
//! | `write-file PATH TEXT` | writes TEXT (no newline added) to PATH; exits 1 with the error on failure |
//! | `crash` | kills itself with SIGSEGV |
//! | `symlink UP TARGET LINK` | makes LINK (replacing a file there) a symbolic link to TARGET under UP levels of `../` (the host refuses `..` in arguments); exits 1 with the error on failure |
//! | `mkfifo PATH` | makes a FIFO at PATH (replacing a file there); exits 1 with the error on failure |
//! | `connect-unix PATH` | connects to the UNIX socket PATH and writes `hello`; exits 1 with the error on failure |
//! | `print-x BYTES` | writes BYTES `x` characters to stdout, exits 0 |
//! | `fill PATH BYTES` | writes BYTES bytes to PATH in 1 MiB pieces, stopping at the first error (exits 1 with it) |
//!
//! `spew` writes a binary pattern without line breaks: the 254 byte values
//! other than `\n` and `\r`, starting at 0x80 so the output is not valid
//! UTF-8 from its first byte, repeated. Unknown behaviours and bad arguments
//! print a message naming the behaviour and its usage on stderr and exit 2.
//! Failing to write output (a closed pipe) exits 1.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::process;
use std::thread;
use std::time::Duration;

const USAGE: &[(&str, &str)] = &[
    ("mtzdump", "mtzdump HKLIN <file>   (keywords on stdin)"),
    (
        "pdbset",
        "pdbset XYZIN <in> XYZOUT <out>   (keywords on stdin)",
    ),
    (
        "refmac5",
        "refmac5 HKLIN <mtz> XYZIN <in> XYZOUT <out>   (keywords on stdin)",
    ),
    ("exit", "exit N"),
    ("sleep", "sleep SECS"),
    ("spew", "spew N [stdout|stderr|both]"),
    ("ignore-term", "ignore-term SECS"),
    ("fork-grandchild", "fork-grandchild SECS"),
    ("setsid-grandchild", "setsid-grandchild SECS"),
    ("print-argv", "print-argv [ARGS...]"),
    ("print-env", "print-env"),
    ("echo-stdin", "echo-stdin"),
    ("list-fds", "list-fds"),
    ("read-file", "read-file PATH"),
    ("write-file", "write-file PATH TEXT"),
    ("crash", "crash"),
    ("symlink", "symlink UP TARGET LINK"),
    ("mkfifo", "mkfifo PATH"),
    ("connect-unix", "connect-unix PATH"),
    ("fill", "fill PATH BYTES"),
    ("print-x", "print-x BYTES"),
];

/// A usage error: exit 2 with the behaviour's usage.
struct Usage {
    behaviour: String,
    problem: String,
}

fn usage(behaviour: &str, problem: impl Into<String>) -> Usage {
    Usage {
        behaviour: behaviour.to_string(),
        problem: problem.into(),
    }
}

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let code = match dispatch(&argv) {
        Ok(code) => code,
        Err(u) => {
            let mut msg = format!("kiln-fake: {}: {}\n", u.behaviour, u.problem);
            match USAGE.iter().find(|(name, _)| *name == u.behaviour) {
                Some((_, line)) => msg.push_str(&format!("usage: kiln-fake {line}\n")),
                None => {
                    msg.push_str(
                        "usage: kiln-fake BEHAVIOUR [ARGS...], where BEHAVIOUR is one of:\n",
                    );
                    for (_, line) in USAGE {
                        msg.push_str(&format!("  {line}\n"));
                    }
                }
            }
            let _ = io::stderr().write_all(msg.as_bytes());
            2
        }
    };
    let _ = io::stdout().flush();
    process::exit(code);
}

fn dispatch(argv: &[OsString]) -> Result<i32, Usage> {
    let Some(behaviour) = argv.get(1) else {
        return Err(usage("(none)", "no behaviour given"));
    };
    let name = behaviour.to_string_lossy().into_owned();
    let args = &argv[2..];
    let arity = |n: usize| -> Result<(), Usage> {
        if args.len() == n {
            Ok(())
        } else {
            Err(usage(
                &name,
                format!("expected {n} argument(s), got {}", args.len()),
            ))
        }
    };
    match name.as_str() {
        "mtzdump" | "pdbset" | "refmac5" => {
            let program = kiln_ccp4_programs::program(&name)
                .ok_or_else(|| usage(&name, "unknown program"))?;
            let args = args
                .iter()
                .map(|a| a.clone().into_string())
                .collect::<Result<Vec<String>, _>>()
                .map_err(|bad| usage(&name, format!("argument {bad:?} is not valid UTF-8")))?;
            let stdin = io::stdin();
            let stdout = io::stdout();
            let stderr = io::stderr();
            Ok(program(
                &args,
                &mut stdin.lock(),
                &mut stdout.lock(),
                &mut stderr.lock(),
            ))
        }
        "exit" => {
            arity(1)?;
            let code = text(&name, &args[0])?
                .parse::<i32>()
                .map_err(|_| usage(&name, format!("N must be an integer, got {:?}", args[0])))?;
            Ok(code)
        }
        "sleep" => {
            arity(1)?;
            thread::sleep(seconds(&name, &args[0])?);
            Ok(0)
        }
        "spew" => {
            if args.is_empty() || args.len() > 2 {
                return Err(usage(
                    &name,
                    format!("expected 1 or 2 arguments, got {}", args.len()),
                ));
            }
            let n = text(&name, &args[0])?
                .parse::<u64>()
                .map_err(|_| usage(&name, format!("N must be a byte count, got {:?}", args[0])))?;
            let target = match args.get(1).map(|a| a.as_bytes()) {
                None | Some(b"stdout") => Target::Stdout,
                Some(b"stderr") => Target::Stderr,
                Some(b"both") => Target::Both,
                Some(_) => {
                    return Err(usage(&name, format!("unknown stream {:?}", args[1])));
                }
            };
            Ok(spew(n, target))
        }
        "ignore-term" => {
            arity(1)?;
            let secs = seconds(&name, &args[0])?;
            // SAFETY: installs SIG_IGN, no handler code runs.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            let mut out = io::stdout().lock();
            if writeln!(out, "ready").and_then(|()| out.flush()).is_err() {
                return Ok(1);
            }
            drop(out);
            thread::sleep(secs);
            Ok(0)
        }
        "fork-grandchild" | "setsid-grandchild" => {
            arity(1)?;
            let secs = seconds(&name, &args[0])?;
            Ok(fork_grandchild(secs, name == "setsid-grandchild"))
        }
        "print-argv" => {
            let mut out = Vec::new();
            for arg in argv {
                out.extend_from_slice(arg.as_bytes());
                out.push(b'\n');
            }
            Ok(write_stdout(&out))
        }
        "print-env" => {
            arity(0)?;
            let mut vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
            vars.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            let mut out = Vec::new();
            for (k, v) in vars {
                out.extend_from_slice(k.as_bytes());
                out.push(b'=');
                out.extend_from_slice(v.as_bytes());
                out.push(b'\n');
            }
            Ok(write_stdout(&out))
        }
        "echo-stdin" => {
            arity(0)?;
            let mut stdout = io::stdout().lock();
            match io::copy(&mut io::stdin().lock(), &mut stdout).and_then(|_| stdout.flush()) {
                Ok(()) => Ok(0),
                Err(e) => Ok(fail(&format!("echo-stdin: {e}"))),
            }
        }
        "list-fds" => {
            arity(0)?;
            match open_fds() {
                Ok(fds) => {
                    let text: String = fds.iter().map(|fd| format!("{fd}\n")).collect();
                    Ok(write_stdout(text.as_bytes()))
                }
                Err(e) => Ok(fail(&format!("list-fds: {e}"))),
            }
        }
        "read-file" => {
            arity(1)?;
            match std::fs::read(&args[0]) {
                Ok(data) => Ok(write_stdout(&data)),
                Err(e) => Ok(fail(&format!(
                    "read-file: cannot read {}: {e}",
                    args[0].to_string_lossy()
                ))),
            }
        }
        "write-file" => {
            arity(2)?;
            match std::fs::write(&args[0], args[1].as_bytes()) {
                Ok(()) => Ok(0),
                Err(e) => Ok(fail(&format!(
                    "write-file: cannot write {}: {e}",
                    args[0].to_string_lossy()
                ))),
            }
        }
        "crash" => {
            arity(0)?;
            crash();
            Ok(fail("crash: still alive after raising SIGSEGV"))
        }
        "symlink" => {
            arity(3)?;
            let Some(up) = args[0].to_str().and_then(|s| s.parse::<usize>().ok()) else {
                return Ok(fail(&format!("symlink: UP {:?} is not a count", args[0])));
            };
            let mut target = std::ffi::OsString::from("../".repeat(up));
            target.push(&args[1]);
            let _ = std::fs::remove_file(&args[2]);
            match std::os::unix::fs::symlink(&target, &args[2]) {
                Ok(()) => Ok(0),
                Err(e) => Ok(fail(&format!("symlink: {e}"))),
            }
        }
        "mkfifo" => {
            arity(1)?;
            let _ = std::fs::remove_file(&args[0]);
            let path = std::ffi::CString::new(args[0].as_bytes())
                .map_err(|_| usage(&name, "PATH contains a NUL byte"))?;
            // SAFETY: a valid C string.
            if unsafe { libc::mkfifo(path.as_ptr(), 0o644) } == 0 {
                Ok(0)
            } else {
                Ok(fail(&format!("mkfifo: {}", io::Error::last_os_error())))
            }
        }
        "connect-unix" => {
            arity(1)?;
            match std::os::unix::net::UnixStream::connect(&args[0]) {
                Ok(mut s) => {
                    let _ = s.write_all(b"hello");
                    Ok(0)
                }
                Err(e) => Ok(fail(&format!("connect-unix: {e}"))),
            }
        }
        "print-x" => {
            arity(1)?;
            let bytes: usize = text(&name, &args[0])?
                .parse()
                .map_err(|_| usage(&name, "BYTES must be a whole number"))?;
            Ok(write_stdout(&vec![b'x'; bytes]))
        }
        "fill" => {
            arity(2)?;
            let bytes: u64 = text(&name, &args[1])?
                .parse()
                .map_err(|_| usage(&name, "BYTES must be a whole number"))?;
            let chunk = vec![b'x'; 1 << 20];
            let mut file = match std::fs::File::create(&args[0]) {
                Ok(f) => f,
                Err(e) => return Ok(fail(&format!("fill: {e}"))),
            };
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if let Err(e) = file.write_all(&chunk[..n]) {
                    return Ok(fail(&format!("fill: {e}")));
                }
                left -= n as u64;
            }
            Ok(0)
        }
        _ => Err(usage(&name, "unknown behaviour")),
    }
}

fn text<'a>(behaviour: &str, arg: &'a OsStr) -> Result<&'a str, Usage> {
    arg.to_str()
        .ok_or_else(|| usage(behaviour, format!("argument {arg:?} is not valid UTF-8")))
}

fn seconds(behaviour: &str, arg: &OsStr) -> Result<Duration, Usage> {
    text(behaviour, arg)?
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| {
            usage(
                behaviour,
                format!("SECS must be a non-negative number, got {arg:?}"),
            )
        })
}

/// Reports a runtime failure on stderr and gives exit code 1.
fn fail(message: &str) -> i32 {
    let _ = writeln!(io::stderr(), "kiln-fake: {message}");
    1
}

fn write_stdout(data: &[u8]) -> i32 {
    let mut out = io::stdout().lock();
    match out.write_all(data).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => fail(&format!("cannot write stdout: {e}")),
    }
}

#[derive(Clone, Copy)]
enum Target {
    Stdout,
    Stderr,
    Both,
}

/// One period of the spew pattern: every byte value except `\n` and `\r`,
/// starting at 0x80.
fn pattern_period() -> Vec<u8> {
    (0x80..=0xffu8)
        .chain(0x00..0x80)
        .filter(|&b| b != b'\n' && b != b'\r')
        .collect()
}

fn spew(n: u64, target: Target) -> i32 {
    match target {
        Target::Stdout => spew_to(&mut io::stdout().lock(), n, "stdout"),
        Target::Stderr => spew_to(&mut io::stderr().lock(), n, "stderr"),
        Target::Both => {
            // Concurrently, so that a reader draining the pipes one after the
            // other deadlocks instead of passing: that is what this tests.
            let err = thread::spawn(move || spew_to(&mut io::stderr().lock(), n, "stderr"));
            let out = spew_to(&mut io::stdout().lock(), n, "stdout");
            let err = err.join().unwrap_or(1);
            out.max(err)
        }
    }
}

fn spew_to(w: &mut dyn Write, n: u64, name: &str) -> i32 {
    let period = pattern_period();
    // A whole number of periods, so every chunk starts the pattern afresh.
    let chunk: Vec<u8> = period
        .iter()
        .copied()
        .cycle()
        .take(period.len() * 1024)
        .collect();
    let mut left = n;
    while left > 0 {
        let len = usize::try_from(left).map_or(chunk.len(), |l| l.min(chunk.len()));
        if let Err(e) = w.write_all(&chunk[..len]) {
            // stderr may be the stream that failed; try anyway.
            return fail(&format!("spew: cannot write {name}: {e}"));
        }
        left -= len as u64;
    }
    match w.flush() {
        Ok(()) => 0,
        Err(e) => fail(&format!("spew: cannot flush {name}: {e}")),
    }
}

fn fork_grandchild(secs: Duration, new_session: bool) -> i32 {
    let _ = io::stdout().flush();
    // SAFETY: the process is single-threaded here, so the child may run
    // ordinary Rust code; it leaves with _exit to skip the parent's exit
    // handlers and buffered output.
    match unsafe { libc::fork() } {
        -1 => fail(&format!("fork failed: {}", io::Error::last_os_error())),
        0 => {
            if new_session {
                // SAFETY: plain system call; a forked child is never a
                // process group leader, so it cannot fail with EPERM.
                unsafe { libc::setsid() };
            }
            thread::sleep(secs);
            // SAFETY: terminates the child immediately.
            unsafe { libc::_exit(0) }
        }
        pid => write_stdout(format!("{pid}\n").as_bytes()),
    }
}

/// The open descriptors, found by asking the kernel about each number up
/// to the soft limit: no /proc needed, so it works under any confinement.
fn open_fds() -> io::Result<Vec<i32>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given; fcntl(F_GETFD) only
    // reads a descriptor's flags and fails with EBADF for a closed one.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        let top = limit.rlim_cur.min(1 << 20) as i32;
        Ok((0..top)
            .filter(|&fd| libc::fcntl(fd, libc::F_GETFD) != -1)
            .collect())
    }
}

fn crash() {
    let _ = io::stdout().flush();
    // SAFETY: plain system calls. No core file: the crash is deliberate and
    // a core would land in the job directory. The default action is restored
    // because the Rust runtime handles SIGSEGV itself (stack overflow
    // detection) and would return from a raised, non-faulting signal.
    unsafe {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::raise(libc::SIGSEGV);
    }
}
