//! The data model: values, qualifiers and the tree of items.
//!
//! A container is a tree of `Node`s. Each node has a bare name (its
//! `id` in def.xml, or its index inside a list), its CCP4i2 class name, the
//! qualifiers from the definition, and `Data` that depends on the kind of
//! class. Leaves keep the explicitly set value apart from the default: CCP4i2
//! writes only explicitly set values to params.xml, and `is_set` must tell
//! the two apart.

use crate::classes::{self, Kind};
use crate::xml::Elem;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A leaf value, as the host and plugins see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Value {
    /// CInt.
    Int(i64),
    /// CFloat and its subclasses (cell lengths and angles ...). Always finite.
    Float(f64),
    /// CString and its subclasses, and classes this crate does not know.
    Text(String),
    /// CBoolean.
    Bool(bool),
    /// Any file class.
    File(FileValue),
}

impl Value {
    /// A short description for error messages, e.g. `integer 3`.
    pub fn describe(&self) -> String {
        match self {
            Value::Int(i) => format!("integer {i}"),
            Value::Float(f) => format!("number {f}"),
            Value::Text(t) => format!("text {t:?}"),
            Value::Bool(b) => format!("boolean {b}"),
            Value::File(f) => format!("file {:?}", f.path),
        }
    }

    /// The value as a template or command line would show it: numbers in
    /// CCP4i2's notation, booleans as `True`/`False`, files by path.
    pub fn to_text(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format_float(*f),
            Value::Text(t) => t.clone(),
            Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
            Value::File(f) => f.path.clone(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// Write a float the way Python's `str(float)` does for ordinary values
/// (`90.0`, `64.897`), so CCP4i2 reads back exactly the same number.
pub(crate) fn format_float(f: f64) -> String {
    format!("{f:?}")
}

/// A file value: where the file is and what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileValue {
    /// Host path, absolute or relative to the job directory.
    pub path: String,
    /// Mime type from the item's class, e.g. `application/CCP4-mtz`; empty
    /// when the class does not fix one. When setting, an empty type means
    /// "the item's own".
    pub file_type: String,
    /// Free-text description CCP4i2 shows next to the file.
    pub annotation: String,
}

impl FileValue {
    /// A file at `path` with no stated type and no annotation.
    pub fn new(path: impl Into<String>) -> FileValue {
        FileValue {
            path: path.into(),
            file_type: String::new(),
            annotation: String::new(),
        }
    }
}

/// The qualifiers of one item, as its definition gives them.
///
/// Well-known qualifiers are parsed into typed fields; every other one is
/// kept as raw text in [`Qualifiers::other`]. Unset means "not given".
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Qualifiers {
    /// The textual default, trimmed. Structured defaults (a file's
    /// `<subType>`, a cell's `<a>`) are applied to the parts they name.
    pub default: Option<String>,
    /// `false` makes the item required: unset is an error at validation.
    pub allow_undefined: Option<bool>,
    /// Inclusive minimum of a number.
    pub min: Option<f64>,
    /// Inclusive maximum of a number.
    pub max: Option<f64>,
    /// Allowed or suggested values, see `only_enumerators`.
    pub enumerators: Vec<String>,
    /// `true` makes `enumerators` the only allowed values.
    pub only_enumerators: Option<bool>,
    /// Minimum length of a string, in characters.
    pub min_length: Option<usize>,
    /// Maximum length of a string, in characters.
    pub max_length: Option<usize>,
    /// Minimum number of list items.
    pub list_min_length: Option<usize>,
    /// Maximum number of list items.
    pub list_max_length: Option<usize>,
    /// A file item's file must exist when the job runs.
    pub must_exist: Option<bool>,
    /// Allowed file extensions, without the dot.
    pub file_extensions: Vec<String>,
    /// Overrides the class's mime type.
    pub mime_type_name: Option<String>,
    /// Restricts the characters of a string (1: letters, digits, `_`, `-`, `.`).
    pub allowed_chars_code: Option<i64>,
    /// Tooltip shown by a GUI.
    pub tool_tip: Option<String>,
    /// Label shown by a GUI.
    pub gui_label: Option<String>,
    /// Every other qualifier, by name, as trimmed text.
    pub other: BTreeMap<String, String>,
}

impl Qualifiers {
    /// Overlay `over` onto `self`: every qualifier `over` gives wins.
    pub(crate) fn overlay(&mut self, over: &Qualifiers) {
        fn o<T: Clone>(dst: &mut Option<T>, src: &Option<T>) {
            if src.is_some() {
                dst.clone_from(src);
            }
        }
        o(&mut self.default, &over.default);
        o(&mut self.allow_undefined, &over.allow_undefined);
        o(&mut self.min, &over.min);
        o(&mut self.max, &over.max);
        if !over.enumerators.is_empty() {
            self.enumerators.clone_from(&over.enumerators);
        }
        o(&mut self.only_enumerators, &over.only_enumerators);
        o(&mut self.min_length, &over.min_length);
        o(&mut self.max_length, &over.max_length);
        o(&mut self.list_min_length, &over.list_min_length);
        o(&mut self.list_max_length, &over.list_max_length);
        o(&mut self.must_exist, &over.must_exist);
        if !over.file_extensions.is_empty() {
            self.file_extensions.clone_from(&over.file_extensions);
        }
        o(&mut self.mime_type_name, &over.mime_type_name);
        o(&mut self.allowed_chars_code, &over.allowed_chars_code);
        o(&mut self.tool_tip, &over.tool_tip);
        o(&mut self.gui_label, &over.gui_label);
        for (k, v) in &over.other {
            self.other.insert(k.clone(), v.clone());
        }
    }

    /// Whether the item may be left unset. CCP4i2 treats a missing
    /// `allowUndefined` as "optional".
    pub fn optional(&self) -> bool {
        self.allow_undefined != Some(false)
    }
}

/// Scalar storage kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScalarKind {
    Int,
    Float,
    Text,
    Bool,
}

impl ScalarKind {
    /// What a value of this kind is called in messages.
    pub fn expected(self) -> &'static str {
        match self {
            ScalarKind::Int => "an integer",
            ScalarKind::Float => "a number",
            ScalarKind::Text => "text",
            ScalarKind::Bool => "a boolean (True/False)",
        }
    }
}

