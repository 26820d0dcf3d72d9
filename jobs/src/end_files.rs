//! The files a job leaves for people and CCP4i2's tools at the end of
//! each attempt: `params.xml`, `diagnostic.xml` for one that did not
//! succeed, and an attempt's files moved aside before a retry.

use crate::dir::write_file as write_job_file;
use crate::{FinishStatus, Job, JobResult, lock, record};
use kiln_container::{ParamsHeader, escape_text as xml_escape};
use kiln_fs::DirHandle;

/// Move what an attempt left in the job directory into `attempt_N/`, so a
/// retry starts clean and nothing of the failed attempt is lost. The job's
/// record and audit trail stay: they cover every attempt.
pub fn archive_attempt(dir: &DirHandle, attempt: u32) -> std::io::Result<()> {
    let to = dir.create_dir(&format!("attempt_{attempt}"))?;
    for name in dir.names()? {
        let Some(text) = name.to_str() else {
            // Not a name the host made; it stays.
            continue;
        };
        if text.starts_with("attempt_") || text == record::RECORD_FILE || text == "audit.jsonl" {
            continue;
        }
        dir.rename(text, &to, text)?;
    }
    Ok(())
}

/// params.xml, and diagnostic.xml unless the job (or attempt) succeeded.
pub fn write_end_files(job: &Job, mut result: JobResult) -> JobResult {
    let params = lock(&job.container).to_params_xml(&params_header(job));
    if let Err(e) = job
        .dir_handle()
        .and_then(|dir| write_job_file(&dir, "params.xml", params.as_bytes()))
        && result.status == FinishStatus::Succeeded
    {
        result = JobResult::failed(format!("failed to write params.xml: {e}"));
    }
    if result.status != FinishStatus::Succeeded {
        let diagnostic = diagnostic_xml(job, &result);
        let _ = job
            .dir_handle()
            .and_then(|dir| write_job_file(&dir, "diagnostic.xml", diagnostic.as_bytes()));
    }
    result
}

pub fn params_header(job: &Job) -> ParamsHeader {
    let created = job
        .times()
        .created
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    ParamsHeader {
        plugin_title: Some(job.task.title.clone()),
        job_id: Some(job.id.clone()),
        job_number: Some(job.id.clone()),
        creation_time: Some(ParamsHeader::creation_time_utc(created)),
        ccp4i_version: Some(format!("kiln {}", env!("CARGO_PKG_VERSION"))),
        ..ParamsHeader::new(job.task.name.clone())
    }
}

/// A CCP4i2-style error report for a job that did not succeed: its own
/// error first, then one for each of its steps that did not succeed.
fn diagnostic_xml(job: &Job, result: &JobResult) -> String {
    let severity = |status| {
        if status == FinishStatus::Unsatisfactory {
            2
        } else {
            4
        }
    };
    let report = |class: &str, job_id: &str, code: i32, text: &str, severity: i32| {
        format!(
            "      <errorReport>\n        <className>{}</className>\n        <jobId>{}</jobId>\n        <code>{code}</code>\n        <description>{}</description>\n        <severity>{severity}</severity>\n      </errorReport>\n",
            xml_escape(class),
            xml_escape(job_id),
            xml_escape(text),
        )
    };
    let mut reports = report(
        &job.task.name,
        &job.id,
        result.status.code(),
        result.reason.as_deref().unwrap_or(""),
        severity(result.status),
    );
    for step in job.steps.failures() {
        reports.push_str(&report(
            &step.task,
            &step.job_id,
            step.status.code(),
            step.reason.as_deref().unwrap_or(""),
            severity(step.status),
        ));
    }
    format!(
        "<?xml version='1.0' encoding='utf-8'?>\n<ccp4i2>\n  <ccp4i2_header>\n    <function>DIAGNOSTIC</function>\n    <pluginName>{}</pluginName>\n    <jobId>{}</jobId>\n  </ccp4i2_header>\n  <ccp4i2_body>\n    <errorReportList>\n{reports}    </errorReportList>\n  </ccp4i2_body>\n</ccp4i2>\n",
        xml_escape(&job.task.name),
        xml_escape(&job.id),
    )
}
