//! The launcher: a program a [`Launcher`] starts must be as confined as the
//! helper makes it, the test process (standing in for the host) must not be,
//! and a launch that fails must leave nothing behind. Most tests need root
//! (the launcher enters network namespaces, joins cgroups, and only root
//! has capabilities to drop), Landlock and network namespaces.

mod common;

use common::{HELPER, Run, accepted, connect_script, unique};
use kiln_confine::{
    ConfineError, Enforcement, Launch, LaunchError, Launcher, Network, NetworkApplied, NsFile,
    Policy, SharedNetns, SharedNetnsRef,
};
use kiln_test_support::{LANDLOCK, Need, ROOT, test};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A shell that says it has started, then sleeps confined like the shell.
/// `launch` returns once the child has released the caller's memory in
/// `execve`, which is before the kernel installs the new credentials and
/// resets the signal handlers, so `/proc` may still show the state before
/// exec; a line on stdout comes from the program itself.
const READY: &str = "echo ready; exec /bin/sleep 10";

/// Where the launcher meets both hierarchies: a cgroup v2 mount and the
/// v1 `pids` one.
const V2: &str = "/sys/fs/cgroup/unified";
const V1_PIDS: &str = "/sys/fs/cgroup/pids";
const HYBRID_CGROUPS: Need = Need {
    name: "hybrid-cgroups",
    check: || {
        if Path::new(V2).join("cgroup.procs").exists() && Path::new(V1_PIDS).join("tasks").exists()
        {
            Ok(())
        } else {
            Err(format!(
                "cgroup v2 at {V2} and the v1 pids hierarchy at {V1_PIDS}"
            ))
        }
    },
};

/// The process [`run_alone`] started: the test counts its descriptors or
/// drops its capabilities, which other tests running beside it would upset.
const OWN_PROCESS: Need = Need {
    name: "own-process",
    check: || match std::env::var_os(INNER_ENV) {
        Some(_) => Ok(()),
        None => Err("runs in a process of its own, started by another test".into()),
    },
};

/// Distinguishes the names (cgroups, threads) one test run creates.
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn policy(read_write: &Path, network: Network) -> Policy {
    let mut p = Policy::system();
    p.read_write.push(read_write.to_path_buf());
    p.network = network;
    p
}

fn gettid() -> i32 {
    // SAFETY: gettid cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// What to launch; [`Spec::new`] gives the usual rest (`PATH` only, `/` as
/// working directory, a process group of its own, no cgroup).
struct Spec<'a> {
    program: &'a str,
    /// After `argv[0]`, which is the program's path.
    args: &'a [&'a str],
    env: &'a [&'a str],
    cwd: &'a str,
    process_group: bool,
    cgroup: Option<BorrowedFd<'a>>,
    join: &'a [BorrowedFd<'a>],
}

impl<'a> Spec<'a> {
    fn new(program: &'a str, args: &'a [&'a str]) -> Spec<'a> {
        Spec {
            program,
            args,
            env: &["PATH=/usr/bin:/bin"],
            cwd: "/",
            process_group: true,
            cgroup: None,
            join: &[],
        }
    }
}

/// A launched program with the read ends of its stdout and stderr.
struct Program {
    pid: i32,
    pidfd: OwnedFd,
    stdout: File,
    stderr: File,
}

/// How a program ended, and what it wrote.
#[derive(Debug)]
struct Outcome {
    /// Exit status, when it exited.
    code: Option<i32>,
    /// The signal that ended it, when one did.
    signal: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn success(&self) -> bool {
        self.code == Some(0)
    }
}

fn cstring(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> (File, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are new and owned by nothing else.
    unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Launches `spec` with stdin on /dev/null and stdout and stderr on pipes,
/// whose write ends are closed once the launch returns.
fn launch(launcher: &Launcher, spec: &Spec<'_>) -> Result<Program, LaunchError> {
    let program = cstring(spec.program);
    let args: Vec<CString> = std::iter::once(spec.program)
        .chain(spec.args.iter().copied())
        .map(cstring)
        .collect();
    let env: Vec<CString> = spec.env.iter().map(|e| cstring(e)).collect();
    let cwd = cstring(spec.cwd);
    let stdin = File::open("/dev/null").unwrap();
    let (stdout, stdout_w) = pipe();
    let (stderr, stderr_w) = pipe();
    let launched = launcher.launch(&Launch {
        program: &program,
        args: &args,
        env: &env,
        cwd: &cwd,
        stdin: stdin.as_fd(),
        stdout: stdout_w.as_fd(),
        stderr: stderr_w.as_fd(),
        process_group: spec.process_group,
        cgroup: spec.cgroup,
        join: spec.join,
    })?;
    drop((stdin, stdout_w, stderr_w));
    Ok(Program {
        pid: launched.pid,
        pidfd: launched.pidfd,
        stdout,
        stderr,
    })
}

/// Launches and runs `program` to its end.
fn run(launcher: &Launcher, program: &str, args: &[&str]) -> Outcome {
    finish(launch(launcher, &Spec::new(program, args)).unwrap())
}

/// Collects the program's output and reaps it, waiting at most 30 s (then
/// it is killed and the test fails).
fn finish(p: Program) -> Outcome {
    let Program {
        pidfd,
        mut stdout,
        mut stderr,
        ..
    } = p;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (code, signal) = wait(&pidfd);
    Outcome {
        code,
        signal,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Kills the program and reaps it.
fn stop(p: Program) -> Outcome {
    kill(&p.pidfd);
    finish(p)
}

fn kill(pidfd: &OwnedFd) {
    let _ = kiln_confine::kill(pidfd.as_fd());
}

/// Whether `fd` becomes readable before `deadline`.
fn readable_before(fd: i32, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, 1000) as i32;
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r > 0 {
            return true;
        }
        if r < 0 {
            let e = io::Error::last_os_error();
            assert_eq!(e.kind(), io::ErrorKind::Interrupted, "poll: {e}");
        }
    }
}

/// Waits at most 30 s for the program to end, reaps it, and returns its
/// exit status or the signal that ended it.
fn wait(pidfd: &OwnedFd) -> (Option<i32>, Option<i32>) {
    // A pidfd is readable once its process has exited.
    if !readable_before(pidfd.as_raw_fd(), Instant::now() + Duration::from_secs(30)) {
        kill(pidfd);
        reap(pidfd);
        panic!("program did not finish within 30 s");
    }
    reap(pidfd)
}

fn reap(pidfd: &OwnedFd) -> (Option<i32>, Option<i32>) {
    // SAFETY: a zeroed siginfo is a valid out-parameter.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `info` is a valid out-pointer; P_PIDFD takes the descriptor.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            )
        };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted, "waitid: {e}");
    }
    // SAFETY: waitid filled in a SIGCHLD siginfo.
    let status = unsafe { info.si_status() };
    if info.si_code == libc::CLD_EXITED {
        (Some(status), None)
    } else {
        (None, Some(status))
    }
}

/// The program's first line on stdout (without the newline), read with a
/// 30 s bound; only that line is consumed.
fn first_line(p: &mut Program) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = Vec::new();
    loop {
        if !readable_before(p.stdout.as_raw_fd(), deadline) {
            kill(&p.pidfd);
            panic!("no line within 30 s: {:?}", String::from_utf8_lossy(&line));
        }
        let mut byte = [0u8];
        match p.stdout.read(&mut byte) {
            Ok(0) => {
                let mut err = String::new();
                let _ = p.stderr.read_to_string(&mut err);
                panic!(
                    "stdout ended before a line: {:?}; stderr: {err}",
                    String::from_utf8_lossy(&line)
                );
            }
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading stdout: {e}"),
        }
    }
    String::from_utf8(line).unwrap()
}

