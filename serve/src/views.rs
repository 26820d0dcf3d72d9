//! The JSON bodies of the API, as the OpenAPI document describes them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A parameter's value: text, or a number or boolean written as JSON.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ParamValue {
    Text(String),
    Number(f64),
    Bool(bool),
}

impl ParamValue {
    pub fn into_text(self) -> String {
        match self {
            ParamValue::Text(s) => s,
            ParamValue::Number(n) => n.to_string(),
            ParamValue::Bool(b) => b.to_string(),
        }
    }
}

/// `POST /jobs`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// A task of the catalogue (`GET /tasks`).
    pub task: String,
    /// `NAME: VALUE`: a dotted path (`inputData.HKLIN`) or a bare item name.
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// The grants profile to run under; a token's own profile when absent.
    #[serde(default)]
    pub grants: Option<String>,
    /// Higher runs first among queued jobs; equal ones in submission order.
    #[serde(default)]
    pub priority: Option<i32>,
}

/// The answer to a submit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Submitted {
    pub job_id: String,
    /// The job's state now.
    pub state: String,
    pub status_url: String,
    pub events_url: String,
}

/// A job's last progress report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    pub fraction: Option<f64>,
    pub phase: String,
    pub message: String,
}

/// An output file of a job that succeeded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutputView {
    /// Below the job directory: `GET /jobs/{id}/files/{file}` reads it.
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

/// A job and its sub-jobs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub task: String,
    /// `queued`, `pending`, `running`, `finished`, `failed`, `interrupted`, ...
    pub state: String,
    /// How it ended: `succeeded`, `failed`, `unsatisfactory`, `interrupted`.
    pub status: Option<String>,
    pub reason: Option<String>,
    pub priority: i64,
    /// Seconds since the Unix epoch.
    pub submitted_at: Option<f64>,
    pub started_at: Option<f64>,
    pub ended_at: Option<f64>,
    pub stop_requested: bool,
    pub progress: Option<Progress>,
    /// Output files by container item.
    pub outputs: BTreeMap<String, OutputView>,
    #[schema(no_recursion)]
    pub sub_jobs: Vec<JobView>,
}

/// One job of the history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobListItem {
    pub id: String,
    pub task: String,
    pub state: String,
    pub status: Option<String>,
    pub reason: Option<String>,
    pub submitted_at: Option<f64>,
    pub started_at: Option<f64>,
    pub ended_at: Option<f64>,
    /// The job's own last progress report.
    pub progress: Option<Progress>,
}

/// `GET /jobs`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobListItem>,
    /// Pass as `cursor` for the next (older) page; none at the end.
    pub next_cursor: Option<String>,
    /// The number of the newest event (`GET /events`) when the list was
    /// read: follow `GET /events?after=` it to miss no change since.
    pub last_event: i64,
}

/// The answer to a stop.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stopped {
    pub job_id: String,
    pub state: String,
}

/// A file of a job directory.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
}

/// A task of the catalogue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskSummary {
    pub name: String,
    pub version: String,
    pub title: String,
}

/// A task with its definition and requested capabilities.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskDetail {
    pub name: String,
    pub version: String,
    pub title: String,
    /// What it asks for (a grants manifest).
    #[schema(value_type = Object)]
    pub requests: serde_json::Value,
    /// With its sub-tasks' requests.
    #[schema(value_type = Object)]
    pub requests_with_sub_tasks: serde_json::Value,
    /// Its def.xml.
    pub definition: String,
    /// Every item a submit may set, in definition order, as a form's
    /// fields: `path`, `section`, `class_name`, `kind` (int, float, bool,
    /// text, file, list, other), `label`, `tooltip`, `default`, `required`,
    /// `min`, `max`, `choices`, `only_choices`, `min_length`, `max_length`,
    /// `file_extensions`, `mime_type`, `must_exist`, and for a part of a
    /// composite (a cell's `a`) `part_of` and `part_of_label`.
    #[schema(value_type = Vec<Object>)]
    pub form: serde_json::Value,
}

/// An axis of the stage.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AxisView {
    pub name: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub jobs_running: u64,
    pub jobs_queued: u64,
}

/// One Server-Sent Event, as the OpenAPI document describes the stream's
/// items: `id` its number, `event` its kind, `data` the event as JSON text
/// (with `seq`, `time`, `job_id`, `task`, `event` and the kind's fields).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: String,
}
