//! The event bus: job state changes, progress, custom signals, plugin log
//! lines and the `finished` signal, published to any number of subscribers.
//!
//! Publishing never blocks a job: the bus is a bounded broadcast channel,
//! and a subscriber that falls behind loses the oldest events and is told how
//! many (`RecvError::Lagged`).

use crate::job::{FinishStatus, Job, JobState};
use serde::Serialize;
use tokio::sync::broadcast;

// Large enough for a job service starting thousands of jobs at once, whose
// event recorder must not fall behind.
const CAPACITY: usize = 1 << 15;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `12`, `12.1`, ...
    pub job_id: String,
    pub task: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    State {
        state: JobState,
    },
    Progress {
        fraction: Option<f32>,
        phase: String,
        message: String,
    },
    Signal {
        name: String,
        payload: serde_json::Value,
    },
    Log {
        level: String,
        message: String,
    },
    /// A line a native program wrote (cut at 1 KiB).
    Output {
        process: u32,
        stream: &'static str,
        line: String,
    },
    /// Emitted exactly once per job, after its final state is recorded.
    Finished {
        status: FinishStatus,
        reason: Option<String>,
    },
}

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: Event) {
        // No subscriber is not an error.
        let _ = self.tx.send(event);
    }

    /// Whether anyone listens; publishers of high-volume events skip the
    /// work when nobody does.
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// Publishing about one job, and its log: the one place a job's
/// `kiln.log` is appended to, with the same line published as a `log`
/// event.
impl EventBus {
    pub fn publish_job(&self, job: &Job, kind: EventKind) {
        self.publish(Event {
            job_id: job.id.clone(),
            task: job.task.name.clone(),
            kind,
        });
    }

    pub fn publish_state(&self, job: &Job) {
        self.publish_job(job, EventKind::State { state: job.state() });
    }

    /// A line in the job's `kiln.log` and the same as a `log` event. The
    /// job log is a diagnostic: a line that cannot be written never fails
    /// the job, and is said on the bus instead.
    pub fn log(&self, job: &Job, level: &str, message: String) {
        if let Err(e) = job.log_line(level, &message) {
            self.publish_job(
                job,
                EventKind::Log {
                    level: "warn".into(),
                    message: format!("cannot write kiln.log: {e}"),
                },
            );
        }
        self.publish_job(
            job,
            EventKind::Log {
                level: level.into(),
                message,
            },
        );
    }

    /// Trouble with a job that is not its own failure, where whoever
    /// watches the job sees it (and as a `tracing` record).
    pub fn warn(&self, job: &Job, message: String) {
        tracing::info!(job = %job.id, "{message}");
        self.log(job, "warn", message);
    }
}
