//! A sub-job's signals on their way to its pipeline: progress, custom
//! signals and `finished`, each delivered once, in the order emitted. The
//! event bus may drop events for a slow subscriber; this queue never drops
//! one: a sub-job that gets too far ahead of its reader is refused more.

use super::JobResult;
use crate::engine::lock;
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
    /// Set once `finished` was queued: nothing follows it.
    closed: bool,
}

#[derive(Default)]
pub(crate) struct SignalQueue {
    inner: Mutex<Inner>,
    ready: Notify,
}

/// The queue is full: the reader is more than `limit` signals behind.
#[derive(Debug)]
pub(crate) struct QueueFull {
    pub limit: u32,
}

impl SignalQueue {
    /// Queue a progress or custom signal.
    pub(crate) fn push(&self, signal: JobSignal, limit: u32) -> Result<(), QueueFull> {
        let mut inner = lock(&self.inner);
        if inner.closed {
            // A guest still running after its end was recorded (it is being
            // dropped): nobody reads past `finished`.
            return Ok(());
        }
        if inner.queued.len() >= limit as usize {
            return Err(QueueFull { limit });
        }
        inner.queued.push_back(signal);
        drop(inner);
        self.ready.notify_waiters();
        Ok(())
    }

    /// Queue `finished`, the last signal; once only.
    pub(crate) fn close(&self, finished: JobSignal) {
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
    pub(crate) async fn next(&self) -> Option<JobSignal> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            // Registered before looking, so a push in between wakes us.
            notified.as_mut().enable();
            {
                let mut inner = lock(&self.inner);
                if let Some(s) = inner.queued.pop_front() {
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

    #[test]
    fn a_reader_too_far_behind_is_refused_more() {
        let q = SignalQueue::default();
        q.push(custom(1), 2).unwrap();
        q.push(custom(2), 2).unwrap();
        assert_eq!(q.push(custom(3), 2).unwrap_err().limit, 2);
        // `finished` always fits.
        q.close(finished());
    }
}