/// A program launched from `spec` that has certainly started: it wrote
/// "ready".
fn ready(launcher: &Launcher, spec: &Spec<'_>) -> Program {
    let mut p = launch(launcher, spec).unwrap();
    assert_eq!(first_line(&mut p), "ready");
    p
}

/// A shell that has started and now sleeps, in a process group of its own.
fn started(launcher: &Launcher) -> Program {
    ready(launcher, &Spec::new("/bin/sh", &["-c", READY]))
}

/// `name: value` lines of a /proc status file, read from outside the
/// program (it is not granted its own /proc entry).
fn status_file(path: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn status_of(pid: i32) -> Vec<(String, String)> {
    status_file(&format!("/proc/{pid}/status"))
}

fn status_of_task(pid: u32, tid: i32) -> Vec<(String, String)> {
    status_file(&format!("/proc/{pid}/task/{tid}/status"))
}

fn field(status: &[(String, String)], name: &str) -> String {
    status
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {name} in status"))
}

fn hex_field(status: &[(String, String)], name: &str) -> u64 {
    u64::from_str_radix(&field(status, name), 16).unwrap()
}

fn signal_bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// The network namespace of a /proc entry (`/proc/<pid>` or a task's).
fn netns(entry: &str) -> PathBuf {
    std::fs::read_link(format!("{entry}/ns/net")).unwrap()
}

/// The fields of /proc/<pid>/stat after the command name: state, ppid,
/// pgrp, session, ...; and the command name.
fn stat_of(pid: i32) -> Option<(String, Vec<String>)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let (_, comm) = head.split_once('(')?;
    Some((
        comm.to_string(),
        rest.split_whitespace().map(String::from).collect(),
    ))
}

/// The processes (zombies included) whose parent is this process and whose
/// command name is `comm`. A child that fails before its exec keeps the
/// name of the thread that launched it, so a unique thread name finds it.
fn children_named(comm: &str) -> Vec<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            stat_of(*pid).is_some_and(|(c, fields)| c == comm && fields.get(1) == Some(&me))
        })
        .collect()
}

/// Names the calling thread `name` (at most 15 bytes) until dropped.
struct ThreadName {
    old: [u8; 16],
}

impl ThreadName {
    fn set(name: &str) -> ThreadName {
        assert!(name.len() < 16);
        let mut old = [0u8; 16];
        // SAFETY: PR_GET_NAME writes at most 16 bytes; PR_SET_NAME reads a
        // NUL-terminated string.
        unsafe {
            assert_eq!(libc::prctl(libc::PR_GET_NAME, old.as_mut_ptr(), 0, 0, 0), 0);
            let new = cstring(name);
            assert_eq!(libc::prctl(libc::PR_SET_NAME, new.as_ptr(), 0, 0, 0), 0);
        }
        ThreadName { old }
    }
}

impl Drop for ThreadName {
    fn drop(&mut self) {
        // SAFETY: `old` is NUL-terminated (PR_GET_NAME wrote it).
        unsafe { libc::prctl(libc::PR_SET_NAME, self.old.as_ptr(), 0, 0, 0) };
    }
}

