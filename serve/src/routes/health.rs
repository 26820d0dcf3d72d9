//! `GET /health` and `GET /metrics`.

use super::AppState;
use crate::config::Scope;
use crate::problem::Problem;
use crate::views::Health;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;

#[utoipa::path(
    get, path = "/health", tag = "service",
    responses(
        (status = 200, description = "Accepting jobs, and the database answers", body = Health),
        (status = 503, description = "Why not", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn health(State(state): State<AppState>) -> Result<Json<Health>, Problem> {
    let service = &state.service;
    if !service.accepting() {
        return Err(Problem::unavailable("the service is shutting down"));
    }
    service.store.ping()?;
    let (running, queued) = service.counts();
    Ok(Json(Health {
        status: "ok".into(),
        jobs_running: running,
        jobs_queued: queued,
    }))
}

#[utoipa::path(
    get, path = "/metrics", tag = "service",
    responses(
        (status = 200, description = "OpenMetrics text (Prometheus scrapes it)", content_type = "application/openmetrics-text", body = String),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Read)?;
    let service = &state.service;
    let mut extra = String::new();
    let _ = writeln!(
        extra,
        "# HELP kiln_jobs Top-level jobs by state (all recorded)."
    );
    let _ = writeln!(extra, "# TYPE kiln_jobs gauge");
    for (job_state, n) in service.store.count_by_state()? {
        let _ = writeln!(extra, "kiln_jobs{{state=\"{job_state}\"}} {n}");
    }
    let _ = writeln!(
        extra,
        "# HELP kiln_event_subscribers Event-stream clients connected."
    );
    let _ = writeln!(extra, "# TYPE kiln_event_subscribers gauge");
    // The recorder's own handle holds no receiver; each client holds one.
    let _ = writeln!(
        extra,
        "kiln_event_subscribers {}",
        service.recorder.subscribers()
    );
    extra.push_str(&crate::runtime_metrics(&service.host));
    let mut response = (StatusCode::OK, service.metrics.render(&extra)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}
