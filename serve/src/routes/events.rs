//! Event streams: one job's (`GET /jobs/{id}/events` as Server-Sent
//! Events, `GET /jobs/{id}/ws` over WebSocket) and every job's
//! (`GET /events`).
//!
//! Each stream first replays from the journal what the client has not
//! seen (after `Last-Event-ID` or `?after=N`), then sends live events,
//! skipping any it already sent; a job's stream ends after its own
//! `finished`. A sub-job's stream (`/jobs/12.1/events`) is its part of its
//! top-level job's, numbered as there, so the same `Last-Event-ID` works
//! on both. A client that falls behind the live events is dropped, not
//! waited for: it reconnects with its last id and catches up from the
//! journal.

use super::AppState;
use crate::config::Scope;
use crate::problem::Problem;
use crate::service::top_number;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use kiln_sqlite_store::EventRow;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::IntoParams;

/// Events queued for one client before its pump waits (and, waiting,
/// falls behind the live events, and is dropped).
const CLIENT_BUFFER: usize = 256;
/// Events read from the journal at a time.
const PAGE: usize = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AfterQuery {
    /// Send only events after this number (as `Last-Event-ID`).
    pub after: Option<i64>,
}

fn after_of(headers: &HeaderMap, query: Option<&AfterQuery>) -> Result<i64, Problem> {
    if let Some(v) = headers.get("last-event-id") {
        return v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| Problem::bad_request("Last-Event-ID must be an event's number"));
    }
    Ok(query.and_then(|q| q.after).unwrap_or(0).max(0))
}

/// The events of one job and its sub-jobs: a top-level job's stream, or a
/// sub-job's part of it (numbered as in its top-level job's stream).
struct Stream {
    top: u64,
    job: String,
}