/// A thread name no other test of this run uses.
fn unique_thread_name() -> String {
    format!("kiln-lt-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A std command for controls run outside the launcher.
fn command(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A thread without the seccomp shield, for controls: started before the
/// test's first launch, since a thread created by a launching thread
/// inherits the shield (as its programs do). Runs closures on request.
struct Clean {
    jobs: Option<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Clean {
    fn start() -> Clean {
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let thread = std::thread::spawn(move || {
            for job in queue {
                job();
            }
        });
        let clean = Clean {
            jobs: Some(jobs),
            thread: Some(thread),
        };
        let pid = std::process::id();
        let status = clean.run(move || status_of_task(pid, gettid()));
        assert_eq!(
            field(&status, "Seccomp"),
            "0",
            "started from a shielded thread"
        );
        clean
    }

    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = std::sync::mpsc::channel();
        self.jobs
            .as_ref()
            .unwrap()
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .unwrap();
        rx.recv().expect("the closure panicked on the clean thread")
    }

    /// Runs `cmd` to its end, started from this thread.
    fn finish(&self, mut cmd: Command) -> Run {
        self.run(move || common::finish(cmd.spawn().unwrap()))
    }
}

impl Drop for Clean {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn getrlimit(resource: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid out-pointer.
    assert_eq!(unsafe { libc::getrlimit(resource, &mut r) }, 0);
    (r.rlim_cur, r.rlim_max)
}

fn files_outside_the_policy_stay_closed() {
    let rw = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("data.txt"), "granted content\n").unwrap();
    let mut p = policy(rw.path(), Network::Allowed);
    p.read_only.push(ro.path().to_path_buf());
    let launcher = Launcher::new(&p).unwrap();
    assert_eq!(launcher.policy(), &p);
    let applied = launcher.applied();
    assert_eq!(applied.landlock.enforcement, Enforcement::Full);
    assert!(applied.landlock.abi > 0);
    assert_eq!(applied.network, NetworkApplied::Allowed);
    assert!(applied.capabilities_cleared && applied.no_new_privs);
    assert!(applied.warnings.is_empty(), "{:?}", applied.warnings);

    let r = run(&launcher, "/bin/cat", &["/etc/shadow"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert!(r.stdout.is_empty());

    let file = ro.path().join("data.txt");
    let r = run(&launcher, "/bin/cat", &[file.to_str().unwrap()]);
    assert!(r.success(), "{r:?}");
    assert_eq!(r.stdout, "granted content\n");

    let outside = unique("launch-outside");
    let inside = rw.path().join("inside.txt");
    let script = format!(
        "echo leaked > {}; echo nope > {}/new; echo kept > {} && mkdir {3}/sub && mv {2} {3}/sub/moved",
        outside.display(),
        ro.path().display(),
        inside.display(),
        rw.path().display()
    );
    let r = run(&launcher, "/bin/sh", &["-c", &script]);
    assert!(r.success(), "{r:?}");
    assert_eq!(
        r.stderr.matches("Permission denied").count(),
        2,
        "{}",
        r.stderr
    );
    assert!(!outside.exists(), "{} was created", outside.display());
    assert!(!ro.path().join("new").exists());
    assert_eq!(
        std::fs::read_to_string(rw.path().join("sub/moved")).unwrap(),
        "kept\n"
    );

    // A program outside every grant does not start: its exec is denied.
    let script_dir = tempfile::tempdir().unwrap();
    let script = script_dir.path().join("script");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = launch(&launcher, &Spec::new(script.to_str().unwrap(), &[]))
        .err()
        .expect("a program outside the grants started");
    assert!(err.exec_failed(), "{err}");
    assert_eq!(err.source.raw_os_error(), Some(libc::EACCES), "{err}");
}

fn program_gets_exactly_its_arguments_environment_and_directory() {
    let rw = tempfile::tempdir().unwrap();
    let launcher = Launcher::new(&policy(rw.path(), Network::Allowed)).unwrap();
    let cwd = rw.path().to_str().unwrap();
    let env = ["PATH=/usr/bin:/bin", "KILN_TEST=a b=c"];
    let script = r#"pwd; printf '[%s]' "$@"; echo; /usr/bin/env"#;
    let args = ["-c", script, "sh", "a b", "", "*"];
    let spec = Spec {
        env: &env,
        cwd,
        ..Spec::new("/bin/sh", &args)
    };
    let r = finish(launch(&launcher, &spec).unwrap());
    assert!(r.success(), "{r:?}");
    let dir = std::fs::canonicalize(rw.path()).unwrap();
    // sh adds PWD (and dash nothing else) to what it exports.
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next(), Some(dir.to_str().unwrap()));
    assert_eq!(lines.next(), Some("[a b][][*]"));
    let mut exported: Vec<&str> = lines.filter(|l| !l.starts_with("PWD=")).collect();
    exported.sort();
    let mut expected = env;
    expected.sort();
    assert_eq!(exported, expected, "{}", r.stdout);
    assert_eq!(r.stderr, "");
}

fn shared_namespace_has_no_network() {
    let rw = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = SharedNetns::start(Path::new(HELPER)).unwrap();
    let launcher = Launcher::new(&policy(rw.path(), holder.network())).unwrap();
    assert_eq!(launcher.applied().network, NetworkApplied::Joined);
    assert!(launcher.applied().warnings.is_empty());

    let r = run(&launcher, "/bin/bash", &["-c", &connect_script(port)]);
    assert!(!r.success(), "connected with the network denied: {r:?}");
    assert!(!accepted(&listener));

    // The program is in the holder's namespace, not merely behind Landlock.
    let p = started(&launcher);
    let ns = netns(&format!("/proc/{}", p.pid));
    stop(p);
    assert_eq!(ns, netns(&format!("/proc/{}", holder.pid())));
    assert_ne!(ns, netns("/proc/self"));

    // The launching thread itself still has the network.
    assert_eq!(
        netns(&format!("/proc/self/task/{}", gettid())),
        netns("/proc/self")
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(accepted(&listener));
}

fn denied_network_gets_a_namespace_per_program() {
    let rw = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let launcher = Launcher::new(&policy(rw.path(), Network::Denied)).unwrap();
    assert_eq!(launcher.applied().network, NetworkApplied::NewNamespace);
    assert!(launcher.applied().warnings.is_empty());
    assert_no_network_and_a_namespace_per_program(&launcher, &listener);
}

fn stale_shared_namespace_falls_back_to_a_namespace_per_program() {
    let rw = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let network = SharedNetns::start(Path::new(HELPER)).unwrap().network();
    // The holder is gone: its reference must not be joined.
    let launcher = Launcher::new(&policy(rw.path(), network)).unwrap();
    let applied = launcher.applied();
    assert_eq!(applied.network, NetworkApplied::NewNamespace);
    assert_eq!(applied.warnings.len(), 1, "{:?}", applied.warnings);
    assert!(
        applied.warnings[0].contains("private one per program"),
        "{:?}",
        applied.warnings
    );

    assert_no_network_and_a_namespace_per_program(&launcher, &listener);
}

/// Programs of `launcher` cannot reach `listener`, and each has an empty
/// network namespace of its own.
fn assert_no_network_and_a_namespace_per_program(launcher: &Launcher, listener: &TcpListener) {
    let port = listener.local_addr().unwrap().port();
    let r = run(launcher, "/bin/bash", &["-c", &connect_script(port)]);
    assert!(!r.success(), "connected with the network denied: {r:?}");
    assert!(!accepted(listener));
    let (a, b) = (started(launcher), started(launcher));
    let (ns_a, ns_b) = (
        netns(&format!("/proc/{}", a.pid)),
        netns(&format!("/proc/{}", b.pid)),
    );
    stop(a);
    stop(b);
    assert_ne!(ns_a, netns("/proc/self"));
    assert_ne!(ns_b, netns("/proc/self"));
    assert_ne!(ns_a, ns_b, "two programs share a namespace");
}

fn shared_namespace_of_a_user_namespace_is_refused() {
    let file = NsFile {
        path: "/proc/1/ns/net".into(),
        dev: 0,
        ino: 0,
    };
    let mut p = Policy::system();
    p.network = Network::DeniedShared(SharedNetnsRef {
        net: file.clone(),
        user: Some(file),
    });
    let err = Launcher::new(&p).unwrap_err();
    assert!(matches!(err, ConfineError::NotForLauncher(_)), "{err}");
    assert!(err.to_string().contains("user namespace"), "{err}");
    assert!(Launcher::eligible(&p).is_err());
}

fn only_stdio_reaches_the_program() {
    let rw = tempfile::tempdir().unwrap();
    let launcher = Launcher::new(&policy(rw.path(), Network::Allowed)).unwrap();
    let (read_end, write_end) = pipe();
    // Without close-on-exec, above the numbers other tests use.
    // SAFETY: fcntl on a descriptor this test owns.
    let leaked = unsafe { libc::fcntl(read_end.as_raw_fd(), libc::F_DUPFD, 600) };
    assert!(leaked >= 600);
    // SAFETY: a new descriptor owned by nothing else.
    let leaked = unsafe { OwnedFd::from_raw_fd(leaked) };
    let fds_of = |pid: i32| -> Vec<String> {
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        fds.sort();
        fds
    };

    // The control: as it stands the descriptor would reach the program.
    let p = started(&launcher);
    let fds = fds_of(p.pid);
    stop(p);
    assert!(fds.contains(&leaked.as_raw_fd().to_string()), "{fds:?}");

    // What the host does at start.
    kiln_confine::cloexec_inherited_fds().unwrap();
    let p = started(&launcher);
    let fds = fds_of(p.pid);
    let targets: Vec<PathBuf> = (0..3)
        .map(|fd| std::fs::read_link(format!("/proc/{}/fd/{fd}", p.pid)).unwrap())
        .collect();
    let out = stop(p);
    assert_eq!(fds, ["0", "1", "2"]);
    assert_eq!(targets[0], Path::new("/dev/null"));
    assert!(
        targets[1].to_string_lossy().starts_with("pipe:"),
        "{targets:?}"
    );
    assert!(
        targets[2].to_string_lossy().starts_with("pipe:"),
        "{targets:?}"
    );
    assert_ne!(targets[1], targets[2]);
    assert_eq!(out.signal, Some(libc::SIGKILL));
    drop((leaked, read_end, write_end));
}

fn program_starts_without_privileges() {
    let rw = tempfile::tempdir().unwrap();
    let launcher = Launcher::new(&policy(rw.path(), Network::Allowed)).unwrap();
    let p = started(&launcher);
    let status = status_of(p.pid);
    stop(p);
    for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(hex_field(&status, cap), 0, "{cap}");
    }
    assert_eq!(field(&status, "NoNewPrivs"), "1");
    // The shield of the launching thread, inherited.
    assert_eq!(field(&status, "Seccomp"), "2");
    // The control: this process has capabilities to lose.
    let own = status_of(std::process::id() as i32);
    assert_ne!(hex_field(&own, "CapEff"), 0);
}

fn other_threads_are_unaffected() {
    let rw = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let clean = Clean::start();
    let launcher = Launcher::new(&policy(rw.path(), Network::Denied)).unwrap();
    let pid = std::process::id();
    let tid = gettid();
    assert_eq!(field(&status_of_task(pid, tid), "Seccomp"), "0");

    let r = run(&launcher, "/bin/cat", &["/etc/shadow"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);

    // The launching thread now carries the seccomp shield, and nothing
    // else: no no_new_privs (it has CAP_SYS_ADMIN), all its capabilities,
    // no Landlock, the process's network.
    let own = status_of_task(pid, tid);
    assert_eq!(field(&own, "Seccomp"), "2");
    assert_eq!(field(&own, "NoNewPrivs"), "0");
    assert_ne!(hex_field(&own, "CapEff"), 0);
    assert_ne!(hex_field(&own, "CapBnd"), 0);
    assert!(std::fs::read_to_string("/etc/shadow").is_ok());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(accepted(&listener));
    assert_eq!(
        netns(&format!("/proc/{pid}/task/{tid}")),
        netns(&format!("/proc/{pid}"))
    );
    // What it starts by other means inherits the shield only, and so do
    // the threads it creates from now on (seccomp filters are copied by
    // every clone).
    let r = common::finish(command("/bin/cat", &["/etc/shadow"]).spawn().unwrap());
    assert!(r.status.success(), "{}", r.stderr);
    let created = std::thread::spawn(move || status_of_task(pid, gettid()))
        .join()
        .unwrap();
    assert_eq!(field(&created, "Seccomp"), "2");

    // Another thread has no filter at all, nor has the main thread, nor
    // what they start.
    let other = clean.run(move || status_of_task(pid, gettid()));
    assert_eq!(field(&other, "Seccomp"), "0");
    assert_eq!(field(&other, "NoNewPrivs"), "0");
    assert_eq!(field(&status_of_task(pid, pid as i32), "Seccomp"), "0");
    let r = clean.finish(command("/bin/grep", &["^Seccomp:", "/proc/self/status"]));
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(
        r.stdout.split_whitespace().nth(1),
        Some("0"),
        "{}",
        r.stdout
    );
}

fn programs_cannot_signal_or_limit_the_host() {
    let rw = tempfile::tempdir().unwrap();
    let clean = Clean::start();
    let launcher = Launcher::new(&policy(rw.path(), Network::Allowed)).unwrap();
    let pid = std::process::id();
    // The launching thread, and another thread of the host.
    let tid = gettid();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        tid_tx.send(gettid()).unwrap();
        let _ = end_rx.recv();
    });
    let other_tid: i32 = tid_rx.recv().unwrap();
    // SAFETY: getpgrp cannot fail.
    let pgid = unsafe { libc::getpgrp() };

    let script = format!(
        "kill -0 {pid}; echo pid=$?; kill -0 {tid}; echo thread=$?; kill -0 {other_tid}; echo other=$?; \
         kill -0 -{pid}; echo group=$?; kill -0 -{pgid}; echo pgroup=$?; kill -0 $$; echo self=$?"
    );
    let r = run(&launcher, "/bin/bash", &["-c", &script]);
    assert_eq!(
        r.stdout, "pid=1\nthread=1\nother=1\ngroup=1\npgroup=1\nself=0\n",
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("Operation not permitted").count(),
        5,
        "{}",
        r.stderr
    );

    // I/O signals aimed at the host, the thread-directed variants, and a
    // pidfd of the host.
    let py = format!(
        "import fcntl, os, errno\n\
         r, w = os.pipe()\n\
         for target in ({pid}, -{pid}):\n\
         \x20   try:\n\
         \x20       fcntl.fcntl(r, fcntl.F_SETOWN, target); print('setown', target)\n\
         \x20   except OSError as e:\n\
         \x20       print(errno.errorcode[e.errno])\n\
         fcntl.fcntl(r, fcntl.F_SETOWN, os.getpid()); print('own')\n\
         import ctypes\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         print(libc.syscall({tgkill}, {pid}, {tid}, 0), ctypes.get_errno())\n\
         print(libc.syscall({tgkill}, {pid}, {other_tid}, 0), ctypes.get_errno())\n\
         print(libc.syscall({tkill}, {tid}, 0), ctypes.get_errno())\n\
         print(libc.syscall({tkill}, {other_tid}, 0), ctypes.get_errno())\n\
         print(libc.syscall({pidfd_open}, {pid}, 0), ctypes.get_errno())\n",
        tgkill = libc::SYS_tgkill,
        tkill = libc::SYS_tkill,
        pidfd_open = libc::SYS_pidfd_open,
    );
    let r = run(&launcher, "/usr/bin/python3", &["-c", &py]);
    assert!(r.success(), "{r:?}");
    let eperm = libc::EPERM;
    assert_eq!(
        r.stdout,
        format!("EPERM\nEPERM\nown\n{}", format!("-1 {eperm}\n").repeat(5)),
        "{}",
        r.stderr
    );

    // Rlimits are per process, so any host thread's id would do; a failure
    // of the filter here re-sets a limit to its current value, harmlessly.
    let before = getrlimit(libc::RLIMIT_NOFILE);
    let py = format!(
        "import resource, errno\n\
         current = resource.getrlimit(resource.RLIMIT_NOFILE)\n\
         for target in ({pid}, {tid}, {other_tid}):\n\
         \x20   try:\n\
         \x20       resource.prlimit(target, resource.RLIMIT_NOFILE, (1, 1)); print('set', target)\n\
         \x20   except OSError as e:\n\
         \x20       print(errno.errorcode[e.errno])\n\
         print(resource.prlimit({pid}, resource.RLIMIT_NOFILE) is not None)\n\
         resource.setrlimit(resource.RLIMIT_NOFILE, current); print('own')\n"
    );
    let r = run(&launcher, "/usr/bin/python3", &["-c", &py]);
    assert!(r.success(), "{r:?}");
    assert_eq!(r.stdout, "EPERM\nEPERM\nEPERM\nTrue\nown\n", "{}", r.stderr);
    assert_eq!(getrlimit(libc::RLIMIT_NOFILE), before);

    // The control: outside the launcher the same uid may signal the host.
    let r = clean.finish(command(
        "/bin/bash",
        &[
            "-c",
            &format!("kill -0 {pid}; echo $?; kill -0 {other_tid}; echo $?"),
        ],
    ));
    assert_eq!(r.stdout, "0\n0\n", "{}", r.stderr);
    drop(end_tx);
    other.join().unwrap();
}

fn programs_cannot_trace_the_host() {
    let rw = tempfile::tempdir().unwrap();
    let mut p = policy(rw.path(), Network::Allowed);
    // With /proc granted only the kernel's ptrace checks keep the host's
    // memory closed.
    p.read_only.push("/proc".into());
    let clean = Clean::start();
    let launcher = Launcher::new(&p).unwrap();
    // A non-dumpable process is closed to them anyway.
    // SAFETY: prctl with integer arguments only.
    assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 1);
    let pid = std::process::id();
    let tid = gettid();
    // Opening is what the kernel checks; `:` reads nothing.
    let script = format!(
        "for d in /proc/{pid} /proc/{pid}/task/{tid}; do for f in status environ mem maps; do \
         if {{ : < $d/$f; }} 2>/dev/null; then echo $f=open; else echo $f=denied; fi; done; done"
    );
    let r = run(&launcher, "/bin/bash", &["-c", &script]);
    assert!(r.success(), "{r:?}");
    assert_eq!(
        r.stdout,
        "status=open\nenviron=denied\nmem=denied\nmaps=denied\n".repeat(2),
        "{}",
        r.stderr
    );

    let py = format!(
        "import ctypes\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         print(libc.ptrace(0x4206, {pid}, None, None), ctypes.get_errno())\n\
         print(libc.ptrace(0x4206, {tid}, None, None), ctypes.get_errno())\n"
    );
    let r = run(&launcher, "/usr/bin/python3", &["-c", &py]);
    assert!(r.success(), "{r:?}");
    assert_eq!(r.stdout, format!("-1 {}\n", libc::EPERM).repeat(2), "{r:?}");
    // The control: a program started without the launcher opens them.
    let r = clean.finish(command(
        "/bin/bash",
        &["-c", &format!("{{ : < /proc/{pid}/mem; }} && echo open")],
    ));
    assert_eq!(r.stdout, "open\n", "{}", r.stderr);
}

fn common_programs_run_without_proc_self() {
    let rw = tempfile::tempdir().unwrap();
    let launcher = Launcher::new(&policy(rw.path(), Network::Allowed)).unwrap();
    let r = run(
        &launcher,
        "/usr/bin/python3",
        &[
            "-c",
            "import os, json, ssl, locale; print(os.cpu_count() > 0)",
        ],
    );
    assert!(r.success(), "{r:?}");
    assert_eq!(r.stdout, "True\n");
    assert_eq!(r.stderr, "");
    let r = run(&launcher, "/bin/ls", &["/usr"]);
    assert!(r.success(), "{r:?}");
    assert!(r.stdout.lines().any(|l| l == "bin"), "{}", r.stdout);
    // A program's /proc/self is not its policy's: the grant was resolved
    // before the program existed.
    let r = run(&launcher, "/bin/cat", &["/proc/self/status"]);
    assert!(!r.success(), "/proc/self/status is readable");
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
}

/// `/proc/self` in the policy (as in [`Policy::system`]) must not grant
/// the programs the host's own `/proc` entry, as it would if resolved when
/// the launcher is made (the spawner drops such grants).
fn host_proc_entry_stays_closed() {
    let rw = tempfile::tempdir().unwrap();
    let p = policy(rw.path(), Network::Allowed);
    assert!(p.read_only.iter().any(|p| p == Path::new("/proc/self")));
    let launcher = Launcher::new(&p).unwrap();
    let host = std::process::id();
    let mut readable = Vec::new();
    for file in ["cmdline", "status", "mountinfo", "net/tcp", "environ"] {
        let path = format!("/proc/{host}/{file}");
        let r = run(&launcher, "/bin/cat", &[&path]);
        if r.success() {
            readable.push(path);
        } else {
            assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
        }
    }
    assert!(readable.is_empty(), "readable by a program: {readable:?}");
}

fn rlimits_apply_to_the_program_only() {
    let rw = tempfile::tempdir().unwrap();
    let mut p = policy(rw.path(), Network::Allowed);
    p.rlimits.cpu_seconds = Some(10);
    p.rlimits.file_size_bytes = Some(1 << 20);
    p.rlimits.open_files = Some(64);
    p.rlimits.address_space_bytes = Some(4 << 30);
    let resources = [
        libc::RLIMIT_CPU,
        libc::RLIMIT_FSIZE,
        libc::RLIMIT_NOFILE,
        libc::RLIMIT_AS,
    ];
    let host_before: Vec<_> = resources.iter().map(|r| getrlimit(*r)).collect();
    // The test assumes limits above the policy's, as usual.
    assert!(host_before[2].1 >= 64, "{host_before:?}");

    let launcher = Launcher::new(&p).unwrap();
    assert_eq!(launcher.applied().rlimits, p.rlimits);
    assert!(launcher.applied().warnings.is_empty());

    let big = rw.path().join("big");
    let script = format!(
        "echo $(ulimit -Sn) $(ulimit -Hn) $(ulimit -St) $(ulimit -Ht) $(ulimit -Sf) $(ulimit -Hf) $(ulimit -Sv); \
         head -c 2000000 /dev/zero > {}; echo head=$?; echo ready; exec /bin/sleep 10",
        big.display()
    );
    let program = ready_after(&launcher, &script, 2);
    assert_eq!(program.1[0], "64 64 10 11 1024 1024 4194304");
    // SIGXFSZ ends a write past the file size limit.
    assert_eq!(program.1[1], format!("head={}", 128 + libc::SIGXFSZ));
    assert_eq!(std::fs::metadata(&big).unwrap().len(), 1 << 20);

    // The same, as the kernel shows it from outside.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", program.0.pid)).unwrap();
    let limit = |name: &str| -> (String, String) {
        let line = limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {limits}"));
        let mut values = line[name.len()..].split_whitespace();
        (
            values.next().unwrap().to_string(),
            values.next().unwrap().to_string(),
        )
    };
    assert_eq!(limit("Max cpu time"), ("10".into(), "11".into()));
    assert_eq!(limit("Max file size"), ("1048576".into(), "1048576".into()));
    assert_eq!(limit("Max open files"), ("64".into(), "64".into()));
    assert_eq!(
        limit("Max address space"),
        ("4294967296".into(), "4294967296".into())
    );
    let out = stop(program.0);
    assert_eq!(out.signal, Some(libc::SIGKILL));

    let host_after: Vec<_> = resources.iter().map(|r| getrlimit(*r)).collect();
    assert_eq!(host_after, host_before);
}

/// Runs `script` in bash, returns the program once it has written `lines`
/// lines and then "ready", with those lines.
fn ready_after(launcher: &Launcher, script: &str, lines: usize) -> (Program, Vec<String>) {
    let mut p = launch(launcher, &Spec::new("/bin/bash", &["-c", script])).unwrap();
    let got: Vec<String> = (0..lines).map(|_| first_line(&mut p)).collect();
    assert_eq!(first_line(&mut p), "ready", "{got:?}");
    (p, got)
}

fn processes_limit_is_not_applied_to_root() {
    let rw = tempfile::tempdir().unwrap();
    let mut p = policy(rw.path(), Network::Allowed);
    p.rlimits.processes = Some(100);
    p.require = false;
    let launcher = Launcher::new(&p).unwrap();
    assert_eq!(launcher.applied().rlimits.processes, None);
    assert_eq!(launcher.applied().warnings.len(), 1);
    assert!(
        launcher.applied().warnings[0].contains("RLIMIT_NPROC"),
        "{:?}",
        launcher.applied().warnings
    );
    p.require = true;
    let err = Launcher::new(&p).unwrap_err();
    assert!(err.to_string().contains("RLIMIT_NPROC"), "{err}");
}

fn process_group_of_its_own_when_asked() {
    let rw = tempfile::tempdir().unwrap();
    let launcher = Launcher::new(&policy(rw.path(), Network::Allowed)).unwrap();
    let me = std::process::id().to_string();
    // SAFETY: getpgrp cannot fail.
    let own_group = unsafe { libc::getpgrp() }.to_string();

    let p = started(&launcher);
    let (_, fields) = stat_of(p.pid).unwrap();
    let pid = p.pid.to_string();
    stop(p);
    assert_eq!(fields[1], me, "ppid");
    assert_eq!(fields[2], pid, "pgrp");

    let spec = Spec {
        process_group: false,
        ..Spec::new("/bin/sh", &["-c", READY])
    };
    let p = ready(&launcher, &spec);
    let (_, fields) = stat_of(p.pid).unwrap();
    stop(p);
    assert_eq!(fields[1], me, "ppid");
    assert_eq!(fields[2], own_group, "pgrp");
}

fn signals_are_default_and_unblocked_in_the_program() {
    let rw = tempfile::tempdir().unwrap();
    let launcher = Launcher::new(&policy(rw.path(), Network::Allowed)).unwrap();
    let pid = std::process::id();
    let tid = gettid();
    // The controls: this process ignores SIGPIPE (as every Rust program
    // does), and this thread blocks SIGUSR2 while it launches.
    let own = status_of_task(pid, tid);
    assert_ne!(hex_field(&own, "SigIgn") & signal_bit(libc::SIGPIPE), 0);
    // SAFETY: valid sigset pointers.
    let old = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old), 0);
        old
    };
    let blocked = hex_field(&status_of_task(pid, tid), "SigBlk");
    assert_ne!(blocked & signal_bit(libc::SIGUSR2), 0);
    // Both ways: handlers reset by the clone (CLONE_CLEAR_SIGHAND), and by
    // the child itself as on a kernel before 5.5.
    let mut seen = Vec::new();
    for cleared_by_clone in [false, true] {
        kiln_confine::clear_handlers_in_clone(cleared_by_clone);
        let p = started(&launcher);
        // The launch restored this thread's mask.
        let blocked_after = hex_field(&status_of_task(pid, tid), "SigBlk");
        let status = status_of(p.pid);
        stop(p);
        // And so `yes` ends by SIGPIPE when its reader is gone.
        let r = run(
            &launcher,
            "/bin/bash",
            &["-c", "yes | head -n1 >/dev/null; echo ${PIPESTATUS[0]}"],
        );
        seen.push((cleared_by_clone, blocked_after, status, r));
    }
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    for (cleared_by_clone, blocked_after, status, r) in seen {
        assert_eq!(
            blocked_after, blocked,
            "cleared by clone: {cleared_by_clone}"
        );
        assert_eq!(
            hex_field(&status, "SigIgn") & signal_bit(libc::SIGPIPE),
            0,
            "SIGPIPE ignored (cleared by clone: {cleared_by_clone})"
        );
        assert_eq!(
            hex_field(&status, "SigBlk"),
            0,
            "cleared by clone: {cleared_by_clone}"
        );
        assert!(r.success(), "{r:?}");
        assert_eq!(r.stdout, format!("{}\n", 128 + libc::SIGPIPE), "{r:?}");
        assert_eq!(r.stderr, "");
    }
}

