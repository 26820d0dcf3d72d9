//! Validation against the definition's qualifiers, with CCP4i2's codes.
//!
//! | code | meaning |
//! | --- | --- |
//! | 100 | required (`allowUndefined` false) and no value |
//! | 101 | below `min`, shorter than `minLength` / `listMinLength`; for a file with `mustExist`, the file does not exist |
//! | 102 | above `max`, longer than `maxLength` / `listMaxLength` |
//! | 103 | not one of `enumerators` while `onlyEnumerators` is true |
//! | 104 | characters not allowed (`allowedCharsCode` 1, or white space in a `COneWord`) |
//!
//! Codes belong to a class in CCP4i2 (101 for a file is "file does not
//! exist"), so each report carries the class name too. Values that come
//! from defaults are checked like set ones: they are what the job will use.
//! An optional composite (a cell) that is entirely unset is not looked
//! into, so its parts' own requirements only apply once one of them is set.

use crate::model::{Data, FileValue, Node, Qualifiers, Value};
use crate::path::join;
use serde::{Deserialize, Serialize};
use std::fmt;

/// CCP4i2 severities, in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// 0: nothing wrong.
    Ok,
    /// 1: unset, and that is allowed.
    Undefined,
    /// 2: worth telling, does not stop a job.
    Warning,
    /// 3: unset, and that is not allowed.
    UndefinedError,
    /// 4: wrong.
    Error,
}

impl Severity {
    /// CCP4i2's number for the severity (0-4).
    pub fn code(self) -> u32 {
        match self {
            Severity::Ok => 0,
            Severity::Undefined => 1,
            Severity::Warning => 2,
            Severity::UndefinedError => 3,
            Severity::Error => 4,
        }
    }

    /// Whether a job must not run with this.
    pub fn is_error(self) -> bool {
        self >= Severity::UndefinedError
    }
}

/// One finding of [`Container::validate`](crate::Container::validate).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Dotted path of the item.
    pub path: String,
    /// CCP4i2 class of the item; the code is that class's.
    pub class_name: String,
    /// CCP4i2 error code, see the module documentation.
    pub code: u32,
    /// How bad it is.
    pub severity: Severity,
    /// What is wrong, in words, without the path.
    pub message: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (code {})", self.path, self.message, self.code)
    }
}

/// Checks whether a file exists, for `mustExist`.
pub(crate) type ExistsFn<'a> = &'a dyn Fn(&FileValue) -> bool;

struct Walk<'a> {
    out: Vec<Report>,
    exists: Option<ExistsFn<'a>>,
}

