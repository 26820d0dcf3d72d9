//! After a host dies without ending its jobs (SIGKILL, a crash, power), their
//! records still say `running`. Each host lists the job directories it
//! starts in `<jobs>/.kiln/hosts/<pid>-<start time>`; the next host to start
//! on that jobs directory finds the lists of hosts that are gone and marks
//! every job in them that did not end `interrupted`, so no job stays
//! `running` for ever. Rerunning the pipeline then resumes it (see
//! [`super::resume`]). What those jobs' programs left running is killed by
//! the cgroup sweep ([`crate::process::cgroup`]).

use super::record::RECORD_FILE;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// This host's list of started jobs.
pub(crate) struct StartedJobs {
    file: PathBuf,
}

/// `<pid>-<start time in clock ticks since boot>`: unique among live and
/// past processes (a pid alone is reused).
fn process_key(pid: u32) -> Option<String> {
    let start = crate::process::cgroup::start_time(pid)?;
    Some(format!("{pid}-{start}"))
}

fn hosts_dir(jobs_dir: &Path) -> PathBuf {
    jobs_dir.join(".kiln").join("hosts")
}

impl StartedJobs {
    pub(crate) fn new(jobs_dir: &Path) -> StartedJobs {
        let me = process_key(std::process::id())
            .unwrap_or_else(|| format!("{}-unknown", std::process::id()));
        StartedJobs {
            file: hosts_dir(jobs_dir).join(me),
        }
    }

    /// Note a job directory before its job starts running.
    pub(crate) fn add(&self, job_dir: &Path) {
        let mut line = job_dir.as_os_str().as_bytes().to_vec();
        line.push(b'\n');
        let written = self
            .file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.file)?
                    .write_all(&line)
            });
        if let Err(e) = written {
            eprintln!(
                "kiln: failed to note job {} in {}: {e}; if this host dies, that job's record is not reconciled",
                job_dir.display(),
                self.file.display()
            );
        }
    }
}

/// Mark the unended jobs of every dead host on `jobs_dir` interrupted.
/// Returns the job directories it marked.
pub(crate) fn reconcile(jobs_dir: &Path) -> Vec<PathBuf> {
    let mut marked = Vec::new();
    let Ok(entries) = std::fs::read_dir(hosts_dir(jobs_dir)) else {
        return marked;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let alive = name
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
            .and_then(process_key)
            .is_some_and(|key| key == name);
        if alive {
            continue;
        }
        let text = std::fs::read(entry.path()).unwrap_or_default();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let dir = PathBuf::from(std::ffi::OsStr::from_bytes(line));
            match mark_interrupted(&dir) {
                Ok(true) => marked.push(dir),
                Ok(false) => {}
                Err(e) => eprintln!(
                    "kiln: failed to reconcile the record of {}: {e}",
                    dir.display()
                ),
            }
        }
        let _ = std::fs::remove_file(entry.path());
    }
    marked
}

/// Rewrite a job record that never ended as interrupted; false when it had
/// ended (or there is none).
fn mark_interrupted(dir: &Path) -> std::io::Result<bool> {
    let path = dir.join(RECORD_FILE);
    let Ok(text) = std::fs::read(&path) else {
        return Ok(false);
    };
    let Ok(mut record) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return Ok(false);
    };
    if !matches!(
        record["state"].as_str(),
        Some("pending" | "queued" | "running")
    ) {
        return Ok(false);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    record["state"] = "interrupted".into();
    record["status"] = "interrupted".into();
    record["reason"] =
        "the host running this job ended before the job did (killed or crashed); run it again to resume"
            .into();
    record["ended"] = now.into();
    let text = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
    super::dir::replace_file(dir, RECORD_FILE, &text, false)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_of_a_dead_host_are_marked_interrupted_and_a_live_hosts_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        let jobs = tmp.path();
        let (running, ended) = (jobs.join("job_1"), jobs.join("job_2"));
        for (dir, state) in [(&running, "running"), (&ended, "finished")] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(
                dir.join(RECORD_FILE),
                format!(r#"{{"id":"1","state":"{state}","status":null,"ended":null}}"#),
            )
            .unwrap();
        }
        let dead = hosts_dir(jobs).join("999999999-1");
        std::fs::create_dir_all(dead.parent().unwrap()).unwrap();
        std::fs::write(
            &dead,
            format!("{}\n{}\n", running.display(), ended.display()),
        )
        .unwrap();
        // This process is alive: its list stays, its jobs untouched.
        let me = StartedJobs::new(jobs);
        let mine = jobs.join("job_3");
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::write(mine.join(RECORD_FILE), r#"{"state":"running"}"#).unwrap();
        me.add(&mine);

        assert_eq!(reconcile(jobs), vec![running.clone()]);
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(running.join(RECORD_FILE)).unwrap()).unwrap();
        assert_eq!(r["state"], "interrupted");
        assert!(r["reason"].as_str().unwrap().contains("host"));
        assert!(r["ended"].as_f64().unwrap() > 0.0);
        assert!(!dead.exists());
        assert!(me.file.exists());
        let still: serde_json::Value =
            serde_json::from_slice(&std::fs::read(mine.join(RECORD_FILE)).unwrap()).unwrap();
        assert_eq!(still["state"], "running");
        assert!(reconcile(jobs).is_empty());
    }
}
