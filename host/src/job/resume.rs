//! Resuming a run: every job records a fingerprint of what it was asked to
//! do (task, version, parameters, and the contents of its input files), and
//! the jobs directory keeps an index of the jobs that succeeded, by
//! fingerprint, in `.kiln/finished.jsonl`. A sub-job whose fingerprint
//! matches a job that succeeded is not run again: that job's directory is
//! copied into the new one and its outputs are taken over, with paths
//! inside the old directory moved to the new one.
//!
//! Why content hashes and not paths: a rerun puts every job in a new
//! directory, so the next step's inputs (the previous step's outputs) have
//! new paths but the same bytes.

use super::record::{JobRecord, RECORD_FILE};
use crate::engine::lock;
use kiln_container::{Container, FileValue, Value};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The parts of a container that say what a job was asked to do;
/// `outputData` is what it did, and `guiAdmin` is presentation.
const ASKED: &[&str] = &["inputData", "controlParameters"];

/// The fingerprint of a task run with these parameters, as hex SHA-256.
/// Relative file paths are taken relative to `job_dir`. `code` says what
/// would run: the components of the task and its sub-tasks, and the
/// programs they may spawn (see `code_identity` in the runner).
pub fn fingerprint(
    task: &str,
    version: &str,
    code: &serde_json::Value,
    container: &Container,
    job_dir: &Path,
) -> String {
    let mut doc = serde_json::Map::new();
    doc.insert("task".into(), task.into());
    doc.insert("version".into(), version.into());
    doc.insert("code".into(), code.clone());
    for part in ASKED {
        let values = container
            .subtree_json(part)
            .unwrap_or(serde_json::Value::Null);
        doc.insert((*part).into(), with_content_hashes(values, job_dir));
    }
    let canonical = serde_json::to_vec(&serde_json::Value::Object(doc)).unwrap_or_default();
    hex::encode(Sha256::digest(canonical))
}

/// Replace every file value's path (and annotation) with the SHA-256 of
/// the file's contents.
fn with_content_hashes(v: serde_json::Value, job_dir: &Path) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::Object(map) if is_file_value(&map) => {
            let path = map.get("path").and_then(J::as_str).unwrap_or_default();
            let mut out = serde_json::Map::new();
            out.insert(
                "file_type".into(),
                map.get("file_type").cloned().unwrap_or(J::Null),
            );
            out.insert(
                "content".into(),
                J::String(content_hash(&job_dir.join(path))),
            );
            J::Object(out)
        }
        J::Object(map) => J::Object(
            map.into_iter()
                .map(|(k, v)| (k, with_content_hashes(v, job_dir)))
                .collect(),
        ),
        J::Array(items) => J::Array(
            items
                .into_iter()
                .map(|v| with_content_hashes(v, job_dir))
                .collect(),
        ),
        other => other,
    }
}

fn is_file_value(map: &serde_json::Map<String, serde_json::Value>) -> bool {
    map.len() == 3
        && map.get("path").is_some_and(|p| p.is_string())
        && map.contains_key("file_type")
        && map.contains_key("annotation")
}

/// `sha256:<hex>` of the file, or why there is none (a missing file is
/// part of what was asked, and differs from any content).
fn content_hash(path: &Path) -> String {
    let hash = || -> std::io::Result<String> {
        let mut f = std::fs::File::open(path)?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut HashWriter(&mut h))?;
        Ok(format!("sha256:{}", hex::encode(h.finalize())))
    };
    hash().unwrap_or_else(|e| format!("unreadable: {}", e.kind()))
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One line of the index.
#[derive(Serialize, Deserialize)]
struct IndexLine {
    fingerprint: String,
    /// Job directory, relative to the jobs directory.
    dir: PathBuf,
}

/// The index of succeeded jobs by fingerprint, for one jobs directory.
pub(crate) struct FinishedIndex {
    jobs_dir: PathBuf,
    /// Loaded on first use; newest last.
    entries: Mutex<Option<HashMap<String, Vec<PathBuf>>>>,
}

