//! The job database against what it must refuse and what it must keep.

use kiln_fs::DirHandle;
use kiln_jobs::JobRecord;
use kiln_jobs::store::{JobStore, StoredJob};
use kiln_sqlite_store::{
    EventRow, SqliteStore, StoreError, Submission, SubmissionPhase, SubmitOutcome,
};
use std::path::Path;

fn jobs(dir: &Path) -> DirHandle {
    std::fs::create_dir_all(dir).unwrap();
    DirHandle::open(dir).unwrap()
}

fn record(id: &str, state: &str) -> StoredJob {
    StoredJob {
        record: JobRecord {
            id: id.into(),
            task: "t".into(),
            version: "1".into(),
            state: state.into(),
            status: None,
            reason: None,
            fingerprint: None,
            created: 1.0,
            started: Some(2.0),
            ended: None,
            attempts: 1,
            reused_from: None,
            step_failures: Vec::new(),
        },
        dir: format!("job_{}", id.replace('.', "/job_")).into(),
        params: None,
        outputs: Vec::new(),
        files: Vec::new(),
    }
}

fn submission(id: u64, key: Option<&str>) -> Submission {
    Submission {
        id,
        task: "t".into(),
        request: serde_json::json!({"task": "t"}),
        principal: None,
        priority: 0,
        submitted: 1.0,
        phase: SubmissionPhase::Queued,
        stop_requested: false,
        idempotency_key: key.map(str::to_string),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn what_is_committed_is_there_after_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("kiln.db");
    let j = jobs(&tmp.path().join("jobs"));
    {
        let store = SqliteStore::open(&db, &j).unwrap();
        assert_eq!(
            store.submit(submission(7, Some("k"))).await.unwrap(),
            SubmitOutcome::Created
        );
        assert_eq!(
            store.submit(submission(8, Some("k"))).await.unwrap(),
            SubmitOutcome::Existing(7),
            "an idempotency key gives the first job"
        );
        store.put(&record("7", "running")).unwrap();
        store.put(&record("7.1", "running")).unwrap();
        store.note_started("7").unwrap();
        store.note_started("7.1").unwrap();
        let rows = (1..=3)
            .map(|seq| EventRow {
                n: 0,
                top: 7,
                seq,
                job_id: "7".into(),
                kind: if seq == 3 { "finished" } else { "state" }.into(),
                time: 0.0,
                data: format!("{{\"seq\":{seq}}}"),
            })
            .collect();
        store.append_events(rows, None).await.unwrap();
    }
    let store = SqliteStore::open(&db, &j).unwrap();
    assert_eq!(store.high_water().unwrap(), 7);
    assert_eq!(store.by_idempotency_key("k").unwrap(), Some(7));
    assert!(store.submission(8).unwrap().is_none());
    let events = store.events_after(7, 1, 10).unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert!(store.has_finished(7).unwrap());
    assert_eq!(
        store.submission(7).unwrap().unwrap().phase,
        SubmissionPhase::Ended,
        "the top-level job's finished ends its submission"
    );
    // The jobs left running are a dead host's: interrupted, once.
    std::fs::create_dir_all(tmp.path().join("jobs/job_7/job_1")).unwrap();
    let done = store.reconcile();
    assert_eq!(done.marked.len(), 2, "{:?}", done.failed);
    assert_eq!(store.get("7.1").unwrap().record.state, "interrupted");
    assert!(store.reconcile().marked.is_empty());
    assert_eq!(store.records_of(7).unwrap().len(), 2);
}

#[test]
fn a_file_that_is_not_kilns_database_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let j = jobs(&tmp.path().join("jobs"));
    let refused = |path: &Path| match SqliteStore::open(path, &j) {
        Err(StoreError::Foreign { why, .. }) => why,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("{} was opened", path.display()),
    };
    let text = tmp.path().join("text.db");
    std::fs::write(&text, "not a database at all, just words").unwrap();
    assert!(refused(&text).contains("not an SQLite database"));
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        "not a database at all, just words"
    );

    let other = tmp.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.execute_batch("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('mine');")
        .unwrap();
    drop(conn);
    assert!(refused(&other).contains("another program"));

    let newer = tmp.path().join("newer.db");
    drop(SqliteStore::open(&newer, &j).unwrap());
    let conn = rusqlite::Connection::open(&newer).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(refused(&newer).contains("schema version 99"));

    let truncated = tmp.path().join("truncated.db");
    {
        let store = SqliteStore::open(&truncated, &j).unwrap();
        for i in 0..200 {
            store.put(&record(&i.to_string(), "finished")).unwrap();
        }
    }
    let len = std::fs::metadata(&truncated).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let _ = std::fs::remove_file(tmp.path().join("truncated.db-wal"));
    assert!(refused(&truncated).contains("damaged"));

    let link = tmp.path().join("link.db");
    std::os::unix::fs::symlink(&newer, &link).unwrap();
    assert!(refused(&link).contains("symbolic link"));

    let fifo = tmp.path().join("fifo.db");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert!(refused(&fifo).contains("not a regular file"));
}
