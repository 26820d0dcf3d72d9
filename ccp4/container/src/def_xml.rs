//! Reading CCP4i2 task definitions (def.xml) into a container tree.
//!
//! A definition is `<ccp4i2>` (or `<ccp4:ccp4i2>`) with a `ccp4i2_header`
//! and a `ccp4i2_body` of nested `<container id=..>` and `<content id=..>`
//! elements; a content has a `<className>`, `<qualifiers>` and, for lists,
//! a `<subItem>`. A `<file>` element includes a parent definition by
//! `project`/`relPath`/`baseName`.
//!
//! Includes are expanded on the XML first, the way CCP4i2 does it: the
//! included body's items come first, then containers with the same id are
//! merged and a content with the same id overrides the qualifiers it names
//! (a different `className` replaces it outright). Only then is the merged
//! body turned into nodes, so an override can refer to anything the parent
//! defined.
//!
//! Problems CCP4i2 itself would step over (a content without a class, an
//! unknown class, a default of the wrong shape, a word such as `Auto` as a
//! number's default) become warnings on the container; anything that would
//! make values wrong or paths ambiguous (a bad id, an unparsable qualifier,
//! a malformed number as a default, an include that cannot be loaded) is an
//! error.

use crate::classes::{Kind, kind_of};
use crate::error::DefError;
use crate::model::{Data, Node, Qualifiers, ScalarKind};
use crate::path::join;
use crate::xml::{self, Elem, is_simple_name};

/// Finds the text of an included definition from its `relPath/baseName`
/// (relative to the CCP4i2 installation, project `CCP4I2_TOP`). An `Err`
/// carries the reason it could not.
pub type Resolver<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// How deep includes may nest.
const MAX_INCLUDE_DEPTH: usize = 16;

/// What a definition turns into.
pub(crate) struct Parsed {
    pub name: String,
    pub plugin_name: Option<String>,
    pub root: Node,
    pub warnings: Vec<String>,
}

/// Read a definition, expanding includes with `resolver` (none: any
/// include is an error).
pub(crate) fn parse(text: &str, resolver: Option<Resolver<'_>>) -> Result<Parsed, DefError> {
    let root = xml::parse(text)?;
    let body = definition_body(&root)?;
    let plugin_name = root
        .child("ccp4i2_header")
        .and_then(|h| h.child_text("pluginName"))
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let mut warnings = Vec::new();
    let mut stack = Vec::new();
    let expanded = expand(body, resolver, &mut stack, &mut warnings)?;
    let name = body
        .id()
        .map(str::to_string)
        .or_else(|| plugin_name.clone())
        .unwrap_or_default();
    let items = build_items(&expanded, "", &mut warnings)?;
    Ok(Parsed {
        name,
        plugin_name,
        root: Node::container("", items),
        warnings,
    })
}

fn definition_body(root: &Elem) -> Result<&Elem, DefError> {
    if root.name != "ccp4i2" {
        return Err(DefError::NotCcp4i2 {
            found: root.name.clone(),
        });
    }
    root.child("ccp4i2_body").ok_or(DefError::NoBody)
}

