//! [`Container`]: one job's typed data tree and everything done to it.

use crate::classes::file_type_fits;
use crate::def_xml::{self, Resolver};
use crate::error::{ContainerError, DefError, ParamsError};
use crate::json;
use crate::model::{Data, FileState, FileValue, GenericValue, Node, Qualifiers, ScalarKind, Value};
use crate::params_xml::{self, ParamsHeader};
use crate::path::{self, Seg, join};
use crate::validate::{self, Report};
use crate::xml::{self, unrepresentable_char};
use std::path::{Component, Path, PathBuf};

/// A job's container (CCP4i2's `CContainer`): a tree of typed items built
/// from a task definition, holding the values a job runs with.
///
/// The root stands for `ccp4i2_body`; its children are the definition's
/// top-level containers (`inputData`, `outputData`, `controlParameters`,
/// `guiAdmin` ...). Items are addressed by dotted path
/// (`inputData.CELL.a`; list items by index, `LIST.0` or `LIST[0]`; `""` is
/// the root). Each leaf keeps an explicitly set value apart from its
/// definition default.
#[derive(Clone, Debug, PartialEq)]
pub struct Container {
    name: String,
    plugin_name: Option<String>,
    root: Node,
    warnings: Vec<String>,
}

impl Container {
    /// Build a container from def.xml text. A definition that includes a
    /// parent with `<file>` fails with
    /// [`DefError::IncludeNotResolved`] (`include not resolved: <path>`):
    /// use [`Container::from_def_xml_with_includes`] for those.
    pub fn from_def_xml(text: &str) -> Result<Container, DefError> {
        Self::from_parsed(def_xml::parse(text, None)?)
    }

    /// Build a container from def.xml text, loading `<file>` includes
    /// through `resolver`, which is given `relPath/baseName` (relative to
    /// the CCP4i2 installation) and returns the included definition's text.
    /// See [`dir_resolver`] for one that reads a CCP4i2 tree on disk.
    pub fn from_def_xml_with_includes(
        text: &str,
        resolver: Resolver<'_>,
    ) -> Result<Container, DefError> {
        Self::from_parsed(def_xml::parse(text, Some(resolver))?)
    }

    fn from_parsed(p: def_xml::Parsed) -> Result<Container, DefError> {
        Ok(Container {
            name: p.name,
            plugin_name: p.plugin_name,
            root: p.root,
            warnings: p.warnings,
        })
    }

    /// The definition's name: the `ccp4i2_body` id, else the plugin name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `pluginName` from the definition's header.
    pub fn plugin_name(&self) -> Option<&str> {
        self.plugin_name.as_deref()
    }

    /// Things in the definition that were stepped over or guessed at
    /// (unknown classes, items without a class, redefinitions, a word such
    /// as `Auto` as a number's default ...). CCP4i2 accepts such
    /// definitions, so they are not errors. Each names the item's path.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Canonical path and tree positions of `path`.
    fn locate(&self, path: &str) -> Result<(String, Vec<usize>), ContainerError> {
        let segs = path::parse(path)?;
        let pos = path::locate(&self.root, path, &segs)?;
        Ok((path::render(&segs), pos))
    }

    fn node(&self, path: &str) -> Result<(String, &Node), ContainerError> {
        let (canon, pos) = self.locate(path)?;
        let node = path::at(&self.root, &pos).ok_or_else(|| lost(path))?;
        Ok((canon, node))
    }

    fn node_mut(&mut self, path: &str) -> Result<(String, &mut Node), ContainerError> {
        let (canon, pos) = self.locate(path)?;
        let node = path::at_mut(&mut self.root, &pos).ok_or_else(|| lost(path))?;
        Ok((canon, node))
    }