fn missing_program_fails_at_exec_and_leaves_no_zombie() {
    let rw = tempfile::tempdir().unwrap();
    let launcher = Launcher::new(&policy(rw.path(), Network::Allowed)).unwrap();
    let name = unique_thread_name();
    let _named = ThreadName::set(&name);

    // The control: a child of this thread that exits without exec is found
    // by its name until it is reaped.
    // SAFETY: the child only calls _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        // SAFETY: async-signal-safe.
        unsafe { libc::_exit(0) };
    }
    assert_eq!(children_named(&name), [child]);
    let mut status = 0;
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(children_named(&name).is_empty());

    let missing = format!("/usr/kiln-launch-missing-{}", std::process::id());
    let err = launch(&launcher, &Spec::new(&missing, &[]))
        .err()
        .expect("a missing program started");
    assert!(err.exec_failed(), "{err}");
    assert_eq!(err.step, "execute the program");
    assert_eq!(err.source.kind(), io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("execute the program"), "{err}");
    assert!(children_named(&name).is_empty(), "a zombie is left");

    // The launcher still works afterwards.
    let r = run(&launcher, "/bin/true", &[]);
    assert!(r.success(), "{r:?}");
}

fn bad_working_directory_fails_before_exec() {
    let rw = tempfile::tempdir().unwrap();
    let launcher = Launcher::new(&policy(rw.path(), Network::Allowed)).unwrap();
    let name = unique_thread_name();
    let _named = ThreadName::set(&name);
    let missing = rw.path().join("missing");
    let spec = Spec {
        cwd: missing.to_str().unwrap(),
        ..Spec::new("/bin/true", &[])
    };
    let err = launch(&launcher, &spec)
        .err()
        .expect("started in a missing directory");
    assert!(!err.exec_failed(), "{err}");
    assert!(err.step.contains("enter the working directory"), "{err}");
    assert_eq!(err.source.raw_os_error(), Some(libc::ENOENT), "{err}");
    assert!(children_named(&name).is_empty(), "a zombie is left");

    // A file is no directory either.
    let file = rw.path().join("file");
    std::fs::write(&file, "").unwrap();
    let spec = Spec {
        cwd: file.to_str().unwrap(),
        ..Spec::new("/bin/true", &[])
    };
    let err = launch(&launcher, &spec).err().expect("started in a file");
    assert!(err.step.contains("enter the working directory"), "{err}");
    assert_eq!(err.source.raw_os_error(), Some(libc::ENOTDIR), "{err}");
    assert!(children_named(&name).is_empty(), "a zombie is left");
}

