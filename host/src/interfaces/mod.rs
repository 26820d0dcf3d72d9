//! The host side of each WIT interface, one module per interface, each a thin
//! adapter from WIT types to the subsystem behind it.
//!
//! As wasmtime-wasi links each WASI interface with a projection of the
//! store's data, each interface here is implemented on a [`View`] of
//! [`PluginState`] that holds only its own scope: `container` the job,
//! `signals` and `log` the job and the event bus, `axes` the job, the stage
//! and the attempt's motions, `process` the job, the program registry and
//! the attempt's executor session, `jobs` the host (it starts sub-jobs).
//!
//! Expected failures (a denial, a bad path, a missing item) are returned to
//! the guest as `host-error`; a trap is reserved for host bugs and
//! exhausted limits.

mod axes;
mod container;
mod jobs;
mod log;
mod process;
pub use process::file_names as program_log_names;
mod signals;
mod types;

use crate::bindings::types::{ErrorKind, HostError};
use crate::guest_cpu::{CpuMeter, EpochClock};
use crate::guest_output::GuestOutput;
use crate::host::HostShared;
use crate::runner::Attempt;
use kiln_jobs::Job;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The largest string or list a guest may hand to one host call (paths,
/// arguments, scripts, payloads); larger ones are refused with `limit`.
pub const MAX_ARG_BYTES: usize = 1 << 20;
/// The most arguments in one spawn request.
pub const MAX_ARGS: usize = 4096;
/// The most handles (processes, sub-jobs, motions) a guest may hold at once.
pub const MAX_HANDLES: usize = 10_000;

/// What a running job's instance is bound to.
pub(crate) struct Bound {
    pub host: Arc<HostShared>,
    pub job: Arc<Job>,
    /// What this attempt of the job holds (its programs, its motions).
    pub attempt: Arc<Attempt>,
}

/// The data of one plugin instance's store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: GuestLimits,
    /// `None` while the component is only being described.
    pub(crate) bound: Option<Bound>,
    cpu: CpuMeter,
    /// What the guest wrote on its own stdout/stderr, for failure reasons.
    pub(crate) guest_output: Option<GuestOutput>,
    pub(crate) memory_limit: usize,
    /// Kiln handles (processes, sub-jobs, motions) the guest holds.
    handles: usize,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The store's limits, noting when a memory growth was refused: the trap
/// that follows is then the memory limit's.
struct GuestLimits {
    inner: StoreLimits,
    memory_refused: bool,
}

impl wasmtime::ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.memory_refused = true;
        }
        allowed
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Guest stdout/stderr kept for failure reasons: the last this many bytes.
const GUEST_OUTPUT_CAP: usize = 64 << 10;
/// Memory a component may use while describing itself.
const DESCRIBE_MEMORY: usize = 64 << 20;

impl PluginState {
    /// A state with no job, no grants and no filesystem: `describe` only.
    pub(crate) fn for_describe() -> PluginState {
        PluginState::new(
            wasmtime_wasi::WasiCtxBuilder::new().build(),
            None,
            DESCRIBE_MEMORY,
            None,
        )
    }

    pub(crate) fn new(
        wasi: WasiCtx,
        bound: Option<Bound>,
        memory_limit: usize,
        guest_output: Option<GuestOutput>,
    ) -> PluginState {
        PluginState {
            wasi,
            table: ResourceTable::new(),
            limits: GuestLimits {
                inner: StoreLimitsBuilder::new()
                    .memory_size(memory_limit)
                    .instances(64)
                    .tables(64)
                    .memories(16)
                    .trap_on_grow_failure(true)
                    .build(),
                memory_refused: false,
            },
            bound,
            cpu: CpuMeter::unlimited(),
            guest_output,
            memory_limit,
            handles: 0,
        }
    }

    /// The guest's stdout/stderr sink for a job's WASI context.
    pub(crate) fn guest_output_sink() -> GuestOutput {
        GuestOutput::new(GUEST_OUTPUT_CAP)
    }

    /// Set limits and the CPU deadline on a new store, before instantiation.
    /// A guest that runs across an epoch tick yields to the runtime, so
    /// thousands of instances share the threads fairly, and traps once it
    /// has run for `cpu` in total; time spent waiting in host calls is not
    /// counted (see `guest_cpu`).
    pub(crate) fn arm(store: &mut Store<PluginState>, cpu: Duration, clock: &EpochClock) {
        let ticks = (cpu.as_millis() / crate::engine::EPOCH_TICK.as_millis()).max(1) as u64;
        store.data_mut().cpu = CpuMeter::new(clock.clone(), ticks);
        store.limiter(|s| &mut s.limits);
        store.call_hook(|mut ctx, hook| {
            ctx.data_mut().cpu.on_call_hook(hook);
            Ok(())
        });
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().cpu.on_deadline().update()));
    }

    /// A view for one interface, with the scope `scope` picks from what
    /// the instance is bound to (none while the task describes itself).
    fn view<'a, S>(&'a mut self, scope: impl FnOnce(&'a Bound) -> S) -> View<'a, S> {
        let PluginState {
            bound,
            table,
            handles,
            ..
        } = self;
        View {
            cancel: bound.as_ref().map(|b| b.job.cancel.clone()),
            scope: bound.as_ref().map(scope),
            table,
            handles,
        }
    }
}

