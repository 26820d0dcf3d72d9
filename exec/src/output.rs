//! A program's output on its way out: drained from its pipes into the log
//! files as produced, copied (capped) into memory for the plugin, and split
//! into lines for live events.
//!
//! A log file is created when the first bytes of its stream arrive, so a
//! program that writes nothing on a stream leaves no file for it (creating
//! two files per program was most of what starting a short program cost).

use super::relay::{LogTarget, Relay};
use super::{LogFile, ProcessShared};
use crate::lock;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use tokio::io::{Interest, Ready};
use tokio::net::unix::pipe;

/// Receives a warning about a program's output that nobody would otherwise
/// see (its log file could not be created or written).
pub type WarningSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Say `message` through `sink`; without one, as a `tracing` warning.
pub(super) fn warn(sink: Option<&WarningSink>, message: &str) {
    match sink {
        Some(sink) => {
            tracing::debug!("{message}");
            sink(message);
        }
        None => tracing::warn!("{message}"),
    }
}

/// A log file, created (or appended to) on the first write, through its
/// directory's handle: a link, FIFO or hard link planted in its place is
/// refused (and reported), never written through.
pub(super) struct LazyLog {
    place: LogFile,
    file: LogState,
    /// Its descriptor has lost O_APPEND, which `splice` refuses.
    append_dropped: bool,
}

enum LogState {
    NotYet,
    Open(std::fs::File),
    /// Creating or writing it failed (and was reported): the output goes on
    /// to memory only, so the file never has a gap in the middle.
    Failed,
}

impl LazyLog {
    pub(super) fn new(place: LogFile) -> LazyLog {
        LazyLog {
            place,
            file: LogState::NotYet,
            append_dropped: false,
        }
    }

    /// Where a relay's writer thread is to write: the open file, once it
    /// has been written to and has not failed. Appends have left its
    /// offset at its end, and nothing else writes to a program's log, so
    /// dropping O_APPEND (which `splice` refuses) changes nothing that is
    /// written.
    fn relay_target(
        &mut self,
        stream: &'static str,
        warnings: Option<WarningSink>,
    ) -> Option<LogTarget> {
        let LogState::Open(f) = &self.file else {
            return None;
        };
        if !self.append_dropped {
            let fd = f.as_raw_fd();
            // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
            let cleared = unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_APPEND) == 0
            };
            if !cleared {
                return None;
            }
            self.append_dropped = true;
        }
        Some(LogTarget {
            file: f.try_clone().ok()?,
            path: self.place.display(),
            stream,
            warnings,
        })
    }

    /// Writing failed elsewhere (and was reported): later writes are
    /// dropped.
    fn failed(&mut self) {
        self.file = LogState::Failed;
    }

    /// Append `bytes`; the first failure is returned as a message, later
    /// writes are dropped silently.
    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        use std::io::Write;
        if let LogState::NotYet = self.file {
            match self.place.dir.append(&self.place.name) {
                Ok(f) => self.file = LogState::Open(f),
                Err(e) => {
                    self.file = LogState::Failed;
                    return Err(format!(
                        "cannot create {}: {e}",
                        self.place.display().display()
                    ));
                }
            }
        }
        let LogState::Open(f) = &mut self.file else {
            return Ok(());
        };
        f.write_all(bytes).map_err(|e| {
            self.file = LogState::Failed;
            format!("cannot write {}: {e}", self.place.display().display())
        })
    }
}

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

/// One output stream on its way to its log file, the capture and the line
/// sink.
pub(super) struct Drain {
    log: LazyLog,
    shared: Arc<ProcessShared>,
    stderr: bool,
    lines: Option<LineSplitter>,
    warnings: Option<WarningSink>,
    /// Read into its spare capacity: nothing is zeroed that no output
    /// fills. Allocated with the first output: most short programs write
    /// nothing.
    buf: Vec<u8>,
    /// A relay could not be started or failed to move output once: reads
    /// only from then on.
    no_relay: bool,
}

impl Drain {
    pub(super) fn new(
        log: LazyLog,
        shared: Arc<ProcessShared>,
        stderr: bool,
        lines: Option<LineSplitter>,
        warnings: Option<WarningSink>,
    ) -> Drain {
        Drain {
            log,
            shared,
            stderr,
            lines,
            warnings,
            buf: Vec::new(),
            no_relay: false,
        }
    }

