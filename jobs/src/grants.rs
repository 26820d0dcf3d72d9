//! Capabilities: what a task asks for, what the operator grants, and what a
//! run gets (the intersection). Default deny: anything not listed is refused,
//! and each refusal names the manifest line that would allow it.
//!
//! The operator's manifest is TOML:
//!
//! ```toml
//! programs = ["mtzdump", "pdbset"]   # registry names
//! tasks = ["mtzdump", "pdbset"]      # sub-tasks a pipeline may make
//! axes = ["x"]                       # axis ids
//! [axis_limits.x]                    # optional envelope for a granted axis
//! min = -10.0
//! max = 10.0
//! max_speed = 2.0
//! env = ["CCP4_SCR"]                 # env names passed to programs
//! network = false                    # network for native programs
//! require_confinement = false        # refuse to run programs unconfined
//!
//! [limits]
//! memory_mib = 512                   # wasm linear memory per plugin
//! wall_seconds = 3600                # whole job, including waits
//! cpu_seconds = 600                  # time spent running wasm (not waiting)
//! processes = 8                      # programs running at once per pipeline (more queue)
//! sub_jobs = 4                       # sub-jobs a pipeline job runs at once (more queue)
//! signals = 10000                    # a sub-job's signals its pipeline has not read yet
//! output_bytes = 16777216            # captured output of a job's programs its plugin holds at once
//! log_bytes = 16777216               # kiln.log of a job
//! disk_bytes = 17179869184           # a top-level job's directory, sub-jobs' included
//! tree_jobs = 1000                   # jobs in one job tree (a top-level job and all below it)
//! tree_depth = 16                    # how deep sub-jobs may nest
//! program_cpu_seconds = 3600         # rlimits of native programs (optional)
//! program_file_size_bytes = 1073741824
//! program_open_files = 1024
//! program_memory_bytes = 8589934592
//! program_processes = 4096           # processes a job's programs may have (pids cgroup)
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// Resource limits of one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory a plugin instance may grow to, MiB.
    pub memory_mib: u64,
    /// Wall-clock limit of the whole job, including time blocked in host
    /// calls, seconds.
    pub wall_seconds: u64,
    /// Time spent executing wasm, seconds, counted in epoch ticks; time the
    /// plugin spends waiting in host calls is not counted (`guest_cpu`).
    pub cpu_seconds: u64,
    /// Native programs a pipeline (a job and all its sub-jobs) may have
    /// running at once (CCP4i2's MAXNJOBS); more wait in a FIFO queue.
    pub processes: u32,
    /// Sub-jobs one pipeline job may have running at once; more wait,
    /// `queued`, in start order. A pipeline may ask for fewer
    /// (`jobs.set-max-running`), never more.
    pub sub_jobs: u32,
    /// Signals (progress and custom) a sub-job may have emitted that its
    /// pipeline has not read yet; one more is refused with `limit`.
    pub signals: u32,
    /// Captured stdout/stderr of a job's programs that its plugin can read
    /// back, bytes, all its programs' together (released as it drops their
    /// handles); the log files hold everything regardless.
    pub output_bytes: u64,
    /// Bytes of the job's `kiln.log`; later messages are not kept there.
    pub log_bytes: u64,
    /// Bytes a top-level job's directory may hold, its sub-jobs' included,
    /// whoever writes them (the plugin through WASI, its programs, the
    /// host's logs); past it the job fails. Also each program's largest
    /// file unless `program_file_size_bytes` is lower.
    pub disk_bytes: u64,
    /// Jobs one job tree (a top-level job and every sub-job below it) may
    /// hold at once; one more sub-job is refused with `limit`.
    pub tree_jobs: u32,
    /// How deep sub-jobs may nest below a top-level job.
    pub tree_depth: u32,
    /// CPU seconds a native program may use (RLIMIT_CPU).
    pub program_cpu_seconds: Option<u64>,
    /// Largest file a native program may write, bytes (RLIMIT_FSIZE).
    pub program_file_size_bytes: Option<u64>,
    /// Files a native program may have open (RLIMIT_NOFILE).
    pub program_open_files: Option<u64>,
    /// Address space of a native program, bytes (RLIMIT_AS).
    pub program_memory_bytes: Option<u64>,
    /// Processes and threads a job's programs may have at once, all their
    /// descendants counted (the job's pids cgroup; stops fork bombs).
    pub program_processes: Option<u64>,
    /// Bytes of input files a job service accepts with one submit (its
    /// multipart file parts, all together).
    pub upload_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 512,
            wall_seconds: 24 * 3600,
            cpu_seconds: 3600,
            processes: 8,
            sub_jobs: 4,
            signals: 10_000,
            output_bytes: 16 << 20,
            log_bytes: 16 << 20,
            disk_bytes: 16 << 30,
            tree_jobs: 1000,
            tree_depth: 16,
            program_cpu_seconds: None,
            program_file_size_bytes: None,
            program_open_files: None,
            program_memory_bytes: None,
            program_processes: Some(4096),
            upload_bytes: 1 << 30,
        }
    }
}

