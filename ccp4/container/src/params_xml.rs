//! CCP4i2 PARAMS files (params.xml): the values a job was run with.
//!
//! The layout is what CCP4i2 writes and reads back:
//!
//! ```xml
//! <?xml version='1.0' encoding='UTF-8'?>
//! <ccp4:ccp4i2 xmlns:ccp4="http://www.ccp4.ac.uk/ccp4ns">
//!   <ccp4i2_header>
//!     <function>PARAMS</function>
//!     <pluginName>pdbset</pluginName> ...
//!   </ccp4i2_header>
//!   <ccp4i2_body>
//!     <inputData>
//!       <XYZIN><project/><baseName>in.pdb</baseName><relPath>/data</relPath></XYZIN>
//!       <CELL><a>64.897</a> ... </CELL>
//!     </inputData> ...
//!   </ccp4i2_body>
//! </ccp4:ccp4i2>
//! ```
//!
//! Only explicitly set values are written, as CCP4i2 does (`excludeUnset`).
//! `inputData`, `outputData` and `controlParameters` are always present,
//! because older CCP4i2 code expects them. List items are elements named by
//! the item class (`<CPdbDataFile>`). A file is split into `baseName` (the
//! file name) and `relPath` (its directory, absolute for host paths), with
//! an empty `project`: CCP4i2 then joins the two into the full path.
//!
//! Reading overlays values onto a container built from the same definition.
//! Unknown elements are skipped, as CCP4i2 skips them (definitions change
//! between versions); a value that does not parse is an error naming its
//! path.

use crate::error::{ContainerError, ParamsError};
use crate::model::{Data, FileState, GenericValue, Node, ScalarKind, Value, format_float};
use crate::path::join;
use crate::xml::{self, Elem, Writer};

/// The CCP4 XML namespace.
const NAMESPACE: &str = "http://www.ccp4.ac.uk/ccp4ns";

/// Containers written even when empty.
const ALWAYS_WRITTEN: &[&str] = &["inputData", "outputData", "controlParameters"];

/// The header of a PARAMS file. `None` fields are left out; `Some("")` is
/// written as an empty element, as CCP4i2 writes unknown values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamsHeader {
    /// Task name (`pluginName`), e.g. `pdbset`.
    pub plugin_name: String,
    /// Task title shown to users (`pluginTitle`).
    pub plugin_title: Option<String>,
    /// Job id (`jobId`), a database id in CCP4i2.
    pub job_id: Option<String>,
    /// Job number (`jobNumber`), e.g. `12` or `12.1` for a sub-job.
    pub job_number: Option<String>,
    /// Project name (`projectName`).
    pub project_name: Option<String>,
    /// Project id (`projectId`).
    pub project_id: Option<String>,
    /// User who ran the job (`userId`).
    pub user_id: Option<String>,
    /// Host the job ran on (`hostName`).
    pub host_name: Option<String>,
    /// `HH:MM DD/Mon/YY`, see [`ParamsHeader::creation_time_utc`].
    pub creation_time: Option<String>,
    /// Free-text comment.
    pub comment: Option<String>,
    /// Version of the program that wrote the file (`ccp4iVersion`).
    pub ccp4i_version: Option<String>,
}

impl ParamsHeader {
    /// A header for task `plugin_name` with nothing else filled in.
    pub fn new(plugin_name: impl Into<String>) -> ParamsHeader {
        ParamsHeader {
            plugin_name: plugin_name.into(),
            ..ParamsHeader::default()
        }
    }

