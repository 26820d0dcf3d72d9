//! Past the capture's cap, with nobody listening for lines, a program's
//! output has only its log file left to go to. It then moves there without
//! passing through the host's memory: spliced from the program's pipe into
//! a relay pipe (references to the pipe's pages move, no bytes are copied),
//! and from the relay into the file by a thread of the relay's own.
//!
//! Why relays and a thread: a splice into a file holds the source pipe's
//! lock for as long as the file system takes to write, and whoever writes
//! into that pipe meanwhile waits on the lock, spinning. Spliced straight
//! from the program's pipe into the file, the program and the file's
//! writing took turns (about 0.6 of a plain pipe's throughput here). With
//! one relay, the runtime thread filling it spun on the relay's lock
//! instead, using 30-60% of a CPU the program needed. So there are two
//! relays, filled and written in turn: the thread writes one while the
//! runtime fills the other, and neither waits on a lock the other holds.
//!
//! The thread is started per stream once past the cap (16 MiB by default),
//! so its cost is spread over at least that much output, and it ends when
//! the relay is finished (at the end of the output, or when someone wants
//! lines again) or dropped.

use super::output::{WarningSink, warn};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;
use tokio::io::{Interest, Ready};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc as tokio_mpsc, oneshot};

/// Each relay's size, and what one splice moves at most (the size of a
/// program pipe a busy drain has grown).
const RELAY_SIZE: usize = 1 << 20;

/// Stack of the relay's writer thread: it holds no buffer of its own there.
const WRITER_STACK: usize = 128 << 10;

/// How far ahead of what it writes the writer reserves the log's disk
/// space (`fallocate`, the file's size unchanged). Writing into reserved
/// space skips the file system's per-block work of delayed allocation:
/// buffered writes ran 30-60% faster here. What is left over is given back
/// when the relay ends.
const RESERVE_AHEAD: u64 = 64 << 20;

/// Two relays from a program's pipe to its log file, and their writer.
pub(super) struct Relay {
    /// The relays' write ends (non-blocking).
    relays: [OwnedFd; 2],
    /// The relay being filled; the other is empty or being written.
    filling: usize,
    /// Bytes in the relay being filled.
    filled: usize,
    /// The writer thread is writing the other relay.
    writer_busy: bool,
    /// Hands a filled relay to the writer thread.
    to_writer: mpsc::Sender<Handoff>,
    /// One message per handoff, once it is in the file.
    written: tokio_mpsc::UnboundedReceiver<()>,
    /// The writer thread's end: `Err` with the (reported) write failure.
    done: oneshot::Receiver<Result<(), String>>,
}

/// A filled relay for the writer thread: which, and how many bytes.
struct Handoff {
    relay: usize,
    len: usize,
}

/// Where the relay's writer thread writes, and whom it tells of a failure.
pub(super) struct LogTarget {
    /// The log file, open for writing at its end, without O_APPEND (which
    /// `splice` refuses).
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) stream: &'static str,
    pub(super) warnings: Option<WarningSink>,
}

impl Relay {
    /// Create the relay pipes and start their writer thread.
    pub(super) fn start(target: LogTarget) -> std::io::Result<Relay> {
        let (read_0, write_0) = relay_pipe()?;
        let (read_1, write_1) = relay_pipe()?;
        let (to_writer, handoffs) = mpsc::channel();
        let (tell_written, written) = tokio_mpsc::unbounded_channel();
        let (tell_done, done) = oneshot::channel();
        let mut file = &target.file;
        let position = std::io::Seek::stream_position(&mut file)?;
        let writer = Writer {
            relays: [File::from(read_0), File::from(read_1)],
            target,
            failure: None,
            position,
            reserved_to: Some(position),
        };
        std::thread::Builder::new()
            .name("kiln-log-writer".into())
            .stack_size(WRITER_STACK)
            .spawn(move || {
                let result = writer.run(handoffs, tell_written);
                let _ = tell_done.send(result);
            })?;
        Ok(Relay {
            relays: [write_0, write_1],
            filling: 0,
            filled: 0,
            writer_busy: false,
            to_writer,
            written,
            done,
        })
    }

