//! Resuming a run: every job records a fingerprint of what it was asked to
//! do (task, version, parameters, and the contents of its input files), and
//! the host keeps an index of the jobs that succeeded, by fingerprint, in
//! `.kiln/finished.jsonl` (see [`crate::store`]). A step whose fingerprint
//! matches a step that succeeded is not run again: that step's outputs are
//! delivered where the new run asks for them, copied from the finished
//! step's files and checked against the content hashes the host recorded
//! when it finished. If a file is gone or changed, the step runs.
//!
//! Why content hashes and not paths: a rerun puts every job in a new
//! directory, so the next step's inputs (the previous step's outputs) have
//! new paths but the same bytes.
//!
//! Everything read here was written where plugins write, so it is read as
//! hostile: through held directories without following links, regular
//! files only, at most as many bytes as a file had when opened, and only
//! while the caller's [`Stop`] has not been raised (a job's time limit).

use crate::lock;
use crate::store::{KeptFile, OutputFile, RecordDir, StoredJob};
use kiln_container::{Container, FileValue, Value};
use kiln_fs::dir_handle::DirHandle;
use kiln_fs::roots::{Access, Roots};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The parts of a container that say what a job was asked to do;
/// `outputData` is what it did, and `guiAdmin` is presentation.
const ASKED: &[&str] = &["inputData", "controlParameters"];

/// Raised when reading must stop (the job's time is up, or it was
/// cancelled); reads check it between chunks.
pub type Stop = Arc<AtomicBool>;

/// Bytes read between two looks at the [`Stop`].
const CHUNK: usize = 1 << 20;

/// Why a file could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("stopped before the end of the file")]
    Stopped,
}

/// `sha256:<hex>` of what `reader` holds, at most `limit` bytes, copied to
/// `copy` too when given; and the number of bytes read.
fn hash_reader(
    mut reader: impl Read,
    limit: u64,
    mut copy: Option<&mut dyn Write>,
    stop: &AtomicBool,
) -> Result<(String, u64), HashError> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    while total < limit {
        if stop.load(Ordering::Relaxed) {
            return Err(HashError::Stopped);
        }
        let want = (limit - total).min(CHUNK as u64) as usize;
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        h.update(&buf[..n]);
        if let Some(out) = copy.as_deref_mut() {
            out.write_all(&buf[..n])?;
        }
        total += n as u64;
    }
    Ok((format!("sha256:{}", hex::encode(h.finalize())), total))
}

/// The hash of a file the host opened, as far as it reached when opened
/// (a file still growing is read to its size then, no further).
pub fn hash_file(file: std::fs::File, stop: &AtomicBool) -> Result<(String, u64), HashError> {
    let size = file.metadata()?.len();
    hash_reader(file, size, None, stop)
}

/// The fingerprint of a task run with these parameters, as hex SHA-256;
/// `None` once `stop` was raised. File values are opened through the job's
/// roots (see [`Roots::open_file`]). `code` says what would run: the
/// components of the task and its sub-tasks, and the programs they may
/// spawn (see `code_identity` in the runner).
pub fn fingerprint(
    task: &str,
    version: &str,
    code: &serde_json::Value,
    container: &Container,
    roots: &Roots,
    stop: &AtomicBool,
) -> Option<String> {
    let mut doc = serde_json::Map::new();
    doc.insert("task".into(), task.into());
    doc.insert("version".into(), version.into());
    doc.insert("code".into(), code.clone());
    for part in ASKED {
        let values = container
            .subtree_json(part)
            .unwrap_or(serde_json::Value::Null);
        doc.insert((*part).into(), with_content_hashes(values, roots, stop)?);
    }
    let canonical = serde_json::to_vec(&serde_json::Value::Object(doc)).unwrap_or_default();
    Some(hex::encode(Sha256::digest(canonical)))
}

