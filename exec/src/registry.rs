//! The program registry: the only way a plugin names a native program.
//!
//! A TOML file maps registry names to executables:
//!
//! ```toml
//! [programs.mtzdump]
//! path = "/opt/ccp4/bin/mtzdump"      # absolute
//! args = []                           # fixed leading arguments
//! env = { CCP4 = "/opt/ccp4" }        # set for every run of it
//! sha256 = "…"                        # optional pin, checked before each spawn
//! ```
//!
//! Plugins ask for names, never paths. Without a file, Kiln discovers a CCP4
//! installation (`$CCP4/bin`) and gemmi on `PATH`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One registered program.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramEntry {
    /// Absolute path of the executable.
    pub path: PathBuf,
    /// Arguments placed before the plugin's own (e.g. a subcommand).
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment set for every run of this program.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Hex sha256 the executable must have.
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    programs: BTreeMap<String, ProgramEntry>,
}

/// Registry names to programs.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    programs: BTreeMap<String, ProgramEntry>,
    /// Where it came from, for messages.
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("failed to read the program registry {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to parse the program registry {path}: {detail}")]
    Parse { path: String, detail: String },
    #[error("program registry {path}: program `{name}`: {detail}")]
    Entry {
        path: String,
        name: String,
        detail: String,
    },
}

/// The largest registry file read; a registry is a handful of lines.
const MAX_REGISTRY_BYTES: u64 = 1 << 20;

impl Registry {
    pub fn from_file(path: &Path) -> Result<Registry, RegistryError> {
        let shown = path.display().to_string();
        let read_err = |source| RegistryError::Read {
            path: shown.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if !meta.is_file() {
            return Err(RegistryError::Parse {
                path: shown,
                detail: "not a regular file".into(),
            });
        }
        if meta.len() > MAX_REGISTRY_BYTES {
            return Err(RegistryError::Parse {
                path: shown,
                detail: format!("larger than {MAX_REGISTRY_BYTES} bytes"),
            });
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        let text = String::from_utf8(bytes).map_err(|_| RegistryError::Parse {
            path: shown.clone(),
            detail: "not valid UTF-8".into(),
        })?;
        Self::from_toml(&text, &shown)
    }

    pub fn from_toml(text: &str, source: &str) -> Result<Registry, RegistryError> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| RegistryError::Parse {
            path: source.to_string(),
            detail: e.to_string(),
        })?;
        let mut registry = Registry {
            programs: BTreeMap::new(),
            source: source.to_string(),
        };
        for (name, entry) in file.programs {
            registry.insert(&name, entry)?;
        }
        Ok(registry)
    }

    /// Add or replace a program, checking the entry.
    pub fn insert(&mut self, name: &str, entry: ProgramEntry) -> Result<(), RegistryError> {
        let bad = |detail: String| RegistryError::Entry {
            path: self.source.clone(),
            name: name.to_string(),
            detail,
        };
        if name.is_empty() || name.contains(['/', '\0']) {
            return Err(bad("a program name is a plain word, not a path".into()));
        }
        if !entry.path.is_absolute() {
            return Err(bad(format!(
                "path `{}` must be absolute",
                entry.path.display()
            )));
        }
        if let Some(h) = &entry.sha256
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(bad("sha256 must be 64 hex digits".into()));
        }
        for key in entry.env.keys() {
            if key.starts_with("LD_") || key.is_empty() || key.contains(['=', '\0']) {
                return Err(bad(format!("environment name `{key}` is not allowed")));
            }
        }
        self.programs.insert(name.to_string(), entry);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&ProgramEntry> {
        self.programs.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.programs.keys().map(String::as_str)
    }

    /// Programs found on this machine: CCP4's under `$CCP4/bin`, and gemmi on
    /// `PATH`.
    pub fn discover() -> Registry {
        let mut registry = Registry {
            programs: BTreeMap::new(),
            source: "discovered ($CCP4/bin, gemmi on PATH)".into(),
        };
        if let Some(ccp4) = std::env::var_os("CCP4") {
            let root = PathBuf::from(&ccp4);
            let bin = root.join("bin");
            let mut env = BTreeMap::new();
            if let Some(s) = ccp4.to_str() {
                env.insert("CCP4".to_string(), s.to_string());
            }
            for name in [
                "mtzdump",
                "pdbset",
                "refmac5",
                "freerflag",
                "cad",
                "mtzutils",
            ] {
                let path = bin.join(name);
                if is_executable(&path) {
                    let _ = registry.insert(
                        name,
                        ProgramEntry {
                            path,
                            args: vec![],
                            env: env.clone(),
                            sha256: None,
                        },
                    );
                }
            }
        }
        if let Some(path) = find_on_path("gemmi") {
            let _ = registry.insert(
                "gemmi",
                ProgramEntry {
                    path,
                    args: vec![],
                    env: BTreeMap::new(),
                    sha256: None,
                },
            );
        }
        registry
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_absolute() && is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_rejects_relative_paths_and_unknown_fields() {
        let r = Registry::from_toml(
            "[programs.gemmi]\npath = \"/usr/bin/gemmi\"\nargs = [\"mtz\"]\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(r.get("gemmi").unwrap().args, vec!["mtz"]);

        let e = Registry::from_toml("[programs.x]\npath = \"bin/x\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("must be absolute"), "{e}");

        let e = Registry::from_toml("[programs.x]\npath = \"/x\"\nshell = true\n", "t.toml")
            .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");

        let e = Registry::from_toml(
            "[programs.x]\npath = \"/x\"\nenv = { LD_PRELOAD = \"/evil.so\" }\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("LD_PRELOAD"), "{e}");
    }
}
