//! A job directory, read-only: `GET /jobs/{id}/files` (its files),
//! `GET /jobs/{id}/files/{path}` (one file), `GET /jobs/{id}/log` (a
//! program's log, followed while the job runs).
//!
//! Everything in a job directory was written by the job's plugin and
//! programs, so it is opened only below the directory's handle: no `..`,
//! no link followed, regular files only, never a FIFO.

use super::AppState;
use crate::config::Scope;
use crate::problem::Problem;
use crate::service::top_number;
use crate::views::FileEntry;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_host::fs::DirHandle;
use kiln_host::jobs::store::JobStore;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use utoipa::IntoParams;

/// Most entries a listing returns, and how deep it looks.
const MAX_ENTRIES: usize = 10_000;
const MAX_DEPTH: usize = 8;

fn job_dir(state: &AppState, id: &str) -> Result<DirHandle, Problem> {
    let not_found = || Problem::not_found(format!("there is no job {id}"));
    let top = top_number(id).ok_or_else(not_found)?;
    let service = &state.service;
    service.store.submission(top)?.ok_or_else(not_found)?;
    let rel = match JobStore::get(&*service.store, id) {
        Some(stored) => stored.dir,
        None if !id.contains('.') => PathBuf::from(format!("job_{top}")),
        None => return Err(not_found()),
    };
    DirHandle::open(&service.jobs_dir)
        .and_then(|d| d.open_dir(&rel))
        .map_err(|e| Problem::not_found(format!("job {id}'s directory cannot be opened: {e}")))
}

fn walk(dir: &DirHandle, prefix: &str, depth: usize, out: &mut Vec<FileEntry>) {
    let Ok(mut names) = dir.names() else { return };
    names.sort();
    for name in names {
        if out.len() >= MAX_ENTRIES {
            return;
        }
        let Some(name) = name.to_str().map(str::to_string) else {
            continue;
        };
        let rel = std::path::Path::new(&name);
        let Ok(kind) = dir.kind(rel) else { continue };
        let path = format!("{prefix}{name}");
        if kind.is_dir() && depth < MAX_DEPTH {
            if let Ok(sub) = dir.open_dir(rel) {
                walk(&sub, &format!("{path}/"), depth + 1, out);
            }
        } else if kind.is_file()
            && let Ok(f) = dir.open_file(rel)
        {
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(FileEntry { path, size });
        }
    }
}

#[utoipa::path(
    get, path = "/jobs/{id}/files", tag = "files",
    params(("id" = String, Path, description = "A job id")),
    responses(
        (status = 200, body = Vec<FileEntry>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_files(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<FileEntry>>, Problem> {
    state.authorize(&headers, Scope::Read)?;
    let dir = job_dir(&state, &id)?;
    let entries = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        walk(&dir, "", 0, &mut out);
        out
    })
    .await
    .map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Json(entries))
}

/// `path` as plain components, or a problem naming it.
fn relative(path: &str) -> Result<PathBuf, Problem> {
    let p = std::path::Path::new(path);
    let plain = !path.is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain {
        return Err(Problem::not_found(format!(
            "`{path}` is not a path below the job directory"
        )));
    }
    Ok(p.to_path_buf())
}

fn content_type(path: &str) -> &'static str {
    let text = [
        ".txt", ".log", ".xml", ".pdb", ".cif", ".json", ".com", ".def", ".seq", ".html",
    ];
    if text.iter().any(|e| path.ends_with(e)) {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// A file's contents as a response; the file was written by the job, so
/// it is never shown as a page of this origin.
fn file_response(file: std::fs::File, path: &str) -> Response {
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    response
}

#[utoipa::path(
    get, path = "/jobs/{id}/files/{path}", tag = "files",
    params(("id" = String, Path, description = "A job id"), ("path" = String, Path, description = "A file below the job directory")),
    responses(
        (status = 200, description = "The file: text files (logs, XML, PDB, mmCIF) as text/plain", content(
            (Vec<u8> = "application/octet-stream"),
            (String = "text/plain"),
        )),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_file(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Read)?;
    let rel = relative(&path)?;
    let dir = job_dir(&state, &id)?;
    let file = dir
        .open_file(&rel)
        .map_err(|e| Problem::not_found(format!("job {id} has no readable file `{path}`: {e}")))?;
    Ok(file_response(file, &path))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// `stdout` (default) or `stderr`.
    pub stream: Option<String>,
    /// The program's number in the job (1 for the first); the last one
    /// started by default.
    pub process: Option<u32>,
    /// Keep sending what the program writes until the job ends.
    pub follow: Option<bool>,
}

#[utoipa::path(
    get, path = "/jobs/{id}/log", tag = "files",
    params(("id" = String, Path, description = "The job that ran the program"), LogQuery),
    responses(
        (status = 200, description = "The log, then (with follow) what is appended until the job ends", content_type = "text/plain", body = String),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn log(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    state.authorize(&headers, Scope::Read)?;
    let Query(q) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let stderr = match q.stream.as_deref() {
        None | Some("stdout") => false,
        Some("stderr") => true,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "stream `{other}`: use stdout or stderr"
            )));
        }
    };
    let dir = job_dir(&state, &id)?;
    let name_of = |n: u32| {
        let (_, out, err) = kiln_host::interfaces::program_log_names(n);
        if stderr { err } else { out }
    };
    let number = match q.process {
        Some(n) if n >= 1 => n,
        Some(_) => return Err(Problem::bad_request("process numbers start at 1")),
        None => (1..=10_000)
            .take_while(|n| dir.kind(std::path::Path::new(&name_of(*n))).is_ok())
            .last()
            .ok_or_else(|| Problem::not_found(format!("job {id} has run no program yet")))?,
    };
    let name = name_of(number);
    let file = dir
        .open_file(std::path::Path::new(&name))
        .map_err(|e| Problem::not_found(format!("job {id} has no log {name}: {e}")))?;
    if !q.follow.unwrap_or(false) {
        return Ok(file_response(file, &name));
    }
    let top = top_number(&id).unwrap_or(0);
    let service = state.service.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut file = tokio::fs::File::from_std(file);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let ended = !service.is_live(top);
            match file.read(&mut buf).await {
                Ok(0) if ended => return,
                Ok(0) => tokio::time::sleep(Duration::from_millis(200)).await,
                Ok(n) => {
                    if tx.send(Ok(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}
