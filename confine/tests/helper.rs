//! End-to-end checks of the `kiln-confine` helper: each test spawns the
//! built binary the way the host does and asks a small program to step
//! outside its policy. They need Landlock and network namespaces (root here).

mod common;

use common::{HELPER, Run, accepted, connect_script, finish, unique};
use kiln_confine::{
    EXIT_CONFINE_FAILED, EXIT_EXEC_FAILED, Enforcement, NetnsSupport, Network, NetworkApplied,
    Policy, STDERR_PREFIX, SharedNetns, system_read_only_paths, system_read_write_paths,
};
use kiln_test_support::{LANDLOCK, LANDLOCK_6, Need, ROOT, test};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The helper can be executed by uid 65534: every directory above the
/// build's `target` lets others through.
const HELPER_RUNS_AS_NOBODY: Need = Need {
    name: "helper-runs-as-nobody",
    check: || {
        let probe = Command::new(HELPER)
            .arg("--probe")
            .uid(65534)
            .gid(65534)
            .output();
        match probe {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("{HELPER} cannot be executed by uid 65534: {e}")),
        }
    },
};

fn policy(read_write: &Path) -> Policy {
    let mut p = Policy::system();
    p.read_write.push(read_write.to_path_buf());
    p
}

fn confined(policy: &Policy, program: &str, args: &[&str]) -> Command {
    let mut cmd =
        kiln_confine::command(Path::new(HELPER), policy, None, Path::new(program)).unwrap();
    cmd.args(args).env("PATH", "/usr/bin:/bin");
    cmd
}

fn run(policy: &Policy, program: &str, args: &[&str]) -> Run {
    wait(confined(policy, program, args))
}

fn wait(mut cmd: Command) -> Run {
    finish(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

fn shadow_is_denied_and_granted_files_are_readable() {
    let rw = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("data.txt"), "granted content\n").unwrap();
    let mut p = policy(rw.path());
    p.read_only.push(ro.path().to_path_buf());

    let r = run(&p, "/bin/cat", &["/etc/shadow"]);
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    let r = run(&p, "/bin/cat", &["/etc/passwd"]);
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);

    let file = ro.path().join("data.txt");
    let r = run(&p, "/bin/cat", &[file.to_str().unwrap()]);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.stdout, "granted content\n");

    // Read-only means no writing there either.
    let script = format!("echo x > {}/new", ro.path().display());
    let r = run(&p, "/bin/sh", &["-c", &script]);
    assert!(!r.status.success());
    assert!(!ro.path().join("new").exists());
}

fn writes_only_land_in_the_read_write_tree() {
    let rw = tempfile::tempdir().unwrap();
    let outside = unique("outside");
    let inside = rw.path().join("inside.txt");
    let p = policy(rw.path());

    let r = run(
        &p,
        "/bin/sh",
        &["-c", &format!("echo leaked > {}", outside.display())],
    );
    assert!(!r.status.success());
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert!(!outside.exists(), "{} was created", outside.display());

    let r = run(
        &p,
        "/bin/sh",
        &[
            "-c",
            &format!(
                "echo kept > {0} && mkdir {1}/sub && mv {0} {1}/sub/moved && rm -r {1}/sub && echo kept > {0}",
                inside.display(),
                rw.path().display()
            ),
        ],
    );
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&inside).unwrap(), "kept\n");
}

fn denied_network_cannot_reach_a_local_listener() {
    let rw = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    let mut p = policy(rw.path());
    p.network = Network::Denied;
    let r = run(&p, "/bin/bash", &["-c", &connect_script(port)]);
    assert!(!r.status.success(), "connected with the network denied");
    assert!(!accepted(&listener));

    // The namespace alone (not only Landlock's TCP rule): only a down
    // loopback. bash reads /proc/self/net/dev itself, in the helper's pid.
    let r = run(
        &p,
        "/bin/bash",
        &[
            "-c",
            "while read -r line; do echo \"$line\"; done < /proc/self/net/dev",
        ],
    );
    assert!(r.status.success(), "{}", r.stderr);
    let interfaces: Vec<&str> = r
        .stdout
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .collect();
    assert_eq!(interfaces, ["lo"], "{}", r.stdout);

    p.network = Network::Allowed;
    let r = run(&p, "/bin/bash", &["-c", &connect_script(port)]);
    assert!(r.status.success(), "{}", r.stderr);
    assert!(accepted(&listener));
}

