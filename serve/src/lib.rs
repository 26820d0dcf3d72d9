//! Kiln's job service, `kiln serve`: the host behind an HTTP API (axum),
//! with its jobs in an SQLite database ([`kiln_sqlite_store`]) that
//! outlives the process.
//!
//! - [`service`]: submissions committed before they are answered, the
//!   queue, stops, and the reconciliation of what a service that died left.
//! - [`recorder`]: every job event numbered, committed, then streamed.
//! - [`routes`]: the API; [`openapi`] its OpenAPI 3.1 document.
//! - [`dashboard`]: the page for people at `/`, over that same API.
//! - [`config`]: the tokens and grants-profile files; [`problem`]: errors
//!   as RFC 9457 problem documents; [`metrics`]: Prometheus text.
//!
//! The library prints nothing; it logs with `tracing`, and says where it
//! listens through a callback.

pub mod config;
pub mod dashboard;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod recorder;
pub mod routes;
pub mod service;
pub mod views;

use config::{ConfigError, Profiles, Tokens};
use kiln_host::{Host, HostConfig, Registry};
use kiln_sqlite_store::SqliteStore;
pub use service::ShutdownMode;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to run the service.
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub jobs_dir: PathBuf,
    /// The database; `<jobs_dir>/kiln.db` by default.
    pub db: Option<PathBuf>,
    pub tokens: Option<PathBuf>,
    pub grants: Option<PathBuf>,
    pub registry: Registry,
    /// Extra task components for the catalogue.
    pub plugins: Vec<PathBuf>,
    /// Top-level jobs running at once; more wait, queued by priority.
    pub max_running_jobs: usize,
    /// Native programs running at once across all jobs.
    pub max_processes: usize,
    pub require_confinement: bool,
    pub shutdown: ShutdownMode,
    /// Slots in the wasm instance pool (0: none); jobs beyond it are
    /// instantiated on demand, and counted in `/metrics`.
    pub pool_instances: u32,
}

