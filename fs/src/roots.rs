//! File paths a plugin hands the host — file values in a container, program
//! arguments that name files — checked against the job's granted roots, and
//! the host's own opens of such files.
//!
//! A path is accepted only if it lies below a granted root *and* resolves
//! there fd-relative without a symbolic link at any component (see
//! [`crate::dir_handle`]), so neither `..` nor a link can lead out of the
//! root whatever the string looks like. `..` is refused outright, and so
//! is a NUL byte, before anything is spawned. The job's own directory and
//! its pipeline's are held open (their paths may be swapped for links by
//! the plugin that owns their parent); the operator's granted directories
//! are opened by their path for each use.

use crate::dir_handle::{DirHandle, ReleasableDir};
use rustix::fs::FileType;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

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
    #[error(
        "path `{path}` is or passes through a symbolic link (in `{root}`), which Kiln never follows there; name the file itself"
    )]
    Escapes { path: String, root: String },
}

/// A directory files may be named in.
struct Root {
    path: PathBuf,
    /// The job's own directory and its pipeline's, held or found again
    /// below their parents. `None`: a granted directory, opened by its path
    /// when used.
    handle: Option<Arc<ReleasableDir>>,
    writable: bool,
    /// A directory of the grants (not the job's own or its pipeline's).
    granted: bool,
}

impl Root {
    fn open(&self) -> std::io::Result<Arc<DirHandle>> {
        match &self.handle {
            Some(h) => h.get(),
            None => DirHandle::open(&self.path).map(Arc::new),
        }
    }
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
    /// the granted `read_only` and `read_write` directories. Granted
    /// directories that do not exist are left out (and so refuse
    /// everything below them).
    pub fn new(
        job_dir: Arc<ReleasableDir>,
        pipeline_dir: Option<Arc<DirHandle>>,
        staging: Option<Arc<DirHandle>>,
        read_only: &[PathBuf],
        read_write: &[PathBuf],
    ) -> Roots {
        let mut roots = vec![Root {
            path: job_dir.path().to_path_buf(),
            handle: Some(job_dir.clone()),
            writable: true,
            granted: false,
        }];
        if let Some(p) = pipeline_dir {
            roots.push(Root {
                path: p.path().to_path_buf(),
                handle: Some(ReleasableDir::held(p)),
                writable: false,
                granted: false,
            });
        }
        // Listed before the pipeline's directory it lies in, to be found
        // first.
        if let Some(s) = staging {
            roots.insert(
                1,
                Root {
                    path: s.path().to_path_buf(),
                    handle: Some(ReleasableDir::held(s)),
                    writable: true,
                    granted: false,
                },
            );
        }
        let mut add = |path: &Path, writable: bool| {
            if let Ok(canonical) = std::fs::canonicalize(path) {
                roots.push(Root {
                    path: canonical,
                    handle: None,
                    writable,
                    granted: true,
                });
            }
        };
        for p in read_write {
            add(p, true);
        }
        for p in read_only {
            add(p, false);
        }
        Roots {
            job_dir: job_dir.path().to_path_buf(),
            roots,
        }
    }

    /// The job's own directory.
    pub fn job_dir(&self) -> &Arc<ReleasableDir> {
        self.roots[0]
            .handle
            .as_ref()
            .expect("the first root is the job's own, held directory")
    }

