//! The HTTP API: one module per group of routes, each handler checking
//! the caller's token and scope first.

pub mod catalog;
pub mod events;
pub mod files;
pub mod health;
pub mod jobs;

use crate::config::{Principal, Scope, Tokens};
use crate::problem::Problem;
use crate::service::Service;
use axum::Router;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use kiln_host::stage::Stage;
use std::sync::Arc;

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    /// `None`: no tokens file, loopback only, every caller may do anything.
    pub tokens: Option<Arc<Tokens>>,
    pub stage: Arc<dyn Stage>,
}

impl AppState {
    /// The caller, if its bearer token is known and has `scope`.
    pub fn authorize(&self, headers: &HeaderMap, scope: Scope) -> Result<Principal, Problem> {
        let Some(tokens) = &self.tokens else {
            return Ok(Principal::local());
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(presented) = presented else {
            return Err(Problem::unauthorized(
                "send a bearer token: `Authorization: Bearer <token>`",
            ));
        };
        let Some(who) = tokens.check(presented) else {
            return Err(Problem::unauthorized("the bearer token is not known"));
        };
        if !who.allows(scope) {
            return Err(Problem::forbidden(format!(
                "token `{}` lacks the `{}` scope",
                who.name,
                scope.as_str()
            )));
        }
        Ok(who)
    }
}

/// Where the job numbered `id` lives.
pub fn job_url(id: &str) -> String {
    format!("/jobs/{id}")
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/jobs", post(jobs::submit).get(jobs::list))
        .route("/jobs/{id}", get(jobs::get_job).delete(jobs::delete_job))
        .route("/jobs/{id}/stop", post(jobs::stop))
        .route("/jobs/{id}/events", get(events::job_events))
        .route("/jobs/{id}/ws", get(events::job_ws))
        .route("/events", get(events::all_events))
        .route("/jobs/{id}/files", get(files::list_files))
        .route("/jobs/{id}/files/{*path}", get(files::get_file))
        .route("/jobs/{id}/log", get(files::log))
        .route("/tasks", get(catalog::tasks))
        .route("/tasks/{name}", get(catalog::task))
        .route("/axes", get(catalog::axes))
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(crate::openapi::document))
        .merge(crate::dashboard::routes())
        .fallback(|| async { Problem::not_found("no such resource; see GET /openapi.json") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "this resource does not take that method; see GET /openapi.json",
            )
        })
        .with_state(state)
}
