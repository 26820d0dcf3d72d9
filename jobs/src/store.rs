//! The host's records of truth about jobs, kept where no plugin and no
//! program can write: `<jobs>/.kiln/`, beside the job directories, never
//! inside one (a plugin's preopen is its own job directory, and its
//! programs may write only there and in granted directories).
//!
//! - `.kiln/jobs/<id>.json`: each job's record ([`StoredJob`]): state, how
//!   it ended, its fingerprint, and for a step that succeeded its final
//!   parameters and the content hashes of its output files, which a later
//!   run checks before it reuses them.
//! - `.kiln/finished.jsonl`: succeeded jobs by fingerprint (see
//!   [`crate::resume`]).
//! - `.kiln/hosts/<pid>-<start>`: the jobs each host started (see
//!   [`crate::reconcile`]).
//!
//! The `job.json`, `params.xml` and `diagnostic.xml` in a job directory are
//! copies for people and CCP4i2's tools; the host never reads them back.

use crate::record::JobRecord;
use kiln_fs::dir_handle::DirHandle;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The name of the host's own directory in a jobs directory.
pub const STATE_DIR: &str = ".kiln";

/// Largest record read back: records are written by the host, so a larger
/// one is damage, not data.
const MAX_RECORD: u64 = 64 << 20;

/// An output file of a finished job, as the host found it at the job's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// The container item (`outputData.XYZOUT`).
    pub item: String,
    /// Where the file was, absolute.
    pub path: String,
    /// `sha256:<hex>` of its contents.
    pub sha256: String,
    pub size: u64,
}

/// A file of a finished job's directory, as the host found it at the
/// job's end: what a reused step's directory gets a checked copy of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptFile {
    /// Below the job directory.
    pub path: PathBuf,
    /// `sha256:<hex>` of its contents.
    pub sha256: String,
    pub size: u64,
}

/// What a step that succeeded leaves for a later run to reuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Its container at the end, as params.xml text.
    pub params: String,
    pub outputs: Vec<OutputFile>,
    pub files: Vec<KeptFile>,
}

/// One job's record of truth.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredJob {
    #[serde(flatten)]
    pub record: JobRecord,
    /// The job directory, relative to the jobs directory.
    pub dir: PathBuf,
    /// For a step that succeeded: its container at the end, as params.xml
    /// text, and its output files with their content hashes. A step
    /// whose outputs could not all be hashed has none, and is never reused.
    #[serde(default)]
    pub params: Option<String>,
    #[serde(default)]
    pub outputs: Vec<OutputFile>,
    /// The files of its directory (its programs' logs and the like).
    #[serde(default)]
    pub files: Vec<KeptFile>,
}

/// The host's records of jobs: what each is and how it ended, which
/// succeeded steps a later run may reuse, and which jobs each host started
/// (so that a later host can mark those of a dead one interrupted).
///
/// [`DirStore`](crate::dir_store::DirStore) keeps them in the jobs
/// directory's `.kiln/`; a database-backed store implements the same trait.
pub trait JobStore: Send + Sync {
    /// Record `job`, replacing its earlier record.
    fn put(&self, job: &StoredJob) -> std::io::Result<()>;
    /// The record of job `id`, if there is a readable one.
    fn get(&self, id: &str) -> Option<StoredJob>;
    /// Every recorded job, in the order of their ids (`2` before `10`).
    fn list(&self) -> std::io::Result<Vec<StoredJob>>;
    /// Note that `id` succeeded with `fingerprint`, for a later run to reuse.
    fn add_finished(&self, fingerprint: &str, id: &str) -> std::io::Result<()>;
    /// The newest job that succeeded with `fingerprint` and can be reused,
    /// never `for_id` itself nor a step or pipeline of it.
    fn find_finished(&self, fingerprint: &str, for_id: &str) -> Option<StoredJob>;
    /// Note, before it runs, that this host started job `id`.
    fn note_started(&self, id: &str) -> Result<(), crate::reconcile::NoteError>;
    /// Mark interrupted every job that a host now gone started and did not
    /// end.
    fn reconcile(&self) -> Reconciled;
}

/// What [`JobStore::reconcile`] did.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// The directories of the jobs it marked interrupted.
    pub marked: Vec<PathBuf>,
    /// What it could not do.
    pub failed: Vec<String>,
}

/// Order job ids as numbers, part by part.
pub fn id_order(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<u64> {
        s.split('.')
            .map(|p| p.parse().unwrap_or(u64::MAX))
            .collect()
    };
    parts(a).cmp(&parts(b))
}

