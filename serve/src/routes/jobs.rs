//! `POST /jobs`, `GET /jobs`, `GET|DELETE /jobs/{id}`, `POST /jobs/{id}/stop`.

use super::{AppState, job_url};
use crate::config::Scope;
use crate::problem::Problem;
use crate::service::{INPUTS_DIR, Reservation, SubmitInput, top_number};
use crate::views::{JobList, JobListItem, JobView, Stopped, SubmitRequest, Submitted};
use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use utoipa::IntoParams;

/// Largest JSON submit body.
const MAX_JSON: usize = 1 << 20;

fn accepted(job_id: u64, state: &str) -> Response {
    let id = job_id.to_string();
    let body = Submitted {
        job_id: id.clone(),
        state: state.to_string(),
        status_url: job_url(&id),
        events_url: format!("{}/events", job_url(&id)),
    };
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, job_url(&id))],
        Json(body),
    )
        .into_response()
}

fn parse_request(bytes: &[u8]) -> Result<SubmitRequest, Problem> {
    serde_json::from_slice(bytes).map_err(|e| {
        Problem::bad_request(format!(
            "the request body is not a submit request ({{\"task\": ..., \"params\": {{...}}}}): {e}"
        ))
    })
}

/// A file name for an upload: its last component, with only characters
/// that need no quoting anywhere; `None` when nothing usable is left.
fn safe_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next()?;
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    let clean = clean.trim_start_matches('.').to_string();
    (!clean.is_empty()).then_some(clean)
}

#[utoipa::path(
    post, path = "/jobs", tag = "jobs",
    request_body(content(
        (SubmitRequest = "application/json"),
        (SubmitRequest = "multipart/form-data", example = json!({"request": "{\"task\": \"demo_copycell\"}", "HKLIN": "(file)"})),
    ), description = "The job; as multipart/form-data, a part `request` holding the JSON first, then one file part per input file, named by its parameter"),
    params(("Idempotency-Key" = Option<String>, Header, description = "A retried submit with the same key returns the first job")),
    responses(
        (status = 202, description = "Committed and queued", body = Submitted),
        (status = 400, description = "Not a submit request", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The grants profile does not allow it", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The parameters are not valid", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    match submit_inner(&state, &headers, request).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn submit_inner(
    state: &AppState,
    headers: &HeaderMap,
    request: Request,
) -> Result<Response, Problem> {
    let who = state.authorize(headers, Scope::Submit)?;
    let service = &state.service;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 200)
                .ok_or_else(|| {
                    Problem::bad_request(
                        "Idempotency-Key must be 1 to 200 visible ASCII characters",
                    )
                })?
                .to_string(),
        ),
    };
    if let Some(k) = &key
        && let Some(existing) = service.idempotent(k)?
    {
        // Read what the retry sent (its files too), so its client hears
        // the answer rather than a connection closed under its upload.
        let _ = axum::body::to_bytes(
            request.into_body(),
            kiln_host::jobs::grants::Limits::default().upload_bytes as usize,
        )
        .await;
        let state_now = service
            .view(&existing.to_string())?
            .map(|v| v.state)
            .unwrap_or_else(|| "queued".into());
        return Ok(accepted(existing, &state_now));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (body, reservation, uploads) = if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, state)
            .await
            .map_err(|e| Problem::bad_request(format!("the multipart body cannot be read: {e}")))?;
        read_multipart(state, &who, multipart).await?
    } else if content_type.starts_with("application/json") {
        let bytes = axum::body::to_bytes(request.into_body(), MAX_JSON)
            .await
            .map_err(|_| {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    format!("a JSON submit is at most {MAX_JSON} bytes; send files as multipart/form-data"),
                )
            })?;
        (parse_request(&bytes)?, service.reserve()?, Vec::new())
    } else {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the job as application/json, or as multipart/form-data with input files",
        ));
    };
    let profile = service.profile_for(&who, body.grants.as_deref())?;
    let mut params: Vec<(String, String)> = body
        .params
        .into_iter()
        .map(|(k, v)| (k, v.into_text()))
        .collect();
    params.extend(uploads);
    let number = service
        .submit(
            &who,
            reservation,
            SubmitInput {
                task: body.task,
                params,
                profile: None,
                priority: body.priority.unwrap_or(0) as i64,
                idempotency_key: key,
            },
            profile,
        )
        .await?;
    Ok(accepted(number, "queued"))
}

