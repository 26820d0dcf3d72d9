//! Argument parsing and dispatch for the `kiln` binary.

mod client;
mod def;
mod demo;
mod describe;
mod output;
mod params;
mod run;
mod serve;
mod tree_view;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status for a usage or input error.
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "A WebAssembly plugin host for scientific job pipelines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
pub struct HostArgs {
    /// Program registry (TOML); default: CCP4 under $CCP4/bin and gemmi on PATH.
    #[arg(long, value_name = "FILE")]
    pub registry: Option<PathBuf>,
    /// Where job directories are created.
    #[arg(long, value_name = "DIR", default_value = "kiln-jobs")]
    pub jobs_dir: PathBuf,
    /// Extra task components, usable as sub-tasks by name.
    #[arg(long = "plugin", value_name = "FILE.wasm")]
    pub plugins: Vec<PathBuf>,
    /// Refuse to run native programs that cannot be fully confined
    /// (Landlock, network namespace, rlimits).
    #[arg(long)]
    pub require_confinement: bool,
    /// Native programs running at once across all jobs; more wait in a queue.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub max_processes: usize,
    /// Run every sub-job, even those a finished job with the same task,
    /// version, parameters and input contents could stand in for.
    #[arg(long)]
    pub fresh: bool,
}

/// How `kiln run` shows jobs while they run (on stderr).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProgressView {
    /// A live tree on a terminal, plain lines otherwise, nothing with --json.
    #[default]
    Auto,
    /// The live tree, redrawn in place (needs a terminal to look right).
    Tree,
    /// One line per state change and progress report.
    Lines,
    None,
}

/// Which demo to run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DemoKind {
    /// demo_copycell: mtzdump, then pdbset.
    #[default]
    Copycell,
    /// refine_scan: preparation, eight refinements four at a time, the best
    /// chosen from their logs (refmac5 is a stand-in).
    Pipeline,
}

#[derive(Subcommand)]
enum Command {
    /// Run demo_copycell on bundled data (mtzdump, then pdbset).
    Demo {
        #[arg(value_enum, default_value_t = DemoKind::Copycell)]
        which: DemoKind,
        #[command(flatten)]
        host: HostArgs,
        /// Print one JSON document instead of the job tree.
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value_t = ProgressView::Auto)]
        progress: ProgressView,
    },
    /// Run a task or pipeline by name or component path.
    Run {
        /// Task name (e.g. demo_copycell) or path to a .wasm component.
        task: String,
        /// A parameter: a dotted path (inputData.HKLIN) or a bare item name.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Grants manifest (TOML); default: what the task requests.
        #[arg(long, value_name = "FILE")]
        grants: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
        /// Print one JSON document instead of the job tree.
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value_t = ProgressView::Auto)]
        progress: ProgressView,
    },
    /// Show a task's definition and the capabilities it requests.
    Describe {
        task: String,
        /// Grants manifest to check the request against.
        #[arg(long, value_name = "FILE")]
        grants: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
        #[arg(long)]
        json: bool,
    },
    /// CCP4i2 task definitions (def.xml).
    Def {
        #[command(subcommand)]
        command: DefCommand,
    },
    /// CCP4i2 parameter files (params.xml).
    Params {
        #[command(subcommand)]
        command: ParamsCommand,
    },
    /// Run the job service: the HTTP API, jobs kept in a database across
    /// restarts.
    Serve(serve::ServeArgs),
    /// Submit a job to a running `kiln serve`; print its id.
    Submit(client::SubmitArgs),
    /// Show a job of a `kiln serve`: its tree, states, progress, reasons.
    Status(client::StatusArgs),
    /// Follow a job of a `kiln serve` live to its end; exit with its status.
    Watch(client::WatchArgs),
    /// Ask a `kiln serve` to stop a job.
    Stop(client::StopArgs),
    /// List the jobs of a `kiln serve`, newest first.
    Jobs(client::JobsArgs),
    /// Kiln's own implementations of CCP4 programs (used by the demo registry).
    #[command(hide = true)]
    Tool {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum DefCommand {
    /// Parse definitions, print a line per file, exit 2 on any error.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// CCP4i2 installation that `<file>` includes are read from
        /// (default: $CCP4I2_TOP).
        #[arg(long, value_name = "DIR")]
        top: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ParamsCommand {
    /// Print a params.xml: its header and values.
    Show {
        file: PathBuf,
        /// Read the values against this task definition (def.xml).
        #[arg(long, value_name = "FILE")]
        def: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    // Like any command-line tool, end quietly when the reader of stdout goes
    // away (`kiln describe X | head`) instead of panicking on the write.
    // SAFETY: setting a signal disposition before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match &cli.command {
        Command::Tool { name, args } => return run_tool(name, args),
        Command::Def {
            command: DefCommand::Check { files, top },
        } => return ExitCode::from(def::check(files, top.as_deref())),
        Command::Params {
            command: ParamsCommand::Show { file, def, json },
        } => {
            return match params::show(file, def.as_deref(), *json) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("kiln: {e:#}");
                    ExitCode::from(EXIT_USAGE)
                }
            };
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kiln: failed to start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo {
                which,
                host,
                json,
                progress,
            } => demo::demo(which, host, json, progress).await,
            Command::Run {
                task,
                params,
                grants,
                host,
                json,
                progress,
            } => run::run(&task, &params, grants.as_deref(), host, json, progress).await,
            Command::Describe {
                task,
                grants,
                host,
                json,
            } => describe::describe(&task, grants.as_deref(), host, json).await,
            Command::Serve(args) => serve::serve(args).await,
            Command::Submit(args) => client::submit(args).await,
            Command::Status(args) => client::status(args).await,
            Command::Watch(args) => client::watch(args).await,
            Command::Stop(args) => client::stop(args).await,
            Command::Jobs(args) => client::jobs(args).await,
            Command::Tool { .. } | Command::Def { .. } | Command::Params { .. } => {
                unreachable!("handled before the runtime starts")
            }
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("kiln: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run_tool(name: &str, args: &[String]) -> ExitCode {
    let Some(program) = kiln_ccp4_programs::program(name) else {
        eprintln!(
            "kiln tool: unknown program `{name}`; known: {}",
            kiln_ccp4_programs::PROGRAM_NAMES.join(", ")
        );
        return ExitCode::from(EXIT_USAGE);
    };
    let code = program(
        args,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Build a host from the common arguments.
pub async fn build_host(
    args: &HostArgs,
    registry: kiln_host::registry::Registry,
) -> anyhow::Result<kiln_host::Host> {
    use anyhow::Context;
    let mut config = kiln_host::HostConfig::new(&args.jobs_dir, registry);
    config.local.require_confinement = args.require_confinement;
    config.max_running_processes = args.max_processes;
    config.resume = !args.fresh;
    let host = kiln_host::Host::new(config).context("failed to start the host")?;
    for dir in &host.reconciled().marked {
        eprintln!(
            "kiln: job in {} was running when its host died; it is now marked interrupted",
            dir.display()
        );
    }
    for message in &host.reconciled().failed {
        eprintln!("kiln: {message}");
    }
    for p in &args.plugins {
        host.catalog()
            .add_file(p)
            .await
            .with_context(|| format!("failed to add plugin {}", p.display()))?;
    }
    Ok(host)
}

/// The registry named by `--registry`, or the discovered one.
pub fn load_registry(args: &HostArgs) -> anyhow::Result<kiln_host::registry::Registry> {
    Ok(match &args.registry {
        Some(path) => kiln_host::registry::Registry::from_file(path)?,
        None => kiln_host::registry::Registry::discover(),
    })
}