    /// Take in what the pipe holds now, without waiting: `true` once its
    /// end was read (every writer gone), `false` while it is empty but
    /// still open. `fd` must be non-blocking.
    pub(super) fn read_now(&mut self, fd: BorrowedFd<'_>) -> std::io::Result<bool> {
        // Until there is more output than this holds, nothing is allocated:
        // most short programs write little or nothing.
        let mut small = [0u8; 4096];
        loop {
            let n = if self.buf.capacity() == 0 {
                // SAFETY: `small` has room for its length.
                unsafe { read_into(fd, small.as_mut_ptr(), small.len())? }
            } else {
                self.buf.clear();
                let spare = self.buf.spare_capacity_mut();
                // SAFETY: the spare capacity has room for its length; the
                // read initialises the first n bytes.
                unsafe {
                    let n = read_into(fd, spare.as_mut_ptr().cast(), spare.len())?;
                    n.inspect(|&n| self.buf.set_len(n))
                }
            };
            match n {
                None => return Ok(false),
                Some(0) => return Ok(true),
                Some(n) if self.buf.capacity() == 0 => {
                    self.deliver(&small[..n]);
                    if n == small.len() {
                        self.buf.reserve_exact(FIRST_CHUNK);
                    }
                }
                Some(_) => self.deliver_buf(),
            }
        }
    }

    /// Drain `fd` as produced, registered with the runtime.
    pub(super) async fn watch(self, fd: OwnedFd) {
        match pipe::Receiver::from_owned_fd_unchecked(fd) {
            Ok(pipe) => self.run(pipe).await,
            // The pipe is closed with the error: the program's writes to it
            // fail from then on, rather than block on a pipe nobody reads.
            Err(e) => {
                let message = format!(
                    "cannot watch the program's {} ({e}): it was closed, and the program's writes to it fail",
                    self.stream()
                );
                warn(self.warnings.as_ref(), &message);
                self.finish();
            }
        }
    }

    /// Take in everything up to the end of the output, as it is produced.
    async fn run(mut self, pipe: pipe::Receiver) {
        loop {
            if self.only_the_log_wants_more() && self.relay_to_log(&pipe).await {
                break;
            }
            self.buf.clear();
            let n = match read_some(&pipe, &mut self.buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if n >= FIRST_CHUNK && self.buf.capacity() < BIG_CHUNK {
                // SAFETY: F_SETPIPE_SZ only resizes the pipe's buffer;
                // failure (above the system's pipe-max-size) keeps the
                // default.
                unsafe {
                    libc::fcntl(
                        pipe.as_raw_fd(),
                        libc::F_SETPIPE_SZ,
                        BIG_CHUNK as libc::c_int,
                    );
                }
                self.buf.reserve_exact(BIG_CHUNK - n);
            }
            self.deliver_buf();
        }
        self.finish();
    }

    /// The end of the output: a last line without a newline goes out.
    pub(super) fn finish(mut self) {
        if let Some(lines) = self.lines.as_mut() {
            lines.finish();
        }
    }

    /// Past the capture's cap, with nobody listening for lines, the rest
    /// of the output only goes to the log file: then it moves there through
    /// a relay, not through the host (see `relay`).
    fn only_the_log_wants_more(&mut self) -> bool {
        if self.no_relay || !lock(self.capture()).is_truncated() {
            return false;
        }
        match self.lines.as_mut() {
            Some(lines) if (lines.sink.wanted)() => false,
            Some(lines) => {
                lines.reset();
                true
            }
            None => true,
        }
    }

    /// Move the output into the log through a relay: `true` at its end,
    /// `false` once someone wants lines again (or the relay failed), with
    /// everything relayed so far in the file.
    async fn relay_to_log(&mut self, pipe: &pipe::Receiver) -> bool {
        let relay = self
            .log
            .relay_target(self.stream(), self.warnings.clone())
            .and_then(|target| Relay::start(target).ok());
        let Some(mut relay) = relay else {
            self.no_relay = true;
            return false;
        };
        let ended = loop {
            if self.lines_wanted() {
                break false;
            }
            match relay.move_some(pipe).await {
                Ok(0) => break true,
                Ok(_) => {}
                // What did not move is still in the program's pipe: reads
                // take it.
                Err(_) => {
                    self.no_relay = true;
                    break false;
                }
            }
        };
        if relay.finish().await.is_err() {
            self.log.failed();
        }
        ended
    }

    fn lines_wanted(&self) -> bool {
        self.lines.as_ref().is_some_and(|l| (l.sink.wanted)())
    }

    fn stream(&self) -> &'static str {
        if self.stderr { "stderr" } else { "stdout" }
    }

