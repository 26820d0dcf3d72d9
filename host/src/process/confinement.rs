//! How the host confines the native programs it runs: every program is
//! spawned through the small `kiln-confine` helper, which applies Landlock
//! (the job directory read-write; granted directories, the pipeline's
//! directory, the program's install prefix and system libraries read-only),
//! rlimits and an empty network namespace, then execs the program. The host
//! itself never forks with its large address space and runs no code between
//! fork and exec.
//!
//! Where the kernel and the policy allow (x86_64, root or a network the
//! policy allows), a faster path applies the same policy without the
//! helper: the job's `kiln_confine::Launcher` for the policy prepares it
//! once, and each program applies it to itself between a vfork-style clone
//! and its exec, launched from the thread that asks.
//!
//! The policy depends only on the job (its directories and grants) and the
//! program, so it is worked out on a job's first spawn of a program and
//! kept for the job's later spawns of it; a spawn then only checks that
//! what the policy was built from still holds (a left-out path still
//! missing, the shared network namespace still the same).
//!
//! Where the helper or the kernel features are missing, the host says so
//! once and runs programs unconfined, unless confinement is required (the
//! `--require-confinement` flag or `require_confinement` in the grants), in
//! which case the program fails to spawn with the reason.

use crate::engine::lock;
use crate::job::Job;
use kiln_confine::{Launcher, Network, Policy, Rlimits, SharedNetns};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, Weak};

/// Where to find the helper: `$KILN_CONFINE_HELPER`, else `kiln-confine`
/// beside the running executable, else where the build put it.
pub fn find_helper() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KILN_CONFINE_HELPER") {
        return Some(PathBuf::from(p));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("kiln-confine")));
    if let Some(p) = beside.filter(|p| p.is_file()) {
        return Some(p);
    }
    let built = PathBuf::from(env!("KILN_CONFINE_BUILT"));
    built.is_file().then_some(built)
}

/// How one program is confined.
#[derive(Clone)]
pub enum Confined {
    /// Spawned through the helper binary, which applies the policy.
    Helper { helper: PathBuf, policy: Policy },
    /// Launched directly, applying the prepared policy to itself.
    Launcher(Arc<Launcher>),
}

/// The host's confinement set-up, shared by every job.
pub struct Confinement {
    helper: Option<PathBuf>,
    /// Required for every job, whatever its grants say.
    require: bool,
    /// Launch directly where possible, rather than always through the helper.
    launch_directly: bool,
    /// Why confinement is incomplete here, if it is.
    gap: Option<String>,
    /// One empty network namespace, joined by every program without network.
    netns: Mutex<Option<SharedNetns>>,
    warned: Once,
    warned_launcher: Once,
    /// The confinement worked out for each program of each live job, keyed
    /// by the job's address (the entry's `Weak` keeps that address from
    /// being reused while the entry exists).
    cache: Mutex<HashMap<usize, Vec<Cached>>>,
}

/// How one program of one job was confined, for its next spawn.
struct Cached {
    job: Weak<Job>,
    program: PathBuf,
    /// Paths the policy left out because they did not exist: one that
    /// appears means the policy changes.
    missing: Vec<PathBuf>,
    helper: PathBuf,
    policy: Policy,
    /// The job's launcher for the policy; `None` goes through the helper.
    /// Weak: the launcher ends with the job, whatever is cached.
    launcher: Option<Weak<Launcher>>,
}

