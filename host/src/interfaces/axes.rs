//! `kiln:plugin/axes`: the granted axes of the host's stage, within their
//! envelopes.

use crate::bindings::axes::{AxisInfo, Host, HostMotion, MotionEnd as WitEnd, MotionStatus};
use crate::bindings::types::HostError;
use crate::handles::MotionHandle;
use crate::interfaces::{
    View, cancelled, check_len, denied, failed, invalid, not_found, scope, until_cancelled,
};
use crate::lock;
use kiln_jobs::AuditEvent;
use kiln_jobs::grants::Capability;
use kiln_stage::{MotionEnd, StageError};
use wasmtime::component::Resource;

type HostResult<T> = wasmtime::Result<Result<T, HostError>>;

/// A request the stage refused is the plugin's to fix (`invalid`); a stage
/// that failed to carry out a good one is `failed`.
fn stage_error(e: StageError) -> HostError {
    if e.is_bad_request() {
        invalid(e.to_string())
    } else {
        failed(e.to_string())
    }
}

impl View<'_, scope::Axes<'_>> {
    /// The axis if it exists and is granted.
    fn granted_axis(&self, id: &str) -> Result<(), HostError> {
        check_len("an axis id", id)?;
        let b = self.bound()?;
        b.job.require(Capability::Axis, id).map_err(denied)?;
        if b.stage.axis(id).is_none() {
            return Err(not_found(format!(
                "axis `{id}` is granted but the stage has no such axis"
            )));
        }
        Ok(())
    }

    fn start_motion(
        &mut self,
        id: &str,
        target: impl FnOnce(f64) -> f64,
        speed: Option<f64>,
    ) -> Result<MotionHandle, HostError> {
        self.granted_axis(id)?;
        let b = self.bound()?;
        let from = b.stage.position(id).map_err(stage_error)?;
        let target = target(from);
        if let Some(envelope) = b.job.grants.axis_limits.get(id)
            && let Err(message) = envelope.check(id, target, speed)
        {
            b.job.audit(&AuditEvent::Denied {
                capability: "axis_limits",
                name: id,
                message: &message,
            });
            return Err(denied(message));
        }
        // Without a speed, the axis's maximum, capped by the envelope.
        let speed = speed.or_else(|| b.job.grants.axis_limits.get(id).and_then(|e| e.max_speed));
        b.job.audit(&AuditEvent::AxisMove {
            axis: id,
            target,
            speed,
        });
        let motion = b.stage.move_to(id, target, speed).map_err(stage_error)?;
        lock(&b.attempt.motions).push(motion.clone());
        Ok(MotionHandle { motion })
    }

    fn push_motion(
        &mut self,
        m: Result<MotionHandle, HostError>,
    ) -> HostResult<Resource<MotionHandle>> {
        if let Err(e) = self.take_handle() {
            if let Ok(m) = &m {
                m.motion.stop();
            }
            return Ok(Err(e));
        }
        match m {
            Ok(m) => Ok(Ok(self.table().push(m)?)),
            Err(e) => {
                self.release_handle();
                Ok(Err(e))
            }
        }
    }
}

impl Host for View<'_, scope::Axes<'_>> {
    async fn list(&mut self) -> wasmtime::Result<Vec<AxisInfo>> {
        let Ok(b) = self.bound() else {
            return Ok(Vec::new());
        };
        let stage = &b.stage;
        Ok(stage
            .axes()
            .into_iter()
            .filter(|c| b.job.grants.axes.contains(&c.id))
            .filter_map(|c| {
                Some(AxisInfo {
                    position: stage.position(&c.id).ok()?,
                    id: c.id,
                    units: c.units,
                    min: c.min,
                    max: c.max,
                    max_speed: c.max_speed,
                })
            })
            .collect())
    }

    async fn position(&mut self, axis: String) -> HostResult<f64> {
        Ok(self
            .granted_axis(&axis)
            .and_then(|()| self.bound()?.stage.position(&axis).map_err(stage_error)))
    }

    async fn move_absolute(
        &mut self,
        axis: String,
        target: f64,
        speed: Option<f64>,
    ) -> HostResult<Resource<MotionHandle>> {
        let m = self.start_motion(&axis, |_| target, speed);
        self.push_motion(m)
    }

    async fn move_relative(
        &mut self,
        axis: String,
        delta: f64,
        speed: Option<f64>,
    ) -> HostResult<Resource<MotionHandle>> {
        let m = self.start_motion(&axis, |from| from + delta, speed);
        self.push_motion(m)
    }
}

impl HostMotion for View<'_, scope::Axes<'_>> {
    async fn status(&mut self, r: Resource<MotionHandle>) -> wasmtime::Result<MotionStatus> {
        let m = &self.table_ref().get(&r)?.motion;
        Ok(MotionStatus {
            position: m.position(),
            target: m.target(),
            done: m.end().is_some(),
        })
    }

    async fn stop(&mut self, r: Resource<MotionHandle>) -> wasmtime::Result<()> {
        self.table_ref().get(&r)?.motion.stop();
        Ok(())
    }

    async fn wait(&mut self, r: Resource<MotionHandle>) -> HostResult<(WitEnd, f64)> {
        let m = self.table_ref().get(&r)?.motion.clone();
        let token = self.cancel_token();
        tokio::select! {
            ended = m.wait() => Ok(ended.map(|(end, pos)| {
                let end = match end {
                    MotionEnd::Reached => WitEnd::Reached,
                    MotionEnd::Stopped => WitEnd::Stopped,
                };
                (end, pos)
            }).map_err(stage_error)),
            _ = until_cancelled(&token) => {
                // A cancelled job leaves no axis moving.
                m.stop();
                Ok(Err(cancelled()))
            }
        }
    }

    async fn drop(&mut self, r: Resource<MotionHandle>) -> wasmtime::Result<()> {
        self.table().delete(r)?;
        self.release_handle();
        Ok(())
    }
}