impl Stream {
    fn holds(&self, row: &EventRow) -> bool {
        row.job_id == self.job
            || row
                .job_id
                .strip_prefix(self.job.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    }

    /// The job's own `finished`, or its top-level job's: nothing of it
    /// comes after either.
    fn is_end(&self, row: &EventRow) -> bool {
        row.kind == "finished" && (row.job_id == self.job || row.job_id == self.top.to_string())
    }
}

/// Feed `tx` with the events of `scope` after `after`, to its `finished`.
async fn pump_job(state: AppState, scope: Stream, after: i64, tx: mpsc::Sender<Arc<EventRow>>) {
    let service = &state.service;
    let top = scope.top;
    let live = service.recorder.subscribe();
    let mut last = after;
    let mut ended = false;
    loop {
        let Ok(rows) = service.store.events_after(top, last, PAGE) else {
            return;
        };
        if rows.is_empty() {
            // A job whose `finished` the client has already seen: after
            // one more read (for what was committed meanwhile), the end.
            if ended {
                return;
            }
            let finished = |job: &str| service.store.job_has_finished(top, job).unwrap_or(false);
            if finished(&scope.job) || finished(&top.to_string()) {
                ended = true;
                continue;
            }
            break;
        }
        for row in rows {
            last = row.seq;
            if !scope.holds(&row) {
                continue;
            }
            let end = scope.is_end(&row);
            if tx.send(Arc::new(row)).await.is_err() || end {
                return;
            }
        }
    }
    forward_live(state.clone(), live, tx, |row| {
        if row.top != top as i64 || row.seq <= last {
            return None;
        }
        last = row.seq;
        let end = scope.is_end(row);
        if scope.holds(row) {
            Some(end)
        } else if end {
            // The top-level job ended, and with it this sub-job's stream.
            Some(true)
        } else {
            None
        }
    })
    .await;
}

/// Send live events to `tx`: those `pick` takes (`Some(end)`), until one
/// it says ends the stream, the client goes, or the client falls behind
/// (then it is dropped, and reconnects from the journal).
async fn forward_live(
    state: AppState,
    mut live: broadcast::Receiver<Arc<EventRow>>,
    tx: mpsc::Sender<Arc<EventRow>>,
    mut pick: impl FnMut(&EventRow) -> Option<bool>,
) {
    loop {
        match live.recv().await {
            Ok(row) => {
                let Some(end) = pick(&row) else { continue };
                if tx.send(row).await.is_err() || end {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                state.service.metrics.subscribers_dropped.inc();
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Feed `tx` with every job's events after the `after`th.
async fn pump_all(state: AppState, after: i64, tx: mpsc::Sender<Arc<EventRow>>) {
    let service = &state.service;
    let live = service.recorder.subscribe();
    let mut last = after;
    loop {
        let Ok(rows) = service.store.all_events_after(last, PAGE) else {
            return;
        };
        if rows.is_empty() {
            break;
        }
        for row in rows {
            last = row.n;
            if tx.send(Arc::new(row)).await.is_err() {
                return;
            }
        }
    }
    forward_live(state.clone(), live, tx, |row| {
        (row.n > last).then(|| {
            last = row.n;
            false
        })
    })
    .await;
}

fn job_of(state: &AppState, id: &str) -> Result<Stream, Problem> {
    let missing = || Problem::not_found(format!("there is no job {id}"));
    let top = top_number(id).ok_or_else(missing)?;
    let store = &state.service.store;
    if store.submission(top)?.is_none() {
        return Err(missing());
    }
    if id.contains('.') && kiln_host::jobs::store::JobStore::get(&**store, id).is_none() {
        return Err(missing());
    }
    Ok(Stream {
        top,
        job: id.to_string(),
    })
}

fn sse(rx: mpsc::Receiver<Arc<EventRow>>, global: bool) -> Response {
    let stream = ReceiverStream::new(rx).map(move |row| {
        let id = if global { row.n } else { row.seq };
        Ok::<_, std::convert::Infallible>(
            SseEvent::default()
                .id(id.to_string())
                .event(row.kind.clone())
                .data(row.data.clone()),
        )
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[utoipa::path(
    get, path = "/jobs/{id}/events", tag = "events",
    params(
        ("id" = String, Path, description = "A job id: a top-level job's `12`, or a sub-job's `12.1` for its part of that stream"),
        ("Last-Event-ID" = Option<String>, Header, description = "The last event number seen"),
        AfterQuery,
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `id` the event's number in the job, `event` its kind, `data` the event as JSON; ends after the job's `finished` (a sub-job's stream also after its top-level job's)", content_type = "text/event-stream", body = crate::views::SseEvent),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn job_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<AfterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Read)?;
    let query = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let after = after_of(&headers, Some(&query))?;
    let scope = job_of(&state, &id)?;
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
    tokio::spawn(pump_job(state, scope, after, tx));
    Ok(sse(rx, false))
}

#[utoipa::path(
    get, path = "/events", tag = "events",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "The last event number seen"),
        AfterQuery,
    ),
    responses(
        (status = 200, description = "Server-Sent Events of every job: `id` the event's number among all events", content_type = "text/event-stream", body = crate::views::SseEvent),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn all_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AfterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Read)?;
    let query = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let after = after_of(&headers, Some(&query))?;
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
    tokio::spawn(pump_all(state, after, tx));
    Ok(sse(rx, true))
}

#[utoipa::path(
    get, path = "/jobs/{id}/ws", tag = "events",
    params(("id" = String, Path, description = "A job id: a top-level job's `12`, or a sub-job's `12.1`"), AfterQuery),
    responses(
        (status = 101, description = "WebSocket: one text message per event, the event's JSON, as in the SSE stream; closed after the job's `finished`"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 426, description = "Not a WebSocket upgrade", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn job_ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<AfterQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Read)?;
    let query = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let after = after_of(&headers, Some(&query))?;
    let scope = job_of(&state, &id)?;
    let upgrade = upgrade.map_err(|e| {
        Problem::new(
            axum::http::StatusCode::UPGRADE_REQUIRED,
            "upgrade-required",
            format!("this is a WebSocket endpoint ({e}); for Server-Sent Events use GET /jobs/{id}/events"),
        )
    })?;
    Ok(upgrade.on_upgrade(move |socket| ws_session(socket, state, scope, after)))
}

async fn ws_session(mut socket: WebSocket, state: AppState, scope: Stream, after: i64) {
    let (tx, mut rx) = mpsc::channel(CLIENT_BUFFER);
    tokio::spawn(pump_job(state, scope, after, tx));
    while let Some(row) = rx.recv().await {
        if socket
            .send(Message::Text(row.data.clone().into()))
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
