//! Past the capture's cap, with nobody listening for lines, a program's
//! output has only its log file left to go to. It then moves there without
//! passing through the host's memory: spliced from the program's pipe into
//! a relay pipe (references to the pipe's pages move, no bytes are copied),
//! and from the relay into the file by a thread of the relay's own.
//!
//! Why a relay and a thread: a splice into a file holds the source pipe's
//! lock for as long as the file system takes to write, and the program's
//! writes wait on that lock (spinning, mostly). Spliced straight from the
//! program's pipe into the file, the program and the file's writing took
//! turns, at about 0.6 of a plain pipe's throughput here; through the
//! relay, the program's pipe is locked only while page references move,
//! and the file is written while the program goes on writing.
//!
//! The thread is started per stream once past the cap (16 MiB by default),
//! so its cost is spread over at least that much output, and it ends when
//! the relay's write end closes: at the end of the output, when someone
//! wants lines again, or when the drain is dropped.

use super::output::{WarningSink, warn};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use tokio::io::{Interest, Ready};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

/// What one splice moves at most, and the relay's size (that of a program
/// pipe a busy drain has grown).
const RELAY_SIZE: usize = 1 << 20;

/// Stack of the relay's writer thread: it holds no buffer of its own there.
const WRITER_STACK: usize = 128 << 10;

/// A relay from a program's pipe to its log file.
pub(super) struct Relay {
    /// The relay's write end, registered with the runtime.
    into: pipe::Sender,
    /// The writer thread's end: `Err` with the (reported) write failure.
    done: oneshot::Receiver<Result<(), String>>,
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
    /// Create the relay pipe and start its writer thread.
    pub(super) fn start(target: LogTarget) -> std::io::Result<Relay> {
        let (read_end, write_end) = relay_pipe()?;
        let into = pipe::Sender::from_owned_fd_unchecked(write_end)?;
        let (tell, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("kiln-log-writer".into())
            .stack_size(WRITER_STACK)
            .spawn(move || {
                let result = write_out(read_end, target);
                let _ = tell.send(result);
            })?;
        Ok(Relay { into, done })
    }

    /// Move what the program has written from `from` into the relay; 0 at
    /// the end of its output.
    pub(super) async fn move_some(&self, from: &pipe::Receiver) -> std::io::Result<usize> {
        loop {
            let ready = from.ready(Interest::READABLE).await?;
            if ready.is_read_closed() && (ready & Ready::READABLE).is_empty() {
                return Ok(0);
            }
            // A splice that moves nothing had an empty program pipe or a
            // full relay. Only the program pipe's readiness may be cleared
            // then, and only if it holds nothing: cleared while holding
            // output, it would not be woken again by a program blocked on
            // it. The relay's room is waited for apart.
            let moved = from.try_io(|| match self.splice_from(from) {
                Err(e) if e.kind() == ErrorKind::WouldBlock && readable(from)? => Ok(None),
                result => result.map(Some),
            });
            match moved {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => self.room().await?,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One splice from the program pipe into the relay, without waiting.
    fn splice_from(&self, from: &pipe::Receiver) -> std::io::Result<usize> {
        // SAFETY: splice between two pipes we own, no offsets.
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                self.into.as_raw_fd(),
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

    /// Wait until the relay has room for another page: the writer thread
    /// empties it.
    async fn room(&self) -> std::io::Result<()> {
        loop {
            self.into.ready(Interest::WRITABLE).await?;
            match self.into.try_io(|| {
                if polled(self.into.as_raw_fd(), libc::POLLOUT)? {
                    Ok(())
                } else {
                    Err(ErrorKind::WouldBlock.into())
                }
            }) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                result => return result,
            }
        }
    }

    /// Close the relay and wait until everything in it has reached the
    /// file: `Err` with the message of a write failure (reported already).
    pub(super) async fn finish(self) -> Result<(), String> {
        drop(self.into);
        self.done
            .await
            .unwrap_or_else(|_| Err("the log's writer thread stopped".into()))
    }
}

/// The relay pipe: its read end blocking, for the writer thread; its write
/// end non-blocking, for the runtime.
fn relay_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors on success; each is then owned
    // once; the fcntls only change flags of descriptors we own.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (read_end, write_end) = (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]));
        let flags = libc::fcntl(fds[1], libc::F_GETFL);
        if flags < 0 || libc::fcntl(fds[1], libc::F_SETFL, flags | libc::O_NONBLOCK) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Failure (above the system's pipe-max-size) keeps the default.
        libc::fcntl(fds[1], libc::F_SETPIPE_SZ, RELAY_SIZE as libc::c_int);
        Ok((read_end, write_end))
    }
}

/// Whether the program pipe holds output (or has ended) now.
fn readable(pipe: &pipe::Receiver) -> std::io::Result<bool> {
    polled(pipe.as_raw_fd(), libc::POLLIN)
}

/// Whether `fd` is ready for `events` now; an error or hang-up counts as
/// ready, for the next call on it to report.
fn polled(fd: libc::c_int, events: libc::c_short) -> std::io::Result<bool> {
    let mut pollfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one pollfd we own, no wait.
    if unsafe { libc::poll(&mut pollfd, 1, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(pollfd.revents != 0)
}

/// The writer thread: the relay into the file until the relay's end.
/// Splices, or reads and writes where the file refuses splices. After a
/// write failure (reported at once) the rest is read and dropped, so the
/// program never waits on a relay nobody empties.
fn write_out(relay: OwnedFd, target: LogTarget) -> Result<(), String> {
    let LogTarget {
        mut file,
        path,
        stream,
        warnings,
    } = target;
    let mut relay = File::from(relay);
    let failure = loop {
        // SAFETY: splice between two descriptors we own, no offsets.
        let n = unsafe {
            libc::splice(
                relay.as_raw_fd(),
                std::ptr::null_mut(),
                file.as_raw_fd(),
                std::ptr::null_mut(),
                RELAY_SIZE,
                libc::SPLICE_F_MOVE,
            )
        };
        match n {
            0 => return Ok(()),
            n if n > 0 => {}
            _ if std::io::Error::last_os_error().kind() == ErrorKind::Interrupted => {}
            // The bytes are still in the relay: copying takes them, and
            // reports a failing file as it would have.
            _ => break copy(&mut relay, &mut file).err(),
        }
    };
    let Some(e) = failure else {
        return Ok(());
    };
    let why = format!("cannot write {}: {e}", path.display());
    warn(
        warnings.as_ref(),
        &format!("{why}; the rest of the program's {stream} is lost (its in-memory copy is full)"),
    );
    drop(file);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match relay.read(&mut buf) {
            Ok(0) => break,
            Err(e) if e.kind() != ErrorKind::Interrupted => break,
            _ => {}
        }
    }
    Err(why)
}

/// Copy the relay into the file through a buffer, up to the relay's end.
fn copy(relay: &mut File, file: &mut File) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match relay.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => file.write_all(&buf[..n])?,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
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
        let relay = Relay::start(LogTarget {
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