fn a_directory_granted_by_the_callers_descriptor_is_writable() {
    // The host grants the directories it holds open as
    // /proc/<host pid>/fd/<n>; the helper must still resolve them once it is
    // in a user namespace of its own (as it is when not run by root).
    let rw = tempfile::tempdir().unwrap();
    let held = std::fs::File::open(rw.path()).unwrap();
    let by_fd = format!("/proc/{}/fd/{}", std::process::id(), held.as_raw_fd());
    let p = policy(Path::new(&by_fd));
    let mut cmd = confined(&p, "/bin/sh", &["-c", "echo kept > written"]);
    cmd.current_dir(rw.path());
    let r = wait(cmd);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(rw.path().join("written")).unwrap(),
        "kept\n"
    );
}

fn shared_namespace_is_joined_and_verified() {
    let rw = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = SharedNetns::start(Path::new(HELPER)).unwrap();
    let mut p = policy(rw.path());
    p.network = holder.network();

    let applied = kiln_confine::check(Path::new(HELPER), &p).unwrap();
    assert_eq!(applied.network, NetworkApplied::Joined);
    assert!(applied.warnings.is_empty(), "{:?}", applied.warnings);
    let r = run(&p, "/bin/bash", &["-c", &connect_script(port)]);
    assert!(!r.status.success());
    assert!(!accepted(&listener));

    let pid = holder.pid();
    drop(holder);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "holder left behind"
    );
    // A stale reference is never joined: the helper falls back to a private
    // namespace and says so.
    // Without root the private namespace needs a user namespace of its own.
    let private = if unsafe { libc::geteuid() } == 0 {
        NetworkApplied::NewNamespace
    } else {
        NetworkApplied::NewUserNamespace
    };
    let applied = kiln_confine::check(Path::new(HELPER), &p).unwrap();
    assert_eq!(applied.network, private);
    assert_eq!(applied.warnings.len(), 1, "{:?}", applied.warnings);
}

fn rlimit_open_files() {
    let rw = tempfile::tempdir().unwrap();
    let mut p = policy(rw.path());
    p.rlimits.open_files = Some(5);
    // fds 0-2 are taken, so the third open needs descriptor 5.
    let script = "import os\nfds = []\ntry:\n    for _ in range(10): fds.append(os.open('/dev/null', os.O_RDONLY))\nexcept OSError as e:\n    print(len(fds), e.errno)\n";
    let r = run(&p, "/usr/bin/python3", &["-c", script]);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.stdout.trim(), format!("2 {}", libc::EMFILE));
}

fn rlimit_file_size() {
    let rw = tempfile::tempdir().unwrap();
    let mut p = policy(rw.path());
    p.rlimits.file_size_bytes = Some(1000);
    let out = rw.path().join("big");
    let mut cmd = confined(&p, "/usr/bin/head", &["-c", "5000", "/dev/zero"]);
    cmd.stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null());
    let status = cmd.status().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGXFSZ), "{status:?}");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 1000);
}

fn rlimit_cpu_time_stops_a_busy_loop() {
    let rw = tempfile::tempdir().unwrap();
    let mut p = policy(rw.path());
    p.rlimits.cpu_seconds = Some(1);
    let start = Instant::now();
    let r = run(&p, "/bin/sh", &["-c", "while :; do :; done"]);
    assert_eq!(r.status.signal(), Some(libc::SIGXCPU), "{:?}", r.status);
    assert!(start.elapsed() < Duration::from_secs(15));
}

fn rlimit_address_space() {
    let rw = tempfile::tempdir().unwrap();
    let mut p = policy(rw.path());
    p.rlimits.address_space_bytes = Some(256 << 20);
    let r = run(
        &p,
        "/usr/bin/python3",
        &[
            "-c",
            "try:\n    bytearray(1 << 30)\nexcept MemoryError:\n    print('refused')",
        ],
    );
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "refused");
}

fn processes_limit_is_refused_for_root_unless_optional() {
    let rw = tempfile::tempdir().unwrap();
    let mut p = policy(rw.path());
    p.rlimits.processes = Some(10);
    let r = run(&p, "/bin/true", &[]);
    assert_eq!(r.status.code(), Some(EXIT_CONFINE_FAILED));
    assert!(
        r.stderr.starts_with(STDERR_PREFIX) && r.stderr.contains("RLIMIT_NPROC"),
        "{}",
        r.stderr
    );

    p.require = false;
    let r = run(&p, "/bin/echo", &["ran"]);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.stdout, "ran\n");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("kiln-confine: warning: "),
        "{}",
        r.stderr
    );
}

