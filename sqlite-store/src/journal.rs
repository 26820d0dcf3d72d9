//! The job service's journal: submissions, the numbered events of each
//! job, and the highest job number ever given.

use crate::job_store::{parse_record, put_in};
use crate::{SqliteStore, StoreError};
use kiln_jobs::store::StoredJob;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// Where a submission is in its life. A submission is `queued` once
/// committed, `started` once handed to the host (before the job runs: a
/// host that dies after this leaves a job to mark interrupted, never one to
/// run again), `ended` once its `finished` event is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionPhase {
    Queued,
    Started,
    Ended,
}

impl SubmissionPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionPhase::Queued => "queued",
            SubmissionPhase::Started => "started",
            SubmissionPhase::Ended => "ended",
        }
    }

    fn parse(s: &str) -> SubmissionPhase {
        match s {
            "queued" => SubmissionPhase::Queued,
            "started" => SubmissionPhase::Started,
            _ => SubmissionPhase::Ended,
        }
    }
}

/// One submitted job, as committed before the submitter is answered.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The top-level job number.
    pub id: u64,
    pub task: String,
    /// The request as the service needs it to create the job again after a
    /// restart (its own JSON).
    pub request: serde_json::Value,
    /// Who submitted it (a token's name).
    pub principal: Option<String>,
    pub priority: i64,
    /// Seconds since the Unix epoch.
    pub submitted: f64,
    pub phase: SubmissionPhase,
    pub stop_requested: bool,
    pub idempotency_key: Option<String>,
}

/// What [`SqliteStore::submit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    Created,
    /// A submission with the same idempotency key exists: this job.
    Existing(u64),
}

/// One recorded event.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Its place among all events.
    pub n: i64,
    /// The top-level job it belongs to, and its number in that job's
    /// stream (1, 2, ...).
    pub top: i64,
    pub seq: i64,
    pub job_id: String,
    pub kind: String,
    pub time: f64,
    /// The event as sent to clients (JSON).
    pub data: String,
}

fn submission_of(r: &rusqlite::Row) -> rusqlite::Result<Submission> {
    let request: String = r.get(2)?;
    Ok(Submission {
        id: r.get::<_, i64>(0)? as u64,
        task: r.get(1)?,
        request: serde_json::from_str(&request).unwrap_or(serde_json::Value::Null),
        principal: r.get(3)?,
        priority: r.get(4)?,
        submitted: r.get(5)?,
        phase: SubmissionPhase::parse(&r.get::<_, String>(6)?),
        stop_requested: r.get::<_, i64>(7)? != 0,
        idempotency_key: r.get(8)?,
    })
}

const SUBMISSION_COLUMNS: &str =
    "id, task, request, principal, priority, submitted, phase, stop_requested, idempotency_key";

fn event_of(r: &rusqlite::Row) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        n: r.get(0)?,
        top: r.get(1)?,
        seq: r.get(2)?,
        job_id: r.get(3)?,
        kind: r.get(4)?,
        time: r.get(5)?,
        data: r.get(6)?,
    })
}

const EVENT_COLUMNS: &str = "n, top, seq, job_id, kind, time, data";

/// A page of the history.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub submission: Submission,
    /// The top-level job's record, once it has one.
    pub record: Option<StoredJob>,
}

impl SqliteStore {
    /// The highest job number ever given (0 for a new database).
    pub fn high_water(&self) -> Result<u64, StoreError> {
        let v: Option<i64> = self.read(|c| {
            c.query_row("SELECT value FROM meta WHERE key = 'high_water'", [], |r| {
                r.get(0)
            })
            .optional()
        })?;
        Ok(v.unwrap_or(0).max(0) as u64)
    }

