//! Job directories, named as CCP4i2 names them: `<jobs>/job_12` for job 12,
//! `job_12/job_1` for sub-job 12.1. Numbers continue after the highest
//! existing directory, so a rerun never reuses (or overwrites) an old job.
//! Each is opened by handle from the moment it is made (see
//! [`crate::dir_handle`]): its parent's plugin may swap its path for a link.

use kiln_fs::dir_handle::DirHandle;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("failed to create a job directory in {parent}: {source}")]
pub struct JobDirError {
    pub parent: String,
    pub source: std::io::Error,
}

/// Highest `N` among `job_N` entries of `dir` (0 when none).
pub fn highest_job_number(dir: &DirHandle) -> u32 {
    let Ok(names) = dir.names() else {
        return 0;
    };
    names
        .iter()
        .filter_map(|n| {
            n.to_str()
                .and_then(|n| n.strip_prefix("job_"))
                .and_then(|n| n.parse::<u32>().ok())
        })
        .max()
        .unwrap_or(0)
}

/// Create `job_N` in `parent` with `N` at least `at_least`; with `scan`,
/// also above every existing `job_N` (one directory listing: done for the
/// first number only, since a pipeline may make thousands). Returns `N` and
/// the directory, held.
pub fn create_numbered(
    parent: &DirHandle,
    at_least: u32,
    scan: bool,
) -> Result<(u32, DirHandle), JobDirError> {
    let err = |source| JobDirError {
        parent: parent.path().display().to_string(),
        source,
    };
    let mut n = if scan {
        at_least.max(highest_job_number(parent) + 1)
    } else {
        at_least
    };
    loop {
        match parent.create_dir(&format!("job_{n}")) {
            Ok(dir) => return Ok((n, dir)),
            // Another run took this number between the scan and the create
            // (or something else is in the way, a link included).
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(err(e)),
        }
    }
}

/// The jobs directory, made if need be and held; its path is canonical, so
/// job directories below it are named canonically.
pub fn open_jobs_dir(jobs_dir: &Path) -> Result<DirHandle, JobDirError> {
    let err = |source| JobDirError {
        parent: jobs_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(jobs_dir).map_err(err)?;
    let canonical = std::fs::canonicalize(jobs_dir).map_err(err)?;
    DirHandle::open(&canonical).map_err(err)
}

/// A new top-level job directory in the jobs directory: its number and
/// the directory, held.
pub fn allocate_top_level(jobs_dir: &DirHandle) -> Result<(u32, DirHandle), JobDirError> {
    create_numbered(jobs_dir, 1, true)
}

/// Write a file in a job directory whole: temp file, fsync, rename, so a
/// reader (or a crash) never sees half a file; a link in its place is
/// replaced, never followed.
pub fn write_file(dir: &DirHandle, name: &str, contents: &[u8]) -> std::io::Result<std::fs::File> {
    dir.replace(name, contents, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_continues_after_existing_directories() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("job_7")).unwrap();
        std::fs::create_dir(tmp.path().join("job_x")).unwrap();
        let jobs = open_jobs_dir(tmp.path()).unwrap();
        let (n, dir) = allocate_top_level(&jobs).unwrap();
        assert_eq!(n, 8);
        assert!(dir.path().ends_with("job_8") && dir.path().is_dir());
        let (n, _) = create_numbered(&jobs, 1, true).unwrap();
        assert_eq!(n, 9);
        // Without a scan, taken numbers are still skipped, a link's too
        // (never followed).
        std::os::unix::fs::symlink("/", tmp.path().join("job_10")).unwrap();
        let (n, _) = create_numbered(&jobs, 8, false).unwrap();
        assert_eq!(n, 11);
        assert!(!Path::new("/job_11").exists());
    }
}