/// What one interface sees of an instance: its scope, and the instance's
/// resource table and handle count.
pub(crate) struct View<'a, S> {
    scope: Option<S>,
    cancel: Option<CancellationToken>,
    table: &'a mut ResourceTable,
    handles: &'a mut usize,
}

impl<S> View<'_, S> {
    pub(crate) fn bound(&self) -> Result<&S, HostError> {
        self.scope.as_ref().ok_or_else(|| HostError {
            kind: ErrorKind::Invalid,
            message: "host calls are not available while a task describes itself".into(),
        })
    }

    /// The job's cancellation token (none while describing).
    pub(crate) fn cancel_token(&self) -> Option<CancellationToken> {
        self.cancel.clone()
    }

    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        self.table
    }

    pub(crate) fn table_ref(&self) -> &ResourceTable {
        self.table
    }

    /// Refuse a new handle when the guest already holds too many.
    pub(crate) fn take_handle(&mut self) -> Result<(), HostError> {
        if *self.handles >= MAX_HANDLES {
            return Err(limit(format!(
                "the plugin holds {MAX_HANDLES} handles already; drop some first"
            )));
        }
        *self.handles += 1;
        Ok(())
    }

    pub(crate) fn release_handle(&mut self) {
        *self.handles = self.handles.saturating_sub(1);
    }
}

/// The scopes, one an interface.
pub(crate) mod scope {
    use crate::host::{HostShared, Programs};
    use crate::runner::Attempt;
    use kiln_jobs::{EventBus, Job};
    use kiln_stage::Stage;
    use std::sync::Arc;

    #[derive(Clone, Copy)]
    pub(crate) struct Container<'a> {
        pub job: &'a Arc<Job>,
    }

    /// `signals` and `log`.
    #[derive(Clone, Copy)]
    pub(crate) struct Events<'a> {
        pub job: &'a Arc<Job>,
        pub events: &'a EventBus,
    }

    #[derive(Clone, Copy)]
    pub(crate) struct Axes<'a> {
        pub job: &'a Arc<Job>,
        pub stage: &'a dyn Stage,
        pub attempt: &'a Attempt,
    }

    #[derive(Clone, Copy)]
    pub(crate) struct Process<'a> {
        pub job: &'a Arc<Job>,
        pub programs: &'a Programs,
        pub attempt: &'a Attempt,
        pub events: &'a EventBus,
    }

    #[derive(Clone, Copy)]
    pub(crate) struct Jobs<'a> {
        pub host: &'a Arc<HostShared>,
        pub job: &'a Arc<Job>,
    }
}

/// A `HasData` marker per interface, whose data is its [`View`].
macro_rules! view_of {
    ($marker:ident, $scope:ty, $get:ident, |$b:ident| $make:expr) => {
        pub(crate) struct $marker;
        impl wasmtime::component::HasData for $marker {
            type Data<'a> = View<'a, $scope>;
        }
        fn $get<'a>(s: &'a mut PluginState) -> View<'a, $scope> {
            s.view(|$b| $make)
        }
    };
}

view_of!(ContainerData, scope::Container<'a>, container_view, |b| {
    scope::Container { job: &b.job }
});
view_of!(EventsData, scope::Events<'a>, events_view, |b| {
    scope::Events {
        job: &b.job,
        events: &b.host.events,
    }
});
view_of!(AxesData, scope::Axes<'a>, axes_view, |b| scope::Axes {
    job: &b.job,
    stage: &*b.host.stage,
    attempt: &b.attempt,
});
view_of!(ProcessData, scope::Process<'a>, process_view, |b| {
    scope::Process {
        job: &b.job,
        programs: &b.host.programs,
        attempt: &b.attempt,
        events: &b.host.events,
    }
});
view_of!(JobsData, scope::Jobs<'a>, jobs_view, |b| scope::Jobs {
    host: &b.host,
    job: &b.job,
});
view_of!(TypesData, (), types_view, |_b| ());

/// Link Kiln's interfaces (WASI is linked by the engine), each with its
/// own view.
pub(crate) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    use crate::bindings::kiln::plugin as wit;
    wit::types::add_to_linker::<_, TypesData>(linker, types_view)?;
    wit::container::add_to_linker::<_, ContainerData>(linker, container_view)?;
    wit::process::add_to_linker::<_, ProcessData>(linker, process_view)?;
    wit::jobs::add_to_linker::<_, JobsData>(linker, jobs_view)?;
    wit::signals::add_to_linker::<_, EventsData>(linker, events_view)?;
    wit::axes::add_to_linker::<_, AxesData>(linker, axes_view)?;
    wit::log::add_to_linker::<_, EventsData>(linker, events_view)?;
    Ok(())
}

