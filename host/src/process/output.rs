//! A program's output on its way out: drained from its pipes into the log
//! files as produced, copied (capped) into memory for the plugin, and split
//! into lines for live events.

use super::ProcessShared;
use crate::engine::lock;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Where live output lines go.
#[derive(Clone)]
pub struct LineSink {
    /// Whether anyone wants lines now; asked once per chunk of output, so a
    /// flood nobody watches costs no splitting.
    pub wanted: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Receives a line (`true` for stderr).
    pub line: Arc<dyn Fn(bool, &str) + Send + Sync>,
}

/// Longest line passed to a [`LineSink`]; the rest of a longer line (or of
/// binary output without newlines) is cut, the log file keeps it all.
pub const MAX_LINE: usize = 1024;

/// Splits a stream into lines for a [`LineSink`], with bounded memory.
pub(super) struct LineSplitter {
    pub(super) sink: LineSink,
    pub(super) stderr: bool,
    pub(super) line: Vec<u8>,
    /// The current line passed `MAX_LINE` and was sent already.
    pub(super) overlong: bool,
}

impl LineSplitter {
    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (part, rest, end) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            if !self.overlong {
                let room = MAX_LINE - self.line.len();
                self.line.extend_from_slice(&part[..part.len().min(room)]);
                if part.len() > room {
                    self.emit();
                    self.overlong = true;
                }
            }
            if end {
                if !self.overlong {
                    self.emit();
                }
                self.overlong = false;
            }
            bytes = rest;
        }
    }

    /// Nobody listens: forget the partial line.
    pub(super) fn reset(&mut self) {
        self.line.clear();
        self.overlong = false;
    }

    pub(super) fn finish(&mut self) {
        if !self.line.is_empty() && !self.overlong {
            self.emit();
        }
    }

    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        (self.sink.line)(self.stderr, text.trim_end_matches('\r'));
        self.line.clear();
    }
}

/// Bytes read from a pipe at a time: small for the many programs that
/// write little; a drain that fills it grows it, and the pipe with it, so a
/// fast writer wakes the drain less often.
const FIRST_CHUNK: usize = 64 << 10;
const BIG_CHUNK: usize = 1 << 20;

pub(super) async fn drain(
    pipe: Option<impl AsyncRead + Unpin + std::os::fd::AsRawFd>,
    mut log: std::fs::File,
    shared: Arc<ProcessShared>,
    stderr: bool,
    mut lines: Option<LineSplitter>,
) {
    use std::io::Write;
    let Some(mut pipe) = pipe else { return };
    let mut buf = vec![0u8; FIRST_CHUNK];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if n == buf.len() && buf.len() < BIG_CHUNK {
            // SAFETY: F_SETPIPE_SZ only resizes the pipe's buffer; failure
            // (above the system's pipe-max-size) keeps the default.
            unsafe {
                libc::fcntl(
                    pipe.as_raw_fd(),
                    libc::F_SETPIPE_SZ,
                    BIG_CHUNK as libc::c_int,
                );
            }
            let mut bigger = vec![0u8; BIG_CHUNK];
            bigger[..n].copy_from_slice(&buf[..n]);
            buf = bigger;
        }
        // Written as produced, so the log on disk is the full record even if
        // the job dies later. A write to a regular file lands in the page
        // cache at once; handing it to another thread costs more than it.
        if log.write_all(&buf[..n]).is_err() {
            // Disk trouble: keep draining so the program never blocks on a
            // full pipe; the capture still holds what fits.
        }
        let cap = if stderr {
            &shared.stderr
        } else {
            &shared.stdout
        };
        lock(cap).push(&buf[..n]);
        if let Some(lines) = lines.as_mut() {
            if (lines.sink.wanted)() {
                lines.push(&buf[..n]);
            } else {
                lines.reset();
            }
        }
    }
    if let Some(lines) = lines.as_mut() {
        lines.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn split(chunks: &[&[u8]]) -> Vec<(bool, String)> {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let mut s = LineSplitter {
            sink: LineSink {
                wanted: Arc::new(|| true),
                line: Arc::new(move |e, l: &str| g.lock().unwrap().push((e, l.to_string()))),
            },
            stderr: true,
            line: Vec::new(),
            overlong: false,
        };
        for c in chunks {
            s.push(c);
        }
        s.finish();
        let v = got.lock().unwrap().clone();
        v
    }

    #[test]
    fn lines_are_split_across_chunks_and_capped() {
        let got = split(&[b"a\nb", b"c\r\n", b"tail"]);
        let lines: Vec<&str> = got.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lines, ["a", "bc", "tail"]);
        let long = vec![b'x'; 3 * MAX_LINE];
        let got = split(&[&long, b"\nnext\n"]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1.len(), MAX_LINE);
        assert_eq!(got[1].1, "next");
    }
}