    /// The submission with this idempotency key, if any.
    pub fn by_idempotency_key(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> = self.read(|c| {
            c.query_row(
                "SELECT id FROM submissions WHERE idempotency_key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()
        })?;
        Ok(v.map(|v| v as u64))
    }

    /// Commit a submission (synced) and raise the high water to its id;
    /// a submission whose idempotency key is taken is not added.
    pub async fn submit(&self, s: Submission) -> Result<SubmitOutcome, StoreError> {
        let request =
            serde_json::to_string(&s.request).map_err(|e| StoreError::Data(e.to_string()))?;
        self.writer
            .write_async(move |tx| {
                if let Some(key) = &s.idempotency_key {
                    let existing: Option<i64> = tx
                        .query_row(
                            "SELECT id FROM submissions WHERE idempotency_key = ?1",
                            [key],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if let Some(id) = existing {
                        return Ok(SubmitOutcome::Existing(id as u64));
                    }
                }
                tx.execute(
                    &format!(
                        "INSERT INTO submissions ({SUBMISSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                    ),
                    params![
                        s.id as i64,
                        s.task,
                        request,
                        s.principal,
                        s.priority,
                        s.submitted,
                        s.phase.as_str(),
                        s.stop_requested as i64,
                        s.idempotency_key
                    ],
                )?;
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('high_water', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                    [s.id as i64],
                )?;
                Ok(SubmitOutcome::Created)
            })
            .await
    }

    /// Raise the high water to `n` (a job number given, or found in the
    /// jobs directory).
    pub async fn raise_high_water(&self, n: u64) -> Result<(), StoreError> {
        self.writer
            .write_async(move |tx| {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('high_water', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                    [n as i64],
                )
                .map(drop)
            })
            .await
    }

    pub async fn set_phase(&self, id: u64, phase: SubmissionPhase) -> Result<(), StoreError> {
        self.writer
            .write_async(move |tx| {
                tx.execute(
                    "UPDATE submissions SET phase = ?2 WHERE id = ?1",
                    params![id as i64, phase.as_str()],
                )
                .map(drop)
            })
            .await
    }

    /// Record that a stop was asked; false when there is no such job.
    pub async fn request_stop(&self, id: u64) -> Result<bool, StoreError> {
        self.writer
            .write_async(move |tx| {
                tx.execute(
                    "UPDATE submissions SET stop_requested = 1 WHERE id = ?1",
                    [id as i64],
                )
                .map(|n| n > 0)
            })
            .await
    }

    /// Remove a job: its submission, records and events (its number stays
    /// given).
    pub async fn delete(&self, id: u64) -> Result<(), StoreError> {
        self.writer
            .write_async(move |tx| {
                let id = id as i64;
                tx.execute("DELETE FROM submissions WHERE id = ?1", [id])?;
                tx.execute("DELETE FROM jobs WHERE top = ?1", [id])?;
                tx.execute("DELETE FROM events WHERE top = ?1", [id])?;
                tx.execute(
                    "DELETE FROM finished WHERE id = ?1 OR id LIKE ?2",
                    params![id.to_string(), format!("{id}.%")],
                )?;
                Ok(())
            })
            .await
    }

    /// Record events; a top-level job's own `finished` ends its submission
    /// in the same transaction. With `record`, also put that job record.
    /// Returns each event's place among all events.
    pub async fn append_events(
        &self,
        events: Vec<EventRow>,
        record: Option<StoredJob>,
    ) -> Result<Vec<i64>, StoreError> {
        self.writer
            .write_async(move |tx| {
                if let Some(r) = &record {
                    put_in(tx, r)?;
                }
                let mut numbers = Vec::with_capacity(events.len());
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO events (top, seq, job_id, kind, time, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for e in &events {
                    stmt.execute(params![e.top, e.seq, e.job_id, e.kind, e.time, e.data])?;
                    numbers.push(tx.last_insert_rowid());
                    if e.kind == "finished" && e.job_id == e.top.to_string() {
                        tx.execute(
                            "UPDATE submissions SET phase = 'ended' WHERE id = ?1",
                            [e.top],
                        )?;
                    }
                }
                Ok(numbers)
            })
            .await
    }

    pub fn submission(&self, id: u64) -> Result<Option<Submission>, StoreError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE id = ?1"),
                [id as i64],
                submission_of,
            )
            .optional()
        })
    }