    /// The value of leaf `path`: explicitly set, else the definition's
    /// default, else `None`. Containers, cells and lists have no single
    /// value and give [`ContainerError::NotALeaf`].
    pub fn get(&self, path: &str) -> Result<Option<Value>, ContainerError> {
        let (canon, node) = self.node(path)?;
        if !node.is_leaf() {
            return Err(not_a_leaf(&canon, node));
        }
        Ok(node.effective())
    }

    /// Set leaf `path` explicitly. Values are checked against the class:
    /// an `Int` goes into a float item, `Text` is parsed for numbers and
    /// booleans and taken as the path for a file; anything else of the
    /// wrong type is an error naming the path, class and value. A file's
    /// `file_type` may be empty (the item's own is used) or must fit the
    /// item's class; an empty file path or an empty text unsets a file.
    /// Range and enumerator qualifiers are checked by [`Container::validate`],
    /// not here.
    pub fn set(&mut self, path: &str, value: Value) -> Result<(), ContainerError> {
        let (canon, node) = self.node_mut(path)?;
        assign(node, &canon, value)
    }

    /// Set an item from command-line text (`--param NAME=VALUE`) and return
    /// its dotted path. `name_or_path` is resolved by
    /// [`Container::resolve`]. For a file the text is its path; for a
    /// `CCell` it is six numbers, `a b c alpha beta gamma` (spaces or
    /// commas).
    pub fn set_from_str(
        &mut self,
        name_or_path: &str,
        text: &str,
    ) -> Result<String, ContainerError> {
        let resolved = self.resolve(name_or_path)?;
        let (canon, node) = self.node_mut(&resolved)?;
        if node.class_name == "CCell"
            && let Data::Composite(parts) = &mut node.data
        {
            let numbers = parse_cell(text).ok_or_else(|| ContainerError::BadText {
                path: canon.clone(),
                class: "CCell".to_string(),
                expected: "six numbers: a b c alpha beta gamma".to_string(),
                text: text.to_string(),
            })?;
            for (part, x) in parts.iter_mut().zip(numbers) {
                let p = join(&canon, &part.name);
                assign(part, &p, Value::Float(x))?;
            }
            return Ok(canon);
        }
        assign(node, &canon, Value::Text(text.to_string()))?;
        Ok(canon)
    }

    /// Turn a bare name or a dotted path into the path of one item. A full
    /// path is taken as it is. Otherwise the name (or the dotted tail of a
    /// path, like `CELL.a`) is looked for anywhere below the root, as
    /// CCP4i2's command templates find `$NAME`; exactly one item must match.
    pub fn resolve(&self, name_or_path: &str) -> Result<String, ContainerError> {
        let segs = path::parse(name_or_path)?;
        if segs.is_empty() {
            return Err(ContainerError::InvalidPath {
                path: String::new(),
                reason: "an item name is needed".to_string(),
            });
        }
        if path::locate(&self.root, name_or_path, &segs).is_ok() {
            return Ok(path::render(&segs));
        }
        let mut found = self.find_segs(&segs);
        match found.len() {
            0 => Err(ContainerError::UnknownName {
                name: name_or_path.to_string(),
            }),
            1 => Ok(found.remove(0)),
            _ => Err(ContainerError::Ambiguous {
                name: name_or_path.to_string(),
                candidates: found,
            }),
        }
    }

    /// Dotted paths of every item called `name`, in definition order (as
    /// CCP4i2's command templates find `$NAME`). A dotted `name` matches
    /// paths ending in it. List items, being unnamed, match only through
    /// a path that names their list.
    pub fn find(&self, name: &str) -> Vec<String> {
        match path::parse(name) {
            Ok(segs) if !segs.is_empty() => self.find_segs(&segs),
            _ => Vec::new(),
        }
    }

    fn find_segs(&self, tail: &[Seg]) -> Vec<String> {
        // An index on its own would match every list's items.
        if !matches!(tail.first(), Some(Seg::Name(_))) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut cur = Vec::new();
        walk_segs(&self.root, &mut cur, &mut |segs| {
            if segs.ends_with(tail) {
                out.push(path::render(segs));
            }
        });
        out
    }