/// Copy `elem` with its includes and nested bodies merged in.
fn expand(
    elem: &Elem,
    resolver: Option<Resolver<'_>>,
    stack: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<Elem, DefError> {
    let mut out = Elem {
        name: elem.name.clone(),
        attrs: elem.attrs.clone(),
        text: elem.text.clone(),
        children: Vec::new(),
    };
    for child in &elem.children {
        match child.name.as_str() {
            "file" => {
                for item in include(child, resolver, stack, warnings)? {
                    merge(&mut out, item, warnings);
                }
            }
            // A body inside a body or container is transparent in CCP4i2.
            "ccp4i2_body" => {
                let inner = expand(child, resolver, stack, warnings)?;
                for item in inner.children {
                    merge(&mut out, item, warnings);
                }
            }
            "container" => {
                let c = expand(child, resolver, stack, warnings)?;
                merge(&mut out, c, warnings);
            }
            _ => merge(&mut out, child.clone(), warnings),
        }
    }
    Ok(out)
}

/// Load the body items of the definition a `<file>` element names.
fn include(
    file: &Elem,
    resolver: Option<Resolver<'_>>,
    stack: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Elem>, DefError> {
    let Some(spec) = file.child("CI2XmlDataFile") else {
        warnings.push("a <file> without <CI2XmlDataFile> was ignored".to_string());
        return Ok(Vec::new());
    };
    let project = spec.child_text("project").unwrap_or("");
    let rel = spec.child_text("relPath").unwrap_or("");
    let base = spec.child_text("baseName").unwrap_or("");
    let path = if rel.is_empty() {
        base.to_string()
    } else {
        format!("{}/{}", rel.trim_end_matches('/'), base)
    };
    let unresolved = |reason: String| DefError::IncludeNotResolved {
        path: path.clone(),
        reason,
    };
    if base.is_empty() {
        return Err(unresolved("the <file> has no <baseName>".to_string()));
    }
    if !(project.is_empty() || project == "CCP4I2_TOP") {
        return Err(unresolved(format!(
            "project {project:?} is not supported, only CCP4I2_TOP"
        )));
    }
    if stack.contains(&path) {
        let mut chain = stack.clone();
        chain.push(path);
        return Err(DefError::IncludeCycle {
            chain: chain.join(" -> "),
        });
    }
    if stack.len() >= MAX_INCLUDE_DEPTH {
        return Err(unresolved(format!(
            "includes nest deeper than {MAX_INCLUDE_DEPTH}"
        )));
    }
    let Some(resolver) = resolver else {
        return Err(unresolved(
            "no include resolver was given (the parent definition is needed)".to_string(),
        ));
    };
    let text = resolver(&path).map_err(unresolved)?;
    stack.push(path.clone());
    let loaded = xml::parse(&text).map_err(DefError::from).and_then(|root| {
        let body = definition_body(&root)?;
        expand(body, Some(resolver), stack, warnings)
    });
    stack.pop();
    match loaded {
        Ok(body) => Ok(body.children),
        Err(e @ DefError::IncludeCycle { .. }) => Err(e),
        Err(e) => Err(DefError::InInclude {
            path,
            source: Box::new(e),
        }),
    }
}

/// Add `item` to `dest`, merging it into a container or content of the
/// same id when there is one.
fn merge(dest: &mut Elem, item: Elem, warnings: &mut Vec<String>) {
    let same = |c: &Elem| c.name == item.name && c.id().is_some() && c.id() == item.id();
    if matches!(item.name.as_str(), "container" | "content")
        && let Some(existing) = dest.children.iter_mut().find(|c| same(c))
    {
        if item.name == "container" {
            for sub in item.children {
                merge(existing, sub, warnings);
            }
        } else {
            merge_content(existing, item, warnings);
        }
        return;
    }
    dest.children.push(item);
}

/// Apply a later definition of a content to an earlier one.
fn merge_content(existing: &mut Elem, over: Elem, warnings: &mut Vec<String>) {
    let new_class = over.child_text("className").filter(|s| !s.is_empty());
    let old_class = existing.child_text("className").filter(|s| !s.is_empty());
    if let (Some(n), Some(o)) = (new_class, old_class)
        && n != o
    {
        warnings.push(format!(
            "content {:?} redefined as {n} (was {o})",
            over.id().unwrap_or("")
        ));
        *existing = over;
        return;
    }
    for part in over.children {
        let slot = existing.children.iter_mut().find(|c| c.name == part.name);
        match (part.name.as_str(), slot) {
            ("qualifiers", Some(quals)) => {
                for q in part.children {
                    match quals.children.iter_mut().find(|c| c.name == q.name) {
                        Some(old) => *old = q,
                        None => quals.children.push(q),
                    }
                }
            }
            (_, Some(old)) => *old = part,
            (_, None) => existing.children.push(part),
        }
    }
}

/// The id of a container or content, checked to be usable as a path step
/// and an element name. `None` (with a warning) when it has none: CCP4i2
/// skips such elements.
fn item_id<'a>(
    elem: &'a Elem,
    parent: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<&'a str>, DefError> {
    match elem.id() {
        None | Some("") => {
            let at = if parent.is_empty() {
                "the body"
            } else {
                parent
            };
            warnings.push(format!("a <{}> without id in {at} was ignored", elem.name));
            Ok(None)
        }
        Some(id) if is_simple_name(id) => Ok(Some(id)),
        Some(id) => Err(DefError::BadItem {
            path: join(parent, id),
            reason: format!(
                "<{}> id {id:?} is not a name (letters, digits, '_' and '-', not starting with a digit)",
                elem.name
            ),
        }),
    }
}

/// Turn the containers and contents below `elem` into nodes.
fn build_items(elem: &Elem, path: &str, warnings: &mut Vec<String>) -> Result<Vec<Node>, DefError> {
    let mut out: Vec<Node> = Vec::new();
    for child in &elem.children {
        let node = match child.name.as_str() {
            "container" => {
                let Some(id) = item_id(child, path, warnings)? else {
                    continue;
                };
                let p = join(path, id);
                Node::container(id, build_items(child, &p, warnings)?)
            }
            "content" => {
                let Some(id) = item_id(child, path, warnings)? else {
                    continue;
                };
                match build_content(child, id, &join(path, id), warnings)? {
                    Some(n) => n,
                    None => continue,
                }
            }
            // Anything else in a body or container (headers of included
            // files, stray text elements) carries no items.
            _ => continue,
        };
        match out.iter_mut().find(|n| n.name == node.name) {
            Some(old) => {
                warnings.push(format!(
                    "{}: defined twice; the later definition is used",
                    join(path, &node.name)
                ));
                *old = node;
            }
            None => out.push(node),
        }
    }
    Ok(out)
}

/// Build one item from an element holding `<className>`, `<qualifiers>`
/// and, for a list, `<subItem>` (which has the same shape).
fn build_content(
    elem: &Elem,
    name: &str,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Node>, DefError> {
    let class = elem.child_text("className").unwrap_or("");
    if class.is_empty() {
        warnings.push(format!("{path}: no <className>; the item was ignored"));
        return Ok(None);
    }
    if !is_simple_name(class) {
        return Err(DefError::BadItem {
            path: path.to_string(),
            reason: format!("className {class:?} is not a class name"),
        });
    }
    let kind = kind_of(class);
    if kind == Kind::Generic {
        warnings.push(format!(
            "{path}: class {class} is not known here; its value is kept as text"
        ));
    }
    let (quals, default) = parse_qualifiers(elem.child("qualifiers"), path)?;
    let mut node = Node::of_class(name, class, &quals);
    if let Some(d) = default {
        apply_default(&mut node, d, path, warnings)?;
    }
    let sub = elem.child("subItem");
    match (&mut node.data, sub) {
        (Data::List { template, .. }, Some(sub)) => {
            let item_path = format!("{path}.<item>");
            if let Some(t) = build_content(sub, "", &item_path, warnings)? {
                **template = t;
            }
        }
        (Data::List { .. }, None) => {}
        (_, Some(_)) => warnings.push(format!(
            "{path}: <subItem> on a {class}, which is not a list, was ignored"
        )),
        (_, None) => {}
    }
    Ok(Some(node))
}

fn bad_qualifier(path: &str, q: &str, expected: &str, text: &str) -> DefError {
    DefError::BadQualifier {
        path: path.to_string(),
        qualifier: q.to_string(),
        reason: format!("expected {expected}, got {text:?}"),
    }
}

/// CCP4i2 writes `None` for "no value"; empty means the same.
fn absent(text: &str) -> bool {
    text.is_empty() || text == "None"
}

/// Whether `text`, which did not parse as a `kind` default, is a word
/// standing in for a number (`Auto`, `NONE`, `inf`) rather than a number
/// written wrongly. Only integer and float items qualify. A word is not an
/// attempt at a number, so dropping it loses nothing; text with a digit in
/// it (`1.5` for an integer, `1,5`, `2O`) is most likely a mistyped value,
/// which an error should point at rather than a warning hide.
fn word_for_number(kind: ScalarKind, text: &str) -> bool {
    matches!(kind, ScalarKind::Int | ScalarKind::Float) && !text.bytes().any(|b| b.is_ascii_digit())
}

/// Read a `<qualifiers>` element. The `<default>` element is returned as
/// is, to be applied once the node exists.
fn parse_qualifiers<'a>(
    elem: Option<&'a Elem>,
    path: &str,
) -> Result<(Qualifiers, Option<&'a Elem>), DefError> {
    let mut q = Qualifiers::default();
    let mut default = None;
    let Some(elem) = elem else {
        return Ok((q, None));
    };
    for c in &elem.children {
        let name = c.name.as_str();
        let text = c.text.trim();
        let boolean = || -> Result<Option<bool>, DefError> {
            if absent(text) {
                return Ok(None);
            }
            crate::model::parse_bool(text)
                .map(Some)
                .ok_or_else(|| bad_qualifier(path, name, "True or False", text))
        };
        let number = || -> Result<Option<f64>, DefError> {
            if absent(text) {
                return Ok(None);
            }
            text.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| bad_qualifier(path, name, "a number", text))
        };
        let count = || -> Result<Option<usize>, DefError> {
            if absent(text) {
                return Ok(None);
            }
            text.parse::<usize>()
                .map(Some)
                .map_err(|_| bad_qualifier(path, name, "a non-negative integer", text))
        };
        let list = || -> Vec<String> {
            if absent(text) {
                return Vec::new();
            }
            text.split(',').map(|s| s.trim().to_string()).collect()
        };
        let string = || (!text.is_empty()).then(|| text.to_string());
        match name {
            "default" => default = Some(c),
            "allowUndefined" => q.allow_undefined = boolean()?,
            "onlyEnumerators" => q.only_enumerators = boolean()?,
            "mustExist" => q.must_exist = boolean()?,
            "min" => q.min = number()?,
            "max" => q.max = number()?,
            "minLength" => q.min_length = count()?,
            "maxLength" => q.max_length = count()?,
            "listMinLength" => q.list_min_length = count()?,
            "listMaxLength" => q.list_max_length = count()?,
            "enumerators" => q.enumerators = list(),
            "fileExtensions" => q.file_extensions = list(),
            "mimeTypeName" => q.mime_type_name = string().filter(|s| s != "None"),
            "allowedCharsCode" => {
                q.allowed_chars_code = if absent(text) {
                    None
                } else {
                    Some(
                        text.parse::<i64>()
                            .map_err(|_| bad_qualifier(path, name, "an integer", text))?,
                    )
                }
            }
            "toolTip" => q.tool_tip = string(),
            "guiLabel" => q.gui_label = string(),
            _ => {
                q.other.insert(name.to_string(), text.to_string());
            }
        }
    }
    Ok((q, default))
}

