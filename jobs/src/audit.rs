//! The audit trail of a job: every program spawned, axis moved and
//! capability denied is appended to `audit.jsonl` in the job directory, one
//! JSON object a line, in the order it happened; through the directory's
//! handle, so a link planted in its place is refused, not written through.
//!
//! Lines are stamped when they happen and appended in batches: within
//! [`FLUSH_AFTER`] of the first line of a batch, and every line before the
//! job's end is recorded. One append per program would cost more than the
//! rest of a spawn's checks together (an ext4 append, with its inode time
//! update, is about 10 us here); a host killed outright loses at most the
//! last [`FLUSH_AFTER`] of lines, which its job's record then shows as
//! never having ended.

use crate::lock;
use kiln_fs::dir_handle::ReleasableDir;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

/// One audited action.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent<'a> {
    Spawn {
        program: &'a str,
        path: &'a Path,
        args: &'a [String],
        env: Vec<&'a str>,
        process: u32,
    },
    AxisMove {
        axis: &'a str,
        target: f64,
        speed: Option<f64>,
    },
    SubJob {
        task: &'a str,
        job: &'a str,
    },
    /// A path accepted because it lies in a granted directory.
    DirectoryGrant {
        path: &'a Path,
        directory: &'a Path,
        access: &'a str,
    },
    Denied {
        capability: &'a str,
        name: &'a str,
        message: &'a str,
    },
}

#[derive(Serialize)]
struct Line<'a> {
    time: f64,
    job: &'a str,
    #[serde(flatten)]
    event: &'a AuditEvent<'a>,
}

/// How long a line may wait in memory before it is appended.
pub const FLUSH_AFTER: Duration = Duration::from_millis(50);
/// Lines waiting beyond this many bytes are appended at once.
const FLUSH_AT: usize = 64 << 10;

pub struct Audit {
    file: Arc<AuditFile>,
}

const AUDIT_FILE: &str = "audit.jsonl";

struct AuditFile {
    dir: Arc<ReleasableDir>,
    state: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    file: Option<std::fs::File>,
    lines: Vec<u8>,
    /// A flush is on its way.
    flush_due: bool,
}

impl Audit {
    pub fn new(job_dir: Arc<ReleasableDir>) -> Audit {
        Audit {
            file: Arc::new(AuditFile {
                dir: job_dir,
                state: Mutex::new(Pending::default()),
            }),
        }
    }

    /// Add one event. The audit log must not be able to fail a job, so
    /// a write error is reported on the host's stderr instead.
    pub fn record(&self, job_id: &str, event: &AuditEvent<'_>) {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut state = lock(&self.file.state);
        let before = state.lines.len();
        if let Err(e) = serde_json::to_writer(
            &mut state.lines,
            &Line {
                time,
                job: job_id,
                event,
            },
        ) {
            state.lines.truncate(before);
            tracing::warn!("failed to encode an audit record for job {job_id}: {e}");
            return;
        }
        state.lines.push(b'\n');
        if state.lines.len() >= FLUSH_AT {
            self.file.append(&mut state);
            return;
        }
        if state.flush_due {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                state.flush_due = true;
                let file = self.file.clone();
                runtime.spawn(async move {
                    tokio::time::sleep(FLUSH_AFTER).await;
                    file.flush();
                });
            }
            // Outside a runtime there is no one to flush later.
            Err(_) => self.file.append(&mut state),
        }
    }

    /// Append every line recorded so far.
    pub fn flush(&self) {
        self.file.flush();
    }

    /// Append every line recorded so far and close the file, as at the
    /// job's end; a later line opens it again.
    pub fn close(&self) {
        let mut state = lock(&self.file.state);
        self.file.append(&mut state);
        state.file = None;
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        // A flush still on its way holds the lines' Arc, not the file.
        self.close();
    }
}

impl AuditFile {
    fn flush(&self) {
        let mut state = lock(&self.state);
        state.flush_due = false;
        self.append(&mut state);
    }

    fn append(&self, state: &mut Pending) {
        if state.lines.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut state.lines);
        if state.file.is_none() {
            match self.dir.get().and_then(|dir| dir.append(AUDIT_FILE)) {
                Ok(f) => state.file = Some(f),
                Err(e) => {
                    tracing::warn!("failed to open the audit trail: {e}");
                    return;
                }
            }
        }
        if let Some(f) = state.file.as_mut() {
            // One write for the batch: O_APPEND keeps it whole.
            if let Err(e) = f.write_all(&lines) {
                tracing::warn!(
                    "failed to write {}: {e}",
                    self.dir.path().join(AUDIT_FILE).display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(name: &str) -> AuditEvent<'_> {
        AuditEvent::Denied {
            capability: "programs",
            name,
            message: "not granted",
        }
    }

    fn open(dir: &Path) -> Arc<ReleasableDir> {
        ReleasableDir::held(Arc::new(kiln_fs::dir_handle::DirHandle::open(dir).unwrap()))
    }

    fn lines(dir: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn lines_reach_the_file_in_order_within_the_flush_delay() {
        let tmp = tempfile::tempdir().unwrap();
        let audit = Audit::new(open(tmp.path()));
        for i in 0..100 {
            audit.record("7", &denied(&format!("p{i}")));
        }
        tokio::time::sleep(FLUSH_AFTER * 4).await;
        let written = lines(tmp.path());
        assert_eq!(written.len(), 100);
        for (i, line) in written.iter().enumerate() {
            assert_eq!(line["name"], format!("p{i}"));
            assert_eq!(line["job"], "7");
        }
    }

    #[tokio::test]
    async fn a_flush_writes_everything_recorded_so_far_and_dropping_flushes_too() {
        let tmp = tempfile::tempdir().unwrap();
        let audit = Audit::new(open(tmp.path()));
        audit.record("7", &denied("one"));
        audit.flush();
        assert_eq!(lines(tmp.path()).len(), 1);
        audit.record("7", &denied("two"));
        drop(audit);
        let written = lines(tmp.path());
        assert_eq!(written.len(), 2);
        assert_eq!(written[1]["name"], "two");
    }

    #[tokio::test]
    async fn closing_writes_what_is_pending_and_lets_go_of_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let audit = Audit::new(open(tmp.path()));
        audit.record("7", &denied("one"));
        audit.close();
        assert_eq!(lines(tmp.path()).len(), 1);
        assert!(lock(&audit.file.state).file.is_none());
        audit.record("7", &denied("two"));
        audit.close();
        assert_eq!(lines(tmp.path()).len(), 2);
    }

    #[test]
    fn outside_a_runtime_a_line_is_written_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let audit = Audit::new(open(tmp.path()));
        audit.record("7", &denied("one"));
        assert_eq!(lines(tmp.path()).len(), 1);
    }
}
