//! The service's two manifests: the tokens file (who may call it, with
//! which scopes, under which grants profile) and the grants file (the
//! profiles: each a grants manifest, whose `tasks` are also the tasks a
//! submit under it may run).
//!
//! ```toml
//! # tokens.toml
//! [[token]]
//! name = "pipeline-bot"
//! sha256 = "9f86d0..."           # or: token = "the secret itself"
//! scopes = ["read", "submit"]
//! grants = "default"
//! ```

use kiln_host::Grants;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// What a token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Jobs, events, files, logs, tasks, axes, metrics.
    Read,
    /// Submit jobs (under the token's grants profile).
    Submit,
    /// Stop jobs.
    Stop,
    /// Everything, and deleting jobs.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Submit => "submit",
            Scope::Stop => "stop",
            Scope::Admin => "admin",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(rename = "token", default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    scopes: Vec<Scope>,
    #[serde(default)]
    grants: Option<String>,
}

/// One caller, as its token says.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub scopes: Vec<Scope>,
    /// The grants profile its submits run under.
    pub grants: Option<String>,
}

impl Principal {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// Who calls when there is no tokens file (loopback only): anyone may
    /// do anything, under any profile.
    pub fn local() -> Principal {
        Principal {
            name: "local".into(),
            scopes: vec![Scope::Admin],
            grants: None,
        }
    }
}

/// The tokens, by the sha256 of their secret.
pub struct Tokens {
    entries: Vec<([u8; 32], Principal)>,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Tokens {
    pub fn from_file(path: &Path) -> Result<Tokens, ConfigError> {
        Tokens::from_toml(&read(path)?, path)
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Tokens, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: TokensFile = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let mut entries = Vec::new();
        for t in file.tokens {
            let digest: [u8; 32] = match (&t.token, &t.sha256) {
                (Some(secret), None) => {
                    if secret.len() < 16 {
                        return Err(invalid(format!(
                            "token `{}`: a token must be at least 16 characters",
                            t.name
                        )));
                    }
                    Sha256::digest(secret.as_bytes()).into()
                }
                (None, Some(hex_digest)) => hex::decode(hex_digest.trim())
                    .ok()
                    .and_then(|d| <[u8; 32]>::try_from(d).ok())
                    .ok_or_else(|| {
                        invalid(format!(
                            "token `{}`: sha256 must be 64 hex digits (sha256sum of the token)",
                            t.name
                        ))
                    })?,
                _ => {
                    return Err(invalid(format!(
                        "token `{}`: give exactly one of `token` and `sha256`",
                        t.name
                    )));
                }
            };
            if t.scopes.is_empty() {
                return Err(invalid(format!("token `{}` has no scopes", t.name)));
            }
            entries.push((
                digest,
                Principal {
                    name: t.name,
                    scopes: t.scopes,
                    grants: t.grants,
                },
            ));
        }
        Ok(Tokens { entries })
    }

    /// The principal of a bearer token. Every entry is compared, in
    /// constant time, so neither the time taken nor the order of the file
    /// says how close a guess was.
    pub fn check(&self, presented: &str) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (d, p) in &self.entries {
            if bool::from(d.ct_eq(&digest)) {
                found = Some(p.clone());
            }
        }
        found
    }

    /// The grants profiles the tokens name.
    pub fn profiles(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .filter_map(|(_, p)| Some((p.name.as_str(), p.grants.as_deref()?)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    #[serde(default)]
    profiles: BTreeMap<String, Grants>,
}

/// The grants profiles, by name.
#[derive(Default)]
pub struct Profiles {
    pub path: Option<PathBuf>,
    pub by_name: BTreeMap<String, Grants>,
}

impl Profiles {
    pub fn from_file(path: &Path) -> Result<Profiles, ConfigError> {
        Profiles::from_toml(&read(path)?, path)
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Profiles, ConfigError> {
        let file: ProfilesFile = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Profiles {
            path: Some(path.to_path_buf()),
            by_name: file.profiles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_by_digest_and_bad_entries_name_themselves() {
        let path = Path::new("tokens.toml");
        let digest = hex::encode(Sha256::digest(b"another-long-secret"));
        let text = format!(
            "[[token]]\nname = \"a\"\ntoken = \"a-long-enough-secret\"\nscopes = [\"read\"]\n\n[[token]]\nname = \"b\"\nsha256 = \"{digest}\"\nscopes = [\"submit\"]\ngrants = \"p\"\n"
        );
        let tokens = Tokens::from_toml(&text, path).unwrap();
        assert_eq!(tokens.check("a-long-enough-secret").unwrap().name, "a");
        let b = tokens.check("another-long-secret").unwrap();
        assert!(b.allows(Scope::Submit) && !b.allows(Scope::Read));
        assert_eq!(b.grants.as_deref(), Some("p"));
        assert!(tokens.check("a-long-enough-secreT").is_none());
        let short = Tokens::from_toml(
            "[[token]]\nname=\"x\"\ntoken=\"short\"\nscopes=[\"read\"]\n",
            path,
        );
        assert!(short.err().unwrap().to_string().contains("at least 16"));
        let unknown = Tokens::from_toml("[[token]]\nname=\"x\"\nsecret=\"y\"\nscopes=[]\n", path);
        assert!(unknown.err().unwrap().to_string().contains("unknown field"));
    }
}
