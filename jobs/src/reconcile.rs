//! After a host dies without ending its jobs (SIGKILL, a crash, power), their
//! records still say `running`. Each host lists the jobs it starts in
//! `<jobs>/.kiln/hosts/<pid>-<start time>`; the next host to start on that
//! jobs directory finds the lists of hosts that are gone and marks every
//! job in them that did not end `interrupted`, in the store and in the
//! job directory's copy, so no job stays `running` for ever. Rerunning the
//! pipeline then resumes it (see [`crate::resume`]). What those jobs'
//! programs left running is killed by the cgroup sweep
//! ([`kiln_exec::cgroup`]).

use crate::record::RECORD_FILE;
use crate::store::RecordDir;
use kiln_fs::dir_handle::DirHandle;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const HOSTS_DIR: &str = "hosts";

/// This host's list of started jobs.
pub struct StartedJobs {
    hosts: Option<DirHandle>,
    name: String,
}

/// `<pid>-<start time in clock ticks since boot>`: unique among live and
/// past processes (a pid alone is reused).
fn process_key(pid: u32) -> Option<String> {
    let start = kiln_fs::process_identity::start_time(pid)?;
    Some(format!("{pid}-{start}"))
}

fn hosts_dir(store: &RecordDir) -> std::io::Result<DirHandle> {
    let state = store.state_dir();
    match state.create_dir(HOSTS_DIR) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            state.open_dir(Path::new(HOSTS_DIR))
        }
        other => other,
    }
}

/// Why a job could not be noted, as the host reports it.
#[derive(Debug, thiserror::Error)]
#[error(
    "failed to note job {job} in the host's list of started jobs: {source}; if this host dies, that job's record is not reconciled"
)]
pub struct NoteError {
    pub job: String,
    #[source]
    pub source: std::io::Error,
}

impl StartedJobs {
    pub fn new(store: &RecordDir) -> StartedJobs {
        let me = process_key(std::process::id())
            .unwrap_or_else(|| format!("{}-unknown", std::process::id()));
        StartedJobs {
            hosts: hosts_dir(store).ok(),
            name: me,
        }
    }

    /// Note a job before it starts running.
    pub fn add(&self, job_id: &str) -> Result<(), NoteError> {
        let err = |source| NoteError {
            job: job_id.to_string(),
            source,
        };
        let hosts = self
            .hosts
            .as_ref()
            .ok_or_else(|| err(std::io::Error::other("the hosts directory is unavailable")))?;
        let mut line = job_id.as_bytes().to_vec();
        line.push(b'\n');
        hosts
            .append(&self.name)
            .and_then(|mut f| f.write_all(&line))
            .map_err(err)
    }
}

/// Mark the unended jobs of every dead host on the jobs directory
/// interrupted. Returns the job directories it marked, and what failed.
pub fn reconcile(store: &RecordDir, jobs: &DirHandle) -> crate::store::Reconciled {
    let mut done = crate::store::Reconciled::default();
    let (marked, failed) = (&mut done.marked, &mut done.failed);
    let Ok(hosts) = hosts_dir(store) else {
        return done;
    };
    for name in hosts.names().unwrap_or_default() {
        let name = name.to_string_lossy().into_owned();
        let alive = name
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
            .and_then(process_key)
            .is_some_and(|key| key == name);
        if alive {
            continue;
        }
        let mut text = Vec::new();
        if let Ok(f) = hosts.open_file(Path::new(&name)) {
            let _ = f.take(64 << 20).read_to_end(&mut text);
        }
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let id = String::from_utf8_lossy(line);
            match mark_interrupted(store, jobs, &id) {
                Ok(Some(dir)) => marked.push(dir),
                Ok(None) => {}
                Err(e) => failed.push(format!("failed to reconcile the record of job {id}: {e}")),
            }
        }
        let _ = hosts.remove_file(&name);
    }
    done
}

/// Record a job that never ended as interrupted; its directory, or `None`
/// when it had ended (or there is no record of it).
fn mark_interrupted(
    store: &RecordDir,
    jobs: &DirHandle,
    id: &str,
) -> std::io::Result<Option<PathBuf>> {
    let Some(mut stored) = store.get(id) else {
        return Ok(None);
    };
    if !interrupt_record(&mut stored, HOST_DIED) {
        return Ok(None);
    }
    store.put(&stored)?;
    write_copy(jobs, &stored).map(Some)
}