    /// Fields in CCP4i2's order, with their element names.
    fn fields(&self) -> [(&'static str, Option<&str>); 11] {
        [
            ("comment", self.comment.as_deref()),
            ("projectName", self.project_name.as_deref()),
            ("hostName", self.host_name.as_deref()),
            ("userId", self.user_id.as_deref()),
            ("jobId", self.job_id.as_deref()),
            ("pluginName", Some(self.plugin_name.as_str())),
            ("projectId", self.project_id.as_deref()),
            ("creationTime", self.creation_time.as_deref()),
            ("pluginTitle", self.plugin_title.as_deref()),
            ("jobNumber", self.job_number.as_deref()),
            ("ccp4iVersion", self.ccp4i_version.as_deref()),
        ]
    }

    /// Read the header of a PARAMS file (missing elements stay `None`).
    pub fn from_params_xml(text: &str) -> Result<ParamsHeader, ParamsError> {
        let root = xml::parse(text)?;
        let mut h = ParamsHeader::default();
        let Some(head) = root.child("ccp4i2_header") else {
            return Ok(h);
        };
        // Header values are leaves written verbatim; they are read the same
        // way so a header survives a round trip.
        for c in &head.children {
            let v = Some(c.text.clone());
            match c.name.as_str() {
                "pluginName" => h.plugin_name = c.text.clone(),
                "pluginTitle" => h.plugin_title = v,
                "jobId" => h.job_id = v,
                "jobNumber" => h.job_number = v,
                "projectName" => h.project_name = v,
                "projectId" => h.project_id = v,
                "userId" => h.user_id = v,
                "hostName" => h.host_name = v,
                "creationTime" => h.creation_time = v,
                "comment" => h.comment = v,
                "ccp4iVersion" => h.ccp4i_version = v,
                _ => {}
            }
        }
        Ok(h)
    }

    /// The header's fields that are present, as (element name, value)
    /// pairs in CCP4i2's order, for display.
    pub fn present_fields(&self) -> Vec<(&'static str, String)> {
        self.fields()
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v.to_string())))
            .collect()
    }

    /// Format a Unix time (seconds, UTC) the way CCP4i2 writes
    /// `creationTime`: `18:31 23/Apr/14`.
    pub fn creation_time_utc(unix_secs: i64) -> String {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let days = unix_secs.div_euclid(86_400);
        let secs = unix_secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{:02}:{:02} {:02}/{}/{:02}",
            secs / 3600,
            secs % 3600 / 60,
            d,
            MONTHS[(m - 1).clamp(0, 11) as usize],
            y.rem_euclid(100)
        )
    }
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic
/// Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Join CCP4i2's `relPath` and `baseName` into one path. A `baseName` that
/// is already absolute (CCP4i2 writes those outside a project database)
/// stands alone.
pub(crate) fn join_file_path(rel: &str, base: &str) -> String {
    if rel.is_empty() || base.starts_with('/') {
        base.to_string()
    } else if rel.ends_with('/') {
        format!("{rel}{base}")
    } else {
        format!("{rel}/{base}")
    }
}

/// Split a path into (`relPath`, `baseName`) at the last `/`.
pub(crate) fn split_file_path(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) if i + 1 < path.len() => (&path[..i], &path[i + 1..]),
        // A trailing slash names a directory: keep the path whole.
        _ => ("", path),
    }
}

/// Write the tree below `root` as a PARAMS file.
pub(crate) fn write(root: &Node, header: &ParamsHeader) -> String {
    let mut w = Writer::new();
    w.open("ccp4:ccp4i2", &[("xmlns:ccp4", NAMESPACE)]);
    w.open("ccp4i2_header", &[]);
    w.leaf("function", "PARAMS");
    for (name, value) in header.fields() {
        if let Some(v) = value {
            w.leaf(name, v);
        }
    }
    w.close("ccp4i2_header");
    w.open("ccp4i2_body", &[]);
    for child in root.kids() {
        if matches!(child.data, Data::Container(_)) && ALWAYS_WRITTEN.contains(&child.name.as_str())
        {
            if child.is_set() {
                write_node(&mut w, &child.name, child);
            } else {
                w.leaf(&child.name, "");
            }
        } else if child.is_set() {
            write_node(&mut w, &child.name, child);
        }
    }
    w.close("ccp4i2_body");
    w.close("ccp4:ccp4i2");
    w.finish()
}

