//! The [`JobStore`] seam in the database: job records, the index of
//! succeeded jobs by fingerprint, the started jobs, and reconciling after a
//! host that died.
//!
//! Only one process uses a database at a time (see the lock), so every
//! job that the database says was started and did not end, when it is
//! opened, was left by a host that is gone.

use crate::{SqliteStore, StoreError};
use kiln_jobs::reconcile::{HOST_DIED, NoteError, interrupt_record, unended, write_copy};
use kiln_jobs::store::{JobStore, Reconciled, StoredJob, id_order};
use rusqlite::{OptionalExtension, params};

/// The top-level job number of a job id (`12` of `12.3.1`).
pub fn top_of(id: &str) -> Option<i64> {
    id.split('.').next()?.parse().ok()
}

fn to_json(job: &StoredJob) -> rusqlite::Result<String> {
    serde_json::to_string(job).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

pub(crate) fn put_in(tx: &rusqlite::Transaction, job: &StoredJob) -> rusqlite::Result<()> {
    let top = top_of(&job.record.id).unwrap_or(-1);
    tx.execute(
        "INSERT INTO jobs (id, top, state, record) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, record = excluded.record",
        params![job.record.id, top, job.record.state, to_json(job)?],
    )?;
    if !unended(&job.record.state) {
        tx.execute("DELETE FROM started WHERE id = ?1", [&job.record.id])?;
    }
    Ok(())
}

pub(crate) fn parse_record(text: &str) -> Option<StoredJob> {
    serde_json::from_str(text).ok()
}

/// Whether job `a` is `b`, or one is a step (at any depth) of the other.
fn related(a: &str, b: &str) -> bool {
    let below =
        |x: &str, y: &str| x.len() > y.len() && x.starts_with(y) && x[y.len()..].starts_with('.');
    a == b || below(a, b) || below(b, a)
}

impl JobStore for SqliteStore {
    fn put(&self, job: &StoredJob) -> std::io::Result<()> {
        if top_of(&job.record.id).is_none() {
            return Err(std::io::Error::other(format!(
                "`{}` is not a job id",
                job.record.id
            )));
        }
        let job = job.clone();
        self.writer
            .write(move |tx| put_in(tx, &job))
            .map_err(Into::into)
    }

    fn get(&self, id: &str) -> Option<StoredJob> {
        let text: Option<String> = self
            .read(|c| {
                c.query_row("SELECT record FROM jobs WHERE id = ?1", [id], |r| {
                    r.get::<_, String>(0)
                })
                .optional()
            })
            .ok()?;
        parse_record(&text?)
    }

    fn list(&self) -> std::io::Result<Vec<StoredJob>> {
        let texts: Vec<String> = self.read(|c| {
            let mut stmt = c.prepare("SELECT record FROM jobs")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })?;
        let mut jobs: Vec<StoredJob> = texts.iter().filter_map(|t| parse_record(t)).collect();
        jobs.sort_by(|a, b| id_order(&a.record.id, &b.record.id));
        Ok(jobs)
    }

    fn add_finished(&self, fingerprint: &str, id: &str) -> std::io::Result<()> {
        let (fp, id) = (fingerprint.to_string(), id.to_string());
        self.writer
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO finished (fingerprint, id) VALUES (?1, ?2)",
                    params![fp, id],
                )
                .map(drop)
            })
            .map_err(Into::into)
    }

    fn find_finished(&self, fingerprint: &str, for_id: &str) -> Option<StoredJob> {
        let ids: Vec<String> = self
            .read(|c| {
                let mut stmt =
                    c.prepare("SELECT id FROM finished WHERE fingerprint = ?1 ORDER BY n DESC")?;
                let rows = stmt.query_map([fingerprint], |r| r.get(0))?;
                rows.collect()
            })
            .ok()?;
        ids.iter().find_map(|id| {
            if related(id, for_id) {
                return None;
            }
            let stored = self.get(id)?;
            (stored.record.succeeded()
                && stored.record.fingerprint.as_deref() == Some(fingerprint)
                && stored.params.is_some())
            .then_some(stored)
        })
    }

    fn note_started(&self, id: &str) -> Result<(), NoteError> {
        let job = id.to_string();
        self.writer
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO started (id) VALUES (?1) ON CONFLICT DO NOTHING",
                    [job],
                )
                .map(drop)
            })
            .map_err(|e| NoteError {
                job: id.to_string(),
                source: e.into(),
            })
    }

    fn reconcile(&self) -> Reconciled {
        let mut done = Reconciled::default();
        let started: Result<Vec<String>, StoreError> = self.read(|c| {
            let mut stmt = c.prepare("SELECT id FROM started")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        });
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                done.failed
                    .push(format!("failed to read the started jobs: {e}"));
                return done;
            }
        };
        let mut ended = Vec::new();
        for id in started {
            let Some(mut stored) = self.get(&id) else {
                ended.push(id);
                continue;
            };
            if !interrupt_record(&mut stored, HOST_DIED) {
                ended.push(id);
                continue;
            }
            if let Err(e) = self.put(&stored) {
                done.failed
                    .push(format!("failed to reconcile the record of job {id}: {e}"));
                continue;
            }
            ended.push(id.clone());
            match write_copy(&self.jobs, &stored) {
                Ok(dir) => done.marked.push(dir),
                Err(e) => {
                    done.marked.push(self.jobs.path().join(&stored.dir));
                    done.failed.push(format!(
                        "failed to rewrite the job directory's copy of job {id}'s record: {e}"
                    ));
                }
            }
        }
        let cleared = self.writer.write(move |tx| {
            for id in ended {
                tx.execute("DELETE FROM started WHERE id = ?1", [id])?;
            }
            Ok(())
        });
        if let Err(e) = cleared {
            done.failed
                .push(format!("failed to clear the started jobs: {e}"));
        }
        done
    }
}