    /// Move what the program has written from `from` towards the file; 0
    /// at the end of its output.
    pub(super) async fn move_some(&mut self, from: &pipe::Receiver) -> std::io::Result<usize> {
        loop {
            self.hand_over_if_free()?;
            // What waits in the relay being filled goes on to the file
            // once the writer is free, whether or not the program writes
            // more meanwhile: the log keeps up while it pauses.
            let ready = if self.writer_busy && self.filled > 0 {
                tokio::select! {
                    ready = from.ready(Interest::READABLE) => ready?,
                    written = self.written.recv() => {
                        written.ok_or_else(writer_gone)?;
                        self.writer_busy = false;
                        continue;
                    }
                }
            } else {
                from.ready(Interest::READABLE).await?
            };
            if ready.is_read_closed() && (ready & Ready::READABLE).is_empty() {
                return Ok(0);
            }
            // A splice that moves nothing had an empty program pipe or a
            // full relay. The program pipe's readiness may be cleared only
            // if it holds nothing: cleared while holding output, it would
            // not be woken again by a program blocked on it.
            let moved = from.try_io(|| match self.splice_from(from) {
                Err(e) if e.kind() == ErrorKind::WouldBlock && readable(from)? => Ok(None),
                result => result.map(Some),
            });
            match moved {
                Ok(Some(n)) => {
                    self.filled += n;
                    self.hand_over_if_free()?;
                    return Ok(n);
                }
                // Full: the writer has the other relay (a free writer
                // would have been handed this one).
                Ok(None) => self.wait_for_writer().await?,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One splice from the program pipe into the relay being filled,
    /// without waiting.
    fn splice_from(&self, from: &pipe::Receiver) -> std::io::Result<usize> {
        // SAFETY: splice between two pipes we own, no offsets.
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                self.relays[self.filling].as_raw_fd(),
                std::ptr::null_mut(),
                RELAY_SIZE,
                libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
            )
        };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Give the writer the relay being filled if it holds anything and the
    /// writer is free; fill the other from then on.
    fn hand_over_if_free(&mut self) -> std::io::Result<()> {
        if self.writer_busy && self.written.try_recv().is_ok() {
            self.writer_busy = false;
        }
        if self.writer_busy || self.filled == 0 {
            return Ok(());
        }
        let handoff = Handoff {
            relay: self.filling,
            len: self.filled,
        };
        self.to_writer.send(handoff).map_err(|_| writer_gone())?;
        self.writer_busy = true;
        self.filling = 1 - self.filling;
        self.filled = 0;
        Ok(())
    }

    /// Wait until the writer has written what it was handed.
    async fn wait_for_writer(&mut self) -> std::io::Result<()> {
        if self.writer_busy {
            self.written.recv().await.ok_or_else(writer_gone)?;
            self.writer_busy = false;
        }
        self.hand_over_if_free()
    }

    /// Wait until everything relayed is in the file and end the writer
    /// thread: `Err` with the message of a write failure (reported
    /// already).
    pub(super) async fn finish(mut self) -> Result<(), String> {
        let flushed = async {
            self.wait_for_writer().await?;
            self.wait_for_writer().await
        };
        if let Err(e) = flushed.await {
            return Err(e.to_string());
        }
        drop(self.to_writer);
        self.done
            .await
            .unwrap_or_else(|_| Err(writer_gone().to_string()))
    }
}

fn writer_gone() -> std::io::Error {
    std::io::Error::other("the log's writer thread stopped")
}

/// A relay pipe: its read end blocking, for the writer thread; its write
/// end non-blocking, for the runtime.
fn relay_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (read_end, write_end) = super::child::pipe()?;
    let write_end = super::child::nonblocking(write_end)?;
    // SAFETY: F_SETPIPE_SZ only resizes the pipe's buffer; failure (above
    // the system's pipe-max-size) keeps the default.
    unsafe {
        libc::fcntl(
            write_end.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            RELAY_SIZE as libc::c_int,
        );
    }
    Ok((read_end, write_end))
}

/// Whether the program pipe holds output (or has ended) now.
fn readable(pipe: &pipe::Receiver) -> std::io::Result<bool> {
    let mut pollfd = libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own, no wait.
    if unsafe { libc::poll(&mut pollfd, 1, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // A hang-up counts: the next splice reports the end.
    Ok(pollfd.revents != 0)
}

/// The writer thread's side.
struct Writer {
    /// The relays' read ends (blocking).
    relays: [File; 2],
    target: LogTarget,
    /// Writing failed (and was reported): the rest is read and dropped, so
    /// that the program never waits on relays nobody empties.
    failure: Option<String>,
    /// The file's offset: where the next bytes go.
    position: u64,
    /// The end of the space reserved so far; `None` once the file system
    /// refused to reserve (it may not know how).
    reserved_to: Option<u64>,
}

impl Writer {
    /// Write each relay handed over, in order, and say so, until the relay
    /// is finished or dropped.
    fn run(
        mut self,
        handoffs: mpsc::Receiver<Handoff>,
        written: tokio_mpsc::UnboundedSender<()>,
    ) -> Result<(), String> {
        for Handoff { relay, len } in handoffs {
            self.write(relay, len);
            let _ = written.send(());
        }
        self.give_back_reserve();
        self.failure.map_or(Ok(()), Err)
    }

    /// Reserve disk space far enough ahead for `len` more bytes.
    fn reserve(&mut self, len: usize) {
        let Some(reserved_to) = self.reserved_to else {
            return;
        };
        let needed = self.position + len as u64;
        if needed <= reserved_to {
            return;
        }
        let end = needed + RESERVE_AHEAD;
        // SAFETY: fallocate on a descriptor we own; KEEP_SIZE leaves the
        // file's contents and size as they are.
        let reserved = unsafe {
            libc::fallocate(
                self.target.file.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                reserved_to as libc::off_t,
                (end - reserved_to) as libc::off_t,
            )
        } == 0;
        self.reserved_to = reserved.then_some(end);
    }

    /// Free the reserved space past the end of the log. Truncating a file
    /// to its own size frees the blocks reserved beyond it, and never cuts
    /// what was written.
    fn give_back_reserve(&mut self) {
        if self.reserved_to.is_some_and(|end| end > self.position) {
            let file = &self.target.file;
            if let Ok(meta) = file.metadata() {
                let _ = file.set_len(meta.len().max(self.position));
            }
        }
    }

    /// Move `len` bytes from relay `relay` into the file: by splices, or
    /// copied where the file refuses splices.
    fn write(&mut self, relay: usize, mut len: usize) {
        if self.failure.is_none() {
            self.reserve(len);
        }
        while len > 0 && self.failure.is_none() {
            // SAFETY: splice between two descriptors we own, no offsets.
            let n = unsafe {
                libc::splice(
                    self.relays[relay].as_raw_fd(),
                    std::ptr::null_mut(),
                    self.target.file.as_raw_fd(),
                    std::ptr::null_mut(),
                    len,
                    libc::SPLICE_F_MOVE,
                )
            };
            let e = std::io::Error::last_os_error();
            match n {
                n if n > 0 => {
                    len -= n as usize;
                    self.position += n as u64;
                }
                // The relay cannot end early: its write end is still ours.
                0 => break,
                _ if e.kind() == ErrorKind::Interrupted => {}
                // The bytes are still in the relay: copying takes them, and
                // reports a failing file as it would have.
                _ => {
                    len = self.copy(relay, len);
                    break;
                }
            }
        }
        self.skip(relay, len);
    }

    /// Copy `len` bytes of relay `relay` into the file through a buffer;
    /// what is left of `len` after a write failure.
    fn copy(&mut self, relay: usize, mut len: usize) -> usize {
        let mut buf = vec![0u8; 64 << 10];
        while len > 0 {
            let want = len.min(buf.len());
            let n = match self.relays[relay].read(&mut buf[..want]) {
                Ok(0) => return 0,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return 0,
            };
            len -= n;
            if let Err(e) = self.target.file.write_all(&buf[..n]) {
                self.failed(e);
                return len;
            }
            self.position += n as u64;
        }
        0
    }

    /// Read and drop `len` bytes of relay `relay`.
    fn skip(&mut self, relay: usize, mut len: usize) {
        let mut buf = [0u8; 4096];
        while len > 0 {
            let want = len.min(buf.len());
            match self.relays[relay].read(&mut buf[..want]) {
                Ok(0) => return,
                Ok(n) => len -= n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn failed(&mut self, e: std::io::Error) {
        let LogTarget {
            path,
            stream,
            warnings,
            ..
        } = &self.target;
        let why = format!("cannot write {}: {e}", path.display());
        warn(
            warnings.as_ref(),
            &format!(
                "{why}; the rest of the program's {stream} is lost (its in-memory copy is full)"
            ),
        );
        self.failure = Some(why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncWriteExt;

    /// Feed `bytes` through a relay into `file`; its result and warnings.
    async fn relay_into(file: File, bytes: &[u8]) -> (Result<(), String>, Vec<String>) {
        let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
        let w = warnings.clone();
        let mut relay = Relay::start(LogTarget {
            file,
            path: PathBuf::from("the-log"),
            stream: "stdout",
            warnings: Some(Arc::new(move |m: &str| w.lock().unwrap().push(m.into()))),
        })
        .unwrap();
        // The program's side: a pipe the relay moves from.
        let (mut program, from) = pipe::pipe().unwrap();
        let feed = async {
            program.write_all(bytes).await.unwrap();
            drop(program);
        };
        let mover = async {
            let mut total = 0;
            loop {
                match relay.move_some(&from).await.unwrap() {
                    0 => break total,
                    n => total += n,
                }
            }
        };
        let ((), moved) = tokio::join!(feed, mover);
        assert_eq!(moved, bytes.len());
        let result = relay.finish().await;
        let warnings = warnings.lock().unwrap().clone();
        (result, warnings)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_relay_delivers_everything_to_the_file_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log.txt");
        let mut file = File::create(&path).unwrap();
        file.write_all(b"head:").unwrap();
        let bytes = pattern(5 << 20);
        let (result, warnings) = relay_into(file, &bytes).await;
        assert_eq!(result, Ok(()));
        assert!(warnings.is_empty(), "{warnings:?}");
        let log = std::fs::read(&path).unwrap();
        assert!(log.starts_with(b"head:"));
        assert!(log[5..] == bytes[..], "{} bytes in the log", log.len());
        // The space reserved ahead of the writes was given back.
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&path).unwrap();
        assert!(
            meta.blocks() * 512 < meta.len() + (1 << 20),
            "{} bytes on disk for {} in the file",
            meta.blocks() * 512,
            meta.len()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_file_is_reported_once_and_the_program_is_never_held_up() {
        // /dev/full refuses splices (so the copy is used) and every write.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let (result, warnings) = relay_into(full, &pattern(3 << 20)).await;
        let why = result.unwrap_err();
        assert!(why.contains("cannot write the-log"), "{why}");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("the rest of the program's stdout is lost"),
            "{warnings:?}"
        );
    }
}
