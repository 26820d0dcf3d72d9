//! `kiln:plugin/signals`: progress and custom named signals onto the event
//! bus. `finished` is never the guest's to send: the host emits it once, at
//! the job's end.

use crate::bindings::signals::{Host, Progress};
use crate::bindings::types::HostError;
use crate::interfaces::{View, check_len, invalid, limit, scope};
use kiln_jobs::events::EventKind;
use kiln_jobs::{Job, JobSignal};

/// Names the host reserves for its own signals.
const RESERVED: &[&str] = &["finished", "state", "progress", "log"];

impl Host for View<'_, scope::Events<'_>> {
    async fn emit_progress(&mut self, p: Progress) -> wasmtime::Result<Result<(), HostError>> {
        let Ok(b) = self.bound() else {
            return Ok(Ok(()));
        };
        // Oversized text is cut rather than refused: progress is best effort.
        let mut message = p.message;
        message.truncate(floor_char_boundary(&message, 4096));
        let mut phase = p.phase;
        phase.truncate(floor_char_boundary(&phase, 256));
        let fraction = p
            .fraction
            .filter(|f| f.is_finite())
            .map(|f| f.clamp(0.0, 1.0));
        if let Err(e) = queue(
            b.job,
            JobSignal::Progress {
                fraction,
                phase: phase.clone(),
                message: message.clone(),
            },
        ) {
            return Ok(Err(e));
        }
        b.events.publish_job(
            b.job,
            EventKind::Progress {
                fraction,
                phase,
                message,
            },
        );
        Ok(Ok(()))
    }

    async fn emit(
        &mut self,
        name: String,
        payload_json: String,
    ) -> wasmtime::Result<Result<(), HostError>> {
        Ok((|| {
            let b = self.bound()?;
            check_len("a signal payload", &payload_json)?;
            if name.is_empty() || name.len() > 128 || RESERVED.contains(&name.as_str()) {
                return Err(invalid(format!(
                    "signal name `{name}` is empty, longer than 128 bytes or reserved"
                )));
            }
            let payload: serde_json::Value = serde_json::from_str(&payload_json)
                .map_err(|e| invalid(format!("signal `{name}`: payload is not JSON: {e}")))?;
            queue(
                b.job,
                JobSignal::Custom {
                    name: name.clone(),
                    payload_json,
                },
            )?;
            b.events
                .publish_job(b.job, EventKind::Signal { name, payload });
            Ok(())
        })())
    }
}

/// Queue a signal for the job's pipeline, which reads each exactly once;
/// a top-level job has no reader and queues nothing.
fn queue(job: &Job, signal: JobSignal) -> Result<(), HostError> {
    if job.parent().is_none() {
        return Ok(());
    }
    job.signals
        .push(signal, job.grants.limits.signals)
        .map_err(|full| {
            limit(format!(
                "job {} has {} signals (or {} MiB) its pipeline has not read yet: the pipeline \
                 should read them with next-signal, or the operator raise limits.signals",
                job.id,
                full.limit,
                kiln_jobs::signal_queue::MAX_QUEUED_BYTES >> 20
            ))
        })
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}
