//! Cost of spawning through the helper compared with a plain spawn.
//! Run: `cargo test --release --test bench -- --ignored --nocapture`.

use kiln_confine::{Network, Policy, SharedNetns};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HELPER: &str = env!("CARGO_BIN_EXE_kiln-confine");
const N: usize = 500;
const TRUE: &str = "/bin/true";

/// Kernel CPU time of the whole machine (all CPUs, system + softirq), in
/// clock ticks: netns teardown runs in kernel workers, not in the child.
fn kernel_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or_default();
    let f: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq
    f.get(2).copied().unwrap_or(0) + f.get(5).copied().unwrap_or(0) + f.get(6).copied().unwrap_or(0)
}

struct Stats {
    median: Duration,
    mean: Duration,
    kernel_ms_per_1000: f64,
}

fn measure(mut make: impl FnMut() -> Command) -> Stats {
    for _ in 0..20 {
        let _ = make().status();
    }
    let ticks = kernel_ticks();
    let mut times = Vec::with_capacity(N);
    for _ in 0..N {
        let mut cmd = make();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let t = Instant::now();
        let status = cmd.status().unwrap();
        times.push(t.elapsed());
        assert!(status.code().is_some());
    }
    // Let deferred namespace cleanup finish inside the measured window.
    std::thread::sleep(Duration::from_millis(300));
    let ticks = kernel_ticks() - ticks;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    times.sort();
    Stats {
        median: times[N / 2],
        mean: times.iter().sum::<Duration>() / N as u32,
        kernel_ms_per_1000: ticks as f64 / hz * 1000.0 / N as f64 * 1000.0 / 1000.0,
    }
}

fn through(policy: &Policy) -> Command {
    kiln_confine::command(Path::new(HELPER), policy, Path::new(TRUE)).unwrap()
}

#[test]
#[ignore]
fn spawn_overhead() {
    let rw = tempfile::tempdir().unwrap();
    let mut typical = Policy::system();
    typical.read_write.push(rw.path().to_path_buf());
    typical.read_only.push("/opt".into());
    typical.rlimits.cpu_seconds = Some(3600);
    typical.rlimits.file_size_bytes = Some(1 << 34);
    typical.rlimits.open_files = Some(1024);
    typical.rlimits.address_space_bytes = Some(1 << 36);

    let mut allowed = typical.clone();
    allowed.network = Network::Allowed;
    let mut one_rule = allowed.clone();
    one_rule.read_only.clear();
    one_rule.read_write.clear();
    let holder = SharedNetns::start(Path::new(HELPER)).unwrap();
    let mut shared = typical.clone();
    shared.network = holder.network();

    let direct = measure(|| Command::new(TRUE));
    let rows: Vec<(&str, Stats)> = vec![
        (
            "helper startup only (usage error, no policy work)",
            measure(|| Command::new(HELPER)),
        ),
        (
            "helper, network allowed, Landlock with 1 rule",
            measure(|| through(&one_rule)),
        ),
        (
            "helper, network allowed, typical paths + rlimits",
            measure(|| through(&allowed)),
        ),
        (
            "helper, typical, fresh netns per spawn",
            measure(|| through(&typical)),
        ),
        (
            "helper, typical, shared netns (setns)",
            measure(|| through(&shared)),
        ),
    ];
    println!(
        "N={N}, spawn + wait of {TRUE}; kernel CPU includes deferred namespace teardown\n"
    );
    println!(
        "{:<52} {:>10} {:>10} {:>12} {:>14}",
        "", "median us", "mean us", "overhead us", "kernel ms/1000"
    );
    println!(
        "{:<52} {:>10} {:>10} {:>12} {:>14.0}",
        "direct",
        direct.median.as_micros(),
        direct.mean.as_micros(),
        0,
        direct.kernel_ms_per_1000
    );
    for (name, s) in &rows {
        println!(
            "{:<52} {:>10} {:>10} {:>12} {:>14.0}",
            name,
            s.median.as_micros(),
            s.mean.as_micros(),
            s.median.as_micros() as i128 - direct.median.as_micros() as i128,
            s.kernel_ms_per_1000
        );
    }
    println!(
        "\nratio typical/shared vs direct (median): {:.2}x / {:.2}x",
        rows[3].1.median.as_secs_f64() / direct.median.as_secs_f64(),
        rows[4].1.median.as_secs_f64() / direct.median.as_secs_f64()
    );
}