    /// Check `path` (absolute, or relative to the job directory) and return
    /// it absolute.
    pub fn check(&self, path: &str, access: Access) -> Result<Resolved, PathError> {
        let (root, absolute, rest) = self.locate(path, access)?;
        let escapes = || PathError::Escapes {
            path: path.to_string(),
            root: root.path.display().to_string(),
        };
        let resolved = Resolved {
            path: absolute.clone(),
            granted_dir: root.granted.then(|| root.path.clone()),
        };
        if rest.as_os_str().is_empty() {
            return Ok(resolved);
        }
        let dir = root.open().map_err(|_| escapes())?;
        match dir.kind(&rest) {
            Ok(FileType::Symlink) => Err(escapes()),
            Ok(_) => Ok(resolved),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Not there yet (an output): its directory must resolve
                // inside the root, without links.
                match rest.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => match dir.kind(parent) {
                        Ok(FileType::Directory) => Ok(resolved),
                        _ => Err(escapes()),
                    },
                    _ => Ok(resolved),
                }
            }
            Err(_) => Err(escapes()),
        }
    }

    /// Open the regular file at `path` (as [`Roots::check`] takes it) for
    /// the host to read, without following a link and without blocking on
    /// a FIFO or device put in its place.
    pub fn open_file(&self, path: &str) -> std::io::Result<std::fs::File> {
        let (root, _, rest) = self
            .locate(path, Access::Read)
            .map_err(std::io::Error::other)?;
        root.open()?.open_file(&rest)
    }

    /// The directory `path` would be created in, held, and the file's name,
    /// for the host to write a file there.
    pub fn parent_for_write(&self, path: &str) -> std::io::Result<(DirHandle, String)> {
        let (root, _, rest) = self
            .locate(path, Access::Write)
            .map_err(std::io::Error::other)?;
        let name = rest
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| std::io::Error::other(format!("`{path}` names no file")))?
            .to_string();
        let dir = root.open()?;
        let parent = match rest.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir.open_dir(p)?,
            _ => dir.try_clone()?,
        };
        Ok((parent, name))
    }

    /// The root `path` lies in, the path made absolute, and the rest of it
    /// below the root.
    fn locate(&self, path: &str, access: Access) -> Result<(&Root, PathBuf, PathBuf), PathError> {
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
        // Component-wise containment picks the root; the fd-relative
        // resolution is what actually enforces it.
        let (root, rest) = self
            .roots
            .iter()
            .filter(|r| access == Access::Read || r.writable)
            .find_map(|r| {
                absolute
                    .strip_prefix(&r.path)
                    .ok()
                    .map(|rest| (r, rest.to_path_buf()))
            })
            .ok_or_else(|| PathError::NotGranted {
                path: path.to_string(),
                key: match access {
                    Access::Read => "read_dirs",
                    Access::Write => "write_dirs",
                },
            })?;
        Ok((root, absolute, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Roots) {
        let tmp = tempfile::tempdir().unwrap();
        let job = tmp.path().join("job");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(job.join("sub")).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("in.mtz"), b"x").unwrap();
        std::fs::write(job.join("sub/in.pdb"), b"ATOM").unwrap();
        std::os::unix::fs::symlink("/etc", job.join("out")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", job.join("pw")).unwrap();
        std::os::unix::fs::symlink(job.join("loop"), job.join("loop")).unwrap();
        std::os::unix::fs::symlink("sub", job.join("inner")).unwrap();
        let job = Arc::new(DirHandle::open(&std::fs::canonicalize(&job).unwrap()).unwrap());
        let roots = Roots::new(ReleasableDir::held(job), None, None, &[data], &[]);
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
    fn symlinks_anywhere_loops_and_dangling_links_are_refused() {
        let (_tmp, roots) = setup();
        for path in [
            "out/shadow",
            "out",
            "pw",
            "loop",
            "loop/x",
            "inner/in.pdb",
            "out/new",
        ] {
            let e = roots.check(path, Access::Read).unwrap_err();
            assert!(matches!(e, PathError::Escapes { .. }), "{path}: {e}");
        }
        assert!(roots.open_file("pw").is_err());
        assert!(roots.open_file("inner/in.pdb").is_err());
        assert!(roots.open_file("sub/in.pdb").is_ok());
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
        let (dir, name) = roots.parent_for_write("sub/new.pdb").unwrap();
        assert_eq!(name, "new.pdb");
        assert!(dir.path().ends_with("job/sub"));
        assert!(roots.parent_for_write("out/new.pdb").is_err());
    }
}
