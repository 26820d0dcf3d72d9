//! `kiln.log`, the job's own log: the plugin's leveled messages and the
//! host's warnings about the job (a program's log file it could not write,
//! say), appended through the job directory's handle (never through a link
//! planted in its place) and capped at `limits.log_bytes`: past the cap
//! one last line says so and the rest is dropped (the events still go out).

use crate::lock;
use kiln_fs::dir_handle::ReleasableDir;
use std::io::Write;
use std::sync::{Arc, Mutex};

pub const LOG_FILE: &str = "kiln.log";

pub struct JobLog {
    dir: Arc<ReleasableDir>,
    cap: u64,
    /// Bytes appended so far; `None` once the cap was reached.
    written: Mutex<Option<u64>>,
}

impl JobLog {
    pub fn new(dir: Arc<ReleasableDir>, cap: u64) -> JobLog {
        JobLog {
            dir,
            cap,
            written: Mutex::new(Some(0)),
        }
    }

    /// Append `level: message`. The log is a diagnostic: a failure is
    /// returned for the caller to report, never fails the job.
    pub fn append(&self, level: &str, message: &str) -> std::io::Result<()> {
        let mut written = lock(&self.written);
        let Some(so_far) = *written else {
            return Ok(());
        };
        let line = format!("{level}: {message}\n");
        let (text, full) = if so_far + line.len() as u64 > self.cap {
            (
                format!(
                    "warn: kiln.log reached its limit of {} bytes (limits.log_bytes); later messages are not kept here\n",
                    self.cap
                ),
                true,
            )
        } else {
            (line, false)
        };
        *written = if full {
            None
        } else {
            Some(so_far + text.len() as u64)
        };
        self.dir.get()?.append(LOG_FILE)?.write_all(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_fs::dir_handle::DirHandle;

    #[test]
    fn the_log_stops_at_its_cap_with_a_last_line_saying_so() {
        let tmp = tempfile::tempdir().unwrap();
        let log = JobLog::new(
            ReleasableDir::held(Arc::new(DirHandle::open(tmp.path()).unwrap())),
            100,
        );
        for i in 0..50 {
            log.append("info", &format!("message {i}")).unwrap();
        }
        let text = std::fs::read_to_string(tmp.path().join(LOG_FILE)).unwrap();
        assert!(text.starts_with("info: message 0\n"));
        assert!(
            text.lines().last().unwrap().contains("limits.log_bytes"),
            "{text}"
        );
        assert!(text.len() < 100 + 200, "{}", text.len());
    }

    #[test]
    fn a_link_in_place_of_the_log_is_not_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, "precious").unwrap();
        let dir = tmp.path().join("job");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&target, dir.join(LOG_FILE)).unwrap();
        let log = JobLog::new(
            ReleasableDir::held(Arc::new(DirHandle::open(&dir).unwrap())),
            1 << 20,
        );
        assert!(log.append("info", "hello").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    }
}
