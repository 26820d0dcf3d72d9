//! Cost of spawning through the helper and through a [`Spawner`] compared
//! with a plain spawn, and the cost of starting a [`Spawner`].
//!
//! Run: `cargo test --release --test bench -- --ignored --nocapture`
//! (as root: a [`Spawner`] needs capabilities).
//! `KILN_CONFINE_BENCH_HELPER=/path/to/kiln-confine` measures another build
//! of the helper (a statically linked one, say) alongside.
//!
//! Variants run round-robin, so drift on a shared machine hits all alike.

use kiln_confine::{Launch, Launcher, Network, Policy, SharedNetns, Spawner};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HELPER: &str = env!("CARGO_BIN_EXE_kiln-confine");
const N: usize = 500;
const WARMUP: usize = 20;
const STARTS: usize = 200;
const TRUE: &str = "/bin/true";

fn through(helper: &Path, policy: &Policy) -> Command {
    kiln_confine::command(helper, policy, Path::new(TRUE)).unwrap()
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

/// Spawn on the spawner's thread, wait from this one, as the host would.
fn spawned_by(name: impl Into<String>, spawner: Arc<Spawner>, dir: PathBuf) -> Variant {
    let name = name.into();
    let label = name.clone();
    variant(name, move || {
        let mut cmd = host_like(&dir);
        let t = Instant::now();
        let mut child = spawner.run(move || cmd.spawn()).unwrap().unwrap();
        let status = child.wait().unwrap();
        let elapsed = t.elapsed();
        assert!(status.success(), "{label}: {status:?}");
        elapsed
    })
}

/// Launch with a [`Launcher`] from this thread and wait, as the host would.
fn launched(name: impl Into<String>, launcher: Launcher, dir: PathBuf) -> Variant {
    launched_in(name, launcher, dir, None)
}

fn launched_in(
    name: impl Into<String>,
    launcher: Launcher,
    dir: PathBuf,
    procs: Option<std::fs::File>,
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
                cgroup: None,
                join: &procs.iter().map(|f| f.as_fd()).collect::<Vec<_>>(),
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
    // What a spawner can apply: the same without rlimits.
    let mut no_limits_allowed = allowed.clone();
    no_limits_allowed.rlimits = Default::default();
    let mut no_limits_shared = shared.clone();
    no_limits_shared.rlimits = Default::default();
    let mut no_limits_denied = no_limits_shared.clone();
    no_limits_denied.network = Network::Denied;

    // Starting a spawner: a thread, the policy, the filter; and ending it.
    // Measured first: namespaces the helper variants create are torn down
    // asynchronously for seconds afterwards and slow everything around.
    println!("Spawner::start, median of {STARTS} (start, then drop):");
    println!("{:<52} {:>8} {:>8}", "", "start us", "drop us");
    let cases = [
        ("system paths, net allowed", &no_limits_allowed),
        ("system paths, shared netns", &no_limits_shared),
        (
            "system paths, own netns (Network::Denied)",
            &no_limits_denied,
        ),
    ];
    for (name, policy) in cases {
        let mut starts = Vec::with_capacity(STARTS);
        let mut drops = Vec::with_capacity(STARTS);
        for _ in 0..STARTS {
            let t = Instant::now();
            let s = Spawner::start(policy).unwrap();
            starts.push(t.elapsed());
            let t = Instant::now();
            drop(s);
            drops.push(t.elapsed());
        }
        println!(
            "{:<52} {:>8} {:>8}",
            name,
            median(&mut starts).as_micros(),
            median(&mut drops).as_micros()
        );
    }
    println!();
    std::thread::sleep(Duration::from_secs(2));

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
            let mut cmd = Command::new(TRUE);
            cmd.env_clear()
                .env("PATH", "/usr/bin:/bin")
                .current_dir(&dir)
                .process_group(0);
            cmd
        }));
    }
    let spawner_allowed = Arc::new(Spawner::start(&no_limits_allowed).unwrap());
    let spawner_shared = Arc::new(Spawner::start(&no_limits_shared).unwrap());
    {
        let s = spawner_allowed.clone();
        variants.push(variant(
            "spawner, hand-over only (empty closure)",
            move || {
                let t = Instant::now();
                s.run(|| ()).unwrap();
                t.elapsed()
            },
        ));
    }
    variants.push(spawned_by(
        "spawner, system paths, net allowed",
        spawner_allowed.clone(),
        dir.clone(),
    ));
    variants.push(spawned_by(
        "spawner, system paths, shared netns",
        spawner_shared.clone(),
        dir.clone(),
    ));
    for (name, policy) in [
        ("launcher, system paths, net allowed", &no_limits_allowed),
        ("launcher, system paths, shared netns", &no_limits_shared),
        ("launcher, system paths + rlimits, shared netns", &shared),
    ] {
        variants.push(launched(name, Launcher::new(policy).unwrap(), dir.clone()));
    }
    let v1 = Path::new("/sys/fs/cgroup/pids/kiln-bench-launch");
    let _ = std::fs::create_dir(v1);
    if let Ok(f) = std::fs::OpenOptions::new()
        .write(true)
        .open(v1.join("tasks"))
    {
        variants.push(launched_in(
            "launcher, shared netns, joins v1 pids",
            Launcher::new(&no_limits_shared).unwrap(),
            dir.clone(),
            Some(f),
        ));
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
    drop((spawner_allowed, spawner_shared));

    drop(holder);
}
