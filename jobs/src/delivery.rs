//! Outputs named on the command line: a job's programs write them in its
//! own directory, and the host copies them to where the user asked once the
//! job has succeeded.
//!
//! Programs are never granted the user's directory for an output: it may
//! hold the jobs directory (other jobs' files and the host's own records)
//! or anything else of the user's, and a program writes a file by making a
//! temporary beside it and renaming, so a grant of the one file would not
//! do. A job that fails leaves nothing at the asked path.

use kiln_container::{Container, FileValue, Value};
use kiln_fs::dir_handle::DirHandle;
use kiln_fs::roots::Roots;
use std::io::Write;
use std::path::PathBuf;

/// The directory of a top-level job its outputs are written in.
pub const STAGING_DIR: &str = "outputs";

/// An output file item and where the user asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The container item, `outputData.XYZOUT`.
    pub item: String,
    /// Absolute, its directory resolved.
    pub to: PathBuf,
}

/// Copy each delivery's file (the item's value at the job's end, read
/// through the job's roots) to where it was asked for, and set the item to
/// that path. The first failure is returned, naming the item.
pub fn deliver(
    deliveries: &[Delivery],
    container: &mut Container,
    roots: &Roots,
) -> Result<(), String> {
    for d in deliveries {
        let Ok(Some(Value::File(file))) = container.get(&d.item) else {
            return Err(format!("output {} was unset by the task", d.item));
        };
        let source = roots.open_file(&file.path).map_err(|e| {
            format!(
                "output {}: the task left no file at {} ({e})",
                d.item, file.path
            )
        })?;
        copy_to(source, &d.to)
            .map_err(|e| format!("output {}: cannot write {}: {e}", d.item, d.to.display()))?;
        container
            .set(
                &d.item,
                Value::File(FileValue {
                    path: d.to.display().to_string(),
                    ..file
                }),
            )
            .map_err(|e| format!("output {}: {e}", d.item))?;
    }
    Ok(())
}

/// Write `source` to `to` whole: a temporary beside it, synced, then
/// renamed over it.
fn copy_to(mut source: std::fs::File, to: &std::path::Path) -> std::io::Result<()> {
    let (Some(parent), Some(name)) = (to.parent(), to.file_name().and_then(|n| n.to_str())) else {
        return Err(std::io::Error::other("the path names no file"));
    };
    let dir = DirHandle::open(parent)?;
    let tmp = format!(".{name}.kiln-tmp");
    let _ = dir.remove_file(&tmp);
    let mut out = dir.create_new(&tmp)?;
    let copied = std::io::copy(&mut source, &mut out)
        .and_then(|_| out.flush())
        .and_then(|()| out.sync_all());
    if let Err(e) = copied.and_then(|()| dir.rename(&tmp, &dir, name)) {
        let _ = dir.remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const DEF: &str = r#"<ccp4i2><ccp4i2_header><pluginName>t</pluginName></ccp4i2_header>
<ccp4i2_body>
  <container id="outputData">
    <content id="XYZOUT"><className>CPdbDataFile</className></content>
  </container>
</ccp4i2_body></ccp4i2>"#;

    #[test]
    fn an_output_is_copied_where_asked_and_the_item_follows_it() {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir(base.join("job")).unwrap();
        std::fs::write(base.join("job/out.pdb"), b"ATOM 1").unwrap();
        let roots = Roots::new(
            kiln_fs::dir_handle::ReleasableDir::held(Arc::new(
                DirHandle::open(&base.join("job")).unwrap(),
            )),
            None,
            None,
            &[],
            &[],
        );
        let mut c = Container::from_def_xml(DEF).unwrap();
        let staged = FileValue {
            path: base.join("job/out.pdb").display().to_string(),
            file_type: String::new(),
            annotation: String::new(),
        };
        c.set("outputData.XYZOUT", Value::File(staged)).unwrap();
        let asked = vec![Delivery {
            item: "outputData.XYZOUT".into(),
            to: base.join("asked.pdb"),
        }];
        deliver(&asked, &mut c, &roots).unwrap();
        assert_eq!(std::fs::read(base.join("asked.pdb")).unwrap(), b"ATOM 1");
        let Ok(Some(Value::File(f))) = c.get("outputData.XYZOUT") else {
            panic!("no file value")
        };
        assert_eq!(f.path, base.join("asked.pdb").display().to_string());

        // A link left in place of the output is not followed.
        std::fs::remove_file(base.join("job/out.pdb")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", base.join("job/out.pdb")).unwrap();
        let staged = FileValue {
            path: base.join("job/out.pdb").display().to_string(),
            file_type: String::new(),
            annotation: String::new(),
        };
        c.set("outputData.XYZOUT", Value::File(staged)).unwrap();
        let e = deliver(&asked, &mut c, &roots).unwrap_err();
        assert!(e.contains("left no file"), "{e}");
        assert_eq!(std::fs::read(base.join("asked.pdb")).unwrap(), b"ATOM 1");
    }
}