/// Write one set node as element `tag` (its name, or its class for list
/// items).
fn write_node(w: &mut Writer, tag: &str, node: &Node) {
    match &node.data {
        Data::Container(kids) | Data::Composite(kids) => {
            w.open(tag, &[]);
            for k in kids.iter().filter(|k| k.is_set()) {
                write_node(w, &k.name, k);
            }
            w.close(tag);
        }
        Data::Scalar { value, .. } => {
            let text = match value {
                Some(Value::Float(f)) => format_float(*f),
                Some(v) => v.to_text(),
                None => String::new(),
            };
            w.leaf(tag, &text);
        }
        Data::File { value, .. } => match value {
            Some(f) => write_file(w, tag, f),
            None => w.leaf(tag, ""),
        },
        Data::List { items, .. } => {
            w.open(tag, &[]);
            // Every item is written, set or not: being in the list is
            // what the user chose (CCP4i2 does the same).
            for item in items {
                write_node(w, &item.class_name, item);
            }
            w.close(tag);
        }
        Data::Generic { value, .. } => match value {
            Some(GenericValue::Text(t)) => w.leaf(tag, t),
            Some(GenericValue::Raw(children)) => {
                w.open(tag, &[]);
                for c in children {
                    w.elem_as(&c.name, c);
                }
                w.close(tag);
            }
            None => w.leaf(tag, ""),
        },
    }
}

fn write_file(w: &mut Writer, tag: &str, f: &FileState) {
    w.open(tag, &[]);
    // With a project the path is relative to it; either way CCP4i2 wants
    // the directory and the file name apart.
    let (rel, base) = split_file_path(&f.path);
    w.leaf("project", &f.project);
    w.leaf("baseName", base);
    if !rel.is_empty() {
        w.leaf("relPath", rel);
    }
    if !f.annotation.is_empty() {
        w.leaf("annotation", &f.annotation);
    }
    for a in &f.attrs {
        w.elem_as(&a.name, a);
    }
    w.close(tag);
}

/// Read the body of a PARAMS file onto `root`, returning the paths of
/// elements that match no item.
pub(crate) fn read(root: &mut Node, text: &str) -> Result<Vec<String>, ParamsError> {
    let doc = xml::parse(text)?;
    let mut body = doc
        .child("ccp4i2_body")
        .or_else(|| doc.child("body"))
        .ok_or(ParamsError::NoBody)?;
    // Old files wrap the body's items in one more <container>.
    if let Some(inner) = body.child("container")
        && inner.id().is_none()
    {
        body = inner;
    }
    let mut ignored = Vec::new();
    read_children(root, body, "", &mut ignored)?;
    Ok(ignored)
}

fn read_children(
    node: &mut Node,
    elem: &Elem,
    path: &str,
    ignored: &mut Vec<String>,
) -> Result<(), ParamsError> {
    for c in &elem.children {
        let p = join(path, &c.name);
        let target = match &mut node.data {
            Data::Container(kids) | Data::Composite(kids) => {
                kids.iter_mut().find(|k| k.name == c.name)
            }
            _ => None,
        };
        match target {
            Some(k) => read_node(k, c, &p, ignored)?,
            None => ignored.push(p),
        }
    }
    Ok(())
}

