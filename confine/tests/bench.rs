//! Cost of spawning through the helper compared with a plain spawn.
//!
//! Run: `cargo test --release --test bench -- --ignored --nocapture`.
//! `KILN_CONFINE_BENCH_HELPER=/path/to/kiln-confine` measures another build
//! of the helper (a statically linked one, say) alongside.
//!
//! Variants run round-robin, so drift on a shared machine hits all alike.

use kiln_confine::{Network, Policy, SharedNetns};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HELPER: &str = env!("CARGO_BIN_EXE_kiln-confine");
const N: usize = 500;
const WARMUP: usize = 20;
const TRUE: &str = "/bin/true";

fn through(helper: &Path, policy: &Policy) -> Command {
    kiln_confine::command(helper, policy, Path::new(TRUE)).unwrap()
}

struct Variant {
    name: String,
    make: Box<dyn Fn() -> Command>,
    times: Vec<Duration>,
}

fn variant(name: impl Into<String>, make: impl Fn() -> Command + 'static) -> Variant {
    Variant {
        name: name.into(),
        make: Box::new(make),
        times: Vec::with_capacity(N),
    }
}

fn time_once(v: &Variant) -> Duration {
    let mut cmd = (v.make)();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t = Instant::now();
    let status = cmd.status().unwrap();
    let elapsed = t.elapsed();
    assert!(status.code().is_some(), "{}: {status:?}", v.name);
    elapsed
}

#[test]
#[ignore]
fn spawn_overhead() {
    let rw = tempfile::tempdir().unwrap();
    let mut typical = Policy::system();
    typical.read_write.push(rw.path().to_path_buf());
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

    let helper = PathBuf::from(HELPER);
    let mut variants = vec![variant("direct", || Command::new(TRUE))];
    let mut helpers = vec![("", helper)];
    if let Some(other) = std::env::var_os("KILN_CONFINE_BENCH_HELPER") {
        helpers.push(("[alt] ", PathBuf::from(other)));
    }
    for (tag, h) in helpers {
        let (a, b, c, d, e) = (h.clone(), h.clone(), h.clone(), h.clone(), allowed.clone());
        variants.push(variant(
            format!("{tag}helper start-up only (usage error)"),
            move || Command::new(&a),
        ));
        let p = usr_only.clone();
        variants.push(variant(
            format!("{tag}helper, Landlock /usr only"),
            move || through(&b, &p),
        ));
        variants.push(variant(
            format!("{tag}helper, system paths + rlimits, net allowed"),
            move || through(&c, &e),
        ));
        let p = typical.clone();
        variants.push(variant(
            format!("{tag}helper, same, fresh netns"),
            move || through(&d, &p),
        ));
        let p = shared.clone();
        variants.push(variant(
            format!("{tag}helper, same, shared netns"),
            move || through(&h, &p),
        ));
    }

    for round in 0..N + WARMUP {
        for v in variants.iter_mut() {
            let t = time_once(v);
            if round >= WARMUP {
                v.times.push(t);
            }
        }
    }

    println!("N={N} spawn + wait of {TRUE} per variant, interleaved; system paths:");
    println!("  {:?}\n", kiln_confine::system_read_only_paths());
    println!("{:<52} {:>9} {:>9} {:>9}", "", "median", "p10", "overhead");
    println!("{:<52} {:>9} {:>9} {:>9}", "", "us", "us", "us");
    let base = {
        let mut t = variants[0].times.clone();
        t.sort();
        t[N / 2]
    };
    for v in variants.iter_mut() {
        v.times.sort();
        let median = v.times[N / 2];
        println!(
            "{:<52} {:>9} {:>9} {:>9}",
            v.name,
            median.as_micros(),
            v.times[N / 10].as_micros(),
            median.as_micros() as i128 - base.as_micros() as i128,
        );
    }
    drop(holder);
}