fn bad_cgroup_fails_at_the_clone() {
    let rw = tempfile::tempdir().unwrap();
    let launcher = Launcher::new(&policy(rw.path(), Network::Allowed)).unwrap();
    let name = unique_thread_name();
    let _named = ThreadName::set(&name);
    let not_a_cgroup = File::open(rw.path()).unwrap();
    let spec = Spec {
        cgroup: Some(not_a_cgroup.as_fd()),
        ..Spec::new("/bin/true", &[])
    };
    let err = launch(&launcher, &spec)
        .err()
        .expect("born in a directory that is no cgroup");
    assert!(!err.exec_failed(), "{err}");
    assert!(err.step.contains("clone3"), "{err}");
    assert_eq!(err.source.raw_os_error(), Some(libc::EBADF), "{err}");
    assert!(children_named(&name).is_empty());
}

/// A cgroup directory made for one test, removed when dropped (once its
/// programs have exited).
struct TestCgroup {
    path: PathBuf,
    removed: bool,
}

impl TestCgroup {
    fn create(root: &str) -> TestCgroup {
        let path = Path::new(root).join(format!(
            "kiln-launch-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        TestCgroup {
            path,
            removed: false,
        }
    }

    /// The cgroup's path as /proc/<pid>/cgroup shows it.
    fn name(&self) -> String {
        format!("/{}", self.path.file_name().unwrap().to_str().unwrap())
    }

    fn members(&self, file: &str) -> Vec<i32> {
        std::fs::read_to_string(self.path.join(file))
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    }

    /// Removes the directory; a cgroup whose last member was just reaped
    /// may be busy for a moment.
    fn remove(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => {
                    self.removed = true;
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.remove();
        }
    }
}

fn born_in_a_v2_cgroup_and_joined_to_a_v1_one() {
    let rw = tempfile::tempdir().unwrap();
    let launcher = Launcher::new(&policy(rw.path(), Network::Allowed)).unwrap();
    let mut v2 = TestCgroup::create(V2);
    let mut v1 = TestCgroup::create(V1_PIDS);
    let v2_dir = File::open(&v2.path).unwrap();
    let v1_tasks = std::fs::OpenOptions::new()
        .write(true)
        .open(v1.path.join("tasks"))
        .unwrap();
    let join = [v1_tasks.as_fd()];
    let spec = Spec {
        cgroup: Some(v2_dir.as_fd()),
        join: &join,
        ..Spec::new("/bin/sh", &["-c", READY])
    };
    let p = ready(&launcher, &spec);
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", p.pid)).unwrap();
    let (v2_members, v1_members) = (v2.members("cgroup.procs"), v1.members("tasks"));
    let pid = p.pid;
    let out = stop(p);
    assert_eq!(out.signal, Some(libc::SIGKILL));

    let lines: Vec<&str> = cgroups.lines().collect();
    assert!(
        lines.contains(&format!("0::{}", v2.name()).as_str()),
        "{cgroups}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(&format!(":pids:{}", v1.name()))),
        "{cgroups}"
    );
    assert_eq!(v2_members, [pid]);
    assert_eq!(v1_members, [pid]);
    // This process stayed where it was.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    assert!(!own.contains("kiln-launch-test"), "{own}");

    assert!(v2.members("cgroup.procs").is_empty());
    assert!(v1.members("tasks").is_empty());
    drop((v2_dir, v1_tasks));
    v2.remove().unwrap();
    v1.remove().unwrap();
    assert!(!v2.path.exists() && !v1.path.exists());
}

/// The descriptors open in this process, with what they are.
fn open_fds() -> Vec<(String, PathBuf)> {
    let mut fds: Vec<(String, PathBuf)> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), target))
        })
        .collect();
    fds.sort();
    fds
}