    /// Whether anything at or below `path` was explicitly set (a default
    /// does not count; nor does an empty string or file path; a list
    /// counts once it has an item).
    pub fn is_set(&self, path: &str) -> Result<bool, ContainerError> {
        Ok(self.node(path)?.1.is_set())
    }

    /// Forget the explicit values at and below `path`; defaults apply
    /// again and lists become empty.
    pub fn unset(&mut self, path: &str) -> Result<(), ContainerError> {
        self.node_mut(path)?.1.clear();
        Ok(())
    }

    /// Names of the items directly below `path` (`""` for the root), in
    /// definition order; list items are `"0"`, `"1"` ... A leaf has none.
    pub fn children(&self, path: &str) -> Result<Vec<String>, ContainerError> {
        Ok(self
            .node(path)?
            .1
            .kids()
            .iter()
            .map(|k| k.name.clone())
            .collect())
    }

    /// CCP4i2 class name of the item at `path` (`CContainer` for the root
    /// and containers; a list item has its `<subItem>` class).
    pub fn class_name(&self, path: &str) -> Result<String, ContainerError> {
        Ok(self.node(path)?.1.class_name.clone())
    }

    /// Qualifiers of the item at `path`, as its definition gives them
    /// (merged over the class's own for cell lengths and angles).
    pub fn qualifiers(&self, path: &str) -> Result<&Qualifiers, ContainerError> {
        Ok(&self.node(path)?.1.qualifiers)
    }

    /// Append a new, unset item to list `path` and return the item's path.
    pub fn push_item(&mut self, path: &str) -> Result<String, ContainerError> {
        let (canon, node) = self.node_mut(path)?;
        match &mut node.data {
            Data::List { template, items } => {
                let mut item = (**template).clone();
                item.name = items.len().to_string();
                let p = join(&canon, &item.name);
                items.push(item);
                Ok(p)
            }
            _ => Err(ContainerError::NotAList {
                path: canon,
                class: node.class_name.clone(),
            }),
        }
    }

    /// Copy the values of `src`'s item `src_path` into this container's
    /// item `dst` (e.g. one job's `outputData.CELL` into the next job's
    /// `inputData.CELL`). Leaves take the source's effective value (set or
    /// default) as explicitly set, or become unset when it has none;
    /// containers and composites copy the children both sides have; lists
    /// are replaced item by item. Classes must fit: the same composite
    /// class, related file classes, scalars that [`Container::set`] would
    /// accept. On error nothing is changed. File paths are copied as they
    /// are, so they should be absolute when the two containers belong to
    /// different job directories.
    pub fn copy_subtree(
        &mut self,
        dst: &str,
        src: &Container,
        src_path: &str,
    ) -> Result<(), ContainerError> {
        let (src_canon, src_node) = src.node(src_path)?;
        let (dst_canon, pos) = self.locate(dst)?;
        let current = path::at(&self.root, &pos).ok_or_else(|| lost(dst))?;
        let mut updated = current.clone();
        copy_into(&mut updated, &dst_canon, src_node, &src_canon)?;
        let slot = path::at_mut(&mut self.root, &pos).ok_or_else(|| lost(dst))?;
        *slot = updated;
        Ok(())
    }

    /// Every file item with a value (set or default), by path, in
    /// definition order, list items included.
    pub fn files(&self) -> Vec<(String, FileValue)> {
        let mut out = Vec::new();
        let mut cur = Vec::new();
        walk_nodes(&self.root, &mut cur, &mut |segs, node| {
            if let (Data::File { .. }, Some(Value::File(f))) = (&node.data, node.effective()) {
                out.push((path::render(segs), f));
            }
        });
        out
    }

    /// Check every item against its qualifiers (see [`crate::validate`]
    /// for the codes). Does not look at the file system: `mustExist` is
    /// checked by [`Container::validate_files`].
    pub fn validate(&self) -> Vec<Report> {
        validate::validate(&self.root, None)
    }

