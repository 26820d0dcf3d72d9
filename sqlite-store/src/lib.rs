//! Kiln's job database: one SQLite file (WAL, bundled SQLite) holding
//! the host's records of jobs behind the [`kiln_jobs::JobStore`] seam, and
//! the job service's own journal beside them: submissions (what was asked,
//! by whom, with which idempotency key, whether it was started and whether
//! a stop was asked), the numbered events of every job, and the highest job
//! id ever given, so that no id is given twice.
//!
//! Every write goes through one writer thread that commits what has queued
//! up in one synced transaction (group commit): a caller is answered only
//! once its write is on disk, and a thousand submits share a handful of
//! fsyncs instead of paying one each.
//!
//! The file is Kiln's alone: it carries an application id, and a file that
//! is not a database, or is another program's, or is of a schema this
//! build does not know, is refused with an error that names it, never
//! replaced by a new one. One process at a time uses it (a lock beside it).

mod job_store;
mod journal;
mod schema;
mod writer;

pub use job_store::top_of;
pub use journal::{EventRow, HistoryRow, Submission, SubmissionPhase, SubmitOutcome};

use kiln_fs::DirHandle;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why the database could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the job database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "{path} is not a Kiln job database ({why}); refusing to use it. Name another file with --db, or move this one away if it is damaged (nothing was changed)"
    )]
    Foreign { path: PathBuf, why: String },
    #[error(
        "the job database {path} is used by another process (pid {holder}); one service per database"
    )]
    Locked { path: PathBuf, holder: String },
    #[error("cannot lock the job database {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the job database {path}: {source}")]
    Start {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("job database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("job database: the writer has stopped")]
    WriterGone,
    #[error("job database: {0}")]
    Data(String),
}

impl From<StoreError> for std::io::Error {
    fn from(e: StoreError) -> std::io::Error {
        std::io::Error::other(e)
    }
}

/// The job database.
pub struct SqliteStore {
    path: PathBuf,
    writer: writer::Writer,
    /// Connections for reads: WAL lets them read while the writer writes.
    readers: Mutex<Vec<rusqlite::Connection>>,
    /// The jobs directory, held: reconciling rewrites the copies of records
    /// in the job directories.
    jobs: DirHandle,
    /// Held while the store is open; the lock is released when it closes.
    _lock: std::fs::File,
}

impl SqliteStore {
    /// Open (creating it if it does not exist) the database at `path` for
    /// the jobs directory `jobs`.
    pub fn open(path: &Path, jobs: &DirHandle) -> Result<SqliteStore, StoreError> {
        let lock = lock_beside(path)?;
        let conn = schema::open_checked(path)?;
        let writer = writer::Writer::start(conn).map_err(|source| StoreError::Start {
            path: path.to_path_buf(),
            source,
        })?;
        let mut readers = Vec::new();
        for _ in 0..4 {
            readers.push(schema::open_reader(path)?);
        }
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer,
            readers: Mutex::new(readers),
            jobs: jobs.try_clone().map_err(|source| StoreError::Start {
                path: path.to_path_buf(),
                source,
            })?,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on a reader connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = {
            let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            pool.pop()
        };
        let conn = match conn {
            Some(c) => c,
            None => schema::open_reader(&self.path)?,
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 8 {
            pool.push(conn);
        }
        Ok(result?)
    }
}

/// An exclusive lock on `<db>.lock`, holding this process's pid.
fn lock_beside(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let err = |source| StoreError::Lock {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(err)?;
    // A service killed while it was starting a program leaves, for a
    // moment, a forked child holding the lock (until its exec closes it):
    // wait that long before saying another service holds it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        }
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(StoreError::Locked {
                path: path.to_path_buf(),
                holder: holder.trim().to_string(),
            });
        }
        return Err(err(e));
    }
    file.set_len(0).map_err(err)?;
    file.rewind().map_err(err)?;
    write!(file, "{}", std::process::id()).map_err(err)?;
    Ok(file)
}
