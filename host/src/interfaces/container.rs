//! `kiln:plugin/container`: the job's own container, by dotted path.

use crate::bindings::container::{self as wit, Host};
use crate::bindings::types::{ErrorRecord, HostError, Severity};
use crate::interfaces::{View, check_len, checked_path, invalid, scope};
use crate::lock;
use kiln_container as model;
use kiln_fs::roots::Access;
use kiln_jobs::Job;

/// WIT value to container value for `item` of `job`'s container. A file
/// path must lie in the job's granted roots (writable for outputData); it is
/// stored absolute so it stays meaningful when copied into another job.
pub(crate) fn value_from_wit(
    v: wit::Value,
    job: &Job,
    item: &str,
) -> Result<model::Value, HostError> {
    Ok(match v {
        wit::Value::Int(i) => model::Value::Int(i),
        wit::Value::Float(f) => model::Value::Float(f),
        wit::Value::Text(s) => {
            check_len("a text value", &s)?;
            model::Value::Text(s)
        }
        wit::Value::Boolean(b) => model::Value::Bool(b),
        wit::Value::File(f) => {
            check_len("a file path", &f.path)?;
            if f.path.is_empty() {
                return Err(invalid(format!("{item}: the file path is empty")));
            }
            let access = if item.starts_with("outputData") {
                Access::Write
            } else {
                Access::Read
            };
            let path = checked_path(job, &f.path, access, item)?;
            model::Value::File(model::FileValue {
                path: path.display().to_string(),
                file_type: f.file_type,
                annotation: f.annotation,
            })
        }
    })
}

pub(crate) fn value_to_wit(v: model::Value) -> wit::Value {
    match v {
        model::Value::Int(i) => wit::Value::Int(i),
        model::Value::Float(f) => wit::Value::Float(f),
        model::Value::Text(s) => wit::Value::Text(s),
        model::Value::Bool(b) => wit::Value::Boolean(b),
        model::Value::File(f) => wit::Value::File(wit::FileRef {
            path: f.path,
            file_type: f.file_type,
            annotation: f.annotation,
        }),
    }
}

pub(crate) fn container_error(e: impl std::fmt::Display) -> HostError {
    invalid(e.to_string())
}

fn severity(s: model::Severity) -> Severity {
    match s {
        model::Severity::Ok => Severity::Ok,
        model::Severity::Undefined => Severity::Undefined,
        model::Severity::Warning => Severity::Warning,
        model::Severity::UndefinedError => Severity::UndefinedError,
        model::Severity::Error => Severity::Error,
    }
}

pub(crate) fn report_to_wit(r: model::Report) -> ErrorRecord {
    ErrorRecord {
        code: r.code,
        severity: severity(r.severity),
        source: r.path,
        message: r.message,
    }
}

impl View<'_, scope::Container<'_>> {
    /// Run `f` on this job's container.
    fn with_container<T>(
        &self,
        f: impl FnOnce(&mut model::Container, &Job) -> Result<T, HostError>,
    ) -> Result<T, HostError> {
        let job = &self.bound()?.job;
        f(&mut lock(&job.container), job)
    }
}

type HostResult<T> = wasmtime::Result<Result<T, HostError>>;

impl Host for View<'_, scope::Container<'_>> {
    async fn get(&mut self, path: String) -> HostResult<Option<wit::Value>> {
        Ok(self.with_container(|c, _| {
            check_len("a path", &path)?;
            c.get(&path)
                .map(|v| v.map(value_to_wit))
                .map_err(container_error)
        }))
    }

    async fn set(&mut self, path: String, value: wit::Value) -> HostResult<()> {
        Ok(self.with_container(|c, job| {
            check_len("a path", &path)?;
            let v = value_from_wit(value, job, &path)?;
            c.set(&path, v).map_err(container_error)
        }))
    }

    async fn is_set(&mut self, path: String) -> HostResult<bool> {
        Ok(self.with_container(|c, _| c.is_set(&path).map_err(container_error)))
    }

    async fn children(&mut self, path: String) -> HostResult<Vec<String>> {
        Ok(self.with_container(|c, _| c.children(&path).map_err(container_error)))
    }

    async fn class_name(&mut self, path: String) -> HostResult<String> {
        Ok(self.with_container(|c, _| c.class_name(&path).map_err(container_error)))
    }

    async fn find(&mut self, name: String) -> wasmtime::Result<Vec<String>> {
        Ok(self
            .with_container(|c, _| Ok(c.find(&name)))
            .unwrap_or_default())
    }

    async fn validate(&mut self) -> wasmtime::Result<Vec<ErrorRecord>> {
        Ok(self
            .with_container(|c, _| Ok(c.validate().into_iter().map(report_to_wit).collect()))
            .unwrap_or_default())
    }
}
