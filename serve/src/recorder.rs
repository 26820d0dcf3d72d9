//! The event recorder: every event of the host's bus (but programs' output
//! lines, which are in their log files) is numbered within its top-level
//! job, committed to the journal, and only then sent to the service's
//! subscribers. A client that reads the journal after subscribing, and
//! skips what it has seen, so gets every event exactly once, in order,
//! whether it was committed before or after it subscribed.
//!
//! A top-level job's `finished` is recorded once: the host publishes it
//! once, and [`RecorderHandle::ensure_finished`] (called when the job has
//! ended) adds it only if the bus lost it.

use crate::metrics::Metrics;
use kiln_host::jobs::store::{JobStore, StoredJob};
use kiln_host::{Event, EventKind, Host};
use kiln_sqlite_store::{EventRow, SqliteStore, top_of};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Events waiting to be sent to slow subscribers; one that falls further
/// behind is dropped (and reconnects from the journal).
const FANOUT_CAPACITY: usize = 1 << 14;

/// Most events committed in one batch.
const MAX_BATCH: usize = 4096;

enum Control {
    /// The job has ended: record its `finished` if the bus has not.
    Ensure(u64, oneshot::Sender<()>),
    /// Record this ended job (its record and `finished`) directly.
    Finish(
        u64,
        StoredJob,
        oneshot::Sender<Result<(), kiln_sqlite_store::StoreError>>,
    ),
    /// Answer once everything received so far is committed.
    Flush(oneshot::Sender<()>),
}

/// What the service holds of the recorder.
#[derive(Clone)]
pub struct RecorderHandle {
    control: mpsc::UnboundedSender<Control>,
    fanout: broadcast::Sender<Arc<EventRow>>,
}

impl RecorderHandle {
    /// Committed events, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventRow>> {
        self.fanout.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.fanout.receiver_count()
    }

    pub async fn ensure_finished(&self, top: u64) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Ensure(top, tx)).is_ok() {
            let _ = rx.await;
        }
    }

    pub async fn finish_recorded(
        &self,
        top: u64,
        stored: StoredJob,
    ) -> Result<(), kiln_sqlite_store::StoreError> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Finish(top, stored, tx))
            .map_err(|_| kiln_sqlite_store::StoreError::WriterGone)?;
        rx.await
            .map_err(|_| kiln_sqlite_store::StoreError::WriterGone)?
    }

    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

pub struct Recorder {
    store: Arc<SqliteStore>,
    metrics: Metrics,
    fanout: broadcast::Sender<Arc<EventRow>>,
    /// The last number given in each top-level job whose `finished` is not
    /// recorded yet.
    open: HashMap<i64, i64>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Recorder {
    /// Subscribe to the host's bus now (before any job is submitted) and
    /// record from then on.
    pub fn start(host: &Host, store: Arc<SqliteStore>, metrics: Metrics) -> RecorderHandle {
        let bus = host.events().subscribe();
        let (control, control_rx) = mpsc::unbounded_channel();
        let fanout = broadcast::channel(FANOUT_CAPACITY).0;
        let recorder = Recorder {
            store,
            metrics,
            fanout: fanout.clone(),
            open: HashMap::new(),
        };
        tokio::spawn(recorder.run(bus, control_rx));
        RecorderHandle { control, fanout }
    }

    async fn run(
        mut self,
        mut bus: broadcast::Receiver<Event>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        use broadcast::error::{RecvError, TryRecvError};
        let mut bus_open = true;
        loop {
            let mut batch = Vec::new();
            let mut ctl = None;
            tokio::select! {
                biased;
                msg = control.recv() => match msg {
                    Some(m) => ctl = Some(m),
                    None => return,
                },
                ev = bus.recv(), if bus_open => match ev {
                    Ok(e) => batch.push(e),
                    Err(RecvError::Lagged(n)) => self.lost(n),
                    Err(RecvError::Closed) => bus_open = false,
                },
            }
            // Whatever the bus holds now was published before the control
            // message was sent: record it first.
            while bus_open && batch.len() < MAX_BATCH {
                match bus.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(TryRecvError::Lagged(n)) => self.lost(n),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => bus_open = false,
                }
            }
            self.record(batch, None).await;
            match ctl {
                None => {}
                Some(Control::Flush(reply)) => drop(reply.send(())),
                Some(Control::Ensure(top, reply)) => {
                    self.ensure(top).await;
                    let _ = reply.send(());
                }
                Some(Control::Finish(top, stored, reply)) => {
                    let r = self.finish(top, stored).await;
                    let _ = reply.send(r);
                }
            }
        }
    }