/// The host's own directory of a jobs directory: `.kiln/jobs/<id>.json`.
pub struct RecordDir {
    /// The jobs directory's path, to name job directories relative to it.
    jobs: PathBuf,
    /// `<jobs>/.kiln`.
    state: DirHandle,
    /// `<jobs>/.kiln/jobs`.
    records: DirHandle,
}

/// Open (making it if need be) the directory `name` in `parent`, refusing
/// a link in its place.
fn subdir(parent: &DirHandle, name: &str) -> std::io::Result<DirHandle> {
    match parent.create_dir(name) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => parent.open_dir(Path::new(name)),
        other => other,
    }
}

/// A job id is digits and dots, as the host makes them.
fn record_name(id: &str) -> Option<String> {
    let plain = !id.is_empty()
        && id
            .split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    plain.then(|| format!("{id}.json"))
}

impl RecordDir {
    pub fn open(jobs: &DirHandle) -> std::io::Result<RecordDir> {
        let state = subdir(jobs, STATE_DIR)?;
        let records = subdir(&state, "jobs")?;
        Ok(RecordDir {
            jobs: jobs.path().to_path_buf(),
            state,
            records,
        })
    }

    /// `dir` relative to the jobs directory (as it is, if outside it).
    pub fn relative(&self, dir: &Path) -> PathBuf {
        dir.strip_prefix(&self.jobs).unwrap_or(dir).to_path_buf()
    }

    /// The host's own directory (`.kiln`), for the index and host lists.
    pub fn state_dir(&self) -> &DirHandle {
        &self.state
    }

    /// Record `job`, replacing its earlier record. Not synced: a record is
    /// written at a job's start and end, and what it guards against is the
    /// host dying, not the machine.
    pub fn put(&self, job: &StoredJob) -> std::io::Result<()> {
        let name = record_name(&job.record.id)
            .ok_or_else(|| std::io::Error::other(format!("`{}` is not a job id", job.record.id)))?;
        let text = serde_json::to_vec_pretty(job).map_err(std::io::Error::other)?;
        self.records.replace(&name, &text, false).map(drop)
    }

    /// The record of job `id`, if there is a readable one.
    pub fn get(&self, id: &str) -> Option<StoredJob> {
        let file = self.records.open_file(Path::new(&record_name(id)?)).ok()?;
        let mut text = Vec::new();
        file.take(MAX_RECORD).read_to_end(&mut text).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Every readable record.
    pub fn list(&self) -> std::io::Result<Vec<StoredJob>> {
        let mut jobs: Vec<StoredJob> = self
            .records
            .names()?
            .iter()
            .filter_map(|n| n.to_str()?.strip_suffix(".json").map(str::to_string))
            .filter_map(|id| self.get(&id))
            .collect();
        jobs.sort_by(|a, b| id_order(&a.record.id, &b.record.id));
        Ok(jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: &str) -> StoredJob {
        StoredJob {
            record: JobRecord {
                status: Some("succeeded".into()),
                fingerprint: Some("abc".into()),
                ..JobRecord::example(id, "finished")
            },
            dir: "job_1/job_2".into(),
            params: None,
            outputs: vec![OutputFile {
                item: "outputData.XYZOUT".into(),
                path: "/x/XYZOUT.pdb".into(),
                sha256: "sha256:00".into(),
                size: 1,
            }],
            files: vec![KeptFile {
                path: "log.txt".into(),
                sha256: "sha256:01".into(),
                size: 2,
            }],
        }
    }

    #[test]
    fn records_round_trip_and_bad_ids_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let jobs = DirHandle::open(tmp.path()).unwrap();
        let store = RecordDir::open(&jobs).unwrap();
        store.put(&stored("1.2")).unwrap();
        let back = store.get("1.2").unwrap();
        assert_eq!(back.outputs, stored("1.2").outputs);
        assert_eq!(back.files, stored("1.2").files);
        assert_eq!(back.dir, Path::new("job_1/job_2"));
        assert!(store.get("1.3").is_none());
        assert!(store.put(&stored("../1")).is_err());
        assert!(store.get("../1").is_none());
        // Opening again finds what is there.
        assert!(RecordDir::open(&jobs).unwrap().get("1.2").is_some());
    }

    #[test]
    fn a_link_in_place_of_the_state_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let jobs_dir = tmp.path().join("jobs");
        std::fs::create_dir(&jobs_dir).unwrap();
        std::os::unix::fs::symlink(&elsewhere, jobs_dir.join(STATE_DIR)).unwrap();
        let jobs = DirHandle::open(&jobs_dir).unwrap();
        assert!(RecordDir::open(&jobs).is_err());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
