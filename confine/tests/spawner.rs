//! The fast path: programs spawned by a [`Spawner`]'s thread must be as
//! confined as the helper makes them, and the rest of the process must not
//! be. These need root (the spawner refuses hosts without capabilities),
//! Landlock and network namespaces.

mod common;

use common::{HELPER, Run, accepted, connect_script, finish, unique};
use kiln_confine::{
    ConfineError, Enforcement, Network, NetworkApplied, Policy, SharedNetns, Spawner,
};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn is_root() -> bool {
    // SAFETY: getuid cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

fn policy(read_write: &Path, network: Network) -> Policy {
    let mut p = Policy::system();
    p.read_write.push(read_write.to_path_buf());
    p.network = network;
    p
}

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

fn spawn_in(spawner: &Spawner, mut cmd: Command) -> Child {
    spawner.run(move || cmd.spawn()).unwrap().unwrap()
}

/// A program that has certainly started. `spawn` returns once the child
/// has released the parent's memory in `execve`, which is before the kernel
/// closes close-on-exec descriptors and installs the new credentials, so
/// `/proc` may still show the state before exec; a line on stdout comes
/// from the program itself. It then sleeps, confined like the shell.
fn started(spawner: &Spawner) -> Child {
    let mut child = spawn_in(
        spawner,
        command("/bin/sh", &["-c", "echo ready; exec /bin/sleep 10"]),
    );
    let mut byte = [0u8; 6];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut byte)
        .unwrap();
    assert_eq!(&byte, b"ready\n");
    child
}

fn run(spawner: &Spawner, program: &str, args: &[&str]) -> Run {
    finish(spawn_in(spawner, command(program, args)))
}

/// `name: value` lines of /proc/<pid>/status, read from outside the program
/// (the program itself is not granted its /proc entry).
fn status_of(pid: u32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn field(status: &[(String, String)], name: &str) -> String {
    status
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {name} in status"))
}

#[test]
fn files_outside_the_policy_stay_closed() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("data.txt"), "granted content\n").unwrap();
    let mut p = policy(rw.path(), Network::Allowed);
    p.read_only.push(ro.path().to_path_buf());
    let spawner = Spawner::start(&p).unwrap();
    let applied = spawner.applied();
    assert_eq!(applied.landlock.enforcement, Enforcement::Full);
    assert!(applied.capabilities_cleared && applied.no_new_privs);
    assert!(applied.warnings.is_empty(), "{:?}", applied.warnings);

    let r = run(&spawner, "/bin/cat", &["/etc/shadow"]);
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert!(r.stdout.is_empty());

    let file = ro.path().join("data.txt");
    let r = run(&spawner, "/bin/cat", &[file.to_str().unwrap()]);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.stdout, "granted content\n");

    let outside = unique("spawner-outside");
    let inside = rw.path().join("inside.txt");
    let script = format!(
        "echo leaked > {}; echo nope > {}/new; echo kept > {} && mkdir {3}/sub && mv {2} {3}/sub/moved",
        outside.display(),
        ro.path().display(),
        inside.display(),
        rw.path().display()
    );
    let r = run(&spawner, "/bin/sh", &["-c", &script]);
    assert!(r.status.success(), "{}", r.stderr);
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

    // Programs outside every grant do not start at all; the error comes
    // from the spawn itself.
    let script_dir = tempfile::tempdir().unwrap();
    let script = script_dir.path().join("script");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = command(script.to_str().unwrap(), &[]);
    let err = spawner.run(move || cmd.spawn()).unwrap().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
}

#[test]
fn shared_namespace_has_no_network() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = SharedNetns::start(Path::new(HELPER)).unwrap();
    let spawner = Spawner::start(&policy(rw.path(), holder.network())).unwrap();
    assert_eq!(spawner.applied().network, NetworkApplied::Joined);
    assert!(spawner.applied().warnings.is_empty());

    let r = run(&spawner, "/bin/bash", &["-c", &connect_script(port)]);
    assert!(!r.status.success(), "connected with the network denied");
    assert!(!accepted(&listener));

    // The program is in the holder's namespace, not merely behind Landlock.
    let mut child = started(&spawner);
    let ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(ns(child.id()), ns(holder.pid()));
    assert_ne!(ns(child.id()), ns(std::process::id()));
    child.kill().unwrap();
    child.wait().unwrap();

    // The test's own thread still has the network.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(accepted(&listener));
}

