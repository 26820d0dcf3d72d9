//! What a pipeline job keeps about its steps (sub-jobs): the cap on steps
//! running at once, each step's failure policy, and the step failures that
//! decide the pipeline's own outcome and fill its error report.

use crate::lock;
use crate::{FinishStatus, Job, JobResult};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// What a step's failure does to its pipeline (`jobs.failure-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum FailurePolicy {
    #[default]
    FailPipeline,
    Continue,
    Retry {
        retries: u32,
        backoff_ms: u64,
    },
    MarkUnsatisfactory,
}

impl FailurePolicy {
    /// The wait before retry number `n` (from 1): the backoff, doubled for
    /// each retry after the first, at most an hour.
    pub fn backoff(self, n: u32) -> Duration {
        let FailurePolicy::Retry { backoff_ms, .. } = self else {
            return Duration::ZERO;
        };
        let factor = 1u64 << n.saturating_sub(1).min(20);
        Duration::from_millis(backoff_ms.saturating_mul(factor).min(3_600_000))
    }

    /// Attempts a step may make under this policy.
    pub fn max_attempts(self) -> u32 {
        match self {
            FailurePolicy::Retry { retries, .. } => retries.saturating_add(1),
            _ => 1,
        }
    }
}

/// A step that did not succeed, as its pipeline's error report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StepFailure {
    pub job_id: String,
    pub task: String,
    pub status: FinishStatus,
    pub reason: Option<String>,
    #[serde(flatten)]
    pub policy: FailurePolicy,
}

impl StepFailure {
    /// `sub-job 3.2 (refine) failed: <its reason>`, as the SDK words it.
    pub fn describe(&self) -> String {
        let word = match self.status {
            FinishStatus::Succeeded => "succeeded",
            FinishStatus::Failed => "failed",
            FinishStatus::Interrupted => "was interrupted",
            FinishStatus::Unsatisfactory => "was unsatisfactory",
        };
        match &self.reason {
            Some(r) => format!("sub-job {} ({}) {word}: {r}", self.job_id, self.task),
            None => format!("sub-job {} ({}) {word}", self.job_id, self.task),
        }
    }
}

/// The pipeline side of a job: empty and unused for a job without steps.
pub struct PipelineSteps {
    /// Slots for this job's steps running at once; replaced (before any
    /// step starts) when the pipeline sets its own cap.
    slots: std::sync::Mutex<Arc<Semaphore>>,
    /// Whether a step has started: the cap is fixed from then on.
    started_any: std::sync::atomic::AtomicBool,
    /// Steps that did not succeed, in the order they ended.
    failures: std::sync::Mutex<Vec<StepFailure>>,
}

impl PipelineSteps {
    pub fn new(cap: u32) -> PipelineSteps {
        PipelineSteps {
            slots: std::sync::Mutex::new(Arc::new(Semaphore::new(cap.max(1) as usize))),
            started_any: Default::default(),
            failures: Default::default(),
        }
    }

    /// Set the cap; `Err` says why not.
    pub fn set_cap(&self, n: u32, most: u32) -> Result<(), CapError> {
        if n == 0 {
            return Err(CapError::Zero);
        }
        if n > most {
            return Err(CapError::AboveLimit { most });
        }
        let mut slots = lock(&self.slots);
        if self.started_any.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(CapError::AlreadyStarted);
        }
        *slots = Arc::new(Semaphore::new(n as usize));
        Ok(())
    }

    /// Take a place in the queue for a slot, in the order steps are
    /// started: the wait is polled once here, which queues it, and goes on
    /// in the step's runner.
    pub async fn queue_for_slot(&self) -> SlotWait {
        let slots = {
            let slots = lock(&self.slots);
            self.started_any
                .store(true, std::sync::atomic::Ordering::SeqCst);
            slots.clone()
        };
        let mut wait: SlotFuture = Box::pin(slots.acquire_owned());
        match futures::poll!(wait.as_mut()) {
            std::task::Poll::Ready(permit) => SlotWait::Ready(permit.ok()),
            std::task::Poll::Pending => SlotWait::Queued(wait),
        }
    }

    /// The step failure that fails the pipeline, if any.
    pub fn failing_step(&self) -> Option<StepFailure> {
        lock(&self.failures)
            .iter()
            .find(|f| fails_pipeline(f))
            .cloned()
    }

    pub fn failures(&self) -> Vec<StepFailure> {
        lock(&self.failures).clone()
    }

    /// Start again, for another attempt of the pipeline: no failures, and
    /// the cap may be set anew (the last attempt's steps have all ended).
    pub fn reset(&self, cap: u32) {
        lock(&self.failures).clear();
        *lock(&self.slots) = Arc::new(Semaphore::new(cap.max(1) as usize));
        self.started_any
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    fn record(&self, f: StepFailure) {
        lock(&self.failures).push(f);
    }
}

type SlotFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>,
            > + Send,
    >,
>;