    /// Submissions not ended, in id order.
    pub fn unended_submissions(&self) -> Result<Vec<Submission>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE phase != 'ended' ORDER BY id"
            ))?;
            let rows = stmt.query_map([], submission_of)?;
            rows.collect()
        })
    }

    /// The history, newest first: at most `limit` jobs below `before`,
    /// filtered by the top-level job's state and task.
    pub fn history(
        &self,
        state: Option<&str>,
        task: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let rows: Vec<(Submission, Option<String>)> = self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {}, j.record FROM submissions s LEFT JOIN jobs j ON j.id = CAST(s.id AS TEXT)
                 WHERE (?1 IS NULL OR COALESCE(j.state, 'queued') = ?1)
                   AND (?2 IS NULL OR s.task = ?2)
                   AND (?3 IS NULL OR s.id < ?3)
                 ORDER BY s.id DESC LIMIT ?4",
                SUBMISSION_COLUMNS
                    .split(", ")
                    .map(|c| format!("s.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))?;
            let rows = stmt.query_map(
                params![state, task, before.map(|b| b as i64), limit as i64],
                |r| Ok((submission_of(r)?, r.get::<_, Option<String>>(9)?)),
            )?;
            rows.collect()
        })?;
        Ok(rows
            .into_iter()
            .map(|(submission, record)| HistoryRow {
                submission,
                record: record.as_deref().and_then(parse_record),
            })
            .collect())
    }

    /// The records of job `top` and its sub-jobs.
    pub fn records_of(&self, top: u64) -> Result<Vec<StoredJob>, StoreError> {
        let texts: Vec<String> = self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT record FROM jobs WHERE top = ?1")?;
            let rows = stmt.query_map([top as i64], |r| r.get(0))?;
            rows.collect()
        })?;
        Ok(texts.iter().filter_map(|t| parse_record(t)).collect())
    }

    /// Events of job `top` after its `after`th, at most `limit`.
    pub fn events_after(
        &self,
        top: u64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EventRow>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE top = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![top as i64, after, limit as i64], event_of)?;
            rows.collect()
        })
    }

    /// Events of every job after the `after`th recorded, at most `limit`.
    pub fn all_events_after(&self, after: i64, limit: usize) -> Result<Vec<EventRow>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE n > ?1 ORDER BY n LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![after, limit as i64], event_of)?;
            rows.collect()
        })
    }

    /// The number of the last event of job `top` (0 when none).
    pub fn last_seq(&self, top: u64) -> Result<i64, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT COALESCE(max(seq), 0) FROM events WHERE top = ?1",
                [top as i64],
                |r| r.get(0),
            )
        })
    }

    /// Whether job `top`'s own `finished` is recorded.
    pub fn has_finished(&self, top: u64) -> Result<bool, StoreError> {
        self.job_has_finished(top, &top.to_string())
    }

    /// Whether job `job` (of top-level job `top`) has its `finished`.
    pub fn job_has_finished(&self, top: u64, job: &str) -> Result<bool, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT count(*) FROM events WHERE top = ?1 AND kind = 'finished' AND job_id = ?2",
                params![top as i64, job],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n > 0)
    }

    /// The last `progress` event of each job of `top`.
    pub fn last_progress(&self, top: u64) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT job_id, data FROM events WHERE n IN (
                    SELECT max(n) FROM events WHERE top = ?1 AND kind = 'progress' GROUP BY job_id)",
            )?;
            let rows = stmt.query_map([top as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// The number of the newest event of any job (0 when there is none).
    pub fn last_event(&self) -> Result<i64, StoreError> {
        self.read(|c| c.query_row("SELECT COALESCE(max(n), 0) FROM events", [], |r| r.get(0)))
    }

    /// The last progress event of top-level job `top` itself, if any.
    pub fn own_progress(&self, top: u64) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT data FROM events WHERE top = ?1 AND job_id = ?2 AND kind = 'progress'
                 ORDER BY seq DESC LIMIT 1",
            )?;
            let mut rows = stmt.query_map(params![top as i64, top.to_string()], |r| r.get(0))?;
            rows.next().transpose()
        })
    }

    /// Jobs by state (top-level), for metrics.
    pub fn count_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT COALESCE(j.state, 'queued'), count(*) FROM submissions s
                 LEFT JOIN jobs j ON j.id = CAST(s.id AS TEXT) GROUP BY 1",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Whether the database answers (for a health check).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .map(drop)
    }
}