impl Limits {
    pub fn wall(&self) -> Duration {
        Duration::from_secs(self.wall_seconds)
    }
    pub fn cpu(&self) -> Duration {
        Duration::from_secs(self.cpu_seconds)
    }
    /// The tighter of two limit sets, field by field.
    pub fn min(&self, other: &Limits) -> Limits {
        Limits {
            memory_mib: self.memory_mib.min(other.memory_mib),
            wall_seconds: self.wall_seconds.min(other.wall_seconds),
            cpu_seconds: self.cpu_seconds.min(other.cpu_seconds),
            processes: self.processes.min(other.processes),
            sub_jobs: self.sub_jobs.min(other.sub_jobs),
            signals: self.signals.min(other.signals),
            output_bytes: self.output_bytes.min(other.output_bytes),
            log_bytes: self.log_bytes.min(other.log_bytes),
            disk_bytes: self.disk_bytes.min(other.disk_bytes),
            tree_jobs: self.tree_jobs.min(other.tree_jobs),
            tree_depth: self.tree_depth.min(other.tree_depth),
            program_cpu_seconds: min_opt(self.program_cpu_seconds, other.program_cpu_seconds),
            program_file_size_bytes: min_opt(
                self.program_file_size_bytes,
                other.program_file_size_bytes,
            ),
            program_open_files: min_opt(self.program_open_files, other.program_open_files),
            program_memory_bytes: min_opt(self.program_memory_bytes, other.program_memory_bytes),
            program_processes: min_opt(self.program_processes, other.program_processes),
            upload_bytes: self.upload_bytes.min(other.upload_bytes),
        }
    }
}

/// The tighter of two optional limits (none is no limit).
fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The part of an axis's range and speed a run may use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisEnvelope {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub max_speed: Option<f64>,
}

impl AxisEnvelope {
    /// `Ok` when a move to `target` at `speed` stays inside the envelope.
    pub fn check(&self, axis: &str, target: f64, speed: Option<f64>) -> Result<(), String> {
        let lo = self.min.unwrap_or(f64::NEG_INFINITY);
        let hi = self.max.unwrap_or(f64::INFINITY);
        if !(lo..=hi).contains(&target) {
            return Err(format!(
                "axis `{axis}`: target {target} is outside the granted envelope [{lo}, {hi}]: widen [axis_limits.{axis}] in the grants manifest"
            ));
        }
        if let (Some(max), Some(speed)) = (self.max_speed, speed)
            && speed > max
        {
            return Err(format!(
                "axis `{axis}`: speed {speed} is above the granted {max}: raise max_speed in [axis_limits.{axis}] of the grants manifest"
            ));
        }
        Ok(())
    }
}

/// A set of capabilities: a task's request, an operator's manifest, or what
/// a run holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    pub programs: BTreeSet<String>,
    pub tasks: BTreeSet<String>,
    pub axes: BTreeSet<String>,
    pub env: BTreeSet<String>,
    pub read_dirs: BTreeSet<String>,
    pub write_dirs: BTreeSet<String>,
    pub network: bool,
    pub limits: Limits,
    /// Refuse to run native programs unless they can be fully confined.
    pub require_confinement: bool,
    /// Envelopes of granted axes; an axis without one may use its whole
    /// range.
    pub axis_limits: std::collections::BTreeMap<String, AxisEnvelope>,
}