impl ScalarKind {
    /// Read `text` as a value of this kind. Text is taken verbatim; numbers
    /// and booleans are trimmed first. Integers written as integral floats
    /// (`20.0`) are accepted only when `lenient` (definition defaults, which
    /// CCP4i2 itself reads through a float). Non-finite floats are refused.
    pub fn parse(self, text: &str, lenient: bool) -> Option<Value> {
        let t = text.trim();
        match self {
            ScalarKind::Text => Some(Value::Text(text.to_string())),
            ScalarKind::Int => t.parse::<i64>().ok().map(Value::Int).or_else(|| {
                let f = t.parse::<f64>().ok().filter(|f| lenient && f.is_finite())?;
                // Only integral values well inside i64 convert exactly.
                (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(Value::Int(f as i64))
            }),
            ScalarKind::Float => t
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Value::Float),
            ScalarKind::Bool => parse_bool(t).map(Value::Bool),
        }
    }
}

/// CCP4i2's spellings of a boolean, in any case.
pub(crate) fn parse_bool(t: &str) -> Option<bool> {
    match t.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// An explicitly set file, with everything params.xml says about it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FileState {
    pub path: String,
    pub annotation: String,
    /// CCP4i2 project the path is relative to; empty for host paths.
    pub project: String,
    /// Other file attributes (`subType`, `contentFlag`, `dbFileId`,
    /// selections ...), kept as read so they are written back unchanged.
    pub attrs: Vec<Elem>,
}

/// What the definition's `<default>` says about a file item.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FileDefault {
    pub path: Option<String>,
    pub attrs: Vec<Elem>,
}

/// The value of an item of a class this crate does not know.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum GenericValue {
    Text(String),
    /// Child elements read from params.xml, written back unchanged.
    Raw(Vec<Elem>),
}

/// What a node holds, by kind of class.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Data {
    /// A container's items, in definition order.
    Container(Vec<Node>),
    Scalar {
        kind: ScalarKind,
        default: Option<Value>,
        value: Option<Value>,
    },
    File {
        default: FileDefault,
        value: Option<FileState>,
    },
    /// Fixed parts (CCell: a b c alpha beta gamma; CSpaceGroupCell:
    /// spaceGroup cell).
    Composite(Vec<Node>),
    List {
        /// A fresh item, cloned for each new one (its name is replaced by
        /// the index).
        template: Box<Node>,
        items: Vec<Node>,
    },
    Generic {
        default: Option<String>,
        value: Option<GenericValue>,
    },
}

/// One item of the tree.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub name: String,
    pub class_name: String,
    pub qualifiers: Qualifiers,
    pub data: Data,
}

impl Node {
    /// An empty container.
    pub fn container(name: &str, children: Vec<Node>) -> Node {
        Node {
            name: name.to_string(),
            class_name: "CContainer".to_string(),
            qualifiers: Qualifiers::default(),
            data: Data::Container(children),
        }
    }

