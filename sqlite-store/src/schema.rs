//! The database's tables, and the checks that refuse a file that is not
//! Kiln's job database.

use crate::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// `PRAGMA application_id`: "KILN".
const APPLICATION_ID: i64 = 0x4B49_4C4E;
/// `PRAGMA user_version` of the tables below.
const SCHEMA_VERSION: i64 = 1;

const TABLES: &str = "
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    top INTEGER NOT NULL,
    state TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX jobs_top ON jobs(top);
CREATE TABLE finished (
    n INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    id TEXT NOT NULL
);
CREATE INDEX finished_fingerprint ON finished(fingerprint);
CREATE TABLE started (id TEXT PRIMARY KEY);
CREATE TABLE submissions (
    id INTEGER PRIMARY KEY,
    task TEXT NOT NULL,
    request TEXT NOT NULL,
    principal TEXT,
    priority INTEGER NOT NULL,
    submitted REAL NOT NULL,
    phase TEXT NOT NULL,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT UNIQUE
);
CREATE INDEX submissions_phase ON submissions(phase);
CREATE TABLE events (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    top INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    time REAL NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (top, seq)
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

fn foreign(path: &Path, why: impl Into<String>) -> StoreError {
    StoreError::Foreign {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// What is at `path` before SQLite opens it: nothing (a new database), or
/// a regular file that starts as an SQLite database does. A link, a FIFO
/// (which would block the open for ever) or a file of something else is
/// refused.
fn check_file(path: &Path) -> Result<bool, StoreError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(foreign(path, format!("it cannot be examined: {e}"))),
    };
    if meta.file_type().is_symlink() {
        return Err(foreign(path, "it is a symbolic link; name the file itself"));
    }
    if !meta.is_file() {
        return Err(foreign(path, "it is not a regular file"));
    }
    if meta.len() == 0 {
        return Ok(false);
    }
    let mut header = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|f| f.take(16).read(&mut header))
        .map_err(|e| foreign(path, format!("it cannot be read: {e}")))?;
    if n < 16 || &header != b"SQLite format 3\0" {
        return Err(foreign(path, "it is not an SQLite database"));
    }
    Ok(true)
}

fn settings(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Synced on every commit: a submit is on disk before it is answered.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Open the database for writing, creating its tables if it is new, and
/// refusing a file that is not Kiln's job database of this schema.
pub fn open_checked(path: &Path) -> Result<Connection, StoreError> {
    let existed = check_file(path)?;
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    let damaged = |e: rusqlite::Error| foreign(path, format!("it is damaged: {e}"));
    let app: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(damaged)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(damaged)?;
    if existed && tables > 0 {
        if app != APPLICATION_ID {
            return Err(foreign(
                path,
                format!("an SQLite database of another program: application id {app:#x}"),
            ));
        }
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(damaged)?;
        if version != SCHEMA_VERSION {
            return Err(foreign(
                path,
                format!("schema version {version}, and this build knows {SCHEMA_VERSION}"),
            ));
        }
        let check: String = conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(damaged)?;
        if check != "ok" {
            return Err(foreign(path, format!("it is damaged: {check}")));
        }
    }
    settings(&conn).map_err(damaged)?;
    if tables == 0 {
        conn.execute_batch(&format!(
            "BEGIN; {TABLES} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(open_err)?;
    }
    Ok(conn)
}

/// A connection for reads.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}