/// Which kind of capability a denial is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Program,
    Task,
    Axis,
    Env,
}

impl Capability {
    /// The manifest key that grants this kind of capability.
    pub fn manifest_key(self) -> &'static str {
        match self {
            Capability::Program => "programs",
            Capability::Task => "tasks",
            Capability::Axis => "axes",
            Capability::Env => "env",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Capability::Program => "program",
            Capability::Task => "sub-task",
            Capability::Axis => "axis",
            Capability::Env => "environment variable",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GrantsError {
    #[error("failed to read the grants manifest {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to parse the grants manifest {path}: {detail}")]
    Parse { path: String, detail: String },
}

impl Grants {
    pub fn from_file(path: &Path) -> Result<Grants, GrantsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| GrantsError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_toml(&text, &shown)
    }

    pub fn from_toml(text: &str, source: &str) -> Result<Grants, GrantsError> {
        toml::from_str(text).map_err(|e| GrantsError::Parse {
            path: source.to_string(),
            detail: e.to_string(),
        })
    }

    /// What both sets allow; limits are the tighter of the two.
    pub fn intersect(&self, other: &Grants) -> Grants {
        Grants {
            programs: self
                .programs
                .intersection(&other.programs)
                .cloned()
                .collect(),
            tasks: self.tasks.intersection(&other.tasks).cloned().collect(),
            axes: self.axes.intersection(&other.axes).cloned().collect(),
            env: self.env.intersection(&other.env).cloned().collect(),
            read_dirs: self
                .read_dirs
                .intersection(&other.read_dirs)
                .cloned()
                .collect(),
            write_dirs: self
                .write_dirs
                .intersection(&other.write_dirs)
                .cloned()
                .collect(),
            network: self.network && other.network,
            limits: self.limits.min(&other.limits),
            require_confinement: self.require_confinement || other.require_confinement,
            // Envelopes are the operator's: whichever side has them.
            axis_limits: if self.axis_limits.is_empty() {
                other.axis_limits.clone()
            } else {
                self.axis_limits.clone()
            },
        }
    }

    /// Everything of `self` (a request) that `granted` does not allow, as
    /// human-readable lines.
    pub fn missing_from(&self, granted: &Grants) -> Vec<String> {
        let mut out = Vec::new();
        for (cap, want, have) in [
            (Capability::Program, &self.programs, &granted.programs),
            (Capability::Task, &self.tasks, &granted.tasks),
            (Capability::Axis, &self.axes, &granted.axes),
            (Capability::Env, &self.env, &granted.env),
        ] {
            for name in want.difference(have) {
                out.push(denial_message(cap, name));
            }
        }
        for (key, want, have) in [
            ("read_dirs", &self.read_dirs, &granted.read_dirs),
            ("write_dirs", &self.write_dirs, &granted.write_dirs),
        ] {
            for dir in want.difference(have) {
                out.push(format!(
                    "directory `{dir}` is not granted: add \"{dir}\" to `{key}` in the grants manifest"
                ));
            }
        }
        if self.network && !granted.network {
            out.push("network is not granted: set `network = true` in the grants manifest".into());
        }
        out
    }

    /// `Ok` when `name` is granted, else the denial message.
    pub fn check(&self, cap: Capability, name: &str) -> Result<(), String> {
        let set = match cap {
            Capability::Program => &self.programs,
            Capability::Task => &self.tasks,
            Capability::Axis => &self.axes,
            Capability::Env => &self.env,
        };
        if set.contains(name) {
            Ok(())
        } else {
            Err(denial_message(cap, name))
        }
    }

    /// Add everything another set allows (used to build the default grants
    /// of a run from a pipeline's own request and its sub-tasks').
    pub fn extend(&mut self, other: &Grants) {
        self.programs.extend(other.programs.iter().cloned());
        self.tasks.extend(other.tasks.iter().cloned());
        self.axes.extend(other.axes.iter().cloned());
        self.env.extend(other.env.iter().cloned());
        self.read_dirs.extend(other.read_dirs.iter().cloned());
        self.write_dirs.extend(other.write_dirs.iter().cloned());
        self.network |= other.network;
    }
}

/// Environment names whose value makes a program load or run code it was
/// not given (a shell's start-up file, an interpreter's start-up script or
/// options, a module search path): a grant of one is a grant to run code.
/// Only a grants manifest can grant them; without one no name is granted.
pub const CODE_RUNNING_ENV: &[&str] = &[
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONINSPECT",
    "PYTHONWARNINGS",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "NODE_OPTIONS",
    "NODE_PATH",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "TCLLIBPATH",
    "LUA_INIT",
    "LUA_PATH",
    "LUA_CPATH",
    "GCONV_PATH",
    "HOSTALIASES",
    "LOCPATH",
    "NLSPATH",
    "MALLOC_TRACE",
    "GIT_SSH_COMMAND",
    "PAGER",
    "EDITOR",
    "VISUAL",
];

/// Why the environment variable `name` can never be passed to a program,
/// whatever is granted: the dynamic loader's (`LD_*`) and Kiln's own
/// (`KILN_*`, the confinement helper's channel among them).
pub fn env_never_passed(name: &str) -> Option<String> {
    if name.starts_with("LD_") {
        return Some(format!(
            "environment variable `{name}` is never passed to programs"
        ));
    }
    if name.starts_with("KILN_") {
        return Some(format!(
            "environment variable `{name}` is Kiln's own and is never passed to programs"
        ));
    }
    None
}

fn denial_message(cap: Capability, name: &str) -> String {
    if cap == Capability::Env && CODE_RUNNING_ENV.contains(&name) {
        return format!(
            "environment variable `{name}` makes a program run code it was not given, and is not granted: only a grants manifest can allow it, by adding \"{name}\" to `env`"
        );
    }
    format!(
        "{} `{name}` is not granted: add \"{name}\" to `{}` in the grants manifest",
        cap.noun(),
        cap.manifest_key()
    )
}

impl Grants {
    /// The grants of a run of a task that (with its sub-tasks) requests
    /// `requested`, under the operator's `manifest` if there is one.
    ///
    /// Programs, sub-tasks, axes and env names are what is requested,
    /// intersected with the manifest. Directories and limits are the
    /// manifest's alone (which host directories exist is the operator's
    /// knowledge, and a manifest may raise limits as well as lower them);
    /// the network needs both. Without a manifest: what is requested,
    /// except directories, the network and environment names, which only a
    /// manifest grants (an environment variable can make a program run
    /// other code).
    pub fn for_run(requested: &Grants, manifest: Option<&Grants>) -> Grants {
        match manifest {
            Some(m) => {
                let mut g = requested.intersect(m);
                g.read_dirs = m.read_dirs.clone();
                g.write_dirs = m.write_dirs.clone();
                g.limits = m.limits.clone();
                g
            }
            None => {
                let mut g = requested.clone();
                g.read_dirs.clear();
                g.write_dirs.clear();
                g.env.clear();
                g.network = false;
                g
            }
        }
    }

