//! Errors of the library boundary; each names the step that failed so the
//! helper's one-line message is enough to act on.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("invalid policy: {0}")]
    Policy(String),
    #[error("cannot open granted path {}: {source}", path.display())]
    GrantedPath { path: PathBuf, source: io::Error },
    #[error("failed to apply Landlock: {0}")]
    Landlock(String),
    #[error("failed to isolate the network: {0}")]
    Network(String),
    #[error("failed to set the {resource} limit: {source}")]
    Rlimit {
        resource: &'static str,
        source: io::Error,
    },
    #[error("failed to drop capabilities: {0}")]
    Capabilities(String),
    #[error("failed to set no_new_privs: {0}")]
    NoNewPrivs(io::Error),
    #[error("failed to mark inherited file descriptors close-on-exec: {0}")]
    Fds(io::Error),
    /// The kernel cannot apply something the policy requires.
    #[error("cannot apply {what}: {why}")]
    Unavailable { what: &'static str, why: String },
    /// The policy, or this host, does not allow launching programs
    /// directly ([`crate::Launcher`]); the helper can still apply it.
    #[error("programs cannot be launched directly under this policy here: {0}")]
    NotForLauncher(String),
    /// Running or talking to the `kiln-confine` helper failed.
    #[error("kiln-confine helper: {0}")]
    Helper(String),
}

impl From<landlock::RulesetError> for ConfineError {
    fn from(e: landlock::RulesetError) -> Self {
        ConfineError::Landlock(e.to_string())
    }
}

/// Records `err` as a warning when the policy tolerates missing confinement,
/// or returns it when the policy requires everything.
pub(crate) fn degrade(
    require: bool,
    warnings: &mut Vec<String>,
    err: ConfineError,
) -> Result<(), ConfineError> {
    if require {
        Err(err)
    } else {
        warnings.push(err.to_string());
        Ok(())
    }
}
