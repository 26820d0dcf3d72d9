//! File paths a plugin hands the host — file values in a container, program
//! arguments that name files — checked against the job's granted roots.
//!
//! A path is accepted only if it lies below a granted root *and* resolves
//! there fd-relative (cap-std), so `..` and symlinks cannot lead out of the
//! root whatever the string looks like. `..` is refused outright, and so is
//! a NUL byte, before anything is spawned.

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use std::path::{Component, Path, PathBuf};

/// What the path will be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Why a path was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path {path:?} contains a NUL byte")]
    Nul { path: String },
    #[error("path `{path}` contains `..`; name files without going up a directory")]
    ParentDir { path: String },
    #[error(
        "path `{path}` is outside the granted directories: add its directory to `{key}` in the grants manifest"
    )]
    NotGranted { path: String, key: &'static str },
    #[error("path `{path}` leads outside its granted directory `{root}` (through a symbolic link)")]
    Escapes { path: String, root: String },
}

/// A granted directory. It is opened for each check rather than held open:
/// a pipeline may have thousands of jobs, and each would pin descriptors.
struct Root {
    path: PathBuf,
    writable: bool,
    /// A directory of the grants (not the job's own or its pipeline's).
    granted: bool,
}

/// An accepted path, and the granted directory it lies in when it is one of
/// the grants' (uses of those are audited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub path: PathBuf,
    pub granted_dir: Option<PathBuf>,
}

/// The directories a job may name files in.
pub struct Roots {
    job_dir: PathBuf,
    roots: Vec<Root>,
}

impl Roots {
    /// The job directory (read-write), its pipeline's directory (read), and
    /// the granted `read_only` and `read_write` directories. Directories that
    /// do not exist are left out (and so refuse everything below them).
    pub fn new(
        job_dir: &Path,
        pipeline_dir: Option<&Path>,
        read_only: &[PathBuf],
        read_write: &[PathBuf],
    ) -> Roots {
        let mut roots = Vec::new();
        let mut add = |path: &Path, writable: bool, granted: bool| {
            if let Ok(canonical) = std::fs::canonicalize(path) {
                roots.push(Root {
                    path: canonical,
                    writable,
                    granted,
                });
            }
        };
        add(job_dir, true, false);
        if let Some(p) = pipeline_dir {
            add(p, false, false);
        }
        for p in read_write {
            add(p, true, true);
        }
        for p in read_only {
            add(p, false, true);
        }
        Roots {
            job_dir: std::fs::canonicalize(job_dir).unwrap_or_else(|_| job_dir.to_path_buf()),
            roots,
        }
    }

    /// Check `path` (absolute, or relative to the job directory) and return
    /// it absolute.
    pub fn check(&self, path: &str, access: Access) -> Result<Resolved, PathError> {
        let (root, absolute) = self.resolve(path, access)?;
        Ok(Resolved {
            path: absolute,
            granted_dir: root.granted.then(|| root.path.clone()),
        })
    }

    fn resolve(&self, path: &str, access: Access) -> Result<(&Root, PathBuf), PathError> {
        if path.contains('\0') {
            return Err(PathError::Nul {
                path: path.to_string(),
            });
        }
        let p = Path::new(path);
        if p.components().any(|c| c == Component::ParentDir) {
            return Err(PathError::ParentDir {
                path: path.to_string(),
            });
        }
        let absolute = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.job_dir.join(p)
        };
        let not_granted = || PathError::NotGranted {
            path: path.to_string(),
            key: match access {
                Access::Read => "read_dirs",
                Access::Write => "write_dirs",
            },
        };
        // Component-wise containment picks the root; the fd-relative
        // resolution below is what actually enforces it.
        let (root, rest) = self
            .roots
            .iter()
            .filter(|r| access == Access::Read || r.writable)
            .find_map(|r| absolute.strip_prefix(&r.path).ok().map(|rest| (r, rest)))
            .ok_or_else(not_granted)?;
        let escapes = || PathError::Escapes {
            path: path.to_string(),
            root: root.path.display().to_string(),
        };
        if rest.as_os_str().is_empty() {
            return Ok((root, absolute));
        }
        let dir = Dir::open_ambient_dir(&root.path, ambient_authority()).map_err(|_| escapes())?;
        match dir.metadata(rest) {
            Ok(_) => Ok((root, absolute)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Not there yet (an output): its directory must resolve
                // inside the root, and a dangling link must not be the name.
                if dir.symlink_metadata(rest).is_ok() {
                    return Err(escapes());
                }
                match rest.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => dir
                        .metadata(parent)
                        .map(|_| (root, absolute.clone()))
                        .map_err(|_| escapes()),
                    _ => Ok((root, absolute)),
                }
            }
            Err(_) => Err(escapes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Roots) {
        let tmp = tempfile::tempdir().unwrap();
        let job = tmp.path().join("job");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("in.mtz"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", job.join("out")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", job.join("pw")).unwrap();
        std::os::unix::fs::symlink(job.join("loop"), job.join("loop")).unwrap();
        let roots = Roots::new(&job, None, &[data], &[]);
        (tmp, roots)
    }

    #[test]
    fn traversal_absolute_paths_and_nul_bytes_are_refused() {
        let (_tmp, roots) = setup();
        for (path, want) in [
            ("../../etc/passwd", "contains `..`"),
            ("a/../../x", "contains `..`"),
            ("/etc/shadow", "add its directory to `read_dirs`"),
            ("x\0y", "NUL"),
        ] {
            let e = roots.check(path, Access::Read).unwrap_err().to_string();
            assert!(e.contains(want), "{path}: {e}");
        }
    }

    #[test]
    fn symlinks_out_of_a_root_loops_and_dangling_links_are_refused() {
        let (_tmp, roots) = setup();
        for path in ["out/shadow", "out", "pw", "loop", "loop/x"] {
            let e = roots.check(path, Access::Read).unwrap_err();
            assert!(matches!(e, PathError::Escapes { .. }), "{path}: {e}");
        }
    }

    #[test]
    fn granted_files_and_new_outputs_are_accepted() {
        let (tmp, roots) = setup();
        let input = tmp.path().join("data/in.mtz");
        let data = std::fs::canonicalize(&input).unwrap();
        let resolved = roots.check(data.to_str().unwrap(), Access::Read).unwrap();
        assert_eq!(resolved.path, data);
        assert_eq!(resolved.granted_dir.as_deref(), data.parent());
        let out = roots.check("XYZOUT.pdb", Access::Write).unwrap();
        assert!(out.path.ends_with("job/XYZOUT.pdb"));
        assert_eq!(out.granted_dir, None);
        // A read-only root is not writable.
        let e = roots
            .check(data.to_str().unwrap(), Access::Write)
            .unwrap_err();
        assert!(e.to_string().contains("write_dirs"), "{e}");
    }
}