/// Replace every file value's path (and annotation) with the SHA-256 of
/// the file's contents.
fn with_content_hashes(
    v: serde_json::Value,
    roots: &Roots,
    stop: &AtomicBool,
) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Object(map) if is_file_value(&map) => {
            let path = map.get("path").and_then(J::as_str).unwrap_or_default();
            // A missing or refused file is part of what was asked, and
            // differs from any content.
            let content = match roots.open_file(path) {
                Ok(f) => match hash_file(f, stop) {
                    Ok((hash, _)) => hash,
                    Err(HashError::Stopped) => return None,
                    Err(HashError::Io(e)) => format!("unreadable: {}", e.kind()),
                },
                Err(e) => format!("unreadable: {}", e.kind()),
            };
            let mut out = serde_json::Map::new();
            out.insert(
                "file_type".into(),
                map.get("file_type").cloned().unwrap_or(J::Null),
            );
            out.insert("content".into(), J::String(content));
            J::Object(out)
        }
        J::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(k, with_content_hashes(v, roots, stop)?);
            }
            J::Object(out)
        }
        J::Array(items) => J::Array(
            items
                .into_iter()
                .map(|v| with_content_hashes(v, roots, stop))
                .collect::<Option<Vec<_>>>()?,
        ),
        other => other,
    })
}

fn is_file_value(map: &serde_json::Map<String, serde_json::Value>) -> bool {
    map.len() == 3
        && map.get("path").is_some_and(|p| p.is_string())
        && map.contains_key("file_type")
        && map.contains_key("annotation")
}

/// The output files of a finished job with their content hashes, read
/// through its roots; an error names the first that could not be hashed
/// (such a job is never reused).
pub fn output_files(
    container: &Container,
    roots: &Roots,
    stop: &AtomicBool,
) -> Result<Vec<OutputFile>, String> {
    let mut out = Vec::new();
    for (item, file) in container.files() {
        if !item.starts_with("outputData") {
            continue;
        }
        let opened = roots
            .open_file(&file.path)
            .map_err(|e| format!("output {item}: {e}"))?;
        let (sha256, size) =
            hash_file(opened, stop).map_err(|e| format!("output {item}: {}: {e}", file.path))?;
        out.push(OutputFile {
            item,
            path: file.path,
            sha256,
            size,
        });
    }
    Ok(out)
}

/// Files of a job directory the host writes for each job itself, and so
/// never kept from a finished one.
const NOT_KEPT: &[&str] = &[
    crate::record::RECORD_FILE,
    "input_params.xml",
    "params.xml",
    "diagnostic.xml",
    crate::job_log::LOG_FILE,
    "audit.jsonl",
];

/// Most files kept of one job directory, and deepest directory walked.
const MAX_KEPT_FILES: usize = 10_000;
const MAX_KEPT_DEPTH: usize = 16;

/// The regular files of a finished job's directory, at any depth, with
/// their content hashes: what a reused step's directory gets a copy of.
/// Links, FIFOs and devices are left out (never followed or read), and
/// so are the host's own files and earlier attempts.
pub fn job_files(dir: &DirHandle, stop: &AtomicBool) -> Result<Vec<KeptFile>, String> {
    let mut out = Vec::new();
    walk_kept(dir, Path::new(""), 0, &mut out, stop)?;
    Ok(out)
}