    /// [`Container::validate`], plus `mustExist` for files, asking `exists`
    /// whether a file is there (the caller knows the job directory and
    /// what the job may see).
    pub fn validate_files(&self, exists: &dyn Fn(&FileValue) -> bool) -> Vec<Report> {
        validate::validate(&self.root, Some(exists))
    }

    /// The explicitly set values as a CCP4i2 PARAMS file (see
    /// [`crate::params_xml`] for the layout).
    pub fn to_params_xml(&self, header: &ParamsHeader) -> String {
        params_xml::write(&self.root, header)
    }

    /// Read a PARAMS file's values into `def`, a container built from the
    /// same task's definition. Elements that match no item are skipped;
    /// see [`Container::read_params_xml`] to learn which.
    pub fn from_params_xml(def: Container, text: &str) -> Result<Container, ParamsError> {
        let mut c = def;
        c.read_params_xml(text)?;
        Ok(c)
    }

    /// Overlay a PARAMS file's values onto this container and return the
    /// paths of elements that match no item. Lists in the file replace the
    /// container's. On error the container is unchanged.
    pub fn read_params_xml(&mut self, text: &str) -> Result<Vec<String>, ParamsError> {
        let mut root = self.root.clone();
        let ignored = params_xml::read(&mut root, text)?;
        self.root = root;
        Ok(ignored)
    }

    /// All values as JSON: containers and composites are objects, lists
    /// arrays, leaves their effective value (set, else default) or `null`;
    /// a file is `{"path", "file_type", "annotation"}`; structured values
    /// of unknown classes are objects of their elements' text.
    pub fn to_json(&self) -> serde_json::Value {
        json::node_json(&self.root)
    }

    /// Every item a person may set, as a form's fields, in definition order.
    pub fn form(&self) -> Vec<crate::form::FormField> {
        crate::form::fields(&self.root)
    }

    /// The values at and below `path` as JSON.
    pub fn subtree_json(&self, path: &str) -> Result<serde_json::Value, ContainerError> {
        Ok(json::node_json(self.node(path)?.1))
    }
}

/// Error for positions that `locate` found but the tree no longer has;
/// they come from the same tree within one call, so this is only a guard.
fn lost(path: &str) -> ContainerError {
    ContainerError::NoSuchItem {
        path: path.to_string(),
        reason: "the item moved while it was being looked up".to_string(),
    }
}

fn not_a_leaf(path: &str, node: &Node) -> ContainerError {
    ContainerError::NotALeaf {
        path: path.to_string(),
        class: node.class_name.clone(),
    }
}

/// Visit every node below `node` with its path.
fn walk_nodes(node: &Node, cur: &mut Vec<Seg>, f: &mut dyn FnMut(&[Seg], &Node)) {
    let is_list = matches!(node.data, Data::List { .. });
    for (i, k) in node.kids().iter().enumerate() {
        cur.push(if is_list {
            Seg::Index(i)
        } else {
            Seg::Name(k.name.clone())
        });
        f(cur, k);
        walk_nodes(k, cur, f);
        cur.pop();
    }
}

fn walk_segs(node: &Node, cur: &mut Vec<Seg>, f: &mut dyn FnMut(&[Seg])) {
    walk_nodes(node, cur, &mut |segs, _| f(segs));
}

/// Six finite numbers separated by white space or commas.
fn parse_cell(text: &str) -> Option<[f64; 6]> {
    let nums: Vec<f64> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<f64>().ok().filter(|f| f.is_finite()))
        .collect::<Option<_>>()?;
    nums.try_into().ok()
}

/// Refuse text XML cannot carry: every value must survive params.xml.
fn check_representable(path: &str, class: &str, what: &str, s: &str) -> Result<(), ContainerError> {
    match unrepresentable_char(s) {
        None => Ok(()),
        Some(c) => Err(ContainerError::BadValue {
            path: path.to_string(),
            class: class.to_string(),
            reason: format!(
                "{what} contains {c:?} (U+{:04X}), which params.xml cannot hold",
                u32::from(c)
            ),
        }),
    }
}