impl Walk<'_> {
    fn push(&mut self, node: &Node, path: &str, code: u32, severity: Severity, message: String) {
        self.out.push(Report {
            path: path.to_string(),
            class_name: node.class_name.clone(),
            code,
            severity,
            message,
        });
    }

    fn unset(&mut self, node: &Node, path: &str) {
        let label = node
            .qualifiers
            .gui_label
            .as_deref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        self.push(
            node,
            path,
            100,
            Severity::UndefinedError,
            format!("required value not set{label}"),
        );
    }

    fn node(&mut self, node: &Node, path: &str) {
        match &node.data {
            Data::Container(kids) => {
                for k in kids {
                    self.node(k, &join(path, &k.name));
                }
            }
            Data::Composite(kids) => {
                if !node.is_set() {
                    if !node.qualifiers.optional() {
                        self.unset(node, path);
                    }
                    return;
                }
                for k in kids {
                    self.node(k, &join(path, &k.name));
                }
            }
            Data::List { items, .. } => {
                let q = &node.qualifiers;
                let n = items.len();
                if let Some(min) = q.list_min_length
                    && n < min
                {
                    let m = format!("list has {n} item(s), fewer than the minimum {min}");
                    self.push(node, path, 101, Severity::Error, m);
                }
                if let Some(max) = q.list_max_length
                    && n > max
                {
                    let m = format!("list has {n} item(s), more than the maximum {max}");
                    self.push(node, path, 102, Severity::Error, m);
                }
                for item in items {
                    self.node(item, &join(path, &item.name));
                }
            }
            Data::Scalar { .. } | Data::File { .. } | Data::Generic { .. } => self.leaf(node, path),
        }
    }

    fn leaf(&mut self, node: &Node, path: &str) {
        let q = &node.qualifiers;
        let value = match node.effective() {
            None => None,
            Some(Value::Text(t)) if t.is_empty() => None,
            Some(v) => Some(v),
        };
        let Some(value) = value else {
            // A generic item holding structured data has a value, just not
            // a single one.
            let structured = matches!(
                &node.data,
                Data::Generic {
                    value: Some(crate::model::GenericValue::Raw(_)),
                    ..
                }
            );
            if !structured && !q.optional() {
                self.unset(node, path);
            }
            return;
        };
        match &value {
            Value::Int(i) => self.number(node, path, *i as f64, &i.to_string()),
            Value::Float(f) => self.number(node, path, *f, &f.to_string()),
            Value::Text(t) => self.text(node, path, t),
            Value::Bool(_) => {}
            Value::File(f) => {
                if q.must_exist == Some(true)
                    && let Some(exists) = self.exists
                    && !exists(f)
                {
                    let m = format!("file does not exist (mustExist): {}", f.path);
                    self.push(node, path, 101, Severity::Error, m);
                }
            }
        }
    }

    fn number(&mut self, node: &Node, path: &str, x: f64, shown: &str) {
        let q = &node.qualifiers;
        if let Some(min) = q.min
            && x < min
        {
            let m = format!("value {shown} is below the minimum {min}");
            self.push(node, path, 101, Severity::Error, m);
        }
        if let Some(max) = q.max
            && x > max
        {
            let m = format!("value {shown} is above the maximum {max}");
            self.push(node, path, 102, Severity::Error, m);
        }
        if enumerated(q) {
            let listed = q
                .enumerators
                .iter()
                .any(|e| e == shown || e.parse::<f64>().is_ok_and(|v| v == x));
            if !listed {
                self.not_listed(node, path, shown);
            }
        }
    }

    fn text(&mut self, node: &Node, path: &str, t: &str) {
        let q = &node.qualifiers;
        let len = t.chars().count();
        if let Some(min) = q.min_length
            && len < min
        {
            let m = format!("text has {len} character(s), fewer than the minimum {min}");
            self.push(node, path, 101, Severity::Error, m);
        }
        if let Some(max) = q.max_length
            && len > max
        {
            let m = format!("text has {len} character(s), more than the maximum {max}");
            self.push(node, path, 102, Severity::Error, m);
        }
        if enumerated(q) && !q.enumerators.iter().any(|e| e == t) {
            self.not_listed(node, path, &format!("{t:?}"));
        }
        let bad: Option<char> = if q.allowed_chars_code == Some(1) {
            t.chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        } else if node.class_name == "COneWord" {
            t.chars().find(|c| c.is_whitespace())
        } else {
            None
        };
        if let Some(c) = bad {
            let m = format!("text contains a character that is not allowed: {c:?}");
            self.push(node, path, 104, Severity::Error, m);
        }
    }

    fn not_listed(&mut self, node: &Node, path: &str, shown: &str) {
        let m = format!(
            "value {shown} is not one of the allowed values: {}",
            node.qualifiers.enumerators.join(", ")
        );
        self.push(node, path, 103, Severity::Error, m);
    }
}

fn enumerated(q: &Qualifiers) -> bool {
    q.only_enumerators == Some(true) && !q.enumerators.is_empty()
}

/// Validate every item below `root`. File existence is checked only when
/// `exists` is given: the container itself never touches the file system.
pub(crate) fn validate(root: &Node, exists: Option<ExistsFn<'_>>) -> Vec<Report> {
    let mut w = Walk {
        out: Vec::new(),
        exists,
    };
    for k in root.kids() {
        w.node(k, &k.name);
    }
    w.out
}