#[test]
fn denied_network_gets_a_namespace_of_its_own() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let spawner = Spawner::start(&policy(rw.path(), Network::Denied)).unwrap();
    assert_eq!(spawner.applied().network, NetworkApplied::NewNamespace);
    let r = run(&spawner, "/bin/bash", &["-c", &connect_script(port)]);
    assert!(!r.status.success());
    assert!(!accepted(&listener));
}

#[test]
fn stale_shared_namespace_falls_back_to_a_fresh_one() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let network = SharedNetns::start(Path::new(HELPER)).unwrap().network();
    // The holder is gone: its reference must not be joined.
    let spawner = Spawner::start(&policy(rw.path(), network)).unwrap();
    assert_eq!(spawner.applied().network, NetworkApplied::NewNamespace);
    assert_eq!(spawner.applied().warnings.len(), 1);
}

#[test]
fn only_stdio_reaches_the_program() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let spawner = Spawner::start(&policy(rw.path(), Network::Allowed)).unwrap();
    let (read_end, write_end) = {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    };
    // Without close-on-exec, above the numbers other tests use.
    let leaked = unsafe { libc::fcntl(read_end.as_raw_fd(), libc::F_DUPFD, 600) };
    assert!(leaked >= 600);
    let leaked = unsafe { OwnedFd::from_raw_fd(leaked) };
    let fds_of = |child: &Child| -> Vec<String> {
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        fds.sort();
        fds
    };

    // The control: as it stands the descriptor would reach the program.
    let mut child = started(&spawner);
    assert!(fds_of(&child).contains(&leaked.as_raw_fd().to_string()));
    child.kill().unwrap();
    child.wait().unwrap();

    // What the host does at start.
    kiln_confine::cloexec_inherited_fds().unwrap();
    let mut child = started(&spawner);
    assert_eq!(fds_of(&child), ["0", "1", "2"]);
    child.kill().unwrap();
    child.wait().unwrap();
    drop((leaked, read_end, write_end));
}

#[test]
fn program_starts_without_privileges() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let spawner = Spawner::start(&policy(rw.path(), Network::Allowed)).unwrap();
    let mut child = started(&spawner);
    let status = status_of(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            u64::from_str_radix(&field(&status, cap), 16),
            Ok(0),
            "{cap}"
        );
    }
    assert_eq!(field(&status, "NoNewPrivs"), "1");
    assert_eq!(field(&status, "Seccomp"), "2");
    let ignored = u64::from_str_radix(&field(&status, "SigIgn"), 16).unwrap();
    assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE ignored");
    assert_eq!(u64::from_str_radix(&field(&status, "SigBlk"), 16), Ok(0));
}

#[test]
fn other_threads_are_unaffected() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let spawner = Spawner::start(&policy(rw.path(), Network::Denied)).unwrap();
    // The spawner thread is confined...
    let pid = std::process::id();
    let thread = status_of_task(pid, spawner.tid());
    assert_eq!(field(&thread, "NoNewPrivs"), "1");
    assert_eq!(field(&thread, "Seccomp"), "2");
    assert_eq!(u64::from_str_radix(&field(&thread, "CapBnd"), 16), Ok(0));
    let denied = spawner
        .run(|| std::fs::read_to_string("/etc/shadow").map_err(|e| e.kind()))
        .unwrap();
    assert_eq!(denied, Err(std::io::ErrorKind::PermissionDenied));

    // ...and this one is not: it reads outside the policy, connects, and
    // the programs it spawns are not confined.
    assert!(std::fs::read_to_string("/etc/shadow").is_ok());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(accepted(&listener));
    let r = finish(command("/bin/cat", &["/etc/shadow"]).spawn().unwrap());
    assert!(r.status.success(), "{}", r.stderr);
    let own = status_of_task(pid, gettid());
    assert_eq!(field(&own, "NoNewPrivs"), "0");
    assert_eq!(field(&own, "Seccomp"), "0");
    assert_ne!(u64::from_str_radix(&field(&own, "CapBnd"), 16), Ok(0));
    let ns = |path: String| std::fs::read_link(path).unwrap();
    assert_eq!(
        ns(format!("/proc/{pid}/task/{}/ns/net", gettid())),
        ns(format!("/proc/{pid}/ns/net"))
    );
}

