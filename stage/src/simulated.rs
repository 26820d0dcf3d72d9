//! A simulated stage: axes that move at finite speed, so positions change
//! over time and a motion can be watched, stopped and waited for exactly
//! as a real stage's.

use crate::{AxisConfig, BoxFuture, Motion, MotionEnd, Stage, StageError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One motion of one axis, from `from` towards `target` at `speed`.
#[derive(Debug)]
pub struct SimulatedMotion {
    axis: String,
    from: f64,
    target: f64,
    speed: f64,
    started: Instant,
    stopped_at: Mutex<Option<f64>>,
    changed: Notify,
}

impl SimulatedMotion {
    fn travel_time(&self) -> Duration {
        Duration::from_secs_f64((self.target - self.from).abs() / self.speed)
    }

    pub fn target(&self) -> f64 {
        self.target
    }

    /// Where the axis is now.
    pub fn position(&self) -> f64 {
        if let Some(p) = *lock(&self.stopped_at) {
            return p;
        }
        let moved = self.speed * self.started.elapsed().as_secs_f64();
        let distance = self.target - self.from;
        if moved >= distance.abs() {
            self.target
        } else {
            self.from + moved * distance.signum()
        }
    }

    pub fn end(&self) -> Option<MotionEnd> {
        if lock(&self.stopped_at).is_some() {
            Some(MotionEnd::Stopped)
        } else if self.started.elapsed() >= self.travel_time() {
            Some(MotionEnd::Reached)
        } else {
            None
        }
    }

    /// Stop where the axis is; harmless when the motion has ended.
    pub fn stop(&self) {
        if self.end().is_some() {
            return;
        }
        let here = self.position();
        *lock(&self.stopped_at) = Some(here);
        self.changed.notify_waiters();
    }

    /// Wait for the end of the motion.
    pub async fn wait(&self) -> (MotionEnd, f64) {
        loop {
            let notified = self.changed.notified();
            if let Some(end) = self.end() {
                return (end, self.position());
            }
            let left = self.travel_time().saturating_sub(self.started.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(left) => {}
                _ = notified => {}
            }
        }
    }
}

struct Axis {
    config: AxisConfig,
    rest: Mutex<f64>,
    current: Mutex<Option<Arc<SimulatedMotion>>>,
}

/// A simulated multi-axis stage.
pub struct SimulatedStage {
    axes: BTreeMap<String, Axis>,
}

impl SimulatedStage {
    pub fn new(axes: Vec<AxisConfig>) -> SimulatedStage {
        SimulatedStage {
            axes: axes
                .into_iter()
                .map(|c| {
                    let id = c.id.clone();
                    let rest = Mutex::new(c.position);
                    (
                        id,
                        Axis {
                            config: c,
                            rest,
                            current: Mutex::new(None),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Two axes: a translation `x` in mm and a rotation `phi` in degrees.
    pub fn default_stage() -> SimulatedStage {
        SimulatedStage::new(vec![
            AxisConfig {
                id: "x".into(),
                units: "mm".into(),
                min: -50.0,
                max: 50.0,
                max_speed: 10.0,
                position: 0.0,
            },
            AxisConfig {
                id: "phi".into(),
                units: "deg".into(),
                min: -180.0,
                max: 180.0,
                max_speed: 90.0,
                position: 0.0,
            },
        ])
    }

    pub fn config(&self, id: &str) -> Option<&AxisConfig> {
        self.axes.get(id).map(|a| &a.config)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.axes.keys().map(String::as_str)
    }

    pub fn position(&self, id: &str) -> Option<f64> {
        let axis = self.axes.get(id)?;
        Some(match &*lock(&axis.current) {
            Some(m) => m.position(),
            None => *lock(&axis.rest),
        })
    }

    /// Start a motion to `target`; `speed` defaults to the axis maximum.
    pub fn move_to(
        &self,
        id: &str,
        target: f64,
        speed: Option<f64>,
    ) -> Result<Arc<SimulatedMotion>, StageError> {
        let axis = self.axes.get(id).ok_or_else(|| StageError::UnknownAxis {
            axis: id.to_string(),
        })?;
        let c = &axis.config;
        if !target.is_finite() || target < c.min || target > c.max {
            return Err(StageError::OutOfRange {
                axis: id.to_string(),
                target,
                min: c.min,
                max: c.max,
            });
        }
        let speed = speed.unwrap_or(c.max_speed);
        if !speed.is_finite() || speed <= 0.0 || speed > c.max_speed {
            return Err(StageError::BadSpeed {
                axis: id.to_string(),
                speed,
                max_speed: c.max_speed,
            });
        }
        let mut current = lock(&axis.current);
        let from = match &*current {
            Some(m) if m.end().is_none() => {
                return Err(StageError::Busy {
                    axis: id.to_string(),
                });
            }
            Some(m) => m.position(),
            None => *lock(&axis.rest),
        };
        let motion = Arc::new(SimulatedMotion {
            axis: id.to_string(),
            from,
            target,
            speed,
            started: Instant::now(),
            stopped_at: Mutex::new(None),
            changed: Notify::new(),
        });
        *current = Some(motion.clone());
        Ok(motion)
    }
}

impl Motion for SimulatedMotion {
    fn axis(&self) -> &str {
        &self.axis
    }
    fn target(&self) -> f64 {
        self.target
    }
    fn position(&self) -> f64 {
        SimulatedMotion::position(self)
    }
    fn end(&self) -> Option<MotionEnd> {
        SimulatedMotion::end(self)
    }
    fn stop(&self) {
        SimulatedMotion::stop(self)
    }
    fn wait(&self) -> BoxFuture<'_, Result<(MotionEnd, f64), StageError>> {
        Box::pin(async move { Ok(SimulatedMotion::wait(self).await) })
    }
}

impl Stage for SimulatedStage {
    fn axes(&self) -> Vec<AxisConfig> {
        self.axes.values().map(|a| a.config.clone()).collect()
    }
    fn axis(&self, id: &str) -> Option<AxisConfig> {
        self.config(id).cloned()
    }
    fn position(&self, axis: &str) -> Result<f64, StageError> {
        SimulatedStage::position(self, axis).ok_or_else(|| StageError::UnknownAxis {
            axis: axis.to_string(),
        })
    }
    fn move_to(
        &self,
        axis: &str,
        target: f64,
        speed: Option<f64>,
    ) -> Result<Arc<dyn Motion>, StageError> {
        SimulatedStage::move_to(self, axis, target, speed).map(|m| m as Arc<dyn Motion>)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_motion_takes_time_and_can_be_stopped_midway() {
        let stage = SimulatedStage::default_stage();
        let m = stage.move_to("x", 1.0, Some(10.0)).unwrap();
        assert!(m.end().is_none());
        assert!(matches!(
            stage.move_to("x", 2.0, None),
            Err(StageError::Busy { axis }) if axis == "x"
        ));
        let (end, pos) = m.wait().await;
        assert_eq!((end, pos), (MotionEnd::Reached, 1.0));

        let m = stage.move_to("x", -40.0, Some(10.0)).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        m.stop();
        m.stop();
        let (end, pos) = m.wait().await;
        assert_eq!(end, MotionEnd::Stopped);
        assert!(pos < 1.0 && pos > -40.0, "{pos}");
        assert_eq!(stage.position("x"), Some(pos));
        assert!(matches!(
            stage.move_to("x", 99.0, None),
            Err(StageError::OutOfRange { .. })
        ));
    }
}
