//! A job's parameters checked before anything of it runs, and the report
//! of what is wrong: the same for a top-level job (refused at submission)
//! and a sub-job (refused when its pipeline starts it).

use kiln_container::{Container, Report};

/// The errors (not warnings) of a container's validation, files included:
/// a file exists when `exists` says so.
pub fn validation_errors(container: &Container, exists: &dyn Fn(&str) -> bool) -> Vec<Report> {
    container
        .validate_files(&|f| exists(&f.path))
        .into_iter()
        .filter(|r| r.severity.is_error())
        .collect()
}

/// The invalid-parameter report of a container's errors, one line each.
pub fn report_lines(reports: &[Report]) -> Vec<String> {
    reports
        .iter()
        .map(|r| format!("{}: {} (code {})", r.path, r.message, r.code))
        .collect()
}