fn gettid() -> i32 {
    // SAFETY: gettid cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

fn status_of_task(pid: u32, tid: i32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn programs_cannot_signal_or_limit_the_host() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let spawner = Spawner::start(&policy(rw.path(), Network::Allowed)).unwrap();
    let pid = std::process::id();
    let tid = spawner.tid();
    let script = format!(
        "kill -0 {pid}; echo pid=$?; kill -0 {tid}; echo thread=$?; kill -0 -{pid}; echo group=$?; kill -0 $$; echo self=$?"
    );
    let r = run(&spawner, "/bin/bash", &["-c", &script]);
    assert_eq!(
        r.stdout, "pid=1\nthread=1\ngroup=1\nself=0\n",
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("Operation not permitted").count(),
        3,
        "{}",
        r.stderr
    );

    // I/O signals aimed at the host, and the thread-directed variants.
    let py = format!(
        "import fcntl, os, errno\n\
         r, w = os.pipe()\n\
         for target in ({pid}, {tid}, -{pid}):\n\
         \x20   try:\n\
         \x20       fcntl.fcntl(r, fcntl.F_SETOWN, target); print('setown', target)\n\
         \x20   except OSError as e:\n\
         \x20       print(errno.errorcode[e.errno])\n\
         fcntl.fcntl(r, fcntl.F_SETOWN, os.getpid()); print('own')\n\
         import ctypes\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         print(libc.syscall({tgkill}, {pid}, {tid}, 0), ctypes.get_errno())\n\
         print(libc.syscall({tkill}, {tid}, 0), ctypes.get_errno())\n",
        tgkill = libc::SYS_tgkill,
        tkill = libc::SYS_tkill,
    );
    let r = run(&spawner, "/usr/bin/python3", &["-c", &py]);
    assert!(r.status.success(), "{}", r.stderr);
    let eperm = libc::EPERM;
    assert_eq!(
        r.stdout,
        format!("EPERM\nEPERM\nEPERM\nown\n-1 {eperm}\n-1 {eperm}\n"),
        "{}",
        r.stderr
    );

    // Rlimits are per process, so any host thread's id would do; a failure
    // of the filter here re-sets a limit to its current value, harmlessly.
    let host_thread = gettid();
    let py = format!(
        "import resource, errno\n\
         current = resource.getrlimit(resource.RLIMIT_NOFILE)\n\
         for target in ({pid}, {tid}, {host_thread}):\n\
         \x20   try:\n\
         \x20       resource.prlimit(target, resource.RLIMIT_NOFILE, current); print('set', target)\n\
         \x20   except OSError as e:\n\
         \x20       print(errno.errorcode[e.errno])\n\
         print(resource.prlimit({pid}, resource.RLIMIT_NOFILE) is not None)\n\
         resource.setrlimit(resource.RLIMIT_NOFILE, current); print('own')\n"
    );
    let r = run(&spawner, "/usr/bin/python3", &["-c", &py]);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.stdout, "EPERM\nEPERM\nEPERM\nTrue\nown\n", "{}", r.stderr);

    // The control: without the spawner the same uid may signal the host.
    let r = finish(
        command("/bin/bash", &["-c", &format!("kill -0 {tid}; echo $?")])
            .spawn()
            .unwrap(),
    );
    assert_eq!(r.stdout, "0\n", "{}", r.stderr);
}

#[test]
fn programs_cannot_trace_the_spawner_thread() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let mut p = policy(rw.path(), Network::Allowed);
    // With /proc granted only capabilities keep the thread's memory closed.
    p.read_only.push("/proc".into());
    let spawner = Spawner::start(&p).unwrap();
    // A non-dumpable process is closed to them anyway (a uid change makes
    // it so; tests/spawner_unprivileged.rs does that in its own process).
    // SAFETY: prctl with integer arguments only.
    assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 1);
    let task = format!("/proc/{}/task/{}", std::process::id(), spawner.tid());
    // Opening is what the kernel checks; `:` reads nothing.
    let script = format!(
        "for f in status environ mem maps; do \
         if {{ : < {task}/$f; }} 2>/dev/null; then echo $f=open; else echo $f=denied; fi; done"
    );
    let r = run(&spawner, "/bin/bash", &["-c", &script]);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(
        r.stdout, "status=open\nenviron=denied\nmem=denied\nmaps=denied\n",
        "{}",
        r.stderr
    );
}

