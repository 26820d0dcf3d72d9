//! `kiln:plugin/jobs`: sub-jobs of a pipeline. A sub-job lives in `job_N`
//! below its parent's directory, has id `<parent>.<N>`, its own container,
//! and grants no wider than its parent's.

use crate::bindings::container::Value as WitValue;
use crate::bindings::jobs::{Host, HostSubJob, JobResult as WitJobResult, JobState as WitState};
use crate::bindings::types::HostError;
use crate::engine::lock;
use crate::grants::Capability;
use crate::interfaces::container::{container_error, value_from_wit, value_to_wit};
use crate::interfaces::{
    PluginState, cancelled, check_len, denied, failed, invalid, until_cancelled,
};
use crate::job::{AuditEvent, Job, JobState, SubJobHandle};
use std::sync::Arc;
use wasmtime::component::Resource;

type HostResult<T> = wasmtime::Result<Result<T, HostError>>;

fn state_to_wit(s: JobState) -> WitState {
    match s {
        JobState::Pending => WitState::Pending,
        JobState::Queued => WitState::Queued,
        JobState::Running => WitState::Running,
        JobState::Finished => WitState::Finished,
        JobState::Failed => WitState::Failed,
        JobState::Interrupted => WitState::Interrupted,
        JobState::Unsatisfactory => WitState::Unsatisfactory,
    }
}

impl PluginState {
    async fn make_sub_job(&mut self, task: String) -> Result<SubJobHandle, HostError> {
        check_len("a task name", &task)?;
        let b = self.bound()?;
        let (host, parent) = (b.host.clone(), b.job.clone());
        parent.require(Capability::Task, &task).map_err(denied)?;
        let info = host
            .catalog
            .get(&task)
            .await
            .map_err(|e| failed(format!("failed to load sub-task `{task}`: {e}")))?;
        // A sub-job holds what it asks for, but never more than its parent.
        let mut grants = parent.grants.intersect(&info.requests);
        // Limits and directories are the operator's, not the task's to ask.
        grants.limits = parent.grants.limits.clone();
        grants.read_dirs = parent.grants.read_dirs.clone();
        grants.write_dirs = parent.grants.write_dirs.clone();
        let (n, dir) = parent
            .allocate_child_dir()
            .map_err(|e| failed(e.to_string()))?;
        let job = Job::new(
            format!("{}.{n}", parent.id),
            info.clone(),
            dir,
            grants,
            info.new_container(),
            parent.cancel.child_token(),
            Some(&parent),
        );
        lock(&parent.children).push(job.clone());
        parent.audit(&AuditEvent::SubJob {
            task: &task,
            job: &job.id,
        });
        host.publish_state(&job);
        Ok(SubJobHandle {
            job,
            started: false,
        })
    }

    fn sub_job(&self, r: &Resource<SubJobHandle>) -> wasmtime::Result<Arc<Job>> {
        Ok(self.table_ref().get(r)?.job.clone())
    }
}

impl Host for PluginState {
    async fn self_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.bound().map(|b| b.job.id.clone()).unwrap_or_default())
    }

    async fn make(&mut self, task: String) -> HostResult<Resource<SubJobHandle>> {
        if let Err(e) = self.take_handle() {
            return Ok(Err(e));
        }
        match self.make_sub_job(task).await {
            Ok(h) => Ok(Ok(self.table().push(h)?)),
            Err(e) => {
                self.release_handle();
                Ok(Err(e))
            }
        }
    }

    async fn wait_any(&mut self, jobs: Vec<Resource<SubJobHandle>>) -> HostResult<u32> {
        if jobs.is_empty() {
            return Ok(Err(invalid("wait-any needs at least one sub-job")));
        }
        let mut list = Vec::with_capacity(jobs.len());
        for r in &jobs {
            let h = self.table_ref().get(r)?;
            if !h.started {
                return Ok(Err(invalid(format!(
                    "sub-job {} has not been started",
                    h.job.id
                ))));
            }
            list.push(h.job.clone());
        }
        if let Some(i) = list.iter().position(|j| j.result().is_some()) {
            return Ok(Ok(i as u32));
        }
        let token = self.cancel_token();
        let waits = list.iter().map(|j| Box::pin(j.wait()));
        tokio::select! {
            (_, i, _) = futures::future::select_all(waits) => Ok(Ok(i as u32)),
            _ = until_cancelled(&token) => Ok(Err(cancelled())),
        }
    }
}

impl HostSubJob for PluginState {
    async fn id(&mut self, r: Resource<SubJobHandle>) -> wasmtime::Result<String> {
        Ok(self.sub_job(&r)?.id.clone())
    }