/// Why a job of a dead host is interrupted.
pub const HOST_DIED: &str = "the host running this job ended before the job did (killed or crashed); run it again to resume";

/// Whether a record says its job has not ended (and so can be interrupted).
pub fn unended(state: &str) -> bool {
    matches!(state, "pending" | "queued" | "running")
}

/// Mark a record of a job that never ended `interrupted` for `reason`;
/// false (and unchanged) when it had ended.
pub fn interrupt_record(stored: &mut crate::store::StoredJob, reason: &str) -> bool {
    if !unended(&stored.record.state) {
        return false;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let record = &mut stored.record;
    record.state = "interrupted".into();
    record.status = Some("interrupted".into());
    record.reason = Some(reason.into());
    record.ended = Some(now);
    true
}

/// Write the job directory's copy of a record (for people), through the
/// jobs directory's handle: a link on the way is refused, not followed.
/// Returns the job directory.
pub fn write_copy(jobs: &DirHandle, stored: &crate::store::StoredJob) -> std::io::Result<PathBuf> {
    let dir = jobs.path().join(&stored.dir);
    let text = serde_json::to_vec_pretty(&stored.record).map_err(std::io::Error::other)?;
    jobs.open_dir(&stored.dir)
        .and_then(|d| d.replace(RECORD_FILE, &text, false))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::JobRecord;
    use crate::store::StoredJob;

    fn stored(id: &str, dir: &str, state: &str) -> StoredJob {
        StoredJob {
            record: JobRecord::example(id, state),
            dir: dir.into(),
            params: None,
            outputs: Vec::new(),
            files: Vec::new(),
        }
    }

    #[test]
    fn jobs_of_a_dead_host_are_marked_interrupted_and_a_live_hosts_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        let jobs = DirHandle::open(tmp.path()).unwrap();
        let store = RecordDir::open(&jobs).unwrap();
        for (id, state) in [("1", "running"), ("2", "finished"), ("3", "running")] {
            std::fs::create_dir_all(tmp.path().join(format!("job_{id}"))).unwrap();
            store.put(&stored(id, &format!("job_{id}"), state)).unwrap();
        }
        let hosts = hosts_dir(&store).unwrap();
        hosts
            .append("999999999-1")
            .unwrap()
            .write_all(b"1\n2\n")
            .unwrap();
        // This process is alive: its list stays, its jobs untouched.
        let me = StartedJobs::new(&store);
        me.add("3").unwrap();

        let crate::store::Reconciled { marked, failed } = reconcile(&store, &jobs);
        assert_eq!(marked, vec![tmp.path().join("job_1")]);
        assert!(failed.is_empty(), "{failed:?}");
        let r = store.get("1").unwrap().record;
        assert_eq!(r.state, "interrupted");
        assert!(r.reason.unwrap().contains("host"));
        assert!(r.ended.unwrap() > 0.0);
        let copy = JobRecord::read(&tmp.path().join("job_1")).unwrap();
        assert_eq!(copy.state, "interrupted");
        assert!(
            hosts.kind(Path::new("999999999-1")).is_err(),
            "the dead list is gone"
        );
        assert!(hosts.kind(Path::new(&me.name)).is_ok());
        assert_eq!(store.get("3").unwrap().record.state, "running");
        assert!(reconcile(&store, &jobs).marked.is_empty());
    }

    #[test]
    fn a_job_directory_swapped_for_a_link_is_not_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let jobs_dir = tmp.path().join("jobs");
        std::fs::create_dir_all(jobs_dir.join("job_1")).unwrap();
        let jobs = DirHandle::open(&jobs_dir).unwrap();
        let store = RecordDir::open(&jobs).unwrap();
        store.put(&stored("1.1", "job_1/job_1", "running")).unwrap();
        std::os::unix::fs::symlink(&outside, jobs_dir.join("job_1/job_1")).unwrap();
        let hosts = hosts_dir(&store).unwrap();
        hosts
            .append("999999999-1")
            .unwrap()
            .write_all(b"1.1\n")
            .unwrap();
        let failed = reconcile(&store, &jobs).failed;
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // The store, which decides, says interrupted all the same.
        assert_eq!(store.get("1.1").unwrap().record.state, "interrupted");
    }
}