    /// A fresh, unset item of class `class_name`, with the class's own
    /// qualifiers overlaid by `qualifiers`. Lists get a text item template;
    /// the definition reader replaces it when a `<subItem>` is given.
    pub fn of_class(name: &str, class_name: &str, qualifiers: &Qualifiers) -> Node {
        let mut q = classes::class_qualifiers(class_name);
        q.overlay(qualifiers);
        let scalar = |kind| Data::Scalar {
            kind,
            default: None,
            value: None,
        };
        let data = match classes::kind_of(class_name) {
            Kind::Container => Data::Container(Vec::new()),
            Kind::Int => scalar(ScalarKind::Int),
            Kind::Float => scalar(ScalarKind::Float),
            Kind::Text => scalar(ScalarKind::Text),
            Kind::Bool => scalar(ScalarKind::Bool),
            Kind::File => Data::File {
                default: FileDefault::default(),
                value: None,
            },
            Kind::Cell => Data::Composite(cell_parts()),
            Kind::SpaceGroupCell => Data::Composite(vec![
                Node::of_class("spaceGroup", "CSpaceGroup", &Qualifiers::default()),
                Node::of_class("cell", "CCell", &Qualifiers::default()),
            ]),
            Kind::List => Data::List {
                template: Box::new(Node::of_class("", "CString", &Qualifiers::default())),
                items: Vec::new(),
            },
            Kind::Generic => Data::Generic {
                default: None,
                value: None,
            },
        };
        Node {
            name: name.to_string(),
            class_name: class_name.to_string(),
            qualifiers: q,
            data,
        }
    }

    /// Child items, for the kinds that have them (list items included).
    pub fn kids(&self) -> &[Node] {
        match &self.data {
            Data::Container(c) | Data::Composite(c) => c,
            Data::List { items, .. } => items,
            _ => &[],
        }
    }

    /// Mutable child items.
    pub fn kids_mut(&mut self) -> Option<&mut Vec<Node>> {
        match &mut self.data {
            Data::Container(c) | Data::Composite(c) => Some(c),
            Data::List { items, .. } => Some(items),
            _ => None,
        }
    }

    /// Whether the node holds a single value rather than other items.
    pub fn is_leaf(&self) -> bool {
        matches!(
            self.data,
            Data::Scalar { .. } | Data::File { .. } | Data::Generic { .. }
        )
    }

    /// Whether anything in this subtree was explicitly set. For strings and
    /// files an empty value does not count, as in CCP4i2; a list counts as
    /// set as soon as it has an item.
    pub fn is_set(&self) -> bool {
        match &self.data {
            Data::Container(c) | Data::Composite(c) => c.iter().any(Node::is_set),
            Data::Scalar { value, .. } => match value {
                None => false,
                Some(Value::Text(t)) => !t.is_empty(),
                Some(_) => true,
            },
            Data::File { value, .. } => value.as_ref().is_some_and(|f| !f.path.is_empty()),
            Data::List { items, .. } => !items.is_empty(),
            Data::Generic { value, .. } => match value {
                None => false,
                Some(GenericValue::Text(t)) => !t.is_empty(),
                Some(GenericValue::Raw(r)) => !r.is_empty(),
            },
        }
    }

    /// Forget every explicit value in this subtree (lists lose their items).
    pub fn clear(&mut self) {
        match &mut self.data {
            Data::Container(c) | Data::Composite(c) => c.iter_mut().for_each(Node::clear),
            Data::Scalar { value, .. } => *value = None,
            Data::File { value, .. } => *value = None,
            Data::List { items, .. } => items.clear(),
            Data::Generic { value, .. } => *value = None,
        }
    }

    /// The mime type of a file item: the definition's `mimeTypeName`, else
    /// the class's.
    pub fn mime_type(&self) -> String {
        self.qualifiers
            .mime_type_name
            .clone()
            .unwrap_or_else(|| classes::mime_type_of(&self.class_name).to_string())
    }

    /// The value a leaf has: explicit, else default, else none. Structured
    /// values of unknown classes have no single value and give none.
    pub fn effective(&self) -> Option<Value> {
        match &self.data {
            Data::Scalar { default, value, .. } => value.clone().or_else(|| default.clone()),
            Data::File { default, value } => {
                let file_type = self.mime_type();
                match value {
                    Some(f) if !f.path.is_empty() => Some(Value::File(FileValue {
                        path: f.path.clone(),
                        file_type,
                        annotation: f.annotation.clone(),
                    })),
                    _ => default.path.as_ref().map(|p| {
                        Value::File(FileValue {
                            path: p.clone(),
                            file_type,
                            annotation: String::new(),
                        })
                    }),
                }
            }
            Data::Generic { default, value } => match value {
                Some(GenericValue::Text(t)) => Some(Value::Text(t.clone())),
                Some(GenericValue::Raw(_)) => None,
                None => default.clone().map(Value::Text),
            },
            _ => None,
        }
    }
}

/// The six parts of a cell, with CCP4i2's classes for them.
fn cell_parts() -> Vec<Node> {
    let none = Qualifiers::default();
    ["a", "b", "c"]
        .iter()
        .map(|n| Node::of_class(n, "CCellLength", &none))
        .chain(
            ["alpha", "beta", "gamma"]
                .iter()
                .map(|n| Node::of_class(n, "CCellAngle", &none)),
        )
        .collect()
}