/// Lists the descriptors 3..1024 that are open in the program, without
/// opening any itself (a directory listing would add its own).
const LIST_FDS: &str =
    "for ((i = 3; i < 1024; i++)); do [ -e /proc/$$/fd/$i ] && echo $i; done; true";

fn only_stdio_reaches_the_program() {
    let rw = tempfile::tempdir().unwrap();
    let p = policy(rw.path());
    // A descriptor without close-on-exec, above the numbers other tests use.
    let (read_end, write_end) = {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    };
    let leaked = unsafe { libc::fcntl(read_end.as_raw_fd(), libc::F_DUPFD, 500) };
    assert!(leaked >= 500);
    let leaked = unsafe { OwnedFd::from_raw_fd(leaked) };
    let number = leaked.as_raw_fd().to_string();

    // Without the helper the program would see it.
    let mut direct = Command::new("/bin/bash");
    direct.args(["-c", LIST_FDS]);
    let r = wait(direct);
    assert!(
        r.stdout.lines().any(|l| l == number),
        "control run did not inherit fd {number}: {}",
        r.stdout
    );

    let r = run(&p, "/bin/bash", &["-c", LIST_FDS]);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.stdout, "", "descriptors leaked into the program");
    drop((leaked, read_end, write_end));
}

fn policy_variable_is_not_visible_to_the_program() {
    let rw = tempfile::tempdir().unwrap();
    let p = policy(rw.path());
    let mut cmd = confined(&p, "/usr/bin/env", &[]);
    cmd.env("KILN_TEST_VISIBLE", "yes");
    let r = wait(cmd);
    assert!(r.status.success(), "{}", r.stderr);
    assert!(!r.stdout.contains("KILN_CONFINE"), "{}", r.stdout);
    let mut vars: Vec<&str> = r.stdout.lines().collect();
    vars.sort();
    assert_eq!(vars, ["KILN_TEST_VISIBLE=yes", "PATH=/usr/bin:/bin"]);
}

fn program_starts_without_capabilities_or_ignored_sigpipe() {
    let rw = tempfile::tempdir().unwrap();
    let p = policy(rw.path());
    let r = run(
        &p,
        "/bin/bash",
        &[
            "-c",
            "while read -r k v; do case $k in Cap*|SigIgn:|NoNewPrivs:) echo \"$k $v\";; esac; done < /proc/self/status",
        ],
    );
    assert!(r.status.success(), "{}", r.stderr);
    for line in r.stdout.lines() {
        let (k, v) = line.split_once(' ').unwrap();
        match k {
            "NoNewPrivs:" => assert_eq!(v, "1"),
            "SigIgn:" => {
                let ignored = u64::from_str_radix(v, 16).unwrap();
                assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE ignored");
            }
            _ => assert_eq!(u64::from_str_radix(v, 16).unwrap(), 0, "{line}"),
        }
    }
    assert!(r.stdout.contains("CapBnd:"), "{}", r.stdout);
}

fn program_cannot_signal_outside_its_domain() {
    let rw = tempfile::tempdir().unwrap();
    let p = policy(rw.path());
    let script = format!("kill -0 {} && echo reachable", std::process::id());
    let r = run(&p, "/bin/bash", &["-c", &script]);
    assert!(!r.status.success());
    assert!(r.stderr.contains("Operation not permitted"), "{}", r.stderr);
}

fn probe_and_check_report_this_machine() {
    let support = kiln_confine::probe();
    assert!(support.landlock_abi >= 1, "{support:?}");
    assert_eq!(support.landlock_unavailable, None);
    if unsafe { libc::getuid() } == 0 {
        assert_eq!(support.network_namespaces, NetnsSupport::Unshare);
    }
    if support.landlock_abi >= 9 {
        assert!(support.landlock_gaps().is_empty());
    } else {
        assert!(!support.landlock_gaps().is_empty());
    }

    let rw = tempfile::tempdir().unwrap();
    let applied = kiln_confine::check(Path::new(HELPER), &policy(rw.path())).unwrap();
    assert_eq!(applied.landlock.abi, support.landlock_abi);
    assert_eq!(applied.landlock.enforcement, Enforcement::Full);
    assert!(applied.capabilities_cleared && applied.no_new_privs);
    assert!(applied.warnings.is_empty(), "{:?}", applied.warnings);
}

