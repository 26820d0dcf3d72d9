//! A container's items as the fields of a form: for each value a person
//! may set, what a GUI needs to ask for it (its kind, limits, choices,
//! default, label and tooltip), read from the definition. The job
//! service's dashboard builds its submit form from these.
//!
//! Composite items (a cell, a space group and cell) are given as their
//! parts, each naming the composite it belongs to. Lists are given as one
//! field of kind `list`, whose items a form cannot set one by one.

use crate::model::{Data, Node, ScalarKind};
use serde::Serialize;

/// What kind of value a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    Int,
    Float,
    Bool,
    Text,
    File,
    List,
    /// A class this crate does not know; its value is text.
    Other,
}

/// One settable item of a container.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FormField {
    /// Its dotted path (`inputData.HKLIN`), as a submit names it.
    pub path: String,
    /// The container it is in (`inputData`, `controlParameters`, ...).
    pub section: String,
    pub class_name: String,
    pub kind: FieldKind,
    /// The definition's `guiLabel`.
    pub label: Option<String>,
    /// The definition's `toolTip`.
    pub tooltip: Option<String>,
    /// The default as text, as a submit would give it.
    pub default: Option<String>,
    /// Unset is an error (`allowUndefined` false).
    pub required: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Allowed (`only_choices`) or suggested values.
    pub choices: Vec<String>,
    pub only_choices: bool,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    /// For files: the extensions the definition allows, and its mime type.
    pub file_extensions: Vec<String>,
    pub mime_type: Option<String>,
    pub must_exist: bool,
    /// The composite item this is a part of (`inputData.CELL` for its `a`).
    pub part_of: Option<String>,
    /// That composite's label or, without one, its name.
    pub part_of_label: Option<String>,
}

/// Every settable item below `root`, in definition order.
pub(crate) fn fields(root: &Node) -> Vec<FormField> {
    let mut out = Vec::new();
    for section in root.kids() {
        walk(section, &section.name, &section.name, None, &mut out);
    }
    out
}

fn walk(
    node: &Node,
    path: &str,
    section: &str,
    part_of: Option<(&str, &str)>,
    out: &mut Vec<FormField>,
) {
    let kind = match &node.data {
        Data::Container(kids) => {
            for k in kids {
                walk(k, &format!("{path}.{}", k.name), section, None, out);
            }
            return;
        }
        Data::Composite(kids) => {
            let label = node.qualifiers.gui_label.as_deref().unwrap_or(&node.name);
            for k in kids {
                // A part of a part (a space group and cell's cell) belongs
                // to the outermost composite.
                let outer = part_of.unwrap_or((path, label));
                walk(k, &format!("{path}.{}", k.name), section, Some(outer), out);
            }
            return;
        }
        Data::Scalar { kind, .. } => match kind {
            ScalarKind::Int => FieldKind::Int,
            ScalarKind::Float => FieldKind::Float,
            ScalarKind::Bool => FieldKind::Bool,
            ScalarKind::Text => FieldKind::Text,
        },
        Data::File { .. } => FieldKind::File,
        Data::List { .. } => FieldKind::List,
        Data::Generic { .. } => FieldKind::Other,
    };
    let q = &node.qualifiers;
    let default = match kind {
        FieldKind::List => None,
        _ => node.effective().map(|v| v.to_text()),
    };
    out.push(FormField {
        path: path.to_string(),
        section: section.to_string(),
        class_name: node.class_name.clone(),
        kind,
        label: q.gui_label.clone(),
        tooltip: q.tool_tip.clone(),
        default,
        required: !q.optional(),
        min: q.min,
        max: q.max,
        choices: q.enumerators.clone(),
        only_choices: q.only_enumerators == Some(true),
        min_length: q.min_length,
        max_length: q.max_length,
        file_extensions: q.file_extensions.clone(),
        mime_type: (kind == FieldKind::File).then(|| node.mime_type()),
        must_exist: q.must_exist == Some(true),
        part_of: part_of.map(|(p, _)| p.to_string()),
        part_of_label: part_of.map(|(_, l)| l.to_string()),
    });
}
