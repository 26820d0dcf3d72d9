//! Running one job: instantiate its component in a fresh store bound to the
//! job, call `run` under the job's limits, then settle everything the job
//! left (programs, sub-jobs), write its files and record exactly one end.

use super::{Job, JobResult, JobState, write_job_file};
use crate::engine::lock;
use crate::host::HostShared;
use crate::interfaces::{Bound, PluginState, trap_reason};
use kiln_container::ParamsHeader;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use wasmtime::Store;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// How long a cancelled guest gets to return on its own (its pending host
/// calls return `cancelled`) before it is dropped.
const GUEST_GRACE: Duration = Duration::from_secs(2);

/// Run a job in the background; its end is observed through [`Job::wait`].
pub(crate) fn start_job(host: Arc<HostShared>, job: Arc<Job>) {
    // Boxed: a pipeline's run starts sub-jobs from inside a host call, so the
    // future type would otherwise contain itself.
    let fut: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(run(host, job));
    tokio::spawn(fut);
}

async fn run(host: Arc<HostShared>, job: Arc<Job>) {
    lock(&job.times).started = Some((SystemTime::now(), Instant::now()));
    job.set_state(JobState::Running);
    host.publish_state(&job);
    let input = lock(&job.container).to_params_xml(&params_header(&job));
    let result = match write_job_file(&job.dir, "input_params.xml", input.as_bytes()) {
        Ok(()) => execute_with_limits(&host, &job).await,
        Err(e) => JobResult::failed(format!("failed to write input_params.xml: {e}")),
    };
    settle(&host, &job, result).await;
}

async fn execute_with_limits(host: &Arc<HostShared>, job: &Arc<Job>) -> JobResult {
    let limits = job.grants.limits.clone();
    let exec = execute(host.clone(), job.clone());
    tokio::pin!(exec);
    tokio::select! {
        r = &mut exec => r,
        _ = job.cancel.cancelled() => {
            let _ = tokio::time::timeout(GUEST_GRACE, &mut exec).await;
            JobResult::interrupted("cancelled")
        }
        _ = tokio::time::sleep(limits.wall()) => {
            // Stops the job's programs and sub-jobs, and makes the guest's
            // pending calls return `cancelled`.
            job.cancel.cancel();
            let _ = tokio::time::timeout(GUEST_GRACE, &mut exec).await;
            JobResult::failed(format!(
                "time limit: the job ran for more than {} s of wall time (limits.wall_seconds)",
                limits.wall_seconds
            ))
        }
    }
}

async fn execute(host: Arc<HostShared>, job: Arc<Job>) -> JobResult {
    let limits = job.grants.limits.clone();
    let guest_output = PluginState::guest_output_sink();
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(guest_output.clone())
        .stderr(guest_output.clone());
    // The job directory is the guest's only view of the filesystem.
    if let Err(e) = wasi.preopened_dir(&job.dir, "/job", FsPerms::ReadWrite) {
        return JobResult::failed(format!("failed to open the job directory: {e:#}"));
    }
    let memory = usize::try_from(limits.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let state = PluginState::new(
        wasi.build(),
        Some(Bound {
            host: host.clone(),
            job: job.clone(),
        }),
        memory,
        Some(guest_output),
    );
    let mut store = Store::new(host.engine.engine(), state);
    PluginState::arm(&mut store, limits.cpu());
    let instance = match job.task.plugin.pre.instantiate_async(&mut store).await {
        Ok(i) => i,
        Err(e) => return JobResult::failed(trap_reason(&e, store.data())),
    };
    match instance.call_run(&mut store).await {
        Ok(outcome) => JobResult {
            status: outcome.status.into(),
            reason: outcome.reason,
        },
        Err(e) => JobResult::failed(trap_reason(&e, store.data())),
    }
}

/// Stop what the job left running, write its files, record its end once.
async fn settle(host: &Arc<HostShared>, job: &Arc<Job>, mut result: JobResult) {
    // A job leaves no axis moving.
    for motion in lock(&job.motions).drain(..) {
        motion.stop();
    }
    let processes = lock(&job.processes).clone();
    for p in &processes {
        if p.try_outcome().is_none() {
            p.cancel();
        }
    }
    for p in &processes {
        p.wait().await;
    }
    // No more programs for this job: its spawner threads end.
    lock(&job.spawners).clear();
    // Whatever the programs left behind — double-forked or setsid escapees
    // included — dies with the job.
    let cgroup = lock(&job.cgroup).take();
    if let Some(cgroup) = cgroup {
        // The host itself never: a spawner thread, now gone, was a member.
        cgroup.kill_all(&[std::process::id() as i32]).await;
    }
    for child in job.children() {
        if child.result().is_some() {
            continue;
        }
        if child.state() == JobState::Pending {
            // Made but never started: it ends with its parent.
            settle_never_started(host, &child);
            continue;
        }
        child.cancel();
        child.wait().await;
    }
    let params = lock(&job.container).to_params_xml(&params_header(job));
    if let Err(e) = write_job_file(&job.dir, "params.xml", params.as_bytes()) {
        if result.status == super::FinishStatus::Succeeded {
            result = JobResult::failed(format!("failed to write params.xml: {e}"));
        }
    }
    if result.status != super::FinishStatus::Succeeded {
        let _ = write_job_file(
            &job.dir,
            "diagnostic.xml",
            diagnostic_xml(job, &result).as_bytes(),
        );
    }
    record_end(host, job, result);
}

fn settle_never_started(host: &Arc<HostShared>, job: &Arc<Job>) {
    record_end(
        host,
        job,
        JobResult::interrupted("never started: its parent job ended first"),
    );
}

/// Record the end once: state, then the `finished` signal, then wake the
/// waiters, so whoever waited sees the signal already published.
fn record_end(host: &Arc<HostShared>, job: &Arc<Job>, result: JobResult) {
    if !job.claim_end() {
        return;
    }
    lock(&job.times).ended = Some((SystemTime::now(), Instant::now()));
    job.set_state(result.status.state());
    host.publish_state(job);
    host.publish_finished(job, result.status, result.reason.clone());
    job.finish(result);
}

fn params_header(job: &Job) -> ParamsHeader {
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

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A CCP4i2-style error report for a job that did not succeed.
fn diagnostic_xml(job: &Job, result: &JobResult) -> String {
    format!(
        "<?xml version='1.0' encoding='utf-8'?>\n<ccp4i2>\n  <ccp4i2_header>\n    <function>DIAGNOSTIC</function>\n    <pluginName>{}</pluginName>\n    <jobId>{}</jobId>\n  </ccp4i2_header>\n  <ccp4i2_body>\n    <errorReportList>\n      <errorReport>\n        <className>{}</className>\n        <code>{}</code>\n        <description>{}</description>\n        <severity>{}</severity>\n      </errorReport>\n    </errorReportList>\n  </ccp4i2_body>\n</ccp4i2>\n",
        xml_escape(&job.task.name),
        xml_escape(&job.id),
        xml_escape(&job.task.name),
        result.status.code(),
        xml_escape(result.reason.as_deref().unwrap_or("")),
        if result.status == super::FinishStatus::Unsatisfactory {
            2
        } else {
            4
        },
    )
}