const INNER_ENV: &str = "KILN_LAUNCH_TEST_INNER";

/// Runs the ignored test `name` alone in a new process of this test
/// binary, for what must not share a process with the other tests
/// (counting descriptors, redirecting stdio, changing a thread's uid), and
/// checks that it passed.
fn run_alone(name: &str) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--test-threads=1",
        "--nocapture",
    ])
    .env(INNER_ENV, "1")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let r = common::finish(cmd.spawn().unwrap());
    assert!(
        r.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stdout.contains(&format!("test {name} ... ok")) && r.stdout.contains("1 passed"),
        "{}",
        r.stdout
    );
}

/// Counting descriptors needs a process of its own: the other tests open
/// and close theirs meanwhile.
fn many_launches_from_several_threads() {
    run_alone("many_launches_inner");
}

fn stdio_taken_from_descriptors_0_to_2_in_any_order() {
    run_alone("stdio_inner");
}

fn launching_thread_without_capabilities() {
    run_alone("unprivileged_inner");
}

fn stdio_inner() {
    use std::io::Write;
    let rw = tempfile::tempdir().unwrap();
    let launcher = Launcher::new(&policy(rw.path(), Network::Allowed)).unwrap();
    let (in_r, in_w) = pipe();
    let (a_r, a_w) = pipe();
    let (b_r, b_w) = pipe();
    File::from(in_w).write_all(b"in\n").unwrap();
    let program = cstring("/bin/sh");
    let args = [
        program.clone(),
        cstring("-c"),
        cstring(r#"read x; echo "$x out"; echo err >&2"#),
    ];
    let cwd = cstring("/");
    // This process's own 0, 1 and 2 become the pipes for the launch; the
    // program gets its stdout from 2 and its stderr from 1.
    // SAFETY: descriptor juggling in a process running nothing else; the
    // originals are restored right after the launch.
    let saved: Vec<i32> = (0..3)
        .map(|fd| unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) })
        .collect();
    assert!(saved.iter().all(|fd| *fd >= 10), "{saved:?}");
    for (from, to) in [(&in_r.as_fd(), 0), (&a_w.as_fd(), 1), (&b_w.as_fd(), 2)] {
        // SAFETY: as above.
        assert_eq!(unsafe { libc::dup2(from.as_raw_fd(), to) }, to);
    }
    drop((in_r, a_w, b_w));
    // SAFETY: 0, 1 and 2 stay open until they are restored below.
    let launched = unsafe {
        launcher.launch(&Launch {
            program: &program,
            args: &args,
            env: &[],
            cwd: &cwd,
            stdin: BorrowedFd::borrow_raw(0),
            stdout: BorrowedFd::borrow_raw(2),
            stderr: BorrowedFd::borrow_raw(1),
            process_group: true,
            cgroup: None,
            join: &[],
        })
    };
    for (fd, saved) in saved.into_iter().enumerate() {
        // SAFETY: as above.
        unsafe {
            libc::dup2(saved, fd as i32);
            libc::close(saved);
        }
    }
    let launched = launched.unwrap();
    let (code, signal) = wait(&launched.pidfd);
    assert_eq!((code, signal), (Some(0), None));
    let read = |mut f: File| {
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        s
    };
    assert_eq!(read(b_r), "in out\n");
    assert_eq!(read(a_r), "err\n");
}

