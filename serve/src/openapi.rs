//! The OpenAPI 3.1 document of the API, built from the handlers'
//! annotations and the views' types, served at `GET /openapi.json`.

use crate::problem::{FieldError, Problem};
use crate::routes;
use crate::views::*;
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Kiln job service", description = "Submit tasks, watch them, stop them, read their files."),
    paths(
        routes::jobs::submit,
        routes::jobs::list,
        routes::jobs::get_job,
        routes::jobs::stop,
        routes::jobs::delete_job,
        routes::events::job_events,
        routes::events::job_ws,
        routes::events::all_events,
        routes::files::list_files,
        routes::files::get_file,
        routes::files::log,
        routes::catalog::tasks,
        routes::catalog::task,
        routes::catalog::axes,
        routes::health::health,
        routes::health::metrics,
    ),
    components(schemas(
        SubmitRequest, ParamValue, Submitted, JobView, JobListItem, JobList, Stopped, Progress,
        OutputView, FileEntry, TaskSummary, TaskDetail, AxisView, Health, SseEvent, Problem,
        FieldError
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