impl FinishedIndex {
    pub(crate) fn new(jobs_dir: &Path) -> FinishedIndex {
        FinishedIndex {
            jobs_dir: jobs_dir.to_path_buf(),
            entries: Mutex::new(None),
        }
    }

    /// The jobs directory as job directories name it (canonical), once it
    /// exists, so the index holds paths relative to it.
    fn base(&self) -> PathBuf {
        std::fs::canonicalize(&self.jobs_dir).unwrap_or_else(|_| self.jobs_dir.clone())
    }

    fn file(&self) -> PathBuf {
        self.jobs_dir.join(".kiln").join("finished.jsonl")
    }

    fn with_entries<R>(&self, f: impl FnOnce(&mut HashMap<String, Vec<PathBuf>>) -> R) -> R {
        let mut slot = lock(&self.entries);
        let entries = slot.get_or_insert_with(|| {
            let mut map: HashMap<String, Vec<PathBuf>> = HashMap::new();
            let text = std::fs::read_to_string(self.file()).unwrap_or_default();
            // A line cut short by a host killed mid-write is skipped.
            for line in text.lines() {
                if let Ok(l) = serde_json::from_str::<IndexLine>(line) {
                    map.entry(l.fingerprint).or_default().push(l.dir);
                }
            }
            map
        });
        f(entries)
    }

    /// The newest job that succeeded with this fingerprint and whose record
    /// still says so (directories may have been removed or rewritten
    /// since). Only directories inside the jobs directory qualify, and none
    /// above or below `for_dir`, the directory of the job looking.
    pub(crate) fn find(&self, fingerprint: &str, for_dir: &Path) -> Option<(PathBuf, JobRecord)> {
        let candidates = self.with_entries(|m| m.get(fingerprint).cloned().unwrap_or_default());
        let base = self.base();
        candidates.iter().rev().find_map(|rel| {
            let plain = rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !plain {
                return None;
            }
            let dir = std::fs::canonicalize(base.join(rel)).ok()?;
            if !dir.starts_with(&base) || dir.starts_with(for_dir) || for_dir.starts_with(&dir) {
                return None;
            }
            let record = JobRecord::read(&dir)?;
            (record.succeeded() && record.fingerprint.as_deref() == Some(fingerprint))
                .then_some((dir, record))
        })
    }

    /// Add a job that succeeded.
    pub(crate) fn add(&self, fingerprint: &str, dir: &Path) -> std::io::Result<()> {
        let base = self.base();
        // A job outside the jobs directory is not indexed: `find` would
        // refuse it anyway.
        let Ok(rel) = dir.strip_prefix(&base).map(Path::to_path_buf) else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(&IndexLine {
            fingerprint: fingerprint.to_string(),
            dir: rel.clone(),
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        std::fs::create_dir_all(self.jobs_dir.join(".kiln"))?;
        // One append of a whole line: concurrent hosts on one jobs
        // directory interleave lines, never bytes within a line.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.file())?
            .write_all(&line)?;
        self.with_entries(|m| m.entry(fingerprint.to_string()).or_default().push(rel));
        Ok(())
    }
}

/// Copy the tree at `from` into `to` (which exists and is empty). Files
/// are copied, not linked: a link would let a later write into the new job
/// change the old one, which later runs trust. A symlink is refused (it
/// could point anywhere, or somewhere else from its new place), and so is
/// anything but files and directories. The old job's record is not copied:
/// the new job writes its own.
pub(crate) fn clone_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == RECORD_FILE || name.to_string_lossy().starts_with(".job.json") {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir(&dst)?;
            clone_tree(&src, &dst)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst)?;
        } else {
            return Err(std::io::Error::other(format!(
                "{} is not a plain file or directory",
                src.display()
            )));
        }
    }
    Ok(())
}