/// Store `value` as the explicit value of leaf `node`.
fn assign(node: &mut Node, path: &str, value: Value) -> Result<(), ContainerError> {
    let class = node.class_name.clone();
    let mismatch = |expected: &str, got: &Value| ContainerError::TypeMismatch {
        path: path.to_string(),
        class: class.clone(),
        expected: expected.to_string(),
        got: got.describe(),
    };
    match &value {
        Value::Text(t) => check_representable(path, &class, "the text", t)?,
        Value::File(f) => {
            check_representable(path, &class, "the file path", &f.path)?;
            check_representable(path, &class, "the annotation", &f.annotation)?;
        }
        _ => {}
    }
    let mime = node.mime_type();
    match &mut node.data {
        Data::Scalar {
            kind, value: slot, ..
        } => {
            let kind = *kind;
            let v = match (kind, value) {
                (ScalarKind::Int, v @ Value::Int(_))
                | (ScalarKind::Text, v @ Value::Text(_))
                | (ScalarKind::Bool, v @ Value::Bool(_)) => v,
                (ScalarKind::Float, Value::Float(f)) => {
                    if !f.is_finite() {
                        return Err(ContainerError::BadValue {
                            path: path.to_string(),
                            class,
                            reason: format!("{f} is not a finite number"),
                        });
                    }
                    Value::Float(f)
                }
                (ScalarKind::Float, Value::Int(i)) => Value::Float(i as f64),
                (k, Value::Text(t)) => {
                    k.parse(&t, false).ok_or_else(|| ContainerError::BadText {
                        path: path.to_string(),
                        class: class.clone(),
                        expected: k.expected().to_string(),
                        text: t.clone(),
                    })?
                }
                (k, other) => return Err(mismatch(k.expected(), &other)),
            };
            *slot = Some(v);
        }
        Data::File {
            default,
            value: slot,
        } => {
            let (file_path, annotation, given_type) = match value {
                Value::File(f) => (f.path, f.annotation, f.file_type),
                Value::Text(t) => (t, String::new(), String::new()),
                other => return Err(mismatch("a file path", &other)),
            };
            if !(given_type == mime || file_type_fits(&class, &given_type)) {
                return Err(ContainerError::BadValue {
                    path: path.to_string(),
                    class,
                    reason: format!(
                        "a file of type {given_type:?} does not fit ({mime:?} expected)"
                    ),
                });
            }
            *slot = if file_path.is_empty() {
                None
            } else {
                Some(FileState {
                    path: file_path,
                    annotation,
                    project: String::new(),
                    attrs: default.attrs.clone(),
                })
            };
        }
        // The class is unknown, so any plain value is kept as its text.
        Data::Generic { value: slot, .. } => {
            let text = match value {
                Value::File(_) => return Err(mismatch("a value (not a file)", &value)),
                Value::Text(t) => t,
                other => other.to_text(),
            };
            *slot = Some(GenericValue::Text(text));
        }
        Data::Container(_) | Data::Composite(_) | Data::List { .. } => {
            return Err(not_a_leaf(path, node));
        }
    }
    Ok(())
}