    async fn directory(&mut self, r: Resource<SubJobHandle>) -> wasmtime::Result<String> {
        let job = self.sub_job(&r)?;
        Ok(job
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default())
    }

    async fn state(&mut self, r: Resource<SubJobHandle>) -> wasmtime::Result<WitState> {
        Ok(state_to_wit(self.sub_job(&r)?.state()))
    }

    async fn set_param(
        &mut self,
        r: Resource<SubJobHandle>,
        path: String,
        value: WitValue,
    ) -> HostResult<()> {
        let job = self.sub_job(&r)?;
        Ok((|| {
            check_len("a path", &path)?;
            if job.state() != JobState::Pending {
                return Err(invalid(format!("sub-job {} has already started", job.id)));
            }
            let v = value_from_wit(value, &job, &path)?;
            lock(&job.container).set(&path, v).map_err(container_error)
        })())
    }

    async fn copy_param(
        &mut self,
        r: Resource<SubJobHandle>,
        path: String,
        source: Option<Resource<SubJobHandle>>,
        source_path: String,
    ) -> HostResult<()> {
        let job = self.sub_job(&r)?;
        let source_job = match &source {
            Some(s) => self.sub_job(s)?,
            None => match self.bound() {
                Ok(b) => b.job.clone(),
                Err(e) => return Ok(Err(e)),
            },
        };
        if job.state() != JobState::Pending {
            return Ok(Err(invalid(format!(
                "sub-job {} has already started",
                job.id
            ))));
        }
        // Copy out first: the two containers are never locked together.
        let snapshot = lock(&source_job.container).clone();
        Ok(lock(&job.container)
            .copy_subtree(&path, &snapshot, &source_path)
            .map_err(container_error))
    }

    async fn copy_to_parent(
        &mut self,
        r: Resource<SubJobHandle>,
        source_path: String,
        path: String,
    ) -> HostResult<()> {
        let job = self.sub_job(&r)?;
        let parent = match self.bound() {
            Ok(b) => b.job.clone(),
            Err(e) => return Ok(Err(e)),
        };
        let snapshot = lock(&job.container).clone();
        Ok(lock(&parent.container)
            .copy_subtree(&path, &snapshot, &source_path)
            .map_err(container_error))
    }

    async fn start(&mut self, r: Resource<SubJobHandle>) -> HostResult<()> {
        let host = match self.bound() {
            Ok(b) => b.host.clone(),
            Err(e) => return Ok(Err(e)),
        };
        let h = self.table().get_mut(&r)?;
        if h.started {
            return Ok(Err(invalid(format!(
                "sub-job {} was already started",
                h.job.id
            ))));
        }
        // A sub-job's parameters are checked as a top-level job's are,
        // before anything of it runs.
        let errors = crate::host::validation_errors(&lock(&h.job.container));
        if !errors.is_empty() {
            let list: Vec<String> = errors
                .iter()
                .map(|r| format!("{}: {} (code {})", r.path, r.message, r.code))
                .collect();
            return Ok(Err(invalid(format!(
                "sub-job {} ({}) has invalid parameters: {}",
                h.job.id,
                h.job.task.name,
                list.join("; ")
            ))));
        }
        h.started = true;
        crate::job::start_job(host, h.job.clone());
        Ok(Ok(()))
    }

    async fn wait(&mut self, r: Resource<SubJobHandle>) -> HostResult<WitJobResult> {
        let h = self.table_ref().get(&r)?;
        if !h.started {
            return Ok(Err(invalid(format!(
                "sub-job {} has not been started",
                h.job.id
            ))));
        }
        let job = h.job.clone();
        let token = self.cancel_token();
        tokio::select! {
            res = job.wait() => Ok(Ok(WitJobResult { status: res.status.into(), reason: res.reason })),
            _ = until_cancelled(&token) => Ok(Err(cancelled())),
        }
    }

    async fn cancel(&mut self, r: Resource<SubJobHandle>) -> wasmtime::Result<()> {
        self.sub_job(&r)?.cancel();
        Ok(())
    }

    async fn get(
        &mut self,
        r: Resource<SubJobHandle>,
        path: String,
    ) -> HostResult<Option<WitValue>> {
        let job = self.sub_job(&r)?;
        Ok(lock(&job.container)
            .get(&path)
            .map(|v| v.map(value_to_wit))
            .map_err(container_error))
    }

    async fn drop(&mut self, r: Resource<SubJobHandle>) -> wasmtime::Result<()> {
        // The sub-job itself belongs to its parent job and is settled at the
        // parent's end.
        self.table().delete(r)?;
        self.release_handle();
        Ok(())
    }
}
