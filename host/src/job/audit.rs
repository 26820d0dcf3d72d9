//! The audit trail of a job: every program spawned, axis moved and
//! capability denied is appended to `audit.jsonl` in the job directory, one
//! JSON object a line, as it happens.

use crate::engine::lock;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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

pub struct Audit {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

impl Audit {
    pub fn new(job_dir: &Path) -> Audit {
        Audit {
            path: job_dir.join("audit.jsonl"),
            file: Mutex::new(None),
        }
    }

    /// Append one event. The audit log must not be able to fail a job, so
    /// a write error is reported on the host's stderr instead.
    pub fn record(&self, job_id: &str, event: &AuditEvent<'_>) {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut line = match serde_json::to_vec(&Line {
            time,
            job: job_id,
            event,
        }) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("kiln: failed to encode an audit record for job {job_id}: {e}");
                return;
            }
        };
        line.push(b'\n');
        let mut file = lock(&self.file);
        if file.is_none() {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                Ok(f) => *file = Some(f),
                Err(e) => {
                    eprintln!("kiln: failed to open {}: {e}", self.path.display());
                    return;
                }
            }
        }
        if let Some(f) = file.as_mut() {
            // One write per line: O_APPEND keeps lines whole.
            if let Err(e) = f.write_all(&line) {
                eprintln!("kiln: failed to write {}: {e}", self.path.display());
            }
        }
    }
}