#[test]
fn common_programs_run_without_proc_self() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let spawner = Spawner::start(&policy(rw.path(), Network::Allowed)).unwrap();
    let r = run(
        &spawner,
        "/usr/bin/python3",
        &[
            "-c",
            "import os, json, ssl, locale; print(os.cpu_count() > 0)",
        ],
    );
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.stdout, "True\n");
    assert_eq!(r.stderr, "");
    let r = run(&spawner, "/bin/ls", &["/usr"]);
    assert!(r.status.success(), "{}", r.stderr);
    // The documented gap: granted from the spawner thread, /proc/self would
    // have named the host's entry, so it is not granted at all.
    let host = format!("/proc/{}/cmdline", std::process::id());
    for path in ["/proc/self/status", &host] {
        let r = run(&spawner, "/bin/cat", &[path]);
        assert!(!r.status.success(), "{path} is readable");
        assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    }
}

#[test]
fn ineligible_policies_are_refused() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let mut p = policy(rw.path(), Network::Allowed);
    p.rlimits.open_files = Some(64);
    p.rlimits.cpu_seconds = Some(10);
    let err = Spawner::start(&p).unwrap_err();
    assert!(matches!(err, ConfineError::NotForSpawner(_)), "{err}");
    assert!(err.to_string().contains("cpu_seconds, open_files"), "{err}");

    let holder = SharedNetns::start(Path::new(HELPER)).unwrap();
    let mut reference = holder.reference().clone();
    reference.user = Some(reference.net.clone());
    let p = policy(rw.path(), Network::DeniedShared(reference));
    let err = Spawner::start(&p).unwrap_err();
    assert!(err.to_string().contains("user namespace"), "{err}");
}

#[test]
fn tokio_children_spawned_on_the_thread() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let spawner = Arc::new(Spawner::start(&policy(rw.path(), Network::Allowed)).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = rw.path().to_path_buf();
    let out = rt.block_on(async move {
        let handle = tokio::runtime::Handle::current();
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.args(["-c", "pwd; echo out > file; cat /etc/shadow"])
            .env_clear()
            .current_dir(&dir)
            .process_group(0)
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = spawner
            .run(move || {
                let _guard = handle.enter();
                cmd.spawn()
            })
            .unwrap()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .unwrap()
            .unwrap()
    });
    assert_eq!(out.status.code(), Some(1));
    let dir = std::fs::canonicalize(rw.path()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n", dir.display())
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    assert_eq!(
        std::fs::read_to_string(rw.path().join("file")).unwrap(),
        "out\n"
    );
}

#[test]
fn dropping_ends_the_thread_and_children_are_still_waited_for() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let spawner = Spawner::start(&policy(rw.path(), Network::Allowed)).unwrap();
    let task = format!("/proc/{}/task/{}", std::process::id(), spawner.tid());
    assert!(Path::new(&task).exists());
    let mut child = spawn_in(&spawner, command("/bin/sleep", &["0.3"]));
    drop(spawner);
    // The join returns when the thread has exited; the kernel removes its
    // /proc entry a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while Path::new(&task).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        !Path::new(&task).exists(),
        "the thread outlived its Spawner"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn panics_reach_the_caller_and_nested_runs_do_not_deadlock() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let spawner = Arc::new(Spawner::start(&policy(rw.path(), Network::Allowed)).unwrap());
    let s = spawner.clone();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        s.run(|| panic!("in the closure"))
    }));
    assert!(caught.is_err());
    assert_eq!(spawner.run(|| 5).unwrap(), 5);
    let s = spawner.clone();
    assert_eq!(spawner.run(move || s.run(|| 7).unwrap()).unwrap(), 7);
}

#[test]
fn submitted_closures_run_on_the_thread_and_a_panic_drops_their_captures() {
    if !is_root() {
        return;
    }
    let rw = tempfile::tempdir().unwrap();
    let spawner = Spawner::start(&policy(rw.path(), Network::Allowed)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let cmd = command("/bin/true", &[]);
    spawner
        .submit(move || {
            let mut cmd = cmd;
            let tid = gettid();
            let _ = tx.send((tid, cmd.spawn().map(|mut c| c.wait())));
        })
        .unwrap();
    let (tid, status) = rx.recv().unwrap();
    assert_eq!(tid, spawner.tid());
    assert!(status.unwrap().unwrap().success());

    let (tx, rx) = std::sync::mpsc::channel::<()>();
    spawner
        .submit(move || {
            let _tx = tx;
            panic!("in the closure");
        })
        .unwrap();
    assert!(rx.recv().is_err(), "the sender outlived the panic");
    assert_eq!(spawner.run(|| 5).unwrap(), 5);
}