fn walk_kept(
    dir: &DirHandle,
    below: &Path,
    depth: usize,
    out: &mut Vec<KeptFile>,
    stop: &AtomicBool,
) -> Result<(), String> {
    use rustix::fs::FileType;
    let shown = |name: &Path| dir.display_path(name).display().to_string();
    let names = dir
        .names()
        .map_err(|e| format!("cannot list {}: {e}", dir.path().display()))?;
    for name in names {
        let Some(text) = name.to_str() else { continue };
        if depth == 0 && (NOT_KEPT.contains(&text) || text.starts_with("attempt_")) {
            continue;
        }
        if text.starts_with('.') && text.ends_with(".tmp") {
            continue;
        }
        let rel = Path::new(text);
        match dir.kind(rel) {
            Ok(FileType::RegularFile) => {
                if out.len() >= MAX_KEPT_FILES {
                    return Err(format!(
                        "its directory holds more than {MAX_KEPT_FILES} files"
                    ));
                }
                let file = dir
                    .open_file(rel)
                    .map_err(|e| format!("cannot read {}: {e}", shown(rel)))?;
                let (sha256, size) =
                    hash_file(file, stop).map_err(|e| format!("{}: {e}", shown(rel)))?;
                out.push(KeptFile {
                    path: below.join(rel),
                    sha256,
                    size,
                });
            }
            Ok(FileType::Directory) if depth < MAX_KEPT_DEPTH => {
                let sub = dir
                    .open_dir(rel)
                    .map_err(|e| format!("cannot open {}: {e}", shown(rel)))?;
                walk_kept(&sub, &below.join(rel), depth + 1, out, stop)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Copy the kept files of `old`, a step that succeeded, into the new
/// step's directory at the same places, each checked against the hash
/// recorded when it finished.
pub fn copy_job_files(
    old: &StoredJob,
    jobs: &DirHandle,
    roots: &Roots,
    stop: &AtomicBool,
) -> Result<(), String> {
    let new_dir = roots.job_dir().get().map_err(|e| e.to_string())?;
    for kept in &old.files {
        if kept
            .path
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "its record names a bad path {}",
                kept.path.display()
            ));
        }
        let old_path = old.dir.join(&kept.path);
        let from = jobs
            .open_file(&old_path)
            .map_err(|e| format!("{}: {e}", jobs.display_path(&old_path).display()))?;
        let target = new_dir.path().join(&kept.path);
        make_parents(&target, roots).map_err(|e| format!("{}: {e}", target.display()))?;
        let parent = match kept.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => new_dir
                .open_dir(p)
                .map_err(|e| format!("{}: {e}", target.display()))?,
            _ => new_dir.try_clone().map_err(|e| e.to_string())?,
        };
        let name = kept
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("its record names a bad path {}", kept.path.display()))?;
        let shown_old = jobs.display_path(&old_path).display().to_string();
        let want = Recorded {
            path: &shown_old,
            sha256: &kept.sha256,
            size: kept.size,
        };
        copy_checked_into(
            from,
            &want,
            &parent,
            name,
            &target.display().to_string(),
            stop,
        )?;
    }
    Ok(())
}

/// One line of the index.
#[derive(Serialize, Deserialize)]
struct IndexLine {
    fingerprint: String,
    /// The job's id; its record is in the store.
    job: String,
}

const INDEX_FILE: &str = "finished.jsonl";

/// Largest index read: a line is about 120 bytes.
const MAX_INDEX: u64 = 256 << 20;

/// The index of succeeded jobs by fingerprint, for one jobs directory.
pub struct FinishedIndex {
    store: Arc<RecordDir>,
    /// Loaded on first use; newest last.
    entries: Mutex<Option<HashMap<String, Vec<String>>>>,
}

/// Whether job `a` is `b`, or one is a step (at any depth) of the other.
fn related(a: &str, b: &str) -> bool {
    let below =
        |x: &str, y: &str| x.len() > y.len() && x.starts_with(y) && x[y.len()..].starts_with('.');
    a == b || below(a, b) || below(b, a)
}

impl FinishedIndex {
    pub fn new(store: Arc<RecordDir>) -> FinishedIndex {
        FinishedIndex {
            store,
            entries: Mutex::new(None),
        }
    }

    fn with_entries<R>(&self, f: impl FnOnce(&mut HashMap<String, Vec<String>>) -> R) -> R {
        let mut slot = lock(&self.entries);
        let entries = slot.get_or_insert_with(|| {
            let mut map: HashMap<String, Vec<String>> = HashMap::new();
            let mut text = Vec::new();
            if let Ok(f) = self.store.state_dir().open_file(Path::new(INDEX_FILE)) {
                let _ = f.take(MAX_INDEX).read_to_end(&mut text);
            }
            // A line cut short by a host killed mid-write is skipped, and so
            // are lines of an older layout.
            for line in text.split(|b| *b == b'\n') {
                if let Ok(l) = serde_json::from_slice::<IndexLine>(line) {
                    map.entry(l.fingerprint).or_default().push(l.job);
                }
            }
            map
        });
        f(entries)
    }

