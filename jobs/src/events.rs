//! The event bus: job state changes, progress, custom signals, plugin log
//! lines and the `finished` signal, published to any number of subscribers.
//!
//! Publishing never blocks a job: the bus is a bounded broadcast channel,
//! and a subscriber that falls behind loses the oldest events and is told how
//! many (`RecvError::Lagged`).

use crate::job::{FinishStatus, JobState};
use serde::Serialize;
use tokio::sync::broadcast;

const CAPACITY: usize = 4096;

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