/// Make `dst` (at `dpath`) hold the values of `src` (at `spath`).
fn copy_into(dst: &mut Node, dpath: &str, src: &Node, spath: &str) -> Result<(), ContainerError> {
    let dst_class = dst.class_name.clone();
    let dst_kind = kind_name(dst);
    let incompatible = |reason: String| ContainerError::Incompatible {
        src_path: spath.to_string(),
        src_class: src.class_name.clone(),
        dst_path: dpath.to_string(),
        dst_class: dst_class.clone(),
        reason,
    };
    match (&mut dst.data, &src.data) {
        (Data::Container(dk), Data::Container(sk)) => {
            for d in dk.iter_mut() {
                if let Some(s) = sk.iter().find(|s| s.name == d.name) {
                    let dp = join(dpath, &d.name);
                    copy_into(d, &dp, s, &join(spath, &s.name))?;
                }
            }
        }
        (Data::Composite(dk), Data::Composite(sk)) => {
            if dst_class != src.class_name {
                return Err(incompatible("different composite classes".to_string()));
            }
            for d in dk.iter_mut() {
                if let Some(s) = sk.iter().find(|s| s.name == d.name) {
                    let dp = join(dpath, &d.name);
                    copy_into(d, &dp, s, &join(spath, &s.name))?;
                }
            }
        }
        (
            Data::List { template, items },
            Data::List {
                items: src_items, ..
            },
        ) => {
            let mut fresh = Vec::with_capacity(src_items.len());
            for (i, s) in src_items.iter().enumerate() {
                let mut item = (**template).clone();
                item.name = i.to_string();
                let dp = join(dpath, &item.name);
                copy_into(&mut item, &dp, s, &join(spath, &s.name))?;
                fresh.push(item);
            }
            *items = fresh;
        }
        (
            Data::File { default, value },
            Data::File {
                default: sd,
                value: sv,
            },
        ) => {
            let src_mime = src.mime_type();
            if !file_type_fits(&dst_class, &src_mime) {
                return Err(incompatible(format!("file type {src_mime:?} does not fit")));
            }
            *value = match (sv, &sd.path) {
                (Some(s), _) if !s.path.is_empty() => Some(s.clone()),
                (_, Some(p)) => Some(FileState {
                    path: p.clone(),
                    annotation: String::new(),
                    project: String::new(),
                    attrs: default.attrs.clone(),
                }),
                _ => None,
            };
        }
        (
            Data::Scalar { .. } | Data::Generic { .. },
            Data::Scalar { .. } | Data::Generic { .. },
        ) => match src.effective() {
            None => dst.clear(),
            Some(v) => assign(dst, dpath, v).map_err(|e| incompatible(reason_of(e)))?,
        },
        _ => {
            let reason = format!("a {dst_kind} cannot take a {}", kind_name(src));
            return Err(incompatible(reason));
        }
    }
    Ok(())
}

/// What kind of item a node is, in words.
fn kind_name(n: &Node) -> &'static str {
    match &n.data {
        Data::Container(_) => "container",
        Data::Composite(_) => "composite",
        Data::List { .. } => "list",
        Data::File { .. } => "file",
        Data::Scalar { .. } | Data::Generic { .. } => "value",
    }
}

/// The reason part of a value error, for wrapping in another message.
fn reason_of(e: ContainerError) -> String {
    match e {
        ContainerError::TypeMismatch { expected, got, .. } => {
            format!("expected {expected}, got {got}")
        }
        ContainerError::BadText { expected, text, .. } => {
            format!("expected {expected}, got {text:?}")
        }
        ContainerError::BadValue { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// A resolver for [`Container::from_def_xml_with_includes`] that reads
/// includes from a CCP4i2 installation at `top` (the directory holding
/// `wrappers/`, `pipelines/` ...). Include paths must be relative and stay
/// inside `top`.
pub fn dir_resolver(top: impl Into<PathBuf>) -> impl Fn(&str) -> Result<String, String> {
    let top = top.into();
    move |rel: &str| {
        let p = Path::new(rel);
        if p.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(format!("{rel:?} is not a plain relative path"));
        }
        let full = top.join(p);
        let meta = std::fs::metadata(&full).map_err(|e| format!("{}: {e}", full.display()))?;
        if meta.len() > xml::MAX_BYTES as u64 {
            return Err(format!("{} is too large", full.display()));
        }
        std::fs::read_to_string(&full).map_err(|e| format!("{}: {e}", full.display()))
    }
}
