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
//! The policy depends only on the session's sandbox (a job's directories
//! and limits) and the program, so it is worked out on a session's first
//! spawn of a program and kept for its later spawns of it; a spawn then only checks that
//! what the policy was built from still holds (a left-out path still
//! missing, the shared network namespace still the same).
//!
//! Where the helper or the kernel features are missing, the host says so
//! once (to the first program's warning sink, and as a `tracing` record)
//! and runs programs unconfined, unless confinement is required (the
//! host's setting or the sandbox's), in which case the program fails to
//! spawn with the reason.

use crate::executor::Sandbox;
use crate::lock;
use kiln_confine::{Launcher, Network, Policy, SharedNetns};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, Weak};

/// Where a warning about confinement goes (besides `tracing`).
pub type Warn<'a> = &'a dyn Fn(&str);

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
}

/// What one session has worked out: the confinement of each of its
/// programs, and its launchers, one per distinct policy. Both end with the
/// session.
#[derive(Default)]
pub struct SessionConfinement {
    cache: Mutex<Vec<Cached>>,
    launchers: Mutex<HashMap<Policy, Arc<Launcher>>>,
}

impl SessionConfinement {
    /// No more programs for this session: its launchers' rulesets close.
    pub fn close(&self) {
        lock(&self.launchers).clear();
        lock(&self.cache).clear();
    }
}

/// How one program of one session was confined, for its next spawn.
struct Cached {
    program: PathBuf,
    /// Paths the policy left out because they did not exist: one that
    /// appears means the policy changes.
    missing: Vec<PathBuf>,
    helper: PathBuf,
    policy: Policy,
    /// The session's launcher for the policy; `None` goes through the
    /// helper. Weak: the launcher ends with the session, whatever is cached.
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
        }
    }

    /// How to start `program` in `session` under `sandbox`: launched
    /// where the policy allows, else through the helper; `Ok(None)` runs it
    /// unconfined (after a one-time warning); `Err` is why it must not run
    /// at all.
    pub fn confine(
        &self,
        session: &SessionConfinement,
        sandbox: &Sandbox,
        program: &Path,
        warn: Warn<'_>,
    ) -> Result<Option<Confined>, String> {
        if let Some(confined) = self.cached(session, sandbox, program) {
            return Ok(Some(confined));
        }
        let Some((helper, policy, missing)) = self.policy_for(sandbox, program, warn)? else {
            return Ok(None);
        };
        let confined = self.launcher_or_helper(session, helper.clone(), policy.clone(), warn);
        let launcher = match &confined {
            Confined::Launcher(l) => Some(Arc::downgrade(l)),
            Confined::Helper { .. } => None,
        };
        let mut cache = lock(&session.cache);
        cache.retain(|e| e.program != program);
        cache.push(Cached {
            program: program.to_path_buf(),
            missing,
            helper,
            policy,
            launcher,
        });
        Ok(Some(confined))
    }

    /// The confinement worked out for an earlier spawn of `program` in
    /// `session`, if nothing it was built from has changed since.
    fn cached(
        &self,
        session: &SessionConfinement,
        sandbox: &Sandbox,
        program: &Path,
    ) -> Option<Confined> {
        let cache = lock(&session.cache);
        let entry = cache.iter().find(|e| e.program == program)?;
        if entry.missing.iter().any(|p| p.exists()) {
            return None;
        }
        match &entry.launcher {
            // It holds the namespace it joins programs to open: that stays
            // empty whether or not the host's holder of it lives on.
            Some(launcher) => launcher.upgrade().map(Confined::Launcher),
            None if !sandbox.network
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

    /// The session's launcher for `policy` (prepared on first use) where
    /// the policy allows one, else the helper.
    fn launcher_or_helper(
        &self,
        session: &SessionConfinement,
        helper: PathBuf,
        policy: Policy,
        warn: Warn<'_>,
    ) -> Confined {
        if !self.launch_directly || Launcher::eligible(&policy).is_err() {
            return Confined::Helper { helper, policy };
        }
        let mut launchers = lock(&session.launchers);
        if let Some(l) = launchers.get(&policy) {
            return Confined::Launcher(l.clone());
        }
        match Launcher::new(&policy) {
            Ok(launcher) => {
                for w in &launcher.applied().warnings {
                    self.warned_launcher.call_once(|| {
                        tracing::warn!("{w}");
                        warn(w);
                    });
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

    /// The helper and policy for `program` under `sandbox`, and the paths
    /// left out of it because they do not exist; `Ok(None)` runs it
    /// unconfined (after a one-time warning); `Err` is why it must not run.
    #[allow(clippy::type_complexity)]
    fn policy_for(
        &self,
        sandbox: &Sandbox,
        program: &Path,
        warn: Warn<'_>,
    ) -> Result<Option<(PathBuf, Policy, Vec<PathBuf>)>, String> {
        let require = self.require || sandbox.require_confinement;
        if let Some(gap) = &self.gap {
            if require {
                return Err(format!(
                    "confinement is required but incomplete here: {gap}"
                ));
            }
            let message = if self.helper.is_none() {
                format!("native programs run unconfined: {gap}")
            } else {
                format!("native programs are only partly confined: {gap}")
            };
            self.warned.call_once(|| {
                tracing::warn!("{message}");
                warn(&message);
            });
        }
        let Some(helper) = self.helper.clone() else {
            return Ok(None);
        };
        let mut read_only = kiln_confine::system_read_only_paths();
        read_only.push(install_prefix(program));
        read_only.extend(sandbox.read_only.iter().cloned());
        let mut read_write = kiln_confine::system_read_write_paths();
        read_write.extend(sandbox.read_write.iter().cloned());
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
        let mut rlimits = sandbox.rlimits.clone();
        // The host raised its own limit for the directories it holds;
        // programs get what it started with.
        rlimits.open_files = rlimits.open_files.or_else(crate::original_open_files);
        let policy = Policy {
            read_only,
            read_write,
            rlimits,
            network: if sandbox.network {
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
        if let Some(ns) = slot.as_mut()
            && ns.is_alive()
        {
            return ns.network();
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
