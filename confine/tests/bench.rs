//! Cost of starting a program through the helper and through a [`Launcher`]
//! compared with a plain spawn, and the cost of preparing a [`Launcher`].
//!
//! Run: `cargo test --release --test bench -- --ignored --nocapture`
//! (as root, for the network namespaces and the cgroups).
//! `KILN_CONFINE_BENCH_HELPER=/path/to/kiln-confine` measures another build
//! of the helper (a statically linked one, say) alongside.
//!
//! Variants run round-robin, so drift on a shared machine hits all alike.

use kiln_confine::{Launch, Launcher, Network, Policy, SharedNetns};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HELPER: &str = env!("CARGO_BIN_EXE_kiln-confine");
const N: usize = 500;
const WARMUP: usize = 20;
const STARTS: usize = 200;
const TRUE: &str = "/bin/true";

fn through(helper: &Path, policy: &Policy) -> Command {
    kiln_confine::command(helper, policy, None, Path::new(TRUE)).unwrap()
}

fn quiet(mut cmd: Command) -> Command {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The command as the host builds it for a program.
fn host_like(dir: &Path) -> Command {
    let mut cmd = Command::new(TRUE);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(dir)
        .process_group(0);
    quiet(cmd)
}

struct Variant {
    name: String,
    time: Box<dyn FnMut() -> Duration>,
    times: Vec<Duration>,
}

fn variant(name: impl Into<String>, time: impl FnMut() -> Duration + 'static) -> Variant {
    Variant {
        name: name.into(),
        time: Box::new(time),
        times: Vec::with_capacity(N),
    }
}

/// Spawn and wait, from this thread.
fn spawned(name: impl Into<String>, make: impl Fn() -> Command + 'static) -> Variant {
    let name = name.into();
    let label = name.clone();
    variant(name, move || {
        let mut cmd = quiet(make());
        let t = Instant::now();
        let status = cmd.status().unwrap();
        let elapsed = t.elapsed();
        assert!(status.code().is_some(), "{label}: {status:?}");
        elapsed
    })
}

/// Test cgroups a launched program is born in (v2) or joins (v1 `tasks`),
/// removed when dropped.
#[derive(Default)]
struct Cgroups {
    v2_dir: Option<std::fs::File>,
    v1_tasks: Option<std::fs::File>,
    dirs: Vec<PathBuf>,
}

impl Cgroups {
    fn make(v2: bool, v1: bool) -> Option<Cgroups> {
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let mut c = Cgroups::default();
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("kiln-confine-bench-{}-{n}", std::process::id());
        if v2 {
            let dir = Path::new("/sys/fs/cgroup/unified").join(&name);
            std::fs::create_dir(&dir).ok()?;
            c.dirs.push(dir.clone());
            c.v2_dir = Some(std::fs::File::open(&dir).ok()?);
        }
        if v1 {
            let dir = Path::new("/sys/fs/cgroup/pids").join(&name);
            std::fs::create_dir(&dir).ok()?;
            c.dirs.push(dir.clone());
            let tasks = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("tasks"));
            c.v1_tasks = Some(tasks.ok()?);
        }
        Some(c)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Launch with a [`Launcher`] from this thread and wait, as the host would.
fn launched(
    name: impl Into<String>,
    launcher: Launcher,
    dir: PathBuf,
    cgroups: Cgroups,
) -> Variant {
    use std::ffi::CString;
    use std::os::fd::AsFd;
    let name = name.into();
    let label = name.clone();
    let program = CString::new(TRUE).unwrap();
    let args = vec![program.clone()];
    let env = vec![CString::new("PATH=/usr/bin:/bin").unwrap()];
    let cwd = CString::new(dir.to_str().unwrap()).unwrap();
    variant(name, move || {
        let null = std::fs::File::open("/dev/null").unwrap();
        let t = Instant::now();
        let child = launcher
            .launch(&Launch {
                program: &program,
                args: &args,
                env: &env,
                cwd: &cwd,
                stdin: null.as_fd(),
                stdout: null.as_fd(),
                stderr: null.as_fd(),
                process_group: true,
                cgroup: cgroups.v2_dir.as_ref().map(|f| f.as_fd()),
                join: &cgroups
                    .v1_tasks
                    .iter()
                    .map(|f| f.as_fd())
                    .collect::<Vec<_>>(),
            })
            .unwrap();
        // SAFETY: a zeroed siginfo is a valid out-parameter.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                std::os::fd::AsRawFd::as_raw_fd(&child.pidfd) as libc::id_t,
                &mut info,
                libc::WEXITED,
            )
        };
        let elapsed = t.elapsed();
        assert_eq!(r, 0, "{label}");
        assert_eq!(unsafe { info.si_status() }, 0, "{label}");
        elapsed
    })
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[test]
#[ignore]
fn spawn_overhead() {
    let rw = tempfile::tempdir().unwrap();
    let dir = rw.path().to_path_buf();
    let mut typical = Policy::system();
    typical.read_write.push(dir.clone());
    typical.rlimits.cpu_seconds = Some(3600);
    typical.rlimits.file_size_bytes = Some(1 << 34);
    typical.rlimits.open_files = Some(1024);
    typical.rlimits.address_space_bytes = Some(1 << 36);
    let mut allowed = typical.clone();
    allowed.network = Network::Allowed;
    let mut usr_only = allowed.clone();
    usr_only.read_only = vec!["/usr".into()];
    usr_only.read_write.clear();
    usr_only.rlimits = Default::default();
    let holder = SharedNetns::start(Path::new(HELPER)).unwrap();
    let mut shared = typical.clone();
    shared.network = holder.network();
    let mut no_limits_allowed = allowed.clone();
    no_limits_allowed.rlimits = Default::default();
    let mut no_limits_shared = shared.clone();
    no_limits_shared.rlimits = Default::default();

    // Preparing a launcher: opening the granted paths into a ruleset.
    println!("Launcher::new, median of {STARTS}:");
    for (name, policy) in [
        ("system paths, net allowed", &no_limits_allowed),
        ("system paths + rlimits, shared netns", &shared),
    ] {
        let mut starts = Vec::with_capacity(STARTS);
        for _ in 0..STARTS {
            let t = Instant::now();
            let l = Launcher::new(policy).unwrap();
            starts.push(t.elapsed());
            drop(l);
        }
        println!("{:<52} {:>8} us", name, median(&mut starts).as_micros());
    }
    println!();

    let helper = PathBuf::from(HELPER);
    let mut variants = vec![spawned("direct", || Command::new(TRUE))];
    variants.push(spawned("direct, environment cleared", || {
        let mut cmd = Command::new(TRUE);
        cmd.env_clear();
        cmd
    }));
    {
        let dir = dir.clone();
        variants.push(spawned("direct, host-like command", move || {
            host_like(&dir)
        }));
    }
    for (name, policy) in [
        ("launcher, system paths, net allowed", &no_limits_allowed),
        ("launcher, system paths, shared netns", &no_limits_shared),
        ("launcher, system paths + rlimits, shared netns", &shared),
    ] {
        let launcher = Launcher::new(policy).unwrap();
        variants.push(launched(name, launcher, dir.clone(), Cgroups::default()));
    }
    for (name, v2, v1) in [
        ("launcher, shared netns, born in a v2 cgroup", true, false),
        (
            "launcher, shared netns, joins a v1 pids cgroup",
            false,
            true,
        ),
        ("launcher, shared netns, both", true, true),
    ] {
        if let Some(cgroups) = Cgroups::make(v2, v1) {
            let launcher = Launcher::new(&no_limits_shared).unwrap();
            variants.push(launched(name, launcher, dir.clone(), cgroups));
        }
    }
    {
        let (h, p) = (helper.clone(), no_limits_shared.clone());
        variants.push(spawned("helper, system paths, shared netns", move || {
            through(&h, &p)
        }));
    }
    let mut helpers = vec![("", helper)];
    if let Some(other) = std::env::var_os("KILN_CONFINE_BENCH_HELPER") {
        helpers.push(("[alt] ", PathBuf::from(other)));
    }
    for (tag, h) in helpers {
        let (a, b, c, d, e) = (h.clone(), h.clone(), h.clone(), h.clone(), allowed.clone());
        variants.push(spawned(
            format!("{tag}helper start-up only (usage error)"),
            move || Command::new(&a),
        ));
        let p = usr_only.clone();
        variants.push(spawned(
            format!("{tag}helper, Landlock /usr only"),
            move || through(&b, &p),
        ));
        variants.push(spawned(
            format!("{tag}helper, system paths + rlimits, net allowed"),
            move || through(&c, &e),
        ));
        let p = typical.clone();
        variants.push(spawned(
            format!("{tag}helper, same, fresh netns"),
            move || through(&d, &p),
        ));
        let p = shared.clone();
        variants.push(spawned(
            format!("{tag}helper, same, shared netns"),
            move || through(&h, &p),
        ));
    }

    for round in 0..N + WARMUP {
        for v in variants.iter_mut() {
            let t = (v.time)();
            if round >= WARMUP {
                v.times.push(t);
            }
        }
    }

    println!("N={N} spawn + wait of {TRUE} per variant, interleaved; system paths:");
    println!("  {:?}\n", kiln_confine::system_read_only_paths());
    println!(
        "{:<52} {:>8} {:>8} {:>9} {:>8}",
        "", "median", "p10", "overhead", "ratio"
    );
    println!(
        "{:<52} {:>8} {:>8} {:>9} {:>8}",
        "", "us", "us", "us", "/direct"
    );
    let base = median(&mut variants[0].times.clone());
    for v in variants.iter_mut() {
        let m = median(&mut v.times);
        println!(
            "{:<52} {:>8} {:>8} {:>9} {:>8.2}",
            v.name,
            m.as_micros(),
            v.times[N / 10].as_micros(),
            m.as_micros() as i128 - base.as_micros() as i128,
            m.as_secs_f64() / base.as_secs_f64(),
        );
    }

    drop(holder);
}
