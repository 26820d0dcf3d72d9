//! `kiln:plugin/axes`: the granted axes of the host's stage.

use crate::axes::{MotionEnd, MotionHandle};
use crate::bindings::axes::{AxisInfo, Host, HostMotion, MotionEnd as WitEnd, MotionStatus};
use crate::bindings::types::HostError;
use crate::engine::lock;
use crate::grants::Capability;
use crate::interfaces::{
    PluginState, cancelled, check_len, denied, invalid, not_found, until_cancelled,
};
use crate::job::AuditEvent;
use wasmtime::component::Resource;

type HostResult<T> = wasmtime::Result<Result<T, HostError>>;

impl PluginState {
    /// The axis if it exists and is granted.
    fn granted_axis(&self, id: &str) -> Result<(), HostError> {
        check_len("an axis id", id)?;
        let b = self.bound()?;
        b.job.require(Capability::Axis, id).map_err(denied)?;
        if b.host.stage.config(id).is_none() {
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
        let from = b.host.stage.position(id).unwrap_or_default();
        let target = target(from);
        if let Some(envelope) = b.job.grants.axis_limits.get(id) {
            if let Err(message) = envelope.check(id, target, speed) {
                b.job.audit(&AuditEvent::Denied {
                    capability: "axis_limits",
                    name: id,
                    message: &message,
                });
                return Err(denied(message));
            }
        }
        // Without a speed, the axis's maximum, capped by the envelope.
        let speed = speed.or_else(|| b.job.grants.axis_limits.get(id).and_then(|e| e.max_speed));
        b.job.audit(&AuditEvent::AxisMove {
            axis: id,
            target,
            speed,
        });
        let motion = b
            .host
            .stage
            .move_to(id, target, speed)
            .map_err(|e| invalid(e.to_string()))?;
        lock(&b.job.motions).push(motion.clone());
        Ok(MotionHandle {
            axis: id.to_string(),
            motion,
        })
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

impl Host for PluginState {
    async fn list(&mut self) -> wasmtime::Result<Vec<AxisInfo>> {
        let Ok(b) = self.bound() else {
            return Ok(Vec::new());
        };
        let stage = &b.host.stage;
        Ok(stage
            .ids()
            .filter(|id| b.job.grants.axes.contains(*id))
            .filter_map(|id| {
                let c = stage.config(id)?;
                Some(AxisInfo {
                    id: c.id.clone(),
                    units: c.units.clone(),
                    min: c.min,
                    max: c.max,
                    max_speed: c.max_speed,
                    position: stage.position(id)?,
                })
            })
            .collect())
    }

    async fn position(&mut self, axis: String) -> HostResult<f64> {
        Ok(self
            .granted_axis(&axis)
            .and_then(|()| Ok(self.bound()?.host.stage.position(&axis).unwrap_or_default())))
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

impl HostMotion for PluginState {
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
            (end, pos) = m.wait() => Ok(Ok((match end { MotionEnd::Reached => WitEnd::Reached, MotionEnd::Stopped => WitEnd::Stopped }, pos))),
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
