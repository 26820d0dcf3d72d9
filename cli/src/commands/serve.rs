//! `kiln serve`: the job service, until SIGTERM or Ctrl-C.

use super::load_registry;
use kiln_serve::{ServeConfig, ShutdownMode};
use std::net::SocketAddr;
use std::path::PathBuf;

/// What running jobs do when the service is told to stop.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnShutdown {
    /// Cancel running jobs (they end interrupted); queued ones stay queued
    /// for the next start.
    #[default]
    Cancel,
    /// Let running and queued jobs finish first.
    Drain,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; anything but loopback needs --tokens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,
    /// Where job directories are created.
    #[arg(long, value_name = "DIR", default_value = "kiln-jobs")]
    pub jobs_dir: PathBuf,
    /// The job database (SQLite); default: <jobs-dir>/kiln.db.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Bearer tokens (TOML: [[token]] name, token or sha256, scopes, grants).
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Grants profiles (TOML: [profiles.NAME], each a grants manifest).
    #[arg(long, value_name = "FILE")]
    pub grants: Option<PathBuf>,
    /// Program registry (TOML); default: CCP4 under $CCP4/bin and gemmi on PATH.
    #[arg(long, value_name = "FILE")]
    pub registry: Option<PathBuf>,
    /// Extra task components for the catalogue.
    #[arg(long = "plugin", value_name = "FILE.wasm")]
    pub plugins: Vec<PathBuf>,
    /// Top-level jobs running at once; more wait, by priority.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_jobs: usize,
    /// Native programs running at once across all jobs.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub max_processes: usize,
    /// Refuse to run native programs that cannot be fully confined.
    #[arg(long)]
    pub require_confinement: bool,
    #[arg(long, value_enum, default_value_t = OnShutdown::Cancel)]
    pub on_shutdown: OnShutdown,
    /// Slots in the wasm instance pool (0: none); jobs beyond it are
    /// instantiated on demand.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub pool_instances: u32,
}

/// SIGTERM or Ctrl-C, whichever comes first.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let registry = load_registry(&super::HostArgs {
        registry: args.registry.clone(),
        jobs_dir: args.jobs_dir.clone(),
        plugins: Vec::new(),
        require_confinement: args.require_confinement,
        max_processes: args.max_processes,
        fresh: false,
    })?;
    let config = ServeConfig {
        listen: args.listen,
        jobs_dir: args.jobs_dir,
        db: args.db,
        tokens: args.tokens,
        grants: args.grants,
        registry,
        plugins: args.plugins,
        max_running_jobs: args.max_jobs,
        max_processes: args.max_processes,
        require_confinement: args.require_confinement,
        pool_instances: args.pool_instances,
        shutdown: match args.on_shutdown {
            OnShutdown::Cancel => ShutdownMode::Cancel,
            OnShutdown::Drain => ShutdownMode::Drain,
        },
    };
    let result = kiln_serve::serve(
        config,
        |addr| {
            // The one line a script waits for (with --listen 127.0.0.1:0,
            // the port chosen).
            println!("kiln serve: listening on http://{addr}");
        },
        stop_signal(),
    )
    .await;
    match result {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("kiln serve: {e}");
            Ok(1)
        }
    }
}
