//! A sub-job's signals on their way to its pipeline: progress, custom
//! signals and `finished`, each delivered once, in the order emitted. The
//! event bus may drop events for a slow subscriber; this queue never drops
//! a custom signal or `finished`: a sub-job too far ahead of its reader is
//! refused more custom signals. Progress is a running report, so a report
//! that finds the queue full replaces the newest unread one when that one
//! is progress too (a pipeline that only waits for the end is not made to
//! fail its chatty steps).

use crate::JobResult;
use crate::lock;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

/// One signal of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobSignal {
    Progress {
        fraction: Option<f32>,
        phase: String,
        message: String,
    },
    Custom {
        name: String,
        payload_json: String,
    },
    Finished {
        result: JobResult,
        attempts: u32,
        reused_from: Option<String>,
    },
}

#[derive(Default)]
struct Inner {
    queued: VecDeque<JobSignal>,
    /// Bytes of text held in `queued`.
    bytes: usize,
    /// Set once `finished` was queued: nothing follows it.
    closed: bool,
}

/// Text bytes of unread signals one job may hold in the host.
pub const MAX_QUEUED_BYTES: usize = 16 << 20;

fn size(s: &JobSignal) -> usize {
    match s {
        JobSignal::Progress { phase, message, .. } => phase.len() + message.len(),
        JobSignal::Custom { name, payload_json } => name.len() + payload_json.len(),
        JobSignal::Finished { .. } => 0,
    }
}

#[derive(Default)]
pub struct SignalQueue {
    inner: Mutex<Inner>,
    ready: Notify,
}

/// The queue is full: the reader is `limit` signals, or
/// [`MAX_QUEUED_BYTES`], behind.
#[derive(Debug)]
pub struct QueueFull {
    pub limit: u32,
}

impl SignalQueue {
    /// Queue a progress or custom signal.
    pub fn push(&self, signal: JobSignal, limit: u32) -> Result<(), QueueFull> {
        let mut inner = lock(&self.inner);
        if inner.closed {
            // A guest still running after its end was recorded (it is being
            // dropped): nobody reads past `finished`.
            return Ok(());
        }
        let full = |inner: &Inner, extra: usize| {
            inner.queued.len() >= limit as usize || inner.bytes + extra > MAX_QUEUED_BYTES
        };
        if full(&inner, size(&signal)) {
            let newest_is_progress =
                matches!(inner.queued.back(), Some(JobSignal::Progress { .. }));
            if !(newest_is_progress && matches!(signal, JobSignal::Progress { .. })) {
                return Err(QueueFull { limit });
            }
            let replaced = inner.queued.pop_back().map(|s| size(&s)).unwrap_or(0);
            inner.bytes -= replaced;
        }
        inner.bytes += size(&signal);
        inner.queued.push_back(signal);
        drop(inner);
        self.ready.notify_waiters();
        Ok(())
    }

    /// Queue `finished`, the last signal; once only.
    pub fn close(&self, finished: JobSignal) {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return;
        }
        inner.closed = true;
        inner.queued.push_back(finished);
        drop(inner);
        self.ready.notify_waiters();
    }

    /// The next signal, waiting for one; `None` once `finished` has been
    /// taken.
    pub async fn next(&self) -> Option<JobSignal> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            // Registered before looking, so a push in between wakes us.
            notified.as_mut().enable();
            {
                let mut inner = lock(&self.inner);
                if let Some(s) = inner.queued.pop_front() {
                    inner.bytes -= size(&s);
                    return Some(s);
                }
                if inner.closed {
                    return None;
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn custom(n: u32) -> JobSignal {
        JobSignal::Custom {
            name: "n".into(),
            payload_json: n.to_string(),
        }
    }

    fn finished() -> JobSignal {
        JobSignal::Finished {
            result: JobResult::succeeded(),
            attempts: 1,
            reused_from: None,
        }
    }

    #[tokio::test]
    async fn each_signal_once_in_order_then_finished_then_none() {
        let q = Arc::new(SignalQueue::default());
        let reader = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(s) = q.next().await {
                    got.push(s);
                }
                got
            })
        };
        for n in 0..1000 {
            q.push(custom(n), 10_000).unwrap();
            if n % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        q.close(finished());
        q.close(finished());
        q.push(custom(9999), 10_000).unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.len(), 1001);
        for (n, s) in got.iter().take(1000).enumerate() {
            assert_eq!(*s, custom(n as u32));
        }
        assert_eq!(got[1000], finished());
    }

    fn progress(n: u32) -> JobSignal {
        JobSignal::Progress {
            fraction: None,
            phase: "p".into(),
            message: n.to_string(),
        }
    }

    #[tokio::test]
    async fn a_reader_too_far_behind_is_refused_custom_signals_and_progress_merges() {
        let q = SignalQueue::default();
        q.push(custom(1), 2).unwrap();
        q.push(progress(1), 2).unwrap();
        // Full: progress replaces the newest unread progress...
        q.push(progress(2), 2).unwrap();
        q.push(progress(3), 2).unwrap();
        // ...a custom signal is refused.
        assert_eq!(q.push(custom(3), 2).unwrap_err().limit, 2);
        // `finished` always fits.
        q.close(finished());
        assert_eq!(q.next().await, Some(custom(1)));
        assert_eq!(q.next().await, Some(progress(3)));
        assert_eq!(q.next().await, Some(finished()));
        assert_eq!(q.next().await, None);
    }

    #[test]
    fn unread_bytes_are_bounded() {
        let q = SignalQueue::default();
        let big = |n: u32| JobSignal::Custom {
            name: "big".into(),
            payload_json: format!("\"{}{n}\"", "x".repeat(1 << 20)),
        };
        let mut sent = 0;
        while q.push(big(sent), 10_000).is_ok() {
            sent += 1;
        }
        assert_eq!(sent as usize, MAX_QUEUED_BYTES / ((1 << 20) + 8));
    }
}