/// Apply a `<default>` element to a fresh node: text for leaves, named
/// parts for files (`subType`, `contentFlag` ...) and cells (`a`, `b` ...).
fn apply_default(
    node: &mut Node,
    d: &Elem,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), DefError> {
    let text = d.text.trim();
    if d.children.is_empty() {
        if absent(text) {
            return Ok(());
        }
        node.qualifiers.default = Some(text.to_string());
        match &mut node.data {
            Data::Scalar { kind, default, .. } => match kind.parse(text, true) {
                Some(v) => *default = Some(v),
                None if word_for_number(*kind, text) => {
                    // CCP4i2's shipped definitions say `Auto` where the
                    // program picks the number (xia2's nproc, d_min ...).
                    // CCP4i2 fails to convert the word, reports it and
                    // leaves the item unset; doing the same lets those
                    // tasks load. The word is not kept as the textual
                    // default either, so nothing downstream takes it for
                    // a value.
                    node.qualifiers.default = None;
                    warnings.push(format!(
                        "{path}: default {text:?} is not {} ({}); the item was left unset, \
                         as CCP4i2 leaves it",
                        kind.expected(),
                        node.class_name
                    ));
                }
                None => return Err(bad_qualifier(path, "default", kind.expected(), text)),
            },
            Data::File { default, .. } => default.path = Some(text.to_string()),
            Data::Generic { default, .. } => *default = Some(text.to_string()),
            _ => warnings.push(format!(
                "{path}: a text default for a {} was ignored",
                node.class_name
            )),
        }
        return Ok(());
    }
    match &mut node.data {
        Data::File { default, .. } => {
            let mut base = "";
            let mut rel = "";
            for c in &d.children {
                match c.name.as_str() {
                    "baseName" => base = c.text.trim(),
                    "relPath" => rel = c.text.trim(),
                    // A default project or annotation has no meaning for a
                    // file that is not there yet.
                    "project" | "annotation" => {}
                    _ => default.attrs.push(c.clone()),
                }
            }
            if !base.is_empty() {
                default.path = Some(crate::params_xml::join_file_path(rel, base));
            }
        }
        Data::Composite(parts) => {
            for c in &d.children {
                match parts.iter_mut().find(|p| p.name == c.name) {
                    Some(p) => apply_default(p, c, &join(path, &c.name), warnings)?,
                    None => warnings.push(format!(
                        "{path}: default names {:?}, which a {} does not have",
                        c.name, node.class_name
                    )),
                }
            }
        }
        _ => warnings.push(format!(
            "{path}: a structured default for a {} was ignored",
            node.class_name
        )),
    }
    Ok(())
}