/// Read a multipart submit: the `request` part, then its files, written
/// into the new job's `inputs/` as they arrive, within the profile's
/// upload cap, and parameter values as parts without a file name.
async fn read_multipart(
    state: &AppState,
    who: &crate::config::Principal,
    mut multipart: Multipart,
) -> Result<(SubmitRequest, Reservation, Vec<(String, String)>), Problem> {
    let service = &state.service;
    let bad = |m: String| Problem::bad_request(m);
    let first = multipart
        .next_field()
        .await
        .map_err(|e| bad(format!("the multipart body cannot be read: {e}")))?
        .ok_or_else(|| {
            bad("the multipart body is empty; its first part must be `request`".into())
        })?;
    if first.name() != Some("request") {
        return Err(bad(format!(
            "the first part is `{}`; the first part must be `request`, the JSON submit request",
            first.name().unwrap_or("")
        )));
    }
    let text = first
        .bytes()
        .await
        .map_err(|e| bad(format!("the `request` part cannot be read: {e}")))?;
    if text.len() > MAX_JSON {
        return Err(bad(format!("the `request` part is over {MAX_JSON} bytes")));
    }
    let request = parse_request(&text)?;
    let cap = service
        .profile_for(who, request.grants.as_deref())?
        .map(|(_, g)| g.limits.upload_bytes)
        .unwrap_or(kiln_host::jobs::grants::Limits::default().upload_bytes);
    let reservation = service.reserve()?;
    let dir = kiln_host::fs::DirHandle::open(&reservation.dir)
        .and_then(|d| d.create_dir(INPUTS_DIR))
        .map_err(|e| {
            Problem::unavailable(format!("cannot make the job's inputs directory: {e}"))
        })?;
    let mut total: u64 = 0;
    let mut uploads = Vec::new();
    let mut values = Vec::new();
    let mut names = std::collections::HashSet::new();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(format!("the multipart body cannot be read: {e}")))?
    {
        let param = field
            .name()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("a file part has no name; name it by its parameter (HKLIN)".into()))?
            .to_string();
        if field.file_name().is_none() {
            // A part without a file name is a parameter's value, as a
            // browser's form sends a text field.
            let value = field
                .text()
                .await
                .map_err(|e| bad(format!("part `{param}` is not text: {e}")))?;
            total += value.len() as u64;
            if value.len() > MAX_JSON || total > cap {
                return Err(bad(format!(
                    "part `{param}` is too long for a parameter value"
                )));
            }
            values.push((param, value));
            continue;
        }
        let mut name = field
            .file_name()
            .and_then(safe_name)
            .unwrap_or_else(|| format!("{param}.dat"));
        if !names.insert(name.clone()) {
            name = format!("{param}_{name}");
            names.insert(name.clone());
        }
        let file = dir
            .create_new(&name)
            .map_err(|e| bad(format!("part `{param}`: cannot create {name}: {e}")))?;
        let mut file = tokio::fs::File::from_std(file);
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| bad(format!("part `{param}` cannot be read: {e}")))?
        {
            total += chunk.len() as u64;
            if total > cap {
                return Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    format!(
                        "the uploaded files are over {cap} bytes, the grants profile's `limits.upload_bytes`"
                    ),
                ));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| Problem::unavailable(format!("cannot write {name}: {e}")))?;
        }
        file.sync_all()
            .await
            .map_err(|e| Problem::unavailable(format!("cannot write {name}: {e}")))?;
        uploads.push((
            param,
            reservation
                .dir
                .join(INPUTS_DIR)
                .join(&name)
                .display()
                .to_string(),
        ));
    }
    uploads.extend(values);
    Ok((request, reservation, uploads))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this state.
    pub state: Option<String>,
    /// Only jobs of this task.
    pub task: Option<String>,
    /// At most this many (1 to 1000; 50 by default).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/jobs", tag = "jobs", params(ListQuery),
    responses(
        (status = 200, body = JobList),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobList>, Problem> {
    state.authorize(&headers, Scope::Read)?;
    let Query(q) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request("limit must be 1 to 1000"));
    }
    let before = match &q.cursor {
        None => None,
        Some(c) => Some(c.parse::<u64>().map_err(|_| {
            Problem::bad_request("cursor must be the next_cursor of an earlier page")
        })?),
    };
    let store = &state.service.store;
    // Read before the list: a change after it is then in the events that
    // follow, never between the two.
    let last_event = store.last_event()?;
    let rows = store.history(
        q.state.as_deref(),
        q.task.as_deref(),
        before,
        limit as usize,
    )?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.submission.id.to_string()))
        .flatten();
    let jobs = rows
        .into_iter()
        .map(|r| {
            let rec = r.record.as_ref().map(|s| &s.record);
            JobListItem {
                id: r.submission.id.to_string(),
                task: r.submission.task.clone(),
                state: rec.map(|r| r.state.clone()).unwrap_or_else(|| {
                    if r.submission.phase == kiln_sqlite_store::SubmissionPhase::Ended {
                        "interrupted".into()
                    } else {
                        "queued".into()
                    }
                }),
                status: rec.and_then(|r| r.status.clone()),
                reason: rec.and_then(|r| r.reason.clone()),
                submitted_at: Some(r.submission.submitted),
                started_at: rec.and_then(|r| r.started),
                ended_at: rec.and_then(|r| r.ended),
                progress: store
                    .own_progress(r.submission.id)
                    .ok()
                    .flatten()
                    .and_then(|data| serde_json::from_str(&data).ok()),
            }
        })
        .collect();
    Ok(Json(JobList {
        jobs,
        next_cursor,
        last_event,
    }))
}

