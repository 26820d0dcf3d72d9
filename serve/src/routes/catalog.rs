//! `GET /tasks`, `GET /tasks/{name}`, `GET /axes`.

use super::AppState;
use crate::config::Scope;
use crate::problem::Problem;
use crate::views::{AxisView, TaskDetail, TaskSummary};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use kiln_host::TaskRef;

#[utoipa::path(
    get, path = "/tasks", tag = "tasks",
    responses(
        (status = 200, body = Vec<TaskSummary>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn tasks(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<TaskSummary>>, Problem> {
    state.authorize(&headers, Scope::Read)?;
    let host = &state.service.host;
    let mut names = host.catalog().names();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        // A task that cannot be loaded is left out here, and its error is
        // what GET /tasks/{name} says.
        if let Ok(info) = host.describe(&TaskRef::Name(name)).await {
            out.push(TaskSummary {
                name: info.name.clone(),
                version: info.version.clone(),
                title: info.title.clone(),
            });
        }
    }
    Ok(Json(out))
}

#[utoipa::path(
    get, path = "/tasks/{name}", tag = "tasks",
    params(("name" = String, Path, description = "A task of the catalogue")),
    responses(
        (status = 200, body = TaskDetail),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The task cannot be loaded", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn task(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<TaskDetail>, Problem> {
    state.authorize(&headers, Scope::Read)?;
    let host = &state.service.host;
    if !host.catalog().names().contains(&name) {
        return Err(Problem::not_found(format!(
            "there is no task `{name}`; GET /tasks lists them"
        )));
    }
    let info = host
        .describe(&TaskRef::Name(name))
        .await
        .map_err(|e| Problem::unprocessable(e.to_string()))?;
    let with_sub = host
        .effective_grants(&info, None)
        .await
        .map_err(|e| Problem::unprocessable(e.to_string()))?
        .0;
    Ok(Json(TaskDetail {
        name: info.name.clone(),
        version: info.version.clone(),
        title: info.title.clone(),
        requests: serde_json::to_value(&info.requests).unwrap_or_default(),
        requests_with_sub_tasks: serde_json::to_value(&with_sub).unwrap_or_default(),
        definition: info.definition.clone(),
        form: serde_json::to_value(info.container.form()).unwrap_or_default(),
    }))
}

#[utoipa::path(
    get, path = "/axes", tag = "tasks",
    responses(
        (status = 200, body = Vec<AxisView>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn axes(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<AxisView>>, Problem> {
    state.authorize(&headers, Scope::Read)?;
    let axes = state
        .stage
        .axes()
        .into_iter()
        .map(|a| {
            let position = state.stage.position(&a.id).ok();
            AxisView {
                name: a.id.clone(),
                detail: serde_json::json!({
                    "units": a.units,
                    "min": a.min,
                    "max": a.max,
                    "max_speed": a.max_speed,
                    "position": position,
                }),
            }
        })
        .collect();
    Ok(Json(axes))
}
