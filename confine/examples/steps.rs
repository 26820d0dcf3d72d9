use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
fn main() {
    // syscall micro costs
    let t = Instant::now();
    for _ in 0..10000 { unsafe { libc::prctl(libc::PR_CAPBSET_READ, 5, 0, 0, 0) }; }
    eprintln!("prctl: {:?}/call", t.elapsed() / 10000);
    let t = Instant::now();
    for _ in 0..10000 { unsafe { libc::getppid() }; }
    eprintln!("getppid: {:?}/call", t.elapsed() / 10000);
    // interleaved spawns: args "label=cmd arg arg" separated by ';'
    let specs: Vec<(String, Vec<String>)> = std::env::args().skip(1).map(|s| {
        let (l, c) = s.split_once('=').unwrap();
        (l.to_string(), c.split(' ').map(String::from).collect())
    }).collect();
    let n = 400;
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); specs.len()];
    for round in 0..n + 20 {
        for (i, (_, c)) in specs.iter().enumerate() {
            let t = Instant::now();
            let s = Command::new(&c[0]).args(&c[1..]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
            let e = t.elapsed();
            if round >= 20 { times[i].push(e); }
            let _ = s;
        }
    }
    for (i, (l, _)) in specs.iter().enumerate() {
        times[i].sort();
        eprintln!("{l:<40} median {:>6}us  p10 {:>6}us", times[i][n / 2].as_micros(), times[i][n / 10].as_micros());
    }
}