fn unprivileged_inner() {
    use std::os::unix::fs::PermissionsExt;
    let nobody = 65534;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("granted.txt"), "granted\n").unwrap();
    let dir_path = dir.path().to_path_buf();
    std::thread::spawn(move || {
        // The raw system call changes only this thread's credentials, and
        // it loses every capability with them.
        // SAFETY: integer arguments only.
        let r = unsafe { libc::syscall(libc::SYS_setresuid, nobody, nobody, nobody) };
        assert_eq!(r, 0);
        let (pid, tid) = (std::process::id(), gettid());
        let own = status_of_task(pid, tid);
        assert_eq!(hex_field(&own, "CapPrm"), 0);
        assert_eq!(field(&own, "NoNewPrivs"), "0");

        let err = Launcher::new(&policy(&dir_path, Network::Denied)).unwrap_err();
        assert!(matches!(err, ConfineError::NotForLauncher(_)), "{err}");
        assert!(err.to_string().contains("CAP_SYS_ADMIN"), "{err}");

        let launcher = Launcher::new(&policy(&dir_path, Network::Allowed)).unwrap();
        assert!(launcher.applied().capabilities_cleared);
        let granted = dir_path.join("granted.txt");
        let r = run(&launcher, "/bin/cat", &[granted.to_str().unwrap()]);
        assert!(r.success(), "{r:?}");
        assert_eq!(r.stdout, "granted\n");
        // World-readable, but outside the grants.
        let r = run(&launcher, "/bin/cat", &["/etc/hostname"]);
        assert!(!r.success(), "{r:?}");
        assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);

        let p = started(&launcher);
        let status = status_of(p.pid);
        stop(p);
        assert!(field(&status, "Uid").starts_with("65534"), "{status:?}");
        assert_eq!(field(&status, "NoNewPrivs"), "1");
        assert_eq!(field(&status, "Seccomp"), "2");
        assert_eq!(hex_field(&status, "CapEff"), 0);
        // Without CAP_SYS_ADMIN the shield needs no_new_privs on the
        // launching thread itself, which keeps it from then on.
        let own = status_of_task(pid, tid);
        assert_eq!(field(&own, "NoNewPrivs"), "1");
        assert_eq!(field(&own, "Seccomp"), "2");
    })
    .join()
    .unwrap();
}

