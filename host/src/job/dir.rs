//! Job directories, named as CCP4i2 names them: `<jobs>/job_12` for job 12,
//! `job_12/job_1` for sub-job 12.1. Numbers continue after the highest
//! existing directory, so a rerun never reuses (or overwrites) an old job.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("failed to create a job directory in {parent}: {source}")]
pub struct JobDirError {
    pub parent: String,
    pub source: std::io::Error,
}

/// Highest `N` among `job_N` entries of `dir` (0 when none).
fn highest_job_number(dir: &Path) -> u32 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("job_"))
                .and_then(|n| n.parse::<u32>().ok())
        })
        .max()
        .unwrap_or(0)
}

/// Create `job_N` in `parent` with `N` at least `at_least`; with `scan`,
/// also above every existing `job_N` (one directory listing: done for the
/// first number only, since a pipeline may make thousands). Returns `N` and
/// the directory.
pub(crate) fn create_numbered(
    parent: &Path,
    at_least: u32,
    scan: bool,
) -> Result<(u32, PathBuf), JobDirError> {
    let err = |source| JobDirError {
        parent: parent.display().to_string(),
        source,
    };
    std::fs::create_dir_all(parent).map_err(err)?;
    let mut n = if scan {
        at_least.max(highest_job_number(parent) + 1)
    } else {
        at_least
    };
    loop {
        let dir = parent.join(format!("job_{n}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((n, dir)),
            // Another run took this number between the scan and the create.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(err(e)),
        }
    }
}

/// A new top-level job directory in `jobs_dir`: its number and path.
pub fn allocate_top_level(jobs_dir: &Path) -> Result<(u32, PathBuf), JobDirError> {
    create_numbered(jobs_dir, 1, true)
}

/// Write a file in a job directory: temp file, fsync, rename, so a reader
/// (or a crash) never sees half a file.
pub(crate) fn write_file(dir: &Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
    replace_file(dir, name, contents, true)
}

/// Replace a file whole (temp file, then rename), so that a reader, or a
/// host killed meanwhile, never sees half of it; `sync` also guards against
/// the machine going down, at the cost of an fsync.
pub(crate) fn replace_file(
    dir: &Path,
    name: &str,
    contents: &[u8],
    sync: bool,
) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(contents)?;
    if sync {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_continues_after_existing_directories() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("job_7")).unwrap();
        std::fs::create_dir(tmp.path().join("job_x")).unwrap();
        let (n, dir) = allocate_top_level(tmp.path()).unwrap();
        assert_eq!(n, 8);
        assert!(dir.ends_with("job_8") && dir.is_dir());
        let (n, _) = create_numbered(tmp.path(), 1, true).unwrap();
        assert_eq!(n, 9);
        // Without a scan, taken numbers are still skipped.
        let (n, _) = create_numbered(tmp.path(), 8, false).unwrap();
        assert_eq!(n, 10);
    }
}