/// Empty a directory after a failed clone, so the job runs in a clean one.
pub(crate) fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Take over the outputs of the old job's final `params.xml`: its
/// `outputData`, with file paths inside `old_dir` moved to `new_dir`.
pub(crate) fn take_outputs(
    container: &mut Container,
    old_dir: &Path,
    new_dir: &Path,
) -> Result<(), String> {
    let text = std::fs::read_to_string(old_dir.join("params.xml")).map_err(|e| {
        format!(
            "failed to read {}: {e}",
            old_dir.join("params.xml").display()
        )
    })?;
    let old = Container::from_params_xml(container.clone(), &text)
        .map_err(|e| format!("failed to read the reused job's params.xml: {e}"))?;
    if container.children("outputData").is_err() {
        return Ok(());
    }
    container
        .copy_subtree("outputData", &old, "outputData")
        .map_err(|e| format!("failed to take over the reused job's outputs: {e}"))?;
    for (path, file) in container.files() {
        if !path.starts_with("outputData") {
            continue;
        }
        if let Ok(rest) = Path::new(&file.path).strip_prefix(old_dir) {
            let moved = FileValue {
                path: new_dir.join(rest).display().to_string(),
                ..file
            };
            container
                .set(&path, Value::File(moved))
                .map_err(|e| format!("failed to move output {path}: {e}"))?;
        }
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

    #[test]
    fn same_content_at_another_path_has_the_same_fingerprint() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            tmp.path().join("a.pdb"),
            tmp.path().join("b.pdb"),
            tmp.path().join("c.pdb"),
        );
        std::fs::write(&a, "ATOM 1").unwrap();
        std::fs::write(&b, "ATOM 1").unwrap();
        std::fs::write(&c, "ATOM 2").unwrap();
        let code = serde_json::json!({"component": "abc"});
        let fp = |p: &Path, w| fingerprint("t", "1", &code, &container(p, w), tmp.path());
        assert_eq!(fp(&a, 0.5), fp(&b, 0.5));
        assert_ne!(fp(&a, 0.5), fp(&c, 0.5), "content differs");
        assert_ne!(fp(&a, 0.5), fp(&a, 0.6), "parameter differs");
        assert_ne!(
            fp(&a, 0.5),
            fingerprint("t", "2", &code, &container(&a, 0.5), tmp.path()),
            "version differs"
        );
        assert_ne!(
            fp(&a, 0.5),
            fingerprint(
                "t",
                "1",
                &serde_json::json!({"component": "abd"}),
                &container(&a, 0.5),
                tmp.path()
            ),
            "code differs"
        );
        let missing = tmp.path().join("missing.pdb");
        assert_ne!(fp(&a, 0.5), fp(&missing, 0.5));
        // Outputs are not part of what was asked.
        let mut with_output = container(&a, 0.5);
        with_output
            .set("outputData.XYZOUT", Value::File(FileValue::new("out.pdb")))
            .unwrap();
        assert_eq!(
            fp(&a, 0.5),
            fingerprint("t", "1", &code, &with_output, tmp.path())
        );
    }

    #[test]
    fn the_index_finds_only_jobs_whose_record_still_says_succeeded() {
        let tmp = tempfile::tempdir().unwrap();
        let jobs = tmp.path();
        let dir = jobs.join("job_1").join("job_2");
        std::fs::create_dir_all(&dir).unwrap();
        let record = |status: &str, fp: &str| {
            format!(
                r#"{{"id":"1.2","task":"t","version":"1","state":"{}","status":"{status}","reason":null,
                "fingerprint":"{fp}","created":0,"started":0,"ended":1,"attempts":1,"reused_from":null}}"#,
                if status == "succeeded" {
                    "finished"
                } else {
                    "failed"
                }
            )
        };
        std::fs::write(dir.join(RECORD_FILE), record("succeeded", "abc")).unwrap();
        let jobs = std::fs::canonicalize(jobs).unwrap();
        let jobs = jobs.as_path();
        let dir = std::fs::canonicalize(&dir).unwrap();
        let index = FinishedIndex::new(jobs);
        index.add("abc", &dir).unwrap();
        assert_eq!(index.find("abc", Path::new("/x")).unwrap().0, dir);
        assert!(index.find("abd", Path::new("/x")).is_none());
        assert!(index.find("abc", &dir).is_none(), "never itself");
        assert!(
            index.find("abc", &dir.join("job_1")).is_none(),
            "nor an ancestor"
        );
        assert!(
            index.find("abc", &jobs.join("job_1")).is_none(),
            "nor a descendant"
        );
        // Lines naming places outside the jobs directory are never used.
        std::fs::write(
            jobs.join(".kiln/finished.jsonl"),
            format!("{{\"fingerprint\":\"abc\",\"dir\":\"../x\"}}\n{{\"fingerprint\":\"abc\",\"dir\":{:?}}}\n", dir.display().to_string()),
        )
        .unwrap();
        assert!(
            FinishedIndex::new(jobs)
                .find("abc", Path::new("/x"))
                .is_none()
        );
        index.add("abc", &dir).unwrap();
        // A fresh index reads the file, and skips a line cut short.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(jobs.join(".kiln/finished.jsonl"))
            .unwrap();
        f.write_all(b"{\"fingerprint\":\"ab").unwrap();
        assert!(
            FinishedIndex::new(jobs)
                .find("abc", Path::new("/x"))
                .is_some()
        );
        std::fs::write(dir.join(RECORD_FILE), record("failed", "abc")).unwrap();
        assert!(
            FinishedIndex::new(jobs)
                .find("abc", Path::new("/x"))
                .is_none()
        );
    }

    #[test]
    fn outputs_are_taken_over_with_paths_moved() {
        let tmp = tempfile::tempdir().unwrap();
        let (old, new) = (tmp.path().join("old"), tmp.path().join("new"));
        std::fs::create_dir_all(old.join("sub")).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(old.join("sub/out.pdb"), "ATOM").unwrap();
        std::fs::write(old.join(RECORD_FILE), "{}").unwrap();
        let mut done = container(&old.join("in.pdb"), 0.5);
        done.set(
            "outputData.XYZOUT",
            Value::File(FileValue::new(
                old.join("sub/out.pdb").display().to_string(),
            )),
        )
        .unwrap();
        let header = kiln_container::ParamsHeader::new("t".to_string());
        std::fs::write(old.join("params.xml"), done.to_params_xml(&header)).unwrap();
        clone_tree(&old, &new).unwrap();
        assert!(!new.join(RECORD_FILE).exists());
        // A copy: writing the new one leaves the old one as it was.
        std::fs::write(new.join("sub/out.pdb"), "CHANGED").unwrap();
        assert_eq!(
            std::fs::read_to_string(old.join("sub/out.pdb")).unwrap(),
            "ATOM"
        );
        std::fs::write(new.join("sub/out.pdb"), "ATOM").unwrap();
        let linked = tmp.path().join("linked");
        std::fs::create_dir(&linked).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", old.join("link")).unwrap();
        assert!(clone_tree(&old, &linked).is_err(), "symlinks are refused");
        std::fs::remove_file(old.join("link")).unwrap();
        empty_dir(&linked).unwrap();
        assert_eq!(std::fs::read_dir(&linked).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_to_string(new.join("sub/out.pdb")).unwrap(),
            "ATOM"
        );
        let mut fresh = container(&tmp.path().join("in.pdb"), 0.5);
        take_outputs(&mut fresh, &old, &new).unwrap();
        let Some(Value::File(f)) = fresh.get("outputData.XYZOUT").unwrap() else {
            panic!("no output")
        };
        assert_eq!(Path::new(&f.path), new.join("sub/out.pdb"));
    }
}