    /// The in-memory copy this stream goes to.
    fn capture(&self) -> &std::sync::Mutex<super::Capture> {
        if self.stderr {
            &self.shared.stderr
        } else {
            &self.shared.stdout
        }
    }

    /// Pass on the bytes in `buf`.
    fn deliver_buf(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.deliver(&buf);
        self.buf = buf;
    }

    /// Pass on `bytes`.
    fn deliver(&mut self, bytes: &[u8]) {
        // Written as produced, so the log on disk is the full record even if
        // the job dies later. A write to a regular file lands in the page
        // cache at once; handing it to another thread costs more than it.
        if let Err(why) = self.log.write(bytes) {
            // Disk trouble: keep draining so the program never blocks on a
            // full pipe; the capture still holds what fits.
            let stream = self.stream();
            warn(
                self.warnings.as_ref(),
                &format!(
                    "{why}; the program's {stream} from here on is kept only in memory, up to the output limit"
                ),
            );
        }
        lock(self.capture()).push(bytes);
        if let Some(lines) = self.lines.as_mut() {
            if (lines.sink.wanted)() {
                lines.push(bytes);
            } else {
                lines.reset();
            }
        }
    }
}

/// Read what the program has written into `buf`'s spare capacity; 0 at
/// the end of its output.
///
/// An end the readiness shows alone (hang-up, nothing to read) is taken
/// without a read. The program is exiting then, and its exit holds the
/// pipe's lock while it wakes the readers: a read at that moment waits for
/// the lock, spinning, which on a VM (where the wake-ups exit to the
/// hypervisor) cost a tenth of the host's CPU per short program.
async fn read_some(pipe: &pipe::Receiver, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    loop {
        let ready = pipe.ready(Interest::READABLE).await?;
        if ready.is_read_closed() && (ready & Ready::READABLE).is_empty() {
            return Ok(0);
        }
        if buf.capacity() == 0 {
            buf.reserve_exact(FIRST_CHUNK);
        }
        match pipe.try_read_buf(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

/// One non-blocking read of at most `len` bytes to `dst`: `None` when
/// nothing is there yet.
///
/// # Safety
///
/// `dst` must be valid for writes of `len` bytes.
unsafe fn read_into(
    fd: BorrowedFd<'_>,
    dst: *mut u8,
    len: usize,
) -> std::io::Result<Option<usize>> {
    loop {
        // SAFETY: the caller's contract.
        let n = unsafe { libc::read(fd.as_raw_fd(), dst.cast(), len) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::WouldBlock => return Ok(None),
            std::io::ErrorKind::Interrupted => {}
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn place(dir: &std::path::Path, name: &str) -> LogFile {
        LogFile {
            dir: Arc::new(kiln_fs::DirHandle::open(dir).unwrap()),
            name: name.into(),
        }
    }

    #[test]
    fn a_log_is_created_on_the_first_write_and_a_failure_is_reported_once() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log.txt");
        let mut log = LazyLog::new(place(tmp.path(), "log.txt"));
        assert!(!path.exists());
        log.write(b"one ").unwrap();
        log.write(b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one two");

        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"precious").unwrap();
        std::os::unix::fs::symlink(&outside, tmp.path().join("log_err.txt")).unwrap();
        let mut log = LazyLog::new(place(tmp.path(), "log_err.txt"));
        let why = log.write(b"lost").unwrap_err();
        assert!(
            why.contains("cannot create") && why.contains("symbolic link"),
            "{why}"
        );
        assert!(log.write(b"more").is_ok());
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
    }

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

        got.lock().unwrap().clone()
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