/// Why the service could not start (or failed while running).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {0} without a tokens file: anyone who can reach it could run tasks; pass --tokens FILE, or listen on 127.0.0.1"
    )]
    OpenWithoutTokens(SocketAddr),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("token `{token}` names the grants profile `{profile}`, which {where_}")]
    UnknownProfile {
        token: String,
        profile: String,
        where_: String,
    },
    #[error(transparent)]
    Store(#[from] kiln_sqlite_store::StoreError),
    #[error("the jobs directory: {0}")]
    JobsDir(#[from] kiln_host::jobs::JobDirError),
    #[error("failed to start the host: {0}")]
    Host(#[from] kiln_host::HostStartError),
    #[error("failed to add plugin {path}: {source}")]
    Plugin {
        path: PathBuf,
        #[source]
        source: kiln_host::catalog::CatalogError,
    },
    #[error("failed to start the service: {}", .0.detail)]
    Start(problem::Problem),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The runtime's figures for `/metrics`, in Prometheus text: wasm
/// instances, the pool, the compiled-component cache, native programs.
pub fn runtime_metrics(host: &Host) -> String {
    use std::fmt::Write;
    let s = host.runtime_stats();
    let (running, waiting) = kiln_host::exec::program_counts();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP kiln_{name} {help}");
        let _ = writeln!(out, "# TYPE kiln_{name} {kind}");
        let suffix = if kind == "counter" { "_total" } else { "" };
        let _ = writeln!(out, "kiln_{name}{suffix} {value}");
    };
    metric(
        "wasm_instances_live",
        "gauge",
        "Plugin instances alive.",
        s.instances_live,
    );
    metric(
        "wasm_instances_pooled",
        "gauge",
        "Plugin instances in a pool slot.",
        s.instances_pooled,
    );
    metric(
        "wasm_pool_slots",
        "gauge",
        "Slots in the instance pool.",
        s.pool_slots as u64,
    );
    metric(
        "wasm_pool_fallbacks",
        "counter",
        "Instantiations allocated on demand because the pool was exhausted.",
        s.pooled_exhausted_fallbacks,
    );
    metric(
        "wasm_instantiations",
        "counter",
        "Plugin instances made.",
        s.instantiations,
    );
    metric(
        "compiled_cache_hits",
        "counter",
        "Component loads served without compiling.",
        s.compiled_cache_hits,
    );
    metric(
        "compiled_cache_misses",
        "counter",
        "Component loads that compiled.",
        s.compiled_cache_misses,
    );
    metric(
        "programs_running",
        "gauge",
        "Native programs holding a slot.",
        running,
    );
    metric(
        "programs_queued",
        "gauge",
        "Native programs waiting for a slot.",
        waiting,
    );
    out
}

/// Run the service until `shutdown` completes; then stop accepting jobs,
/// end the running ones as `config.shutdown` says, and return once every
/// job's state is recorded. `on_listening` is told the bound address.
pub async fn serve(
    config: ServeConfig,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    if !config.listen.ip().is_loopback() && config.tokens.is_none() {
        return Err(ServeError::OpenWithoutTokens(config.listen));
    }
    let tokens = config
        .tokens
        .as_deref()
        .map(Tokens::from_file)
        .transpose()?;
    let profiles = match &config.grants {
        Some(p) => Profiles::from_file(p)?,
        None => Profiles::default(),
    };
    if let Some(tokens) = &tokens {
        for (token, profile) in tokens.profiles() {
            if !profiles.by_name.contains_key(profile) {
                return Err(ServeError::UnknownProfile {
                    token: token.to_string(),
                    profile: profile.to_string(),
                    where_: match &profiles.path {
                        Some(p) => format!("{} does not define", p.display()),
                        None => "needs a --grants file to define it".into(),
                    },
                });
            }
        }
    }
    let jobs = kiln_host::jobs::open_jobs_dir(&config.jobs_dir)?;
    let jobs_dir = jobs.path().to_path_buf();
    let db = config
        .db
        .clone()
        .unwrap_or_else(|| jobs_dir.join("kiln.db"));
    let store = Arc::new(SqliteStore::open(&db, &jobs)?);
    tracing::info!("job database {}", db.display());
    let stage: Arc<dyn kiln_host::stage::Stage> =
        Arc::new(kiln_host::stage::SimulatedStage::default_stage());
    let mut host_config = HostConfig::new(&jobs_dir, config.registry);
    host_config.store = Some(store.clone());
    host_config.stage = stage.clone();
    host_config.max_running_processes = config.max_processes;
    host_config.local.require_confinement = config.require_confinement;
    host_config.instance_pool = kiln_host::InstancePool::with_instances(config.pool_instances);
    let host = Host::new(host_config)?;
    for dir in &host.reconciled().marked {
        tracing::warn!(
            "the job in {} was running when the service died; it is now interrupted",
            dir.display()
        );
    }
    for message in &host.reconciled().failed {
        tracing::warn!("{message}");
    }
    for p in &config.plugins {
        host.catalog()
            .add_file(p)
            .await
            .map_err(|source| ServeError::Plugin {
                path: p.clone(),
                source,
            })?;
    }
    let metrics = metrics::Metrics::default();
    let service = service::Service::start(
        host,
        store,
        jobs_dir,
        service::ServiceConfig {
            max_running_jobs: config.max_running_jobs,
            profiles,
        },
        metrics.clone(),
    )
    .await
    .map_err(ServeError::Start)?;
    let lag = tokio::spawn(metrics::watch_event_loop(metrics));
    let app = routes::router(routes::AppState {
        service: service.clone(),
        tokens: tokens.map(Arc::new),
        stage,
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen,
        source,
    })?;
    tracing::info!("listening on http://{addr}");
    on_listening(addr);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .into_future(),
    );
    shutdown.await;
    tracing::info!("shutting down: accepting no new jobs");
    service.shut_down(config.shutdown).await;
    tracing::info!("every job's state is recorded");
    let _ = stop_tx.send(());
    // Streams of every job's events never end by themselves: connections
    // still open after a grace period are dropped.
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    lag.abort();
    Ok(())
}
