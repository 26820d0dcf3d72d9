//! What the confinement tests share: running a program to its end with a
//! bound, and small probes of what it could reach.

#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

pub const HELPER: &str = env!("CARGO_BIN_EXE_kiln-confine");

pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Collects a piped child's output and waits at most 30 s, so a
/// confinement bug that lets a program hang fails the test instead of the
/// suite.
pub fn finish(mut child: Child) -> Run {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("program did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// bash's /dev/tcp: the redirection's connect happens in bash itself.
pub fn connect_script(port: u16) -> String {
    format!("echo hello > /dev/tcp/127.0.0.1/{port}")
}

/// Whether anything connected to `listener` within 2 s.
pub fn accepted(listener: &TcpListener) -> bool {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if listener.accept().is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A path in /tmp no test has used.
pub fn unique(prefix: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    PathBuf::from(format!("/tmp/{prefix}-{}-{nanos}", std::process::id()))
}