    /// The newest job that succeeded with this fingerprint, whose record
    /// in the store still says so and carries its outputs; never the job
    /// `for_id` looking, nor one of its steps or pipelines.
    pub fn find(&self, fingerprint: &str, for_id: &str) -> Option<StoredJob> {
        let candidates = self.with_entries(|m| m.get(fingerprint).cloned().unwrap_or_default());
        candidates.iter().rev().find_map(|id| {
            if related(id, for_id) {
                return None;
            }
            let stored = self.store.get(id)?;
            (stored.record.succeeded()
                && stored.record.fingerprint.as_deref() == Some(fingerprint)
                && stored.params.is_some())
            .then_some(stored)
        })
    }

    /// Add a job that succeeded.
    pub fn add(&self, fingerprint: &str, id: &str) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&IndexLine {
            fingerprint: fingerprint.to_string(),
            job: id.to_string(),
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        // One append of a whole line: concurrent hosts on one jobs
        // directory interleave lines, never bytes within a line.
        self.store
            .state_dir()
            .append(INDEX_FILE)?
            .write_all(&line)?;
        self.with_entries(|m| {
            m.entry(fingerprint.to_string())
                .or_default()
                .push(id.to_string())
        });
        Ok(())
    }
}

/// Where the reused output at `old` goes for the new job: where the new
/// run asked (`asked`), else at the same place below the new job's
/// directory as it had below the old one's, else in the new job's
/// directory by its name.
fn target_of(old: &Path, asked: Option<&str>, old_dir: &Path, new_dir: &Path) -> PathBuf {
    if let Some(asked) = asked {
        return PathBuf::from(asked);
    }
    match old.strip_prefix(old_dir) {
        Ok(rest) => new_dir.join(rest),
        Err(_) => new_dir.join(old.file_name().unwrap_or_default()),
    }
}

/// Open a finished job's output for reading: below the jobs directory
/// through its handle, elsewhere through the new job's roots (which must
/// grant it).
fn open_old_output(path: &Path, jobs: &DirHandle, roots: &Roots) -> std::io::Result<std::fs::File> {
    match path.strip_prefix(jobs.path()) {
        Ok(rest) => jobs.open_file(rest),
        Err(_) => roots.open_file(&path.to_string_lossy()),
    }
}

/// The directories below the job's own directory that `target` needs,
/// made where missing (only there: elsewhere they must exist).
fn make_parents(target: &Path, roots: &Roots) -> std::io::Result<()> {
    let job_dir = roots.job_dir();
    let Ok(rest) = target.strip_prefix(job_dir.path()) else {
        return Ok(());
    };
    let Some(parent) = rest.parent() else {
        return Ok(());
    };
    let mut at = job_dir.get()?.try_clone()?;
    for name in parent.components() {
        let name = name.as_os_str().to_string_lossy();
        at = match at.create_dir(&name) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                at.open_dir(Path::new(name.as_ref()))?
            }
            other => other?,
        };
    }
    Ok(())
}

/// Copy `from` (an output file of the old job, recorded as `want`) to
/// `target`, checking the copy's hash and size against the record; the
/// file appears at `target` only when they match.
fn copy_checked(
    from: std::fs::File,
    want: &Recorded,
    target: &Path,
    roots: &Roots,
    stop: &AtomicBool,
) -> Result<(), String> {
    let shown = target.display();
    let (dir, name) = roots
        .parent_for_write(&target.to_string_lossy())
        .map_err(|e| format!("cannot write {shown}: {e}"))?;
    copy_checked_into(from, want, &dir, &name, &shown.to_string(), stop)
}

/// What a copy must match: where the file was, its hash and size.
struct Recorded<'a> {
    path: &'a str,
    sha256: &'a str,
    size: u64,
}

