//! Error types. Every message names the item path (or the file and
//! element) and the reason, so it can be shown to a user as it is.

use crate::xml::{MAX_DEPTH, XmlError};

/// A def.xml that cannot be turned into a container.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DefError {
    /// Not well-formed XML (or too large).
    #[error("def.xml is not well-formed XML: {0}")]
    Xml(String),
    /// Elements nested deeper than the crate accepts.
    #[error("def.xml nests elements deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The root element is not `<ccp4i2>`.
    #[error("def.xml root element is <{found}>, expected <ccp4i2>")]
    NotCcp4i2 {
        /// The root element's local name.
        found: String,
    },
    /// There is no `<ccp4i2_body>`.
    #[error("def.xml has no <ccp4i2_body>")]
    NoBody,
    /// A `<container>` or `<content>` that cannot be used.
    #[error("{path}: {reason}")]
    BadItem {
        /// Dotted path of the item (as far as it is known).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A qualifier whose text does not fit its type.
    #[error("{path}: qualifier <{qualifier}>: {reason}")]
    BadQualifier {
        /// Dotted path of the item.
        path: String,
        /// Qualifier element name.
        qualifier: String,
        /// What is wrong.
        reason: String,
    },
    /// A `<file>` include that could not be loaded.
    #[error("include not resolved: {path}: {reason}")]
    IncludeNotResolved {
        /// The include, `relPath/baseName` relative to the CCP4i2 top.
        path: String,
        /// Why.
        reason: String,
    },
    /// An included definition that is itself bad.
    #[error("in include {path}: {source}")]
    InInclude {
        /// The include, `relPath/baseName`.
        path: String,
        /// What is wrong with it.
        source: Box<DefError>,
    },
    /// Includes that include each other.
    #[error("include cycle: {chain}")]
    IncludeCycle {
        /// The includes in order, joined by ` -> `.
        chain: String,
    },
}

impl From<XmlError> for DefError {
    fn from(e: XmlError) -> Self {
        match e {
            XmlError::Syntax(s) => DefError::Xml(s),
            XmlError::TooDeep => DefError::TooDeep { limit: MAX_DEPTH },
        }
    }
}

/// A container operation that cannot be done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// The path is not well-formed.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The path names no item.
    #[error("no item {path:?}: {reason}")]
    NoSuchItem {
        /// The path as given.
        path: String,
        /// Which part is missing.
        reason: String,
    },
    /// A value of the wrong type.
    #[error("{path} ({class}): expected {expected}, got {got}")]
    TypeMismatch {
        /// Item path.
        path: String,
        /// Item class.
        class: String,
        /// What the class takes.
        expected: String,
        /// What was given.
        got: String,
    },
    /// Text that does not parse as the item's type.
    #[error("{path} ({class}): expected {expected}, got {text:?}")]
    BadText {
        /// Item path.
        path: String,
        /// Item class.
        class: String,
        /// What the class takes.
        expected: String,
        /// The text given.
        text: String,
    },
    /// A value of the right type that the item cannot hold.
    #[error("{path} ({class}): {reason}")]
    BadValue {
        /// Item path.
        path: String,
        /// Item class.
        class: String,
        /// What is wrong.
        reason: String,
    },
    /// The item holds other items, not one value.
    #[error("{path} is a {class}, which holds items rather than a value: address its children")]
    NotALeaf {
        /// Item path.
        path: String,
        /// Item class.
        class: String,
    },
    /// A list operation on something that is not a list.
    #[error("{path} is a {class}, not a CList")]
    NotAList {
        /// Item path.
        path: String,
        /// Item class.
        class: String,
    },
    /// A bare name that matches nothing.
    #[error("no item named {name:?} in the container")]
    UnknownName {
        /// The name as given.
        name: String,
    },
    /// A bare name that matches several items.
    #[error("{name:?} is ambiguous: it matches {}; give a dotted path", candidates.join(", "))]
    Ambiguous {
        /// The name as given.
        name: String,
        /// Dotted paths of all matches.
        candidates: Vec<String>,
    },
    /// A subtree copy between items that do not fit each other.
    #[error("cannot copy {src_path} ({src_class}) into {dst_path} ({dst_class}): {reason}")]
    Incompatible {
        /// Source item path.
        src_path: String,
        /// Source item class.
        src_class: String,
        /// Destination item path.
        dst_path: String,
        /// Destination item class.
        dst_class: String,
        /// Why they do not fit.
        reason: String,
    },
}

/// A params.xml that cannot be read into a container.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// Not well-formed XML (or too large).
    #[error("params.xml is not well-formed XML: {0}")]
    Xml(String),
    /// Elements nested deeper than the crate accepts.
    #[error("params.xml nests elements deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// There is no `<ccp4i2_body>`.
    #[error("params.xml has no <ccp4i2_body>")]
    NoBody,
    /// A value that does not fit its item.
    #[error("params.xml: {0}")]
    Value(#[from] ContainerError),
}

impl From<XmlError> for ParamsError {
    fn from(e: XmlError) -> Self {
        match e {
            XmlError::Syntax(s) => ParamsError::Xml(s),
            XmlError::TooDeep => ParamsError::TooDeep { limit: MAX_DEPTH },
        }
    }
}