/// A step's slot under its pipeline's cap: taken, or a queued wait for one.
pub enum SlotWait {
    /// `None` only if the semaphore was closed, which it never is.
    Ready(Option<tokio::sync::OwnedSemaphorePermit>),
    Queued(SlotFuture),
}

fn fails_pipeline(f: &StepFailure) -> bool {
    matches!(
        f.policy,
        FailurePolicy::FailPipeline | FailurePolicy::Retry { .. }
    )
}

#[derive(Debug, thiserror::Error)]
pub enum CapError {
    #[error("the cap on running sub-jobs must be at least 1")]
    Zero,
    #[error(
        "at most {most} sub-jobs may run at once (limits.sub_jobs in the grants manifest allows more)"
    )]
    AboveLimit { most: u32 },
    #[error("the cap on running sub-jobs must be set before the first sub-job starts")]
    AlreadyStarted,
}

/// Apply a step's failure policy to its pipeline once the step has ended:
/// a failure that fails the pipeline cancels the pipeline's other running
/// steps. Interrupted steps were cancelled, not failed, and change nothing.
pub fn step_ended(parent: &Job, step: &Job, result: &JobResult) {
    if matches!(
        result.status,
        FinishStatus::Succeeded | FinishStatus::Interrupted
    ) {
        return;
    }
    let failure = StepFailure {
        job_id: step.id.clone(),
        task: step.task.name.clone(),
        status: result.status,
        reason: result.reason.clone(),
        policy: step.failure_policy(),
    };
    let fatal = fails_pipeline(&failure);
    parent.steps.record(failure);
    if fatal {
        for sibling in parent.children() {
            if sibling.id != step.id && sibling.result().is_none() {
                sibling.cancel();
            }
        }
    }
}

/// The pipeline's outcome from its own run's result and its steps' ends:
/// a failed step (under `fail-pipeline`, or out of retries) fails it; one
/// under `mark-unsatisfactory` makes a success unsatisfactory. A pipeline
/// that was interrupted stays interrupted.
pub fn pipeline_outcome(job: &Job, own: JobResult) -> JobResult {
    if own.status == FinishStatus::Interrupted {
        return own;
    }
    if let Some(step) = job.steps.failing_step() {
        let mut reason = step.describe();
        if own.status == FinishStatus::Failed
            && let Some(r) = own.reason.as_deref().filter(|r| !r.contains(&step.job_id))
        {
            reason.push_str(&format!(" (the pipeline reported: {r})"));
        }
        return JobResult::failed(reason);
    }
    if own.status == FinishStatus::Succeeded {
        let marked: Vec<String> = job
            .steps
            .failures()
            .iter()
            .filter(|f| f.policy == FailurePolicy::MarkUnsatisfactory)
            .map(StepFailure::describe)
            .collect();
        if !marked.is_empty() {
            return JobResult {
                status: FinishStatus::Unsatisfactory,
                reason: Some(marked.join("; ")),
            };
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_retry() {
        let p = FailurePolicy::Retry {
            retries: 3,
            backoff_ms: 100,
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.max_attempts(), 4);
        assert_eq!(FailurePolicy::Continue.max_attempts(), 1);
        let huge = FailurePolicy::Retry {
            retries: u32::MAX,
            backoff_ms: u64::MAX,
        };
        assert_eq!(huge.backoff(u32::MAX), Duration::from_secs(3600));
        assert_eq!(huge.max_attempts(), u32::MAX);
    }

    #[test]
    fn the_cap_is_checked_and_fixed_once_a_step_started() {
        let steps = PipelineSteps::new(4);
        assert!(matches!(steps.set_cap(0, 4), Err(CapError::Zero)));
        assert!(matches!(
            steps.set_cap(5, 4),
            Err(CapError::AboveLimit { most: 4 })
        ));
        steps.set_cap(2, 4).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = steps.queue_for_slot().await;
            let b = steps.queue_for_slot().await;
            assert!(matches!(a, SlotWait::Ready(Some(_))));
            assert!(matches!(b, SlotWait::Ready(Some(_))));
            assert!(matches!(steps.set_cap(3, 4), Err(CapError::AlreadyStarted)));
            // Waiters are served in the order they queued.
            let SlotWait::Queued(c) = steps.queue_for_slot().await else {
                panic!("a third step got a slot under a cap of 2")
            };
            let SlotWait::Queued(d) = steps.queue_for_slot().await else {
                panic!("a fourth step got a slot under a cap of 2")
            };
            let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let (o1, o2) = (order.clone(), order.clone());
            let d = tokio::spawn(async move {
                let p = d.await;
                o2.lock().unwrap().push("d");
                p
            });
            let c = tokio::spawn(async move {
                let p = c.await;
                o1.lock().unwrap().push("c");
                p
            });
            tokio::task::yield_now().await;
            drop(a);
            let _c = c.await.unwrap();
            drop(b);
            let _d = d.await.unwrap();
            assert_eq!(*order.lock().unwrap(), ["c", "d"]);
        });
    }
}