fn exit_codes_say_who_failed() {
    let rw = tempfile::tempdir().unwrap();
    let p = policy(rw.path());

    let r = run(&p, "/nonexistent/program", &[]);
    assert_eq!(r.status.code(), Some(EXIT_EXEC_FAILED));
    assert!(
        r.stderr
            .starts_with("kiln-confine: cannot execute /nonexistent/program")
    );

    // Outside every grant: Landlock refuses the exec (the program file itself
    // is granted, so this needs a script whose interpreter is not).
    let script_dir = tempfile::tempdir().unwrap();
    let script = script_dir.path().join("script");
    std::fs::write(&script, "#!/opt/nowhere/interp\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = run(&p, script.to_str().unwrap(), &[]);
    assert_eq!(r.status.code(), Some(EXIT_EXEC_FAILED), "{}", r.stderr);

    let mut bad = p.clone();
    bad.read_only.push("/does/not/exist".into());
    let r = run(&bad, "/bin/true", &[]);
    assert_eq!(r.status.code(), Some(EXIT_CONFINE_FAILED));
    assert!(
        r.stderr
            .contains("cannot open granted path /does/not/exist"),
        "{}",
        r.stderr
    );

    let mut raw = Command::new(HELPER);
    raw.env_clear()
        .args(["--policy", "{\"network\":\"denied\"}", "--", "/bin/true"]);
    let r = wait(raw);
    assert_eq!(r.status.code(), Some(EXIT_CONFINE_FAILED));
    assert!(
        r.stderr.starts_with("kiln-confine: invalid policy"),
        "{}",
        r.stderr
    );

    let mut raw = Command::new(HELPER);
    raw.env_clear()
        .arg("--policy")
        .arg(p.to_json().unwrap())
        .args(["--", "true"]);
    let r = wait(raw);
    assert_eq!(r.status.code(), Some(EXIT_CONFINE_FAILED));
    assert!(r.stderr.contains("not absolute"), "{}", r.stderr);

    // Without `--policy` nothing runs, whatever the environment holds.
    let mut raw = Command::new(HELPER);
    raw.env_clear()
        .env("KILN_CONFINE_POLICY", p.to_json().unwrap())
        .args(["--", "/bin/true"]);
    let r = wait(raw);
    assert_eq!(r.status.code(), Some(EXIT_CONFINE_FAILED));
    assert!(
        r.stderr.contains("usage: kiln-confine --policy"),
        "{}",
        r.stderr
    );
}

fn a_policy_or_cgroup_set_in_the_environment_is_ignored() {
    let granted = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let p = policy(granted.path());
    let mut wide = Policy::system();
    wide.read_write.push("/".into());
    wide.require = false;
    let target = other.path().join("written");
    let script = format!("echo x > {}", target.display());
    let mut cmd = confined(&p, "/bin/sh", &["-c", &script]);
    cmd.env("KILN_CONFINE_POLICY", wide.to_json().unwrap())
        .env("KILN_CONFINE_CGROUP", other.path());
    let r = wait(cmd);
    assert!(!r.status.success(), "the program wrote outside its policy");
    assert!(!target.exists());
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    // And neither name reaches the program.
    let mut cmd = confined(&p, "/usr/bin/env", &[]);
    cmd.env("KILN_CONFINE_POLICY", "x")
        .env("KILN_CONFINE_CGROUP", "y");
    let r = wait(cmd);
    assert!(r.status.success(), "{}", r.stderr);
    assert!(!r.stdout.contains("KILN_CONFINE"), "{}", r.stdout);
}

fn arguments_pass_literally() {
    let rw = tempfile::tempdir().unwrap();
    let p = policy(rw.path());
    let args = ["; rm -rf /", "$(id)", "-n", "a b", ""];
    let r = run(
        &p,
        "/usr/bin/printf",
        &["[%s]", args[0], args[1], args[2], args[3], args[4]],
    );
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.stdout, "[; rm -rf /][$(id)][-n][a b][]");
}