impl Confinement {
    pub fn new(helper: Option<PathBuf>, require: bool, launch_directly: bool) -> Confinement {
        let support = kiln_confine::probe();
        let mut gaps = Vec::new();
        if helper.is_none() {
            gaps.push(
                "the helper kiln-confine was not found (set KILN_CONFINE_HELPER)".to_string(),
            );
        }
        if let Some(why) = &support.landlock_unavailable {
            gaps.push(format!("Landlock is unavailable: {why}"));
        }
        if let kiln_confine::NetnsSupport::Unavailable(why) = &support.network_namespaces {
            gaps.push(format!("network namespaces are unavailable: {why}"));
        }
        Confinement {
            helper,
            require,
            launch_directly,
            gap: (!gaps.is_empty()).then(|| gaps.join("; ")),
            netns: Mutex::new(None),
            warned: Once::new(),
            warned_launcher: Once::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// How to start `program` for `job`: launched where the policy allows,
    /// else through the helper; `Ok(None)` runs it unconfined (after a
    /// one-time warning); `Err` is why it must not run at all.
    pub fn confine(&self, job: &Arc<Job>, program: &Path) -> Result<Option<Confined>, String> {
        if let Some(confined) = self.cached(job, program) {
            return Ok(Some(confined));
        }
        let Some((helper, policy, missing)) = self.policy_for(job, program)? else {
            return Ok(None);
        };
        let confined = self.launcher_or_helper(job, helper.clone(), policy.clone());
        let launcher = match &confined {
            Confined::Launcher(l) => Some(Arc::downgrade(l)),
            Confined::Helper { .. } => None,
        };
        let mut cache = lock(&self.cache);
        // Entries of ended jobs go; their launchers have ended already.
        cache.retain(|_, entries| entries.iter().any(|e| e.job.strong_count() > 0));
        let entries = cache.entry(Arc::as_ptr(job) as usize).or_default();
        entries.retain(|e| e.program != program);
        entries.push(Cached {
            job: Arc::downgrade(job),
            program: program.to_path_buf(),
            missing,
            helper,
            policy,
            launcher,
        });
        Ok(Some(confined))
    }

    /// The confinement worked out for an earlier spawn of `program` in
    /// `job`, if nothing it was built from has changed since.
    fn cached(&self, job: &Arc<Job>, program: &Path) -> Option<Confined> {
        let cache = lock(&self.cache);
        let entry = cache
            .get(&(Arc::as_ptr(job) as usize))?
            .iter()
            .find(|e| e.program == program && e.job.as_ptr() == Arc::as_ptr(job))?;
        if entry.missing.iter().any(|p| p.exists()) {
            return None;
        }
        match &entry.launcher {
            // It holds the namespace it joins programs to open: that stays
            // empty whether or not the host's holder of it lives on.
            Some(launcher) => launcher.upgrade().map(Confined::Launcher),
            None if !job.grants.network
                && self.shared_netns(&entry.helper) != entry.policy.network =>
            {
                None
            }
            // The helper opens every granted path on each spawn: one that
            // has gone since would fail it, where a fresh policy leaves it
            // out.
            None => entry
                .policy
                .read_only
                .iter()
                .chain(&entry.policy.read_write)
                .all(|p| p.exists())
                .then(|| Confined::Helper {
                    helper: entry.helper.clone(),
                    policy: entry.policy.clone(),
                }),
        }
    }

    /// The job's launcher for `policy` (prepared on first use) where the
    /// policy allows one, else the helper.
    fn launcher_or_helper(&self, job: &Job, helper: PathBuf, policy: Policy) -> Confined {
        if !self.launch_directly || Launcher::eligible(&policy).is_err() {
            return Confined::Helper { helper, policy };
        }
        let mut launchers = lock(&job.launchers);
        if let Some(l) = launchers.get(&policy) {
            return Confined::Launcher(l.clone());
        }
        match Launcher::new(&policy) {
            Ok(launcher) => {
                for w in &launcher.applied().warnings {
                    self.warned_launcher
                        .call_once(|| eprintln!("kiln: warning: {w}"));
                }
                let launcher = Arc::new(launcher);
                launchers.insert(policy, launcher.clone());
                Confined::Launcher(launcher)
            }
            // The helper applies the same policy, only slower, and reports
            // what fails.
            Err(_) => Confined::Helper { helper, policy },
        }
    }

    /// The helper and policy for `program` of `job`, and the paths left out
    /// of it because they do not exist; `Ok(None)` runs it unconfined (after
    /// a one-time warning); `Err` is why it must not run.
    #[allow(clippy::type_complexity)]
    fn policy_for(
        &self,
        job: &Job,
        program: &Path,
    ) -> Result<Option<(PathBuf, Policy, Vec<PathBuf>)>, String> {
        let require = self.require || job.grants.require_confinement;
        if let Some(gap) = &self.gap {
            if require {
                return Err(format!(
                    "confinement is required but incomplete here: {gap}"
                ));
            }
            if self.helper.is_none() {
                self.warned.call_once(|| {
                    eprintln!("kiln: warning: native programs run unconfined: {gap}");
                });
                return Ok(None);
            }
            self.warned.call_once(|| {
                eprintln!("kiln: warning: native programs are only partly confined: {gap}");
            });
        }
        let Some(helper) = self.helper.clone() else {
            return Ok(None);
        };
        // The job's directories as held (through /proc): their paths may
        // have been swapped for links by the plugin that owns their parent,
        // and Landlock rules follow links when they are made.
        let mut read_only = kiln_confine::system_read_only_paths();
        read_only.push(install_prefix(program));
        read_only.push(job.pipeline_dir().fd_path());
        read_only.extend(job.grants.read_dirs.iter().map(PathBuf::from));
        let mut read_write = kiln_confine::system_read_write_paths();
        let job_dir = job
            .dir_handle()
            .map_err(|e| format!("the job directory: {e}"))?;
        read_write.push(job_dir.fd_path());
        read_write.extend(job.staging_dir().map(|d| d.fd_path()));
        read_write.extend(job.grants.write_dirs.iter().map(PathBuf::from));
        // A granted path that does not exist would fail every spawn.
        let mut missing = Vec::new();
        for paths in [&mut read_only, &mut read_write] {
            paths.retain(|p| {
                let exists = p.exists();
                if !exists {
                    missing.push(p.clone());
                }
                exists
            });
        }
        let limits = &job.grants.limits;
        let policy = Policy {
            read_only,
            read_write,
            rlimits: Rlimits {
                cpu_seconds: limits.program_cpu_seconds,
                // No file larger than the whole job directory may hold.
                file_size_bytes: Some(
                    limits
                        .program_file_size_bytes
                        .map_or(limits.disk_bytes, |b| b.min(limits.disk_bytes)),
                ),
                // The host raised its own limit for the directories it
                // holds; programs get what it started with.
                open_files: limits
                    .program_open_files
                    .or_else(crate::process::original_open_files),
                address_space_bytes: limits.program_memory_bytes,
                processes: None,
            },
            network: if job.grants.network {
                Network::Allowed
            } else {
                self.shared_netns(&helper)
            },
            require,
        };
        Ok(Some((helper, policy, missing)))
    }

    /// Join the host's empty namespace, started on first use; a private one
    /// per program when it cannot be started.
    fn shared_netns(&self, helper: &Path) -> Network {
        let mut slot = lock(&self.netns);
        if let Some(ns) = slot.as_mut() {
            if ns.is_alive() {
                return ns.network();
            }
        }
        match SharedNetns::start(helper) {
            Ok(ns) => {
                let network = ns.network();
                *slot = Some(ns);
                network
            }
            Err(_) => Network::Denied,
        }
    }
}

/// The directory a program is installed under: `$PREFIX` for
/// `$PREFIX/bin/prog`, else the program's own directory.
pub fn install_prefix(program: &Path) -> PathBuf {
    let dir = program.parent().unwrap_or(Path::new("/"));
    match (dir.file_name(), dir.parent()) {
        (Some(name), Some(prefix)) if name == "bin" && prefix != Path::new("/") => {
            prefix.to_path_buf()
        }
        _ => dir.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_prefix_is_above_bin() {
        assert_eq!(
            install_prefix(Path::new("/opt/ccp4/bin/mtzdump")),
            Path::new("/opt/ccp4")
        );
        assert_eq!(install_prefix(Path::new("/usr/bin/cat")), Path::new("/usr"));
        assert_eq!(install_prefix(Path::new("/bin/cat")), Path::new("/bin"));
        assert_eq!(
            install_prefix(Path::new("/work/target/debug/kiln-fake")),
            Path::new("/work/target/debug")
        );
    }
}
