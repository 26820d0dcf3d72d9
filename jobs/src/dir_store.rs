//! The job store of today: records in the jobs directory's `.kiln/`
//! (see [`crate::store`]), the index of finished jobs beside them
//! ([`crate::resume::FinishedIndex`]) and each host's list of the jobs it
//! started ([`crate::reconcile`]).

use crate::reconcile::{NoteError, StartedJobs};
use crate::resume::FinishedIndex;
use crate::store::{JobStore, Reconciled, RecordDir, StoredJob};
use kiln_fs::DirHandle;
use std::sync::Arc;

/// [`JobStore`] in a jobs directory.
pub struct DirStore {
    /// The jobs directory, held: reconciling rewrites the copies of records
    /// in the job directories.
    jobs: DirHandle,
    records: Arc<RecordDir>,
    finished: FinishedIndex,
    started: StartedJobs,
}

impl DirStore {
    /// Open (making it if need be) the store in the jobs directory `jobs`.
    pub fn open(jobs: &DirHandle) -> std::io::Result<DirStore> {
        let records = Arc::new(RecordDir::open(jobs)?);
        Ok(DirStore {
            jobs: jobs.try_clone()?,
            finished: FinishedIndex::new(records.clone()),
            started: StartedJobs::new(&records),
            records,
        })
    }
}

impl JobStore for DirStore {
    fn put(&self, job: &StoredJob) -> std::io::Result<()> {
        self.records.put(job)
    }

    fn get(&self, id: &str) -> Option<StoredJob> {
        self.records.get(id)
    }

    fn list(&self) -> std::io::Result<Vec<StoredJob>> {
        self.records.list()
    }

    fn add_finished(&self, fingerprint: &str, id: &str) -> std::io::Result<()> {
        self.finished.add(fingerprint, id)
    }

    fn find_finished(&self, fingerprint: &str, for_id: &str) -> Option<StoredJob> {
        self.finished.find(fingerprint, for_id)
    }

    fn note_started(&self, id: &str) -> Result<(), NoteError> {
        self.started.add(id)
    }

    fn reconcile(&self) -> Reconciled {
        crate::reconcile::reconcile(&self.records, &self.jobs)
    }
}
