//! Reading and writing the job's container by dotted path, with typed
//! getters, and the bridge that lets command templates read it.

use crate::bindings::kiln::plugin::container as host;
use crate::error::TaskError;
use crate::task::Job;
use crate::template::{Lookup, LookupError};
use crate::{FileRef, Value};

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<FileRef> for Value {
    fn from(v: FileRef) -> Self {
        Value::File(v)
    }
}

impl Value {
    /// The value as command-line text: numbers as written, files as their
    /// path.
    pub fn to_text(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Text(s) => s.clone(),
            Value::Boolean(b) => if *b { "True" } else { "False" }.to_string(),
            Value::File(f) => f.path.clone(),
        }
    }
}

fn unset(path: &str) -> TaskError {
    TaskError::failed(format!("{path} is not set"))
}

fn wrong_type(path: &str, want: &str, got: &Value) -> TaskError {
    TaskError::failed(format!("{path}: expected {want}, found {got:?}"))
}

impl Job {
    /// Value of a leaf item: explicitly set, else its default, else `None`.
    pub fn get(&self, path: &str) -> Result<Option<Value>, TaskError> {
        Ok(host::get(path)?)
    }

    /// Value of a leaf item that must be set.
    pub fn require(&self, path: &str) -> Result<Value, TaskError> {
        self.get(path)?.ok_or_else(|| unset(path))
    }

    pub fn float(&self, path: &str) -> Result<f64, TaskError> {
        match self.require(path)? {
            Value::Float(f) => Ok(f),
            Value::Int(i) => Ok(i as f64),
            other => Err(wrong_type(path, "a number", &other)),
        }
    }

    pub fn int(&self, path: &str) -> Result<i64, TaskError> {
        match self.require(path)? {
            Value::Int(i) => Ok(i),
            other => Err(wrong_type(path, "an integer", &other)),
        }
    }

    pub fn text(&self, path: &str) -> Result<String, TaskError> {
        match self.require(path)? {
            Value::Text(s) => Ok(s),
            other => Ok(other.to_text()),
        }
    }

    pub fn boolean(&self, path: &str) -> Result<bool, TaskError> {
        match self.require(path)? {
            Value::Boolean(b) => Ok(b),
            other => Err(wrong_type(path, "a boolean", &other)),
        }
    }

    pub fn file(&self, path: &str) -> Result<FileRef, TaskError> {
        match self.require(path)? {
            Value::File(f) => Ok(f),
            other => Err(wrong_type(path, "a file", &other)),
        }
    }

    /// The host path of a file item, as programs should be given it.
    pub fn file_path(&self, path: &str) -> Result<String, TaskError> {
        Ok(self.file(path)?.path)
    }

    pub fn set(&self, path: &str, value: impl Into<Value>) -> Result<(), TaskError> {
        Ok(host::set(path, &value.into())?)
    }

    /// Set a file item to a path (absolute, or relative to the job
    /// directory); the file type comes from the item's class.
    pub fn set_file(&self, path: &str, file_path: &str) -> Result<(), TaskError> {
        self.set(
            path,
            FileRef {
                path: file_path.to_string(),
                file_type: String::new(),
                annotation: String::new(),
            },
        )
    }

    pub fn is_set(&self, path: &str) -> Result<bool, TaskError> {
        Ok(host::is_set(path)?)
    }

    pub fn children(&self, path: &str) -> Result<Vec<String>, TaskError> {
        Ok(host::children(path)?)
    }

    /// Dotted paths of every item with this bare name.
    pub fn find(&self, name: &str) -> Vec<String> {
        host::find(name)
    }

    /// Check the container against its qualifiers; an empty list is valid.
    pub fn validate(&self) -> Vec<crate::bindings::kiln::plugin::types::ErrorRecord> {
        host::validate()
    }

    /// A [`Lookup`] over this job's container, for command templates.
    pub fn lookup(&self) -> ContainerLookup<'_> {
        ContainerLookup { _job: self }
    }
}

/// Command templates read `$NAME` and `$NAME.attr` through this: NAME is
/// found by bare name anywhere in the container, as CCP4i2 does.
pub struct ContainerLookup<'a> {
    _job: &'a Job,
}

impl ContainerLookup<'_> {
    /// `NAME`, `NAME.attr`, `NAME[i]`, `NAME[i].attr` to a dotted path: the
    /// bare NAME must name exactly one item.
    fn resolve(&self, name: &str) -> Result<String, LookupError> {
        let split = name.find(['.', '[']).unwrap_or(name.len());
        let (base, rest) = name.split_at(split);
        let paths = host::find(base);
        match paths.as_slice() {
            [one] => Ok(format!("{one}{rest}")),
            [] => Err(LookupError::unknown(name)),
            many => Err(LookupError::other(format!(
                "{base} is ambiguous: {}",
                many.join(", ")
            ))),
        }
    }
}

impl Lookup for ContainerLookup<'_> {
    fn text(&self, name: &str) -> Result<Option<String>, LookupError> {
        let path = self.resolve(name)?;
        match host::get(&path) {
            Ok(v) => Ok(v.map(|v| v.to_text())),
            Err(e) => Err(LookupError::other(e.message)),
        }
    }

    /// CCP4i2's truth from the item's type: unset, zero, false and empty
    /// are false.
    fn truth(&self, name: &str) -> Result<bool, LookupError> {
        let path = self.resolve(name)?;
        match host::get(&path) {
            Ok(None) => Ok(false),
            Ok(Some(Value::Boolean(b))) => Ok(b),
            Ok(Some(Value::Int(i))) => Ok(i != 0),
            Ok(Some(Value::Float(f))) => Ok(f != 0.0),
            Ok(Some(Value::Text(t))) => Ok(!t.is_empty()),
            Ok(Some(Value::File(f))) => Ok(!f.path.is_empty()),
            Err(e) => Err(LookupError::other(e.message)),
        }
    }

    fn list_len(&self, name: &str) -> Result<usize, LookupError> {
        let path = self.resolve(name)?;
        match host::children(&path) {
            Ok(c) => Ok(c.len()),
            Err(e) => Err(LookupError::other(e.message)),
        }
    }
}