/// The same guarantees for a host that is not root: the helper builds its
/// network namespace inside a user namespace.
fn unprivileged_user_gets_a_user_namespace() {
    let nobody = 65534;
    let rw = tempfile::tempdir().unwrap();
    std::fs::set_permissions(rw.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut p = policy(rw.path());
    p.network = Network::Denied;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let inside = rw.path().join("by-nobody");

    let mut check = Command::new(HELPER);
    check
        .arg("--check")
        .arg("--policy")
        .arg(p.to_json().unwrap())
        .env_clear()
        .uid(nobody)
        .gid(nobody);
    let r = wait(check);
    assert!(r.status.success(), "{}", r.stderr);
    let applied: kiln_confine::Applied = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(applied.network, NetworkApplied::NewUserNamespace);
    assert_eq!(applied.landlock.enforcement, Enforcement::Full);

    let script = format!(
        "echo ok > {}; cat /etc/shadow; {}",
        inside.display(),
        connect_script(port)
    );
    let mut cmd = confined(&p, "/bin/bash", &["-c", &script]);
    cmd.uid(nobody).gid(nobody);
    let r = wait(cmd);
    assert!(!r.status.success());
    assert!(!accepted(&listener));
    assert!(
        r.stderr.contains("/etc/shadow: Permission denied"),
        "{}",
        r.stderr
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&inside).unwrap().uid(), nobody);

    let holder = {
        // The holder must run as the same user as the helpers joining it.
        let mut c = Command::new(HELPER);
        c.arg("--hold-netns")
            .env_clear()
            .uid(nobody)
            .gid(nobody)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        c.spawn().unwrap()
    };
    let mut holder = holder;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let reference: kiln_confine::SharedNetnsRef = serde_json::from_str(&line).unwrap();
    assert!(reference.user.is_some());
    p.network = Network::DeniedShared(reference);
    let mut check = Command::new(HELPER);
    check
        .arg("--check")
        .arg("--policy")
        .arg(p.to_json().unwrap())
        .env_clear()
        .uid(nobody)
        .gid(nobody);
    let r = wait(check);
    drop(holder.stdin.take());
    holder.wait().unwrap();
    assert!(r.status.success(), "{}", r.stderr);
    let applied: kiln_confine::Applied = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        applied.network,
        NetworkApplied::Joined,
        "{:?}",
        applied.warnings
    );
}

fn system_paths_run_common_programs() {
    let rw = tempfile::tempdir().unwrap();
    let p = policy(rw.path());
    let r = run(
        &p,
        "/usr/bin/python3",
        &[
            "-c",
            "import os, json, ssl, locale; print(os.cpu_count() > 0)",
        ],
    );
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.stdout, "True\n");
    assert_eq!(r.stderr, "");
    let r = run(&p, "/bin/ls", &["/usr"]);
    assert!(r.status.success(), "{}", r.stderr);
    assert!(r.stdout.contains("lib"));
    assert!(system_read_only_paths().len() > 5 && !system_read_write_paths().is_empty());
}

fn main() -> std::process::ExitCode {
    kiln_test_support::run(vec![
        test!(shadow_is_denied_and_granted_files_are_readable).needs(LANDLOCK),
        test!(writes_only_land_in_the_read_write_tree).needs(LANDLOCK),
        test!(denied_network_cannot_reach_a_local_listener).needs(LANDLOCK),
        test!(a_directory_granted_by_the_callers_descriptor_is_writable).needs(LANDLOCK),
        test!(shared_namespace_is_joined_and_verified).needs(LANDLOCK),
        test!(rlimit_open_files).needs(LANDLOCK),
        test!(rlimit_file_size).needs(LANDLOCK),
        test!(rlimit_cpu_time_stops_a_busy_loop).needs(LANDLOCK),
        test!(rlimit_address_space).needs(LANDLOCK),
        test!(processes_limit_is_refused_for_root_unless_optional)
            .needs(LANDLOCK)
            .needs(ROOT),
        test!(only_stdio_reaches_the_program).needs(LANDLOCK),
        test!(policy_variable_is_not_visible_to_the_program).needs(LANDLOCK),
        test!(program_starts_without_capabilities_or_ignored_sigpipe).needs(LANDLOCK),
        test!(program_cannot_signal_outside_its_domain).needs(LANDLOCK_6),
        test!(probe_and_check_report_this_machine).needs(LANDLOCK),
        test!(exit_codes_say_who_failed).needs(LANDLOCK),
        test!(a_policy_or_cgroup_set_in_the_environment_is_ignored).needs(LANDLOCK),
        test!(arguments_pass_literally).needs(LANDLOCK),
        test!(unprivileged_user_gets_a_user_namespace)
            .needs(LANDLOCK)
            .needs(ROOT)
            .needs(HELPER_RUNS_AS_NOBODY),
        test!(system_paths_run_common_programs).needs(LANDLOCK),
    ])
}