#[utoipa::path(
    get, path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "A job id: `12`, or a sub-job's `12.1`")),
    responses(
        (status = 200, body = JobView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_job(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<JobView>, Problem> {
    state.authorize(&headers, Scope::Read)?;
    state
        .service
        .view(&id)?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("there is no job {id}")))
}

#[utoipa::path(
    post, path = "/jobs/{id}/stop", tag = "jobs",
    params(("id" = String, Path, description = "A job id")),
    responses(
        (status = 202, description = "The stop is recorded; the job ends `interrupted` unless it had ended", body = Stopped),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn stop(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Stop)?;
    match state.service.stop(&id).await? {
        None => Err(Problem::not_found(format!("there is no job {id}"))),
        Some(job_state) => Ok((
            StatusCode::ACCEPTED,
            Json(Stopped {
                job_id: id,
                state: job_state,
            }),
        )
            .into_response()),
    }
}

#[utoipa::path(
    delete, path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "A top-level job id")),
    responses(
        (status = 204, description = "Removed, with its directory"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has not ended", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_job(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Admin)?;
    if top_number(&id).is_none() || !state.service.delete(&id).await? {
        return Err(Problem::not_found(format!("there is no job {id}")));
    }
    Ok((StatusCode::NO_CONTENT, Body::empty()).into_response())
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn upload_names_keep_only_their_last_plain_component() {
        assert_eq!(safe_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(safe_name("C:\\x\\5e5z.mtz").as_deref(), Some("5e5z.mtz"));
        assert_eq!(safe_name("a b;$(x).pdb").as_deref(), Some("a_b___x_.pdb"));
        assert_eq!(safe_name("..").as_deref(), None);
        assert_eq!(safe_name(".hidden").as_deref(), Some("hidden"));
    }
}
