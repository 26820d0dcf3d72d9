//! Motion stages: the hardware axes a plugin moves through
//! `kiln:plugin/axes`. A stage is a driver behind the [`Stage`] trait; a
//! motion it starts is a [`Motion`] that can be watched, stopped and waited
//! for. The host checks grants and envelopes before a request reaches the
//! stage, and stops every motion a job left moving at its end.
//!
//! [`SimulatedStage`] is the one driver today: axes that move at finite
//! speed, so positions change over time as a real stage's do. A driver for
//! real hardware (an external driver program, a network controller)
//! implements [`Stage`] and [`Motion`] and is handed to the host in its
//! configuration; its faults are [`StageError::Io`] and
//! [`StageError::Driver`].

mod simulated;

pub use simulated::{SimulatedMotion, SimulatedStage};

use serde::Deserialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

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

/// Why a stage refused a request or a motion failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
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
    /// The stage could not be reached (a driver's connection, its device).
    #[error("axis `{axis}`: cannot reach the stage: {source}")]
    Io {
        axis: String,
        #[source]
        source: std::io::Error,
    },
    /// The driver reported a fault: the axis may not be where it was sent.
    #[error("axis `{axis}`: the stage driver failed: {message}")]
    Driver { axis: String, message: String },
}

impl StageError {
    /// Whether the request itself was wrong (as opposed to the stage
    /// failing to carry out a good one).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            StageError::OutOfRange { .. }
                | StageError::BadSpeed { .. }
                | StageError::Busy { .. }
                | StageError::UnknownAxis { .. }
        )
    }
}

/// How a motion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MotionEnd {
    Reached,
    Stopped,
}

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One motion of one axis.
pub trait Motion: Send + Sync {
    fn axis(&self) -> &str;
    fn target(&self) -> f64;
    /// Where the axis is now.
    fn position(&self) -> f64;
    /// How it ended, once it has.
    fn end(&self) -> Option<MotionEnd>;
    /// Stop where the axis is; harmless when the motion has ended.
    fn stop(&self);
    /// Wait for the end of the motion: where it ended, or the fault that
    /// ended it.
    fn wait(&self) -> BoxFuture<'_, Result<(MotionEnd, f64), StageError>>;
}

/// A multi-axis stage.
pub trait Stage: Send + Sync {
    /// The stage's axes, in a stable order.
    fn axes(&self) -> Vec<AxisConfig>;
    /// One axis, if the stage has it.
    fn axis(&self, id: &str) -> Option<AxisConfig> {
        self.axes().into_iter().find(|a| a.id == id)
    }
    fn position(&self, axis: &str) -> Result<f64, StageError>;
    /// Start a motion to `target`; `speed` defaults to the axis maximum.
    fn move_to(
        &self,
        axis: &str,
        target: f64,
        speed: Option<f64>,
    ) -> Result<Arc<dyn Motion>, StageError>;
}