/// Resolves when the job is cancelled; never without a job.
pub(crate) async fn until_cancelled(token: &Option<CancellationToken>) {
    match token {
        Some(t) => t.cancelled().await,
        None => std::future::pending().await,
    }
}

pub(crate) fn denied(message: impl Into<String>) -> HostError {
    HostError {
        kind: ErrorKind::Denied,
        message: message.into(),
    }
}

pub(crate) fn invalid(message: impl Into<String>) -> HostError {
    HostError {
        kind: ErrorKind::Invalid,
        message: message.into(),
    }
}

pub(crate) fn not_found(message: impl Into<String>) -> HostError {
    HostError {
        kind: ErrorKind::NotFound,
        message: message.into(),
    }
}

pub(crate) fn failed(message: impl Into<String>) -> HostError {
    HostError {
        kind: ErrorKind::Failed,
        message: message.into(),
    }
}

pub(crate) fn limit(message: impl Into<String>) -> HostError {
    HostError {
        kind: ErrorKind::Limit,
        message: message.into(),
    }
}

pub(crate) fn cancelled() -> HostError {
    HostError {
        kind: ErrorKind::Cancelled,
        message: "the job is being cancelled".into(),
    }
}

/// Check a path the guest named for `what` against the job's roots; the
/// denial or the use of a granted directory goes to the audit log.
pub(crate) fn checked_path(
    job: &Job,
    path: &str,
    access: kiln_fs::roots::Access,
    what: &str,
) -> Result<std::path::PathBuf, HostError> {
    use kiln_fs::roots::PathError;
    use kiln_jobs::AuditEvent;
    match job.roots.check(path, access) {
        Ok(resolved) => {
            if let Some(dir) = &resolved.granted_dir {
                job.audit(&AuditEvent::DirectoryGrant {
                    path: &resolved.path,
                    directory: dir,
                    access: match access {
                        kiln_fs::roots::Access::Read => "read",
                        kiln_fs::roots::Access::Write => "write",
                    },
                });
            }
            Ok(resolved.path)
        }
        Err(e) => {
            let message = format!("{what}: {e}");
            job.audit(&AuditEvent::Denied {
                capability: "files",
                name: path,
                message: &message,
            });
            Err(match e {
                PathError::NotGranted { .. } | PathError::Escapes { .. } => denied(message),
                PathError::Nul { .. } | PathError::ParentDir { .. } => invalid(message),
            })
        }
    }
}

/// Refuse a guest-supplied string longer than [`MAX_ARG_BYTES`].
pub(crate) fn check_len(what: &str, s: &str) -> Result<(), HostError> {
    if s.len() > MAX_ARG_BYTES {
        return Err(limit(format!(
            "{what} is {} bytes; the limit is {MAX_ARG_BYTES}",
            s.len()
        )));
    }
    Ok(())
}

/// A readable reason for a trap or instantiation error, naming the limit
/// that ended the guest where there is one.
pub(crate) fn trap_reason(err: &wasmtime::Error, state: &PluginState) -> String {
    use wasmtime::Trap;
    let guest_says = state
        .guest_output
        .as_ref()
        .map(GuestOutput::text)
        .unwrap_or_default();
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            let secs = state.cpu.budget_ticks() as f64 * crate::engine::EPOCH_TICK.as_secs_f64();
            return format!("time limit: the plugin ran for more than {secs:.1} s of CPU");
        }
        Some(Trap::StackOverflow) => return "the plugin overflowed its stack".into(),
        // Rust and C guests keep their stack in linear memory; running off
        // its end is an out-of-bounds access, not a wasm stack overflow.
        Some(Trap::MemoryOutOfBounds) if !guest_says.contains("panicked at") => {
            return "the plugin made an out-of-bounds memory access (its stack overflowed, or it has a memory bug)".into();
        }
        _ => {}
    }
    let text = format!("{err:#}");
    if state.limits.memory_refused {
        return format!(
            "memory limit: the plugin tried to grow its memory past {} MiB",
            state.memory_limit >> 20
        );
    }
    if let Some(panic) = guest_says.lines().find(|l| l.contains("panicked at")) {
        let rest: Vec<&str> = guest_says
            .lines()
            .skip_while(|l| !l.contains("panicked at"))
            .skip(1)
            .take(2)
            .collect();
        return format!(
            "the plugin panicked: {} {}",
            panic.trim(),
            rest.join(" ").trim()
        );
    }
    match err.downcast_ref::<Trap>() {
        Some(trap) => format!("the plugin trapped: {trap}"),
        // Not a trap: an instantiation or host error. The wasm backtrace is
        // one link of the chain; the cause is another.
        None => format!(
            "the plugin failed: {}",
            err.chain()
                .map(|e| e.to_string())
                .find(|m| !m.starts_with("error while executing at wasm backtrace"))
                .unwrap_or_else(|| text.lines().next().unwrap_or_default().to_string())
        ),
    }
}