fn read_node(
    node: &mut Node,
    elem: &Elem,
    path: &str,
    ignored: &mut Vec<String>,
) -> Result<(), ParamsError> {
    let class = node.class_name.clone();
    let structured = |what: &str| {
        ParamsError::Value(ContainerError::BadValue {
            path: path.to_string(),
            class: class.clone(),
            reason: format!(
                "expected {what}, found element <{}>",
                elem.children.first().map_or("", |c| c.name.as_str())
            ),
        })
    };
    match &mut node.data {
        Data::Container(_) | Data::Composite(_) => read_children(node, elem, path, ignored)?,
        Data::Scalar { kind, value, .. } => {
            if !elem.children.is_empty() {
                return Err(structured(kind.expected()));
            }
            // An empty element is an unset value, as in CCP4i2.
            let raw = elem.text.as_str();
            let empty = match kind {
                ScalarKind::Text => raw.is_empty(),
                _ => raw.trim().is_empty(),
            };
            if !empty {
                let v = kind.parse(raw, false).ok_or_else(|| {
                    ParamsError::Value(ContainerError::BadText {
                        path: path.to_string(),
                        class: class.clone(),
                        expected: kind.expected().to_string(),
                        text: raw.to_string(),
                    })
                })?;
                *value = Some(v);
            }
        }
        Data::File { default, value } => {
            let mut state = FileState {
                path: String::new(),
                annotation: String::new(),
                project: String::new(),
                attrs: default.attrs.clone(),
            };
            let mut base = "";
            let mut rel = "";
            if elem.children.is_empty() {
                // Not CCP4i2's layout, but unambiguous: the text is the path.
                base = elem.text.trim();
            }
            for c in &elem.children {
                match c.name.as_str() {
                    "baseName" => base = c.text.trim(),
                    "relPath" => rel = c.text.trim(),
                    "project" => state.project = c.text.trim().to_string(),
                    "annotation" => state.annotation = c.text.clone(),
                    _ => match state.attrs.iter_mut().find(|a| a.name == c.name) {
                        Some(a) => *a = c.clone(),
                        None => state.attrs.push(c.clone()),
                    },
                }
            }
            // No file name: CCP4i2 does not count the file as set.
            if !base.is_empty() {
                state.path = join_file_path(rel, base);
                *value = Some(state);
            }
        }
        Data::List { template, items } => {
            items.clear();
            for (i, c) in elem.children.iter().enumerate() {
                let mut item = (**template).clone();
                item.name = i.to_string();
                let item_path = join(path, &item.name);
                read_node(&mut item, c, &item_path, ignored)?;
                items.push(item);
            }
        }
        Data::Generic { value, .. } => {
            if elem.children.is_empty() {
                if !elem.text.is_empty() {
                    *value = Some(GenericValue::Text(elem.text.clone()));
                }
            } else {
                *value = Some(GenericValue::Raw(elem.children.clone()));
            }
        }
    }
    Ok(())
}

/// Every value in a PARAMS file as (dotted path, text), without knowing the
/// task's definition: for showing a file from any source. Files appear as
/// their elements (`HKLIN.baseName`, `HKLIN.relPath`, ...).
pub fn values(text: &str) -> Result<Vec<(String, String)>, ParamsError> {
    let root = xml::parse(text)?;
    let body = root
        .child("ccp4i2_body")
        .or_else(|| root.child("body"))
        .ok_or(ParamsError::NoBody)?;
    let mut out = Vec::new();
    fn walk(e: &xml::Elem, prefix: &str, out: &mut Vec<(String, String)>) {
        for c in &e.children {
            let path = if prefix.is_empty() {
                c.name.clone()
            } else {
                format!("{prefix}.{}", c.name)
            };
            if c.children.is_empty() {
                if !c.text.trim().is_empty() {
                    out.push((path, c.text.trim().to_string()));
                }
            } else {
                walk(c, &path, out);
            }
        }
    }
    walk(body, "", &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths() {
        assert_eq!(split_file_path("/data/x.mtz"), ("/data", "x.mtz"));
        assert_eq!(split_file_path("/x.mtz"), ("/", "x.mtz"));
        assert_eq!(split_file_path("x.mtz"), ("", "x.mtz"));
        assert_eq!(split_file_path("a/b/x.mtz"), ("a/b", "x.mtz"));
        assert_eq!(split_file_path("dir/"), ("", "dir/"));
        for p in ["/data/x.mtz", "/x.mtz", "x.mtz", "a/b/x.mtz", "dir/"] {
            let (r, b) = split_file_path(p);
            assert_eq!(join_file_path(r, b), p);
        }
        assert_eq!(join_file_path("/ignored", "/abs/x.pdb"), "/abs/x.pdb");
    }

    #[test]
    fn creation_time() {
        // 2014-04-23 18:31:00 UTC
        assert_eq!(
            ParamsHeader::creation_time_utc(1_398_277_860),
            "18:31 23/Apr/14"
        );
        assert_eq!(ParamsHeader::creation_time_utc(0), "00:00 01/Jan/70");
        assert_eq!(
            ParamsHeader::creation_time_utc(951_782_400),
            "00:00 29/Feb/00"
        );
        assert_eq!(ParamsHeader::creation_time_utc(-1), "23:59 31/Dec/69");
    }
}