fn many_launches_inner() {
    const THREADS: usize = 4;
    const EACH: usize = 50;
    let rw = tempfile::tempdir().unwrap();
    let holder = SharedNetns::start(Path::new(HELPER)).unwrap();
    let mut p = policy(rw.path(), holder.network());
    p.rlimits.open_files = Some(64);
    p.rlimits.cpu_seconds = Some(10);
    let before = open_fds();
    let launcher = Launcher::new(&p).unwrap();
    assert_eq!(launcher.applied().network, NetworkApplied::Joined);
    let pids = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (launcher, pids) = (&launcher, &pids);
            s.spawn(move || {
                for i in 0..EACH {
                    let word = format!("t{t}-{i}");
                    let p = launch(launcher, &Spec::new("/bin/echo", &[&word])).unwrap();
                    pids.lock().unwrap().push(p.pid);
                    let r = finish(p);
                    assert_eq!(r.code, Some(0), "{word}: {r:?}");
                    assert_eq!(r.stdout, format!("{word}\n"), "{r:?}");
                    assert_eq!(r.stderr, "");
                }
            });
        }
    });
    drop(launcher);
    let after = open_fds();
    assert_eq!(after, before, "descriptors leaked");
    let mut pids = pids.into_inner().unwrap();
    assert_eq!(pids.len(), THREADS * EACH);
    pids.sort();
    pids.dedup();
    assert!(pids.len() > 1);
    // Every program was reaped.
    for pid in pids {
        assert!(
            stat_of(pid).is_none_or(|(_, f)| f[1] != std::process::id().to_string()),
            "{pid} is still a child"
        );
    }
    drop(holder);
}

fn main() -> std::process::ExitCode {
    kiln_test_support::run(vec![
        test!(files_outside_the_policy_stay_closed)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(program_gets_exactly_its_arguments_environment_and_directory)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(shared_namespace_has_no_network)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(denied_network_gets_a_namespace_per_program)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(stale_shared_namespace_falls_back_to_a_namespace_per_program)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(only_stdio_reaches_the_program)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(program_starts_without_privileges)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(other_threads_are_unaffected)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(programs_cannot_signal_or_limit_the_host)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(programs_cannot_trace_the_host)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(common_programs_run_without_proc_self)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(host_proc_entry_stays_closed)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(rlimits_apply_to_the_program_only)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(processes_limit_is_not_applied_to_root)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(process_group_of_its_own_when_asked)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(signals_are_default_and_unblocked_in_the_program)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(missing_program_fails_at_exec_and_leaves_no_zombie)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(bad_working_directory_fails_before_exec)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(bad_cgroup_fails_at_the_clone)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(born_in_a_v2_cgroup_and_joined_to_a_v1_one)
            .needs(ROOT)
            .needs(LANDLOCK)
            .needs(HYBRID_CGROUPS),
        test!(many_launches_from_several_threads)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(stdio_taken_from_descriptors_0_to_2_in_any_order)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(launching_thread_without_capabilities)
            .needs(ROOT)
            .needs(LANDLOCK),
        test!(stdio_inner)
            .needs(ROOT)
            .needs(LANDLOCK)
            .needs(OWN_PROCESS)
            .only_when_asked(
                "run in a process of its own by stdio_taken_from_descriptors_0_to_2_in_any_order",
            ),
        test!(unprivileged_inner)
            .needs(ROOT)
            .needs(LANDLOCK)
            .needs(OWN_PROCESS)
            .only_when_asked(
                "run in a process of its own by launching_thread_without_capabilities",
            ),
        test!(many_launches_inner)
            .needs(ROOT)
            .needs(LANDLOCK)
            .needs(OWN_PROCESS)
            .only_when_asked("run in a process of its own by many_launches_from_several_threads"),
        test!(shared_namespace_of_a_user_namespace_is_refused),
    ])
}
