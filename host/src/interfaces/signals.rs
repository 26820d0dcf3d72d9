//! `kiln:plugin/signals`: progress and custom named signals onto the event
//! bus. `finished` is never the guest's to send: the host emits it once, at
//! the job's end.

use crate::bindings::signals::{Host, Progress};
use crate::bindings::types::HostError;
use crate::events::EventKind;
use crate::interfaces::{PluginState, check_len, invalid};

/// Names the host reserves for its own signals.
const RESERVED: &[&str] = &["finished", "state", "progress", "log"];

impl Host for PluginState {
    async fn emit_progress(&mut self, p: Progress) -> wasmtime::Result<()> {
        let Ok(b) = self.bound() else { return Ok(()) };
        // Oversized text is cut rather than refused: progress is best effort.
        let mut message = p.message;
        message.truncate(floor_char_boundary(&message, 4096));
        let mut phase = p.phase;
        phase.truncate(floor_char_boundary(&phase, 256));
        let fraction = p
            .fraction
            .filter(|f| f.is_finite())
            .map(|f| f.clamp(0.0, 1.0));
        b.host.publish(
            &b.job,
            EventKind::Progress {
                fraction,
                phase,
                message,
            },
        );
        Ok(())
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
            b.host.publish(&b.job, EventKind::Signal { name, payload });
            Ok(())
        })())
    }
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
