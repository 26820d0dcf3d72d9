//! The host's seams are real: an executor and a stage other than the ones
//! Kiln ships, given to the host through its public configuration, serve a
//! plugin's programs and axes.
//!
//! - A recording executor runs programs through the local one and keeps
//!   every request and sandbox it was handed.
//! - A stage whose driver fails mid-motion: the plugin's wait gets the
//!   fault, and the job fails naming it.
//! - A job store that keeps its records through the jobs directory's own
//!   and sees each one written.

mod common;

use common::{FAKE, TestHost, result_text};
use kiln_host::FinishStatus;
use kiln_host::exec::executor::BoxFuture;
use kiln_host::exec::{
    ExecError, ExecSession, Executor, LocalExecutor, ProcessShared, ProgramRequest, Sandbox,
};
use kiln_host::stage::{AxisConfig, Motion, MotionEnd, Stage, StageError};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One program request as the executor saw it.
#[derive(Debug, Clone)]
struct Recorded {
    session: String,
    program: PathBuf,
    args: Vec<String>,
    network: bool,
    read_write: Vec<PathBuf>,
}

/// Runs everything through `inner`, recording what it was asked.
struct RecordingExecutor {
    inner: LocalExecutor,
    log: Arc<Mutex<Vec<Recorded>>>,
    sessions: Arc<Mutex<Vec<String>>>,
}