fn copy_checked_into(
    from: std::fs::File,
    want: &Recorded,
    dir: &DirHandle,
    name: &str,
    shown: &str,
    stop: &AtomicBool,
) -> Result<(), String> {
    let tmp = format!(".{name}.kiln-reuse.tmp");
    let _ = dir.remove_file(&tmp);
    let mut out = dir
        .create_new(&tmp)
        .map_err(|e| format!("cannot write {shown}: {e}"))?;
    // One byte past the recorded size tells a file that grew.
    let copied = hash_reader(from, want.size.saturating_add(1), Some(&mut out), stop);
    let checked = match copied {
        Ok((hash, size)) if hash == want.sha256 && size == want.size => Ok(()),
        Ok(_) => Err(format!(
            "{} has changed since its job finished (its content no longer matches the hash recorded then)",
            want.path
        )),
        Err(e) => Err(format!("cannot copy {} to {shown}: {e}", want.path)),
    };
    if let Err(e) = checked {
        let _ = dir.remove_file(&tmp);
        return Err(e);
    }
    dir.rename(&tmp, dir, name)
        .map_err(|e| format!("cannot write {shown}: {e}"))
}

/// Take over the outputs of `old`, a step that succeeded with the same
/// fingerprint: its output files are delivered where `container` (the new
/// step's) asks for them, checked against the hashes recorded when it
/// finished, and its other outputs are taken over as they were. An error
/// says why the step must run instead.
pub fn deliver_outputs(
    container: &mut Container,
    old: &StoredJob,
    jobs: &DirHandle,
    roots: &Roots,
    stop: &AtomicBool,
) -> Result<(), String> {
    let params = old
        .params
        .as_deref()
        .ok_or("its outputs were not recorded")?;
    let finished = Container::from_params_xml(container.clone(), params)
        .map_err(|e| format!("its recorded parameters cannot be read: {e}"))?;
    if container.children("outputData").is_err() {
        return Ok(());
    }
    let asked: HashMap<String, String> = container
        .files()
        .into_iter()
        .filter(|(item, _)| item.starts_with("outputData"))
        .map(|(item, f)| (item, f.path))
        .collect();
    let old_dir = jobs.path().join(&old.dir);
    let mut delivered = Vec::new();
    for (item, file) in finished.files() {
        if !item.starts_with("outputData") {
            continue;
        }
        let want = old
            .outputs
            .iter()
            .find(|o| o.item == item && o.path == file.path)
            .ok_or_else(|| format!("output {item} has no recorded hash"))?;
        let target = target_of(
            Path::new(&file.path),
            asked.get(&item).map(String::as_str),
            &old_dir,
            roots.job_dir().path(),
        );
        let target_text = target.to_string_lossy().into_owned();
        let from = open_old_output(Path::new(&file.path), jobs, roots)
            .map_err(|e| format!("output {item} of job {}: {e}", old.record.id))?;
        make_parents(&target, roots).map_err(|e| format!("output {item}: {e}"))?;
        roots
            .check(&target_text, Access::Write)
            .map_err(|e| format!("output {item}: {e}"))?;
        let want = Recorded {
            path: &want.path,
            sha256: &want.sha256,
            size: want.size,
        };
        copy_checked(from, &want, &target, roots, stop)?;
        delivered.push((
            item,
            FileValue {
                path: target_text,
                ..file
            },
        ));
    }
    container
        .copy_subtree("outputData", &finished, "outputData")
        .map_err(|e| format!("failed to take over its outputs: {e}"))?;
    for (item, file) in delivered {
        container
            .set(&item, Value::File(file))
            .map_err(|e| format!("failed to set output {item}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEF: &str = r#"<ccp4i2><ccp4i2_header><pluginName>t</pluginName></ccp4i2_header>
<ccp4i2_body>
  <container id="inputData">
    <content id="XYZIN"><className>CPdbDataFile</className></content>
  </container>
  <container id="outputData">
    <content id="XYZOUT"><className>CPdbDataFile</className></content>
  </container>
  <container id="controlParameters">
    <content id="WEIGHT"><className>CFloat</className></content>
  </container>
</ccp4i2_body></ccp4i2>"#;

    fn container(path: &Path, weight: f64) -> Container {
        let mut c = Container::from_def_xml(DEF).unwrap();
        c.set(
            "inputData.XYZIN",
            Value::File(FileValue::new(path.display().to_string())),
        )
        .unwrap();
        c.set("controlParameters.WEIGHT", Value::Float(weight))
            .unwrap();
        c
    }

    fn roots_of(dir: &Path) -> Roots {
        let dir = std::fs::canonicalize(dir).unwrap();
        Roots::new(
            kiln_fs::dir_handle::ReleasableDir::held(Arc::new(DirHandle::open(&dir).unwrap())),
            None,
            None,
            &[],
            &[],
        )
    }

    fn go() -> AtomicBool {
        AtomicBool::new(false)
    }

    #[test]
    fn same_content_at_another_path_has_the_same_fingerprint() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        let (a, b, c) = (dir.join("a.pdb"), dir.join("b.pdb"), dir.join("c.pdb"));
        std::fs::write(&a, "ATOM 1").unwrap();
        std::fs::write(&b, "ATOM 1").unwrap();
        std::fs::write(&c, "ATOM 2").unwrap();
        let roots = roots_of(&dir);
        let code = serde_json::json!({"component": "abc"});
        let fp =
            |p: &Path, w| fingerprint("t", "1", &code, &container(p, w), &roots, &go()).unwrap();
        assert_eq!(fp(&a, 0.5), fp(&b, 0.5));
        assert_ne!(fp(&a, 0.5), fp(&c, 0.5), "content differs");
        assert_ne!(fp(&a, 0.5), fp(&a, 0.6), "parameter differs");
        assert_ne!(
            fp(&a, 0.5),
            fingerprint("t", "2", &code, &container(&a, 0.5), &roots, &go()).unwrap(),
            "version differs"
        );
        assert_ne!(
            fp(&a, 0.5),
            fingerprint(
                "t",
                "1",
                &serde_json::json!({"component": "abd"}),
                &container(&a, 0.5),
                &roots,
                &go()
            )
            .unwrap(),
            "code differs"
        );
        let missing = dir.join("missing.pdb");
        assert_ne!(fp(&a, 0.5), fp(&missing, 0.5));
        // A link is not followed: it hashes as unreadable, not as its target.
        std::os::unix::fs::symlink(&a, dir.join("link.pdb")).unwrap();
        assert_ne!(fp(&a, 0.5), fp(&dir.join("link.pdb"), 0.5));
        // Outputs are not part of what was asked.
        let mut with_output = container(&a, 0.5);
        with_output
            .set("outputData.XYZOUT", Value::File(FileValue::new("out.pdb")))
            .unwrap();
        assert_eq!(
            fp(&a, 0.5),
            fingerprint("t", "1", &code, &with_output, &roots, &go()).unwrap()
        );
        // A raised stop ends the hashing.
        assert!(
            fingerprint(
                "t",
                "1",
                &code,
                &container(&a, 0.5),
                &roots,
                &AtomicBool::new(true)
            )
            .is_none()
        );
    }

    #[test]
    fn hashing_reads_no_further_than_the_size_the_file_had() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("grows");
        std::fs::write(&path, vec![1u8; 3 * CHUNK + 5]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"more")
            .unwrap();
        let (_, n) = hash_reader(&file, (3 * CHUNK + 5) as u64, None, &go()).unwrap();
        assert_eq!(n, (3 * CHUNK + 5) as u64);
    }

    #[test]
    fn outputs_are_delivered_where_asked_and_checked_against_their_hashes() {
        let tmp = tempfile::tempdir().unwrap();
        let jobs_path = std::fs::canonicalize(tmp.path()).unwrap();
        let (old, new) = (jobs_path.join("job_1"), jobs_path.join("job_2"));
        std::fs::create_dir_all(old.join("sub")).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(old.join("sub/out.pdb"), "ATOM").unwrap();
        let jobs = DirHandle::open(&jobs_path).unwrap();
        let old_roots = roots_of(&old);
        let mut done = container(&old.join("in.pdb"), 0.5);
        done.set(
            "outputData.XYZOUT",
            Value::File(FileValue::new(
                old.join("sub/out.pdb").display().to_string(),
            )),
        )
        .unwrap();
        let outputs = output_files(&done, &old_roots, &go()).unwrap();
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].size, 4);
        let header = kiln_container::ParamsHeader::new("t".to_string());
        let stored = StoredJob {
            record: crate::record::JobRecord {
                status: Some("succeeded".into()),
                ..crate::record::JobRecord::example("1", "finished")
            },
            dir: "job_1".into(),
            params: Some(done.to_params_xml(&header)),
            outputs,
            files: Vec::new(),
        };
        let new_roots = roots_of(&new);
        // Not asked for: at the same place below the new directory.
        let mut fresh = container(&jobs_path.join("in.pdb"), 0.5);
        deliver_outputs(&mut fresh, &stored, &jobs, &new_roots, &go()).unwrap();
        let Some(Value::File(f)) = fresh.get("outputData.XYZOUT").unwrap() else {
            panic!("no output")
        };
        assert_eq!(Path::new(&f.path), new.join("sub/out.pdb"));
        assert_eq!(std::fs::read(new.join("sub/out.pdb")).unwrap(), b"ATOM");
        // Asked for: there, and nowhere else.
        let mut asked = container(&jobs_path.join("in.pdb"), 0.5);
        let wanted = new.join("b.pdb").display().to_string();
        asked
            .set(
                "outputData.XYZOUT",
                Value::File(FileValue::new(wanted.clone())),
            )
            .unwrap();
        deliver_outputs(&mut asked, &stored, &jobs, &new_roots, &go()).unwrap();
        let Some(Value::File(f)) = asked.get("outputData.XYZOUT").unwrap() else {
            panic!("no output")
        };
        assert_eq!(f.path, wanted);
        assert_eq!(std::fs::read(&wanted).unwrap(), b"ATOM");
        // Changed since: refused, and nothing is left at the target.
        std::fs::write(old.join("sub/out.pdb"), "ATOX").unwrap();
        std::fs::remove_file(&wanted).unwrap();
        let mut again = asked.clone();
        let e = deliver_outputs(&mut again, &stored, &jobs, &new_roots, &go()).unwrap_err();
        assert!(e.contains("has changed"), "{e}");
        assert!(!Path::new(&wanted).exists());
        // Gone, or a link in its place: refused.
        std::fs::remove_file(old.join("sub/out.pdb")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", old.join("sub/out.pdb")).unwrap();
        assert!(deliver_outputs(&mut again, &stored, &jobs, &new_roots, &go()).is_err());
    }

    #[test]
    fn the_index_finds_only_jobs_whose_stored_record_still_says_succeeded() {
        let tmp = tempfile::tempdir().unwrap();
        let jobs = DirHandle::open(tmp.path()).unwrap();
        let store = Arc::new(RecordDir::open(&jobs).unwrap());
        let stored = |id: &str, status: &str| StoredJob {
            record: crate::record::JobRecord {
                id: id.into(),
                task: "t".into(),
                version: "1".into(),
                state: if status == "succeeded" {
                    "finished"
                } else {
                    "failed"
                }
                .into(),
                status: Some(status.into()),
                reason: None,
                fingerprint: Some("abc".into()),
                created: 0.0,
                started: Some(0.0),
                ended: Some(1.0),
                attempts: 1,
                reused_from: None,
                step_failures: Vec::new(),
            },
            dir: "job_1/job_2".into(),
            params: Some(String::new()),
            outputs: Vec::new(),
            files: Vec::new(),
        };
        store.put(&stored("1.2", "succeeded")).unwrap();
        let index = FinishedIndex::new(store.clone());
        index.add("abc", "1.2").unwrap();
        assert_eq!(index.find("abc", "7.1").unwrap().record.id, "1.2");
        assert!(index.find("abd", "7.1").is_none());
        assert!(index.find("abc", "1.2").is_none(), "never itself");
        assert!(
            index.find("abc", "1.2.1").is_none(),
            "nor a pipeline of its own"
        );
        assert!(index.find("abc", "1").is_none(), "nor one of its steps");
        assert!(
            index.find("abc", "11.2").is_some(),
            "1 is not a prefix of 11"
        );
        // A fresh index reads the file, and skips a line cut short.
        store
            .state_dir()
            .append(INDEX_FILE)
            .unwrap()
            .write_all(b"{\"fingerprint\":\"ab")
            .unwrap();
        assert!(FinishedIndex::new(store.clone()).find("abc", "7").is_some());
        store.put(&stored("1.2", "failed")).unwrap();
        assert!(FinishedIndex::new(store.clone()).find("abc", "7").is_none());
    }
}