    fn lost(&self, n: u64) {
        tracing::warn!("the event recorder fell behind the host's bus and lost {n} events");
        self.metrics.events_lost.inc_by(n);
    }

    fn next_seq(&mut self, top: i64) -> i64 {
        let last = match self.open.get(&top) {
            Some(&n) => n,
            None => self.store.last_seq(top as u64).unwrap_or(0),
        };
        self.open.insert(top, last + 1);
        last + 1
    }

    fn row_of(&mut self, event: &Event) -> Option<EventRow> {
        if matches!(event.kind, EventKind::Output { .. }) {
            return None;
        }
        let top = top_of(&event.job_id)?;
        let mut data = serde_json::to_value(event).ok()?;
        let kind = data.get("event")?.as_str()?.to_string();
        let seq = self.next_seq(top);
        let time = now();
        if let Some(obj) = data.as_object_mut() {
            obj.insert("seq".into(), seq.into());
            obj.insert("time".into(), time.into());
        }
        Some(EventRow {
            n: 0,
            top,
            seq,
            job_id: event.job_id.clone(),
            kind,
            time,
            data: data.to_string(),
        })
    }

    async fn record(&mut self, events: Vec<Event>, record: Option<StoredJob>) {
        let mut rows = Vec::with_capacity(events.len());
        for e in &events {
            if let Some(row) = self.row_of(e) {
                rows.push(row);
            }
        }
        if rows.is_empty() && record.is_none() {
            return;
        }
        let numbers = match self.store.append_events(rows.clone(), record).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("events could not be recorded: {e}");
                self.metrics.events_lost.inc_by(rows.len() as u64);
                return;
            }
        };
        for (mut row, n) in rows.into_iter().zip(numbers) {
            row.n = n;
            if row.kind == "finished" && row.job_id == row.top.to_string() {
                self.open.remove(&row.top);
            }
            self.metrics.events.inc();
            let _ = self.fanout.send(Arc::new(row));
        }
    }

    /// Record the `finished` of an ended job whose bus event was lost.
    async fn ensure(&mut self, top: u64) {
        // An error reading is taken as recorded: a second `finished` is
        // worse than a stream that waits for one.
        if self.store.has_finished(top).unwrap_or(true) {
            self.open.remove(&(top as i64));
            return;
        }
        let Some(stored) = JobStore::get(&*self.store, &top.to_string()) else {
            return;
        };
        tracing::warn!("job {top}'s finished event was lost on the bus; recorded from its record");
        let event = finished_event(&stored);
        self.record(vec![event], None).await;
    }

    /// Put an ended job's record and record its `finished`, both in one
    /// transaction.
    async fn finish(
        &mut self,
        top: u64,
        stored: StoredJob,
    ) -> Result<(), kiln_sqlite_store::StoreError> {
        if self.store.has_finished(top)? {
            JobStore::put(&*self.store, &stored)
                .map_err(|e| kiln_sqlite_store::StoreError::Data(e.to_string()))?;
            return self
                .store
                .set_phase(top, kiln_sqlite_store::SubmissionPhase::Ended)
                .await;
        }
        let state = Event {
            job_id: stored.record.id.clone(),
            task: stored.record.task.clone(),
            kind: EventKind::State {
                state: parse_state(&stored.record.state),
            },
        };
        let finished = finished_event(&stored);
        self.record(vec![state, finished], Some(stored)).await;
        Ok(())
    }
}

fn parse_state(s: &str) -> kiln_host::JobState {
    use kiln_host::JobState;
    [
        JobState::Pending,
        JobState::Queued,
        JobState::Running,
        JobState::Finished,
        JobState::Failed,
        JobState::Interrupted,
        JobState::Unsatisfactory,
    ]
    .into_iter()
    .find(|j| j.as_str() == s)
    .unwrap_or(JobState::Interrupted)
}

fn finished_event(stored: &StoredJob) -> Event {
    use kiln_host::FinishStatus;
    let status = match stored.record.status.as_deref() {
        Some("succeeded") => FinishStatus::Succeeded,
        Some("failed") => FinishStatus::Failed,
        Some("unsatisfactory") => FinishStatus::Unsatisfactory,
        _ => FinishStatus::Interrupted,
    };
    Event {
        job_id: stored.record.id.clone(),
        task: stored.record.task.clone(),
        kind: EventKind::Finished {
            status,
            reason: stored.record.reason.clone(),
        },
    }
}
