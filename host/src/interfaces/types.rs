//! `kiln:plugin/types`: shared types only, and conversions between the WIT
//! shapes and the host's own.

use crate::bindings::types::{self as wit, Host};
use crate::interfaces::View;
use kiln_jobs::FinishStatus;

impl Host for View<'_, ()> {}

impl From<wit::FinishStatus> for FinishStatus {
    fn from(s: wit::FinishStatus) -> Self {
        match s {
            wit::FinishStatus::Succeeded => FinishStatus::Succeeded,
            wit::FinishStatus::Failed => FinishStatus::Failed,
            wit::FinishStatus::Interrupted => FinishStatus::Interrupted,
            wit::FinishStatus::Unsatisfactory => FinishStatus::Unsatisfactory,
        }
    }
}

impl From<FinishStatus> for wit::FinishStatus {
    fn from(s: FinishStatus) -> Self {
        match s {
            FinishStatus::Succeeded => wit::FinishStatus::Succeeded,
            FinishStatus::Failed => wit::FinishStatus::Failed,
            FinishStatus::Interrupted => wit::FinishStatus::Interrupted,
            FinishStatus::Unsatisfactory => wit::FinishStatus::Unsatisfactory,
        }
    }
}