    /// The grants of a sub-job whose task (with its own sub-tasks)
    /// requests `requested`: what it asks for, never more than its parent
    /// holds; limits and directories are the parent's (the operator's, not
    /// the task's to ask).
    pub fn for_sub_job(&self, requested: &Grants) -> Grants {
        let mut grants = self.intersect(requested);
        grants.limits = self.limits.clone();
        grants.read_dirs = self.read_dirs.clone();
        grants.write_dirs = self.write_dirs.clone();
        grants
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersection_and_denials_name_the_manifest_line() {
        let request = Grants::from_toml("programs = [\"mtzdump\", \"gemmi\"]", "req").unwrap();
        let manifest =
            Grants::from_toml("programs = [\"mtzdump\"]\n[limits]\nmemory_mib = 64\n", "m")
                .unwrap();
        let run = request.intersect(&manifest);
        assert!(run.check(Capability::Program, "mtzdump").is_ok());
        let denial = run.check(Capability::Program, "gemmi").unwrap_err();
        assert!(denial.contains("add \"gemmi\" to `programs`"), "{denial}");
        assert_eq!(run.limits.memory_mib, 64);
        assert_eq!(request.missing_from(&manifest).len(), 1);
    }

    #[test]
    fn unknown_manifest_fields_are_rejected() {
        let e = Grants::from_toml("programs = []\nshell = true\n", "m.toml").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
