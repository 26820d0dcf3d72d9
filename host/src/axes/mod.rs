//! Hardware axes. The stage behind them is a driver; the one here is a
//! simulated stage whose axes move at finite speed, so positions change over
//! time and a motion can be watched, stopped and waited for exactly as a
//! real stage's.

use crate::engine::lock;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One axis of a stage.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisConfig {
    pub id: String,
    pub units: String,
    pub min: f64,
    pub max: f64,
    /// Units per second.
    pub max_speed: f64,
    /// Where the axis starts.
    #[serde(default)]
    pub position: f64,
}

/// Why a move was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MoveError {
    #[error("axis `{axis}`: target {target} is outside its limits [{min}, {max}]")]
    OutOfRange {
        axis: String,
        target: f64,
        min: f64,
        max: f64,
    },
    #[error("axis `{axis}`: speed {speed} must be above 0 and at most {max_speed}")]
    BadSpeed {
        axis: String,
        speed: f64,
        max_speed: f64,
    },
    #[error("axis `{axis}` is moving; stop or wait for the current motion first")]
    Busy { axis: String },
    #[error("the stage has no axis `{axis}`")]
    UnknownAxis { axis: String },
}

/// How a motion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MotionEnd {
    Reached,
    Stopped,
}

/// One motion of one axis, from `from` towards `target` at `speed`.
#[derive(Debug)]
pub struct Motion {
    from: f64,
    target: f64,
    speed: f64,
    started: Instant,
    stopped_at: Mutex<Option<f64>>,
    changed: Notify,
}

impl Motion {
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
    current: Mutex<Option<Arc<Motion>>>,
}

/// A guest's handle to a motion (`kiln:plugin/axes.motion`).
pub struct MotionHandle {
    pub axis: String,
    pub motion: Arc<Motion>,
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
    ) -> Result<Arc<Motion>, MoveError> {
        let axis = self.axes.get(id).ok_or_else(|| MoveError::UnknownAxis {
            axis: id.to_string(),
        })?;
        let c = &axis.config;
        if !target.is_finite() || target < c.min || target > c.max {
            return Err(MoveError::OutOfRange {
                axis: id.to_string(),
                target,
                min: c.min,
                max: c.max,
            });
        }
        let speed = speed.unwrap_or(c.max_speed);
        if !speed.is_finite() || speed <= 0.0 || speed > c.max_speed {
            return Err(MoveError::BadSpeed {
                axis: id.to_string(),
                speed,
                max_speed: c.max_speed,
            });
        }
        let mut current = lock(&axis.current);
        let from = match &*current {
            Some(m) if m.end().is_none() => {
                return Err(MoveError::Busy {
                    axis: id.to_string(),
                });
            }
            Some(m) => m.position(),
            None => *lock(&axis.rest),
        };
        let motion = Arc::new(Motion {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_motion_takes_time_and_can_be_stopped_midway() {
        let stage = SimulatedStage::default_stage();
        let m = stage.move_to("x", 1.0, Some(10.0)).unwrap();
        assert!(m.end().is_none());
        assert_eq!(
            stage.move_to("x", 2.0, None).unwrap_err(),
            MoveError::Busy { axis: "x".into() }
        );
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
            Err(MoveError::OutOfRange { .. })
        ));
    }
}
