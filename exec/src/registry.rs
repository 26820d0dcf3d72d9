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
//! installation (`$CCP4/bin`) and gemmi on `PATH` (the executable a pyenv
//! shim would run, not the shim), with gemmi's subcommands as entries of
//! their own (`gemmi-mtz` is `gemmi mtz`).

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
    /// `PATH` with its subcommands ([`GEMMI_ENTRIES`]).
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
        if let Some(path) = std::env::var_os("PATH").and_then(|p| find_gemmi(&p)) {
            for (name, args) in GEMMI_ENTRIES {
                let _ = registry.insert(
                    name,
                    ProgramEntry {
                        path: path.clone(),
                        args: args.iter().map(|a| a.to_string()).collect(),
                        env: BTreeMap::new(),
                        sha256: None,
                    },
                );
            }
        }
        registry
    }
}

/// gemmi, and its subcommands as programs of their own: a task asks for
/// `gemmi-mtz`, and a grant names exactly the subcommands it may run.
pub const GEMMI_ENTRIES: &[(&str, &[&str])] = &[
    ("gemmi", &[]),
    ("gemmi-mtz", &["mtz"]),
    ("gemmi-convert", &["convert"]),
    ("gemmi-sfcalc", &["sfcalc"]),
    ("gemmi-contents", &["contents"]),
    ("gemmi-cif2mtz", &["cif2mtz"]),
    ("gemmi-mtz2cif", &["mtz2cif"]),
];

/// The gemmi executable that running `gemmi` from `path_var` really runs.
fn find_gemmi(path_var: &std::ffi::OsStr) -> Option<PathBuf> {
    let found = find_on_path_in(path_var, "gemmi")?;
    match resolve_shim(&found, "gemmi") {
        Ok(real) => Some(real),
        Err(why) => {
            tracing::warn!(
                "gemmi at {} is left out of the registry: {why}",
                found.display()
            );
            None
        }
    }
}

/// What running `path` really executes: the file itself, or, for a pyenv
/// shim (a bash script that hands over to pyenv), the program pyenv would
/// run. A shim cannot be registered as it is: confined, it runs a shell and
/// pyenv, which the program is not granted, and what it runs depends on
/// the environment of each run.
fn resolve_shim(path: &Path, name: &str) -> Result<PathBuf, String> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(8192).read_to_end(&mut head))
        .map_err(|e| format!("cannot read it: {e}"))?;
    if !head.starts_with(b"#!") {
        return Ok(path.to_path_buf());
    }
    let text = String::from_utf8_lossy(&head);
    let quoted_after = |prefix: &str| {
        text.lines().find_map(|l| {
            let rest = l.trim().strip_prefix(prefix)?;
            Some(rest.split('"').next()?.to_string())
        })
    };
    let Some(pyenv) = quoted_after("exec \"").filter(|p| p.ends_with("/pyenv")) else {
        return Err("it is a script, not a program; register the program it runs".into());
    };
    let mut which = std::process::Command::new(&pyenv);
    which
        .args(["which", name])
        .stdin(std::process::Stdio::null());
    if let Some(root) = quoted_after("export PYENV_ROOT=\"") {
        which.env("PYENV_ROOT", root);
    }
    let out = which
        .output()
        .map_err(|e| format!("it is a pyenv shim, and `{pyenv} which {name}` failed: {e}"))?;
    let real = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !real.is_absolute() || !is_executable(&real) {
        return Err(format!(
            "it is a pyenv shim, and `pyenv which {name}` did not name an executable: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut magic = [0u8; 2];
    if std::fs::File::open(&real)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == b"#!")
    {
        return Err(format!(
            "pyenv runs {}, a script, not a program",
            real.display()
        ));
    }
    Ok(real)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn find_on_path_in(path_var: &std::ffi::OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .map(|dir| dir.join(name))
        .find(|p| p.is_absolute() && is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn executable(path: &Path, text: &[u8]) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A pyenv layout: a shim on PATH, pyenv, and the version's binary.
    fn pyenv_layout(dir: &Path, real_is: &[u8]) -> (PathBuf, PathBuf) {
        let shims = dir.join("shims");
        let libexec = dir.join("libexec");
        let bin = dir.join("versions/3.11/bin");
        for d in [&shims, &libexec, &bin] {
            std::fs::create_dir_all(d).unwrap();
        }
        let real = bin.join("gemmi");
        executable(&real, real_is);
        executable(
            &libexec.join("pyenv"),
            format!(
                "#!/bin/sh\n[ \"$1 $2 $PYENV_ROOT\" = \"which gemmi {}\" ] || exit 1\necho {}\n",
                dir.display(),
                real.display()
            )
            .as_bytes(),
        );
        executable(
            &shims.join("gemmi"),
            format!(
                "#!/usr/bin/env bash\nset -e\nprogram=\"${{0##*/}}\"\nexport PYENV_ROOT=\"{}\"\nexec \"{}\" exec \"$program\" \"$@\"\n",
                dir.display(),
                libexec.join("pyenv").display()
            )
            .as_bytes(),
        );
        (shims, real)
    }

    #[test]
    fn a_pyenv_shim_is_resolved_to_the_program_it_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let (shims, real) = pyenv_layout(tmp.path(), b"\x7fELF\x02\x01\x01");
        let path_var = std::env::join_paths([Path::new("/nonexistent"), &shims]).unwrap();
        assert_eq!(find_gemmi(&path_var), Some(real.clone()));
        // A program on PATH is itself.
        let bin = real.parent().unwrap();
        assert_eq!(find_gemmi(bin.as_os_str()), Some(real));
    }

    #[test]
    fn a_script_that_is_not_a_shim_or_runs_a_script_is_left_out() {
        let tmp = tempfile::tempdir().unwrap();
        let (shims, real) = pyenv_layout(tmp.path(), b"#!/usr/bin/python3\nprint()\n");
        let e = resolve_shim(&shims.join("gemmi"), "gemmi").unwrap_err();
        assert!(
            e.contains(&format!("pyenv runs {}, a script", real.display())),
            "{e}"
        );
        assert_eq!(find_gemmi(shims.as_os_str()), None);

        let other = tmp.path().join("wrapper");
        executable(&other, b"#!/bin/sh\nexec /opt/gemmi \"$@\"\n");
        let e = resolve_shim(&other, "gemmi").unwrap_err();
        assert!(e.contains("a script, not a program"), "{e}");
    }

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