struct RecordingSession {
    name: String,
    sandbox: Sandbox,
    inner: Arc<dyn ExecSession>,
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl Executor for RecordingExecutor {
    fn open(&self, name: &str, sandbox: Sandbox) -> Result<Arc<dyn ExecSession>, ExecError> {
        self.sessions.lock().unwrap().push(name.to_string());
        Ok(Arc::new(RecordingSession {
            name: name.to_string(),
            inner: self.inner.open(name, sandbox.clone())?,
            sandbox,
            log: self.log.clone(),
        }))
    }
}

impl ExecSession for RecordingSession {
    fn spawn(&self, request: ProgramRequest) -> Result<Arc<ProcessShared>, ExecError> {
        self.log.lock().unwrap().push(Recorded {
            session: self.name.clone(),
            program: request.program.clone(),
            args: request.args.clone(),
            network: self.sandbox.network,
            read_write: self.sandbox.read_write.clone(),
        });
        self.inner.spawn(request)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_executor_sees_every_program_and_runs_it_through_the_local_one() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let (l, s) = (log.clone(), sessions.clone());
    let t = TestHost::with_config(
        |r| r,
        move |mut c| {
            c.executor = Some(Arc::new(RecordingExecutor {
                inner: LocalExecutor::new(c.local.clone()),
                log: l,
                sessions: s,
            }));
            c
        },
    )
    .await;
    let report = t.probe("outcome fake exit 3", None).await;
    // The local executor really ran it: the fake program's exit status.
    assert_eq!(result_text(&report), "exited 3");
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    let r = &log[0];
    assert_eq!(r.session, report.job_id);
    assert_eq!(r.program, PathBuf::from(FAKE));
    assert_eq!(r.args, ["exit", "3"]);
    assert!(!r.network, "the probe is not granted the network");
    // The job directory is what its programs may write, named as held.
    assert!(
        r.read_write.iter().any(|p| p.starts_with("/proc")),
        "{:?}",
        r.read_write
    );
    // One session for the job's one attempt.
    assert_eq!(
        *sessions.lock().unwrap(),
        std::slice::from_ref(&report.job_id)
    );
    t.assert_no_leftovers().await;
}

/// A stage with one axis whose driver reports a fault partway through
/// every motion.
struct FaultyStage {
    moves: Mutex<Vec<(String, f64)>>,
}

struct FaultyMotion {
    target: f64,
    started: Instant,
    stopped: Mutex<bool>,
}

/// When the driver gives up.
const FAULT_AFTER: Duration = Duration::from_millis(100);

impl Motion for FaultyMotion {
    fn axis(&self) -> &str {
        "x"
    }
    fn target(&self) -> f64 {
        self.target
    }
    fn position(&self) -> f64 {
        self.started.elapsed().as_secs_f64().min(0.1)
    }
    fn end(&self) -> Option<MotionEnd> {
        self.stopped.lock().unwrap().then_some(MotionEnd::Stopped)
    }
    fn stop(&self) {
        *self.stopped.lock().unwrap() = true;
    }
    fn wait(&self) -> BoxFuture<'_, Result<(MotionEnd, f64), StageError>> {
        Box::pin(async move {
            tokio::time::sleep(FAULT_AFTER.saturating_sub(self.started.elapsed())).await;
            Err(StageError::Driver {
                axis: "x".into(),
                message: format!("encoder lost at {:.3} mm", self.position()),
            })
        })
    }
}

impl Stage for FaultyStage {
    fn axes(&self) -> Vec<AxisConfig> {
        vec![AxisConfig {
            id: "x".into(),
            units: "mm".into(),
            min: -10.0,
            max: 10.0,
            max_speed: 1.0,
            position: 0.0,
        }]
    }
    fn position(&self, axis: &str) -> Result<f64, StageError> {
        match axis {
            "x" => Ok(0.0),
            _ => Err(StageError::UnknownAxis { axis: axis.into() }),
        }
    }
    fn move_to(
        &self,
        axis: &str,
        target: f64,
        _speed: Option<f64>,
    ) -> Result<Arc<dyn Motion>, StageError> {
        self.moves.lock().unwrap().push((axis.to_string(), target));
        Ok(Arc::new(FaultyMotion {
            target,
            started: Instant::now(),
            stopped: Mutex::new(false),
        }))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stage_driver_that_fails_mid_motion_fails_the_job_with_its_fault() {
    let stage = Arc::new(FaultyStage {
        moves: Mutex::new(Vec::new()),
    });
    let s = stage.clone();
    let t = TestHost::with_config(
        |r| r,
        move |mut c| {
            c.stage = s;
            c
        },
    )
    .await;
    let report = t.probe("axis x 2 1 0", None).await;
    assert_eq!(report.status, FinishStatus::Failed);
    let reason = report.reason.unwrap();
    assert!(
        reason.contains("axis `x`: the stage driver failed: encoder lost at"),
        "{reason}"
    );
    assert_eq!(*stage.moves.lock().unwrap(), [("x".to_string(), 2.0)]);

    // An axis this stage does not have is refused as the stage says.
    let report = t.probe("axis phi 1 1 0", None).await;
    assert_eq!(report.status, FinishStatus::Failed);
    let reason = report.reason.unwrap();
    assert!(reason.contains("the stage has no such axis"), "{reason}");
}

/// Records through the jobs directory's store, keeping a copy of each.
struct CopyingStore {
    inner: kiln_host::jobs::DirStore,
    puts: Mutex<Vec<(String, String, Option<String>)>>,
}

impl kiln_host::jobs::JobStore for CopyingStore {
    fn put(&self, job: &kiln_host::jobs::StoredJob) -> std::io::Result<()> {
        let r = &job.record;
        self.puts
            .lock()
            .unwrap()
            .push((r.id.clone(), r.state.clone(), r.status.clone()));
        self.inner.put(job)
    }
    fn get(&self, id: &str) -> Option<kiln_host::jobs::StoredJob> {
        self.inner.get(id)
    }
    fn list(&self) -> std::io::Result<Vec<kiln_host::jobs::StoredJob>> {
        self.inner.list()
    }
    fn add_finished(&self, fingerprint: &str, id: &str) -> std::io::Result<()> {
        self.inner.add_finished(fingerprint, id)
    }
    fn find_finished(&self, fingerprint: &str, for_id: &str) -> Option<kiln_host::jobs::StoredJob> {
        self.inner.find_finished(fingerprint, for_id)
    }
    fn note_started(&self, id: &str) -> Result<(), kiln_host::jobs::reconcile::NoteError> {
        self.inner.note_started(id)
    }
    fn reconcile(&self) -> kiln_host::jobs::Reconciled {
        self.inner.reconcile()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_store_given_to_the_host_keeps_its_records() {
    let scratch = tempfile::tempdir().unwrap();
    let jobs = scratch.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    let root = kiln_host::fs::DirHandle::open(&jobs).unwrap();
    let store = Arc::new(CopyingStore {
        inner: kiln_host::jobs::DirStore::open(&root).unwrap(),
        puts: Mutex::new(Vec::new()),
    });
    let s = store.clone();
    let t = TestHost::with_config(
        |r| r,
        move |mut c| {
            c.jobs_dir = jobs;
            c.store = Some(s);
            c
        },
    )
    .await;
    let report = t.probe("ok", None).await;
    assert_eq!(report.status, FinishStatus::Succeeded);
    let puts = store.puts.lock().unwrap().clone();
    assert_eq!(
        puts.last(),
        Some(&(
            report.job_id.clone(),
            "finished".to_string(),
            Some("succeeded".to_string())
        )),
        "{puts:?}"
    );
    // The host reads its jobs back from the same store.
    assert_eq!(t.host.jobs().unwrap().len(), 1);
}
