//! Command templates: CCP4i2's `COMLINETEMPLATE` and `COMTEMPLATE`.
//!
//! A CCP4i2 wrapper may describe its program's command line and keyword
//! script as small templates instead of code: each line starts with a flag
//! that decides whether the line is written, and `$NAME` words are replaced by
//! values from the job's container. This module expands such templates, so
//! wrappers ported from CCP4i2 keep their templates and new tasks can use them
//! too. It reads values only through a [`Lookup`], so it runs the same inside
//! a task (over the job's container) and in native unit tests (over a
//! [`MapLookup`]).
//!
//! ```
//! use kiln_sdk::template::{MapLookup, expand, expand_words};
//!
//! let values = MapLookup::new()
//!     .with("HKLIN", "/data/my crystal.mtz")
//!     .with("HEADER", "True");
//! // COMLINETEMPLATE -> argv; a value stays one word even with spaces in it.
//! let argv = expand_words("1 HKLIN $HKLIN", &values)?;
//! assert_eq!(argv, ["HKLIN", "/data/my crystal.mtz"]);
//! // COMTEMPLATE -> the keyword script on stdin.
//! let stdin = expand("$HEADER HEADER\n1 NREF -1\n1 END", &values)?;
//! assert_eq!(stdin, "HEADER\nNREF -1\nEND\n");
//! # Ok::<(), kiln_sdk::template::TemplateError>(())
//! ```
//!
//! # The template language
//!
//! Every line is trimmed; blank lines and lines starting with `#` are skipped.
//! Line numbers in errors count every line of the template from 1, blank and
//! comment lines included.
//!
//! **Lines.** `<flag> text` writes `text` when the flag is true. The flag is
//! one word, read as a condition (below): usually `1` (always), `0` (never)
//! or `$NAME` (when the item is true, see [`Lookup::truth`]). A line may offer
//! an alternative after `|`, written when the flag is false:
//! `$FAST MODE FAST | MODE SLOW`. A line whose text comes out empty is not
//! written.
//!
//! **Values.** A word starting with `$` is replaced by the text of the item
//! it names: `$NAME`, `$NAME.attr`, `$NAME.attr.sub`. NAME is found by bare
//! name anywhere in the container (the [`Lookup`] does that). An unset item
//! gives empty text; an unknown name is an error. `$NAME.quote` gives the
//! value in double quotes. Only whole words are replaced, as in CCP4i2:
//! `F=$F` is written as it stands. Items of a list are `$LIST[2]` or, inside
//! a `LOOP`, `$LIST[$I]` (see [`Lookup::list_len`] for the naming).
//!
//! **Conditions** (line flags, `IF`, `LOOP` bounds) are the part of Python
//! that CCP4i2 templates use: `$NAME` and `$NAME.attr` (truth or value),
//! `$NAME.isSet()`, `len($LIST)`, integers, decimals, `'text'` or `"text"`,
//! `True`, `False`, `None`, `not`, `and`, `or`, parentheses, the comparisons
//! `==`, `!=`, `<`, `<=`, `>`, `>=` (chained as in Python: `1 < $N < 5`) and
//! `+`, `-`. A condition is one word when it is a line flag, the rest of the
//! line after `IF`, and one word per bound of a `LOOP`.
//!
//! **Blocks**, each keyword on its own line, nested freely (up to 64 deep):
//!
//! ```text
//! IF $ANOMALOUS and $NCYCLES > 5
//!   1 ANOMALOUS
//! ELSE
//!   1 NOANOMALOUS
//! ENDIF
//! LOOP I 0 len($MODELS)-1
//!   1 MODEL $MODELS[$I]
//! ENDLOOP
//! CASE $MODE
//! CASEMATCH fast
//!   1 CYCLES 5
//! CASEMATCH slow
//!   1 CYCLES 50
//! ENDCASE
//! ```
//!
//! `LOOP VAR FIRST LAST [STEP]` counts VAR from FIRST to LAST inclusive
//! (STEP defaults to 1 and may be negative); inside, `$VAR` is the count.
//! `CASE text` writes the block of the first `CASEMATCH text` whose text
//! equals it after `$` replacement; none may match.
//!
//! **Continuation lines** start with `-` and belong to the line above: they
//! are considered only when that line's flag is true, and are written with a
//! `  - ` prefix (the CCP4 keyword continuation). `--` continues a `-` line.
//! A `-` line with no line above it to continue (first in its block) is an
//! ordinary line, as in CCP4i2.
//!
//! **`LABELLINE LABEL $ITEM LABEL $ITEM ...`** writes
//! `LABIN LABEL=value ...`, stopping at the first unset item; `-` lines below
//! it add more pairs.
//!
//! **Not supported:** `{expr}` Python fragments (there is no Python in a
//! task) and `AT file` inclusion. Both are reported as
//! [`TemplateError::Unsupported`] when the template is parsed, so a template's
//! unit test finds them. For `{$N > 20} text`, write an `IF` block.
//!
//! # Differences from CCP4i2
//!
//! * Values stay whole in [`expand_words`]: CCP4i2 splits the expanded text
//!   on spaces, which breaks file paths containing spaces.
//! * In [`expand`], line breaks inside a value become spaces, so a value
//!   cannot add keyword lines of its own.
//! * Malformed templates are errors rather than Python exceptions or silently
//!   ignored lines: unbalanced blocks, text between `CASE` and its first
//!   `CASEMATCH`, a second `ELSE`, a `LABELLINE` word without its `$ITEM`.
//! * Truth comes from [`Lookup::truth`]; CCP4i2 treats composite items such
//!   as files as always true, whereas an unset file is false here.
//! * `$LIST[2]` and `$LIST[$I]` are additions: CCP4i2 can write a list item
//!   only from a `{}` Python fragment.
//! * Loops stop with [`TemplateError::Limit`] after 100 000 iterations in
//!   all, and expansion after 16 MiB of output.

use std::collections::HashMap;
use std::fmt;

/// Deepest nesting of blocks, continuation lines and parentheses. Expansion
/// recurses, so this bounds stack use whatever the template.
const MAX_NESTING: usize = 64;
/// Loop iterations allowed in one expansion, nested loops counted in full.
const MAX_LOOP_ITERATIONS: u64 = 100_000;
/// Output allowed from one expansion; far beyond any real keyword script.
const MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;
/// 2^63, the first float beyond `i64`.
const TWO_63: f64 = 9_223_372_036_854_775_808.0;

// ---------------------------------------------------------------------------
// Reading values
// ---------------------------------------------------------------------------

/// What a template reads values from. The SDK implements it over the job's
/// container; [`MapLookup`] implements it over a map for tests.
///
/// Names are passed as written after `$`, without `.quote`, and with list
/// indices resolved: `HKLIN`, `CELL.a`, `SPACEGROUPCELL.cell.alpha`,
/// `MODELS[0]`, `MODELS[0].fileName`.
///
/// ```
/// use kiln_sdk::template::{Lookup, LookupError, expand};
///
/// /// Every item is set to its own name, in lower case.
/// struct Echo;
///
/// impl Lookup for Echo {
///     fn text(&self, name: &str) -> Result<Option<String>, LookupError> {
///         Ok(Some(name.to_lowercase()))
///     }
///     fn list_len(&self, name: &str) -> Result<usize, LookupError> {
///         Err(LookupError::other(format!("{name} is not a list")))
///     }
/// }
///
/// assert_eq!(expand("1 XYZIN $XYZIN", &Echo)?, "XYZIN xyzin\n");
/// # Ok::<(), kiln_sdk::template::TemplateError>(())
/// ```
pub trait Lookup {
    /// The value of `NAME` or `NAME.attr` as text: `Ok(None)` when the item
    /// exists but is unset (and has no default), [`LookupError::Unknown`]
    /// when there is no such item.
    ///
    /// ```
    /// use kiln_sdk::template::{Lookup, LookupError, MapLookup};
    ///
    /// let values = MapLookup::new().with("CELL.a", "78.5").with_unset("TITLE");
    /// assert_eq!(values.text("CELL.a"), Ok(Some("78.5".to_string())));
    /// assert_eq!(values.text("TITLE"), Ok(None));
    /// assert_eq!(values.text("NOPE"), Err(LookupError::unknown("NOPE")));
    /// ```
    fn text(&self, name: &str) -> Result<Option<String>, LookupError>;

    /// The number of items in the list item `NAME`, for `len($NAME)`.
    ///
    /// Item `i` (counted from 0, as in Python) is then read as `NAME[i]`,
    /// and its attributes as `NAME[i].attr`; an implementation of
    /// [`Lookup::text`] must accept those names.
    ///
    /// ```
    /// use kiln_sdk::template::{Lookup, MapLookup};
    ///
    /// let values = MapLookup::new().with_list("MODELS", ["a.pdb", "b.pdb"]);
    /// assert_eq!(values.list_len("MODELS"), Ok(2));
    /// assert_eq!(values.text("MODELS[1]"), Ok(Some("b.pdb".to_string())));
    /// ```
    fn list_len(&self, name: &str) -> Result<usize, LookupError>;

    /// Whether `$NAME` as a flag or condition is true.
    ///
    /// CCP4i2 asks Python: an unset item is false; a number is false when
    /// zero, a boolean when false, a string or list when empty; anything
    /// else is true. The default reads [`Lookup::text`] and applies
    /// [`truth_of_text`], which cannot tell the string `"0"` (true in CCP4i2)
    /// from the number 0 (false); an implementation that knows the item's
    /// type should override this.
    ///
    /// ```
    /// use kiln_sdk::template::{Lookup, MapLookup};
    ///
    /// let values = MapLookup::new()
    ///     .with("HEADER", "True")
    ///     .with("NCYC", "0")
    ///     .with_unset("TITLE");
    /// assert_eq!(values.truth("HEADER"), Ok(true));
    /// assert_eq!(values.truth("NCYC"), Ok(false));
    /// assert_eq!(values.truth("TITLE"), Ok(false));
    /// ```
    fn truth(&self, name: &str) -> Result<bool, LookupError> {
        Ok(self.text(name)?.is_some_and(|t| truth_of_text(&t)))
    }
}

/// Truth of a set value known only by its text, as CCP4i2 would judge the
/// item it came from: empty text, `False`/`false` and numeric zero are false,
/// everything else is true.
///
/// ```
/// use kiln_sdk::template::truth_of_text;
///
/// assert!(truth_of_text("True"));
/// assert!(truth_of_text("P 21 21 21"));
/// assert!(truth_of_text("2.5"));
/// assert!(!truth_of_text("False"));
/// assert!(!truth_of_text("0.0"));
/// assert!(!truth_of_text(""));
/// ```
pub fn truth_of_text(text: &str) -> bool {
    let t = text.trim();
    if t.is_empty() || t == "False" || t == "false" {
        return false;
    }
    match t.parse::<f64>() {
        Ok(n) => n != 0.0,
        Err(_) => true,
    }
}

/// Why a [`Lookup`] could not give a value.
///
/// ```
/// use kiln_sdk::template::LookupError;
///
/// assert_eq!(LookupError::unknown("HKLIN").to_string(), "no item named HKLIN");
/// assert_eq!(LookupError::other("host went away").to_string(), "host went away");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// There is no item of this name.
    Unknown(String),
    /// The item exists but could not be read, e.g. it is ambiguous or not a
    /// list.
    Other(String),
}

impl LookupError {
    /// No item is called `name`.
    pub fn unknown(name: impl Into<String>) -> Self {
        LookupError::Unknown(name.into())
    }

    /// Any other failure, described by `message`.
    pub fn other(message: impl Into<String>) -> Self {
        LookupError::Other(message.into())
    }
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::Unknown(name) => write!(f, "no item named {name}"),
            LookupError::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for LookupError {}

/// A [`Lookup`] over a map from names to text, for unit tests of templates.
///
/// Keys are the names a template asks for (`CELL.a`, not `inputData.CELL.a`).
///
/// ```
/// use kiln_sdk::template::{MapLookup, expand};
///
/// let values = MapLookup::new()
///     .with("CELL.a", "100.0").with("CELL.b", "120.0").with("CELL.c", "30.0")
///     .with("CELL.alpha", "90.0").with("CELL.beta", "90.0").with("CELL.gamma", "89.1");
/// let script = expand(
///     "1 CELL $CELL.a $CELL.b $CELL.c $CELL.alpha $CELL.beta $CELL.gamma\n1 END",
///     &values,
/// )?;
/// assert_eq!(script, "CELL 100.0 120.0 30.0 90.0 90.0 89.1\nEND\n");
///
/// // Or from pairs:
/// let values: MapLookup = [("HKLIN", "in.mtz")].into_iter().collect();
/// assert_eq!(expand("1 HKLIN $HKLIN", &values)?, "HKLIN in.mtz\n");
/// # Ok::<(), kiln_sdk::template::TemplateError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct MapLookup {
    values: HashMap<String, Option<String>>,
    lists: HashMap<String, usize>,
}

impl MapLookup {
    /// An empty map: every name is unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a set item.
    pub fn with(mut self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.insert(name, text);
        self
    }

    /// Adds an item that exists but is unset.
    ///
    /// ```
    /// use kiln_sdk::template::{MapLookup, expand};
    ///
    /// let values = MapLookup::new().with_unset("TITLE");
    /// assert_eq!(expand("$TITLE TITLE $TITLE\n1 END", &values)?, "END\n");
    /// # Ok::<(), kiln_sdk::template::TemplateError>(())
    /// ```
    pub fn with_unset(mut self, name: impl Into<String>) -> Self {
        self.insert_unset(name);
        self
    }

    /// Adds a list item `name` whose items are `name[0]`, `name[1]`, ...
    /// Attributes of the items can be added with [`MapLookup::with`], e.g.
    /// `"MODELS[0].chain"`.
    ///
    /// ```
    /// use kiln_sdk::template::{MapLookup, expand};
    ///
    /// let values = MapLookup::new().with_list("MODELS", ["a.pdb", "b.pdb"]);
    /// let t = "LOOP I 0 len($MODELS)-1\n1 MODEL $MODELS[$I]\nENDLOOP";
    /// assert_eq!(expand(t, &values)?, "MODEL a.pdb\nMODEL b.pdb\n");
    /// # Ok::<(), kiln_sdk::template::TemplateError>(())
    /// ```
    pub fn with_list<I, S>(mut self, name: impl Into<String>, items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.insert_list(name, items);
        self
    }

    /// Sets an item in place; see [`MapLookup::with`].
    pub fn insert(&mut self, name: impl Into<String>, text: impl Into<String>) {
        self.values.insert(name.into(), Some(text.into()));
    }

    /// Marks an item unset in place; see [`MapLookup::with_unset`].
    pub fn insert_unset(&mut self, name: impl Into<String>) {
        self.values.insert(name.into(), None);
    }

    /// Sets a list in place; see [`MapLookup::with_list`].
    pub fn insert_list<I, S>(&mut self, name: impl Into<String>, items: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let name = name.into();
        let mut n = 0;
        for item in items {
            self.values
                .insert(format!("{name}[{n}]"), Some(item.into()));
            n += 1;
        }
        self.lists.insert(name, n);
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for MapLookup {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut map = MapLookup::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl Lookup for MapLookup {
    fn text(&self, name: &str) -> Result<Option<String>, LookupError> {
        if let Some(v) = self.values.get(name) {
            return Ok(v.clone());
        }
        match self.lists.get(name) {
            // CCP4i2 writes a list as its items in brackets.
            Some(&n) => {
                let items: Vec<String> = (0..n)
                    .map(|i| {
                        self.values
                            .get(&format!("{name}[{i}]"))
                            .cloned()
                            .flatten()
                            .unwrap_or_default()
                    })
                    .collect();
                Ok(Some(format!("[{}]", items.join(","))))
            }
            None => Err(LookupError::unknown(name)),
        }
    }

    fn list_len(&self, name: &str) -> Result<usize, LookupError> {
        match self.lists.get(name) {
            Some(&n) => Ok(n),
            None if self.values.contains_key(name) => {
                Err(LookupError::other(format!("{name} is not a list")))
            }
            None => Err(LookupError::unknown(name)),
        }
    }

    fn truth(&self, name: &str) -> Result<bool, LookupError> {
        match self.lists.get(name) {
            Some(&n) if !self.values.contains_key(name) => Ok(n > 0),
            _ => Ok(self.text(name)?.is_some_and(|t| truth_of_text(&t))),
        }
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a template could not be parsed or expanded. Every variant carries the
/// 1-based line of the template it concerns; see [`TemplateError::line`].
///
/// ```
/// use kiln_sdk::template::{MapLookup, TemplateError, expand};
///
/// let err = expand("# header\n1 HKLIN $HKLIN", &MapLookup::new()).unwrap_err();
/// assert_eq!(err, TemplateError::UnknownName { line: 2, name: "HKLIN".into() });
/// assert_eq!(err.to_string(), "template line 2: unknown name $HKLIN");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateError {
    /// `$NAME` (or `len($NAME)`, `$NAME.isSet()`) names no item.
    UnknownName { line: usize, name: String },
    /// The item exists but the [`Lookup`] could not read it.
    Lookup {
        line: usize,
        name: String,
        message: String,
    },
    /// A construct the sandbox cannot run: `{expr}` Python fragments, Python
    /// beyond the supported conditions, `AT` file inclusion.
    Unsupported { line: usize, message: String },
    /// A block keyword without its partner: `IF` without `ENDIF`, `ENDLOOP`
    /// without `LOOP`, `ELSE` outside `IF`, a second `ELSE`, ...
    Unbalanced { line: usize, message: String },
    /// A malformed line, keyword or condition.
    Syntax { line: usize, message: String },
    /// A value that does not fit its use: a non-integer `LOOP` bound,
    /// ordering an unset item, a zero `LOOP` step, ...
    Value { line: usize, message: String },
    /// Too many loop iterations, too much output, or nesting too deep.
    Limit { line: usize, message: String },
}

impl TemplateError {
    /// The 1-based template line the error concerns.
    ///
    /// ```
    /// use kiln_sdk::template::Template;
    ///
    /// let err = Template::parse("1 A\nIF $X\n1 B").unwrap_err();
    /// assert_eq!(err.line(), 2);
    /// ```
    pub fn line(&self) -> usize {
        match self {
            TemplateError::UnknownName { line, .. }
            | TemplateError::Lookup { line, .. }
            | TemplateError::Unsupported { line, .. }
            | TemplateError::Unbalanced { line, .. }
            | TemplateError::Syntax { line, .. }
            | TemplateError::Value { line, .. }
            | TemplateError::Limit { line, .. } => *line,
        }
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "template line {}: ", self.line())?;
        match self {
            TemplateError::UnknownName { name, .. } => write!(f, "unknown name ${name}"),
            TemplateError::Lookup { name, message, .. } => {
                write!(f, "cannot read ${name}: {message}")
            }
            TemplateError::Unsupported { message, .. }
            | TemplateError::Unbalanced { message, .. }
            | TemplateError::Syntax { message, .. }
            | TemplateError::Value { message, .. }
            | TemplateError::Limit { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for TemplateError {}

fn syntax(line: usize, message: impl Into<String>) -> TemplateError {
    TemplateError::Syntax {
        line,
        message: message.into(),
    }
}

fn value_error(line: usize, message: impl Into<String>) -> TemplateError {
    TemplateError::Value {
        line,
        message: message.into(),
    }
}

fn unbalanced(line: usize, message: impl Into<String>) -> TemplateError {
    TemplateError::Unbalanced {
        line,
        message: message.into(),
    }
}

fn unsupported(line: usize, message: impl Into<String>) -> TemplateError {
    TemplateError::Unsupported {
        line,
        message: message.into(),
    }
}

fn limit(line: usize, message: impl Into<String>) -> TemplateError {
    TemplateError::Limit {
        line,
        message: message.into(),
    }
}

fn no_python(line: usize, expr: &str) -> TemplateError {
    unsupported(
        line,
        format!(
            "expression evaluation is not supported: `{expr}` is a Python fragment; \
             test values with an IF block or compute them in the task"
        ),
    )
}

fn lookup_error(line: usize, name: &str, e: LookupError) -> TemplateError {
    match e {
        LookupError::Unknown(_) => TemplateError::UnknownName {
            line,
            name: name.to_string(),
        },
        LookupError::Other(message) => TemplateError::Lookup {
            line,
            name: name.to_string(),
            message,
        },
    }
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// Expands a `COMTEMPLATE` into the program's keyword script: the written
/// lines, each ending in `\n` (an empty string when none is written).
///
/// ```
/// use kiln_sdk::template::{MapLookup, expand};
///
/// let values = MapLookup::new().with("NCYC", "10").with("WEIGHT", "0");
/// let t = "1 NCYC $NCYC\n$WEIGHT WEIGHT MATRIX $WEIGHT | WEIGHT AUTO\n1 END";
/// assert_eq!(expand(t, &values)?, "NCYC 10\nWEIGHT AUTO\nEND\n");
/// # Ok::<(), kiln_sdk::template::TemplateError>(())
/// ```
pub fn expand(template: &str, lookup: &dyn Lookup) -> Result<String, TemplateError> {
    Template::parse(template)?.expand(lookup)
}

/// Expands a `COMLINETEMPLATE` into the program's arguments.
///
/// The template text is split on whitespace, but each `$` value is exactly
/// one argument, spaces and all, so file paths survive; an unset or empty
/// value gives no argument.
///
/// ```
/// use kiln_sdk::template::{MapLookup, expand_words};
///
/// let values = MapLookup::new()
///     .with("XYZIN", "/home/me/My Models/in.pdb")
///     .with_unset("XYZOUT");
/// let argv = expand_words("1 XYZIN $XYZIN\n1 XYZOUT $XYZOUT", &values)?;
/// assert_eq!(argv, ["XYZIN", "/home/me/My Models/in.pdb", "XYZOUT"]);
/// # Ok::<(), kiln_sdk::template::TemplateError>(())
/// ```
pub fn expand_words(template: &str, lookup: &dyn Lookup) -> Result<Vec<String>, TemplateError> {
    Template::parse(template)?.expand_words(lookup)
}

/// A parsed template: parse once, check it without values, expand many times.
///
/// Parsing finds every structural error (unbalanced blocks, malformed
/// conditions, unsupported `{expr}`); names are looked up only on expansion,
/// and only on the lines expansion reaches, as in CCP4i2.
///
/// ```
/// use kiln_sdk::template::{MapLookup, Template};
///
/// let t = Template::parse("IF $HEADER\n  1 HEADER\nENDIF\n1 END")?;
/// let on = MapLookup::new().with("HEADER", "True");
/// let off = MapLookup::new().with("HEADER", "False");
/// assert_eq!(t.expand(&on)?, "HEADER\nEND\n");
/// assert_eq!(t.expand(&off)?, "END\n");
///
/// assert!(Template::parse("IF $HEADER\n1 HEADER").is_err());
/// # Ok::<(), kiln_sdk::template::TemplateError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    /// Parses a template; see the [module documentation](self) for the
    /// language.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        Parser::new().run(source)
    }

    /// Expands to a keyword script; see [`expand`].
    pub fn expand(&self, lookup: &dyn Lookup) -> Result<String, TemplateError> {
        let lines = self.run(lookup)?;
        let mut out = String::new();
        for pieces in &lines {
            let mut line = String::new();
            let mut marker = false;
            for piece in pieces {
                match piece {
                    Piece::Marker => marker = true,
                    Piece::Text(t) => line.push_str(t),
                    Piece::Word(w) => line.extend(w.chars().map(|c| match c {
                        '\n' | '\r' => ' ',
                        c => c,
                    })),
                }
            }
            if marker {
                out.push_str("  - ");
            }
            out.push_str(line.trim());
            out.push('\n');
        }
        Ok(out)
    }

    /// Expands to program arguments; see [`expand_words`].
    pub fn expand_words(&self, lookup: &dyn Lookup) -> Result<Vec<String>, TemplateError> {
        let lines = self.run(lookup)?;
        let mut words = Vec::new();
        for piece in lines.iter().flatten() {
            match piece {
                Piece::Marker => words.push("-".to_string()),
                Piece::Text(t) => words.extend(t.split_whitespace().map(str::to_string)),
                Piece::Word(w) if !w.is_empty() => words.push(w.clone()),
                Piece::Word(_) => {}
            }
        }
        Ok(words)
    }

    fn run(&self, lookup: &dyn Lookup) -> Result<Vec<Vec<Piece>>, TemplateError> {
        let mut ex = Expander {
            lookup,
            vars: Vec::new(),
            iterations: 0,
            bytes: 0,
            out: Vec::new(),
        };
        ex.nodes(&self.nodes)?;
        Ok(ex.out)
    }
}

// ---------------------------------------------------------------------------
// Parsed form
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Node {
    Line(Line),
    If {
        line: usize,
        cond: Expr,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Loop {
        line: usize,
        var: String,
        first: Expr,
        last: Expr,
        step: Option<Expr>,
        body: Vec<Node>,
    },
    Case {
        line: usize,
        value: Text,
        arms: Vec<Arm>,
    },
    Labels {
        line: usize,
        pairs: Vec<Label>,
    },
}

#[derive(Debug, Clone)]
struct Line {
    line: usize,
    depth: usize,
    flag: Expr,
    text: Text,
    alt: Option<Text>,
    children: Vec<Line>,
}

#[derive(Debug, Clone)]
struct Arm {
    pattern: Text,
    body: Vec<Node>,
}

#[derive(Debug, Clone)]
struct Label {
    line: usize,
    label: String,
    value: Ref,
}

/// Line text split into literal runs (spacing kept) and `$` words.
#[derive(Debug, Clone, Default)]
struct Text {
    parts: Vec<TextPart>,
}

#[derive(Debug, Clone)]
enum TextPart {
    Lit(String),
    Ref(Ref),
}

/// A `$` reference: name pieces with list indices between them.
#[derive(Debug, Clone)]
struct Ref {
    parts: Vec<RefPart>,
    quote: bool,
}

#[derive(Debug, Clone)]
enum RefPart {
    Lit(String),
    Index(Index),
}

#[derive(Debug, Clone)]
enum Index {
    Const(usize),
    Var(String),
}

#[derive(Debug, Clone)]
enum Expr {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    None,
    Ref(Ref),
    IsSet(Ref),
    Len(Ref),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Box<Expr>, Vec<(CmpOp, Expr)>),
    Add(Box<Expr>, Box<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

// ---------------------------------------------------------------------------
// Parsing lines and blocks
// ---------------------------------------------------------------------------

enum Frame {
    If {
        line: usize,
        cond: Expr,
        then: Vec<Node>,
        otherwise: Option<Vec<Node>>,
    },
    Loop {
        line: usize,
        var: String,
        first: Expr,
        last: Expr,
        step: Option<Expr>,
        body: Vec<Node>,
    },
    Case {
        line: usize,
        value: Text,
        arms: Vec<Arm>,
    },
}

impl Frame {
    fn keyword(&self) -> &'static str {
        match self {
            Frame::If { .. } => "IF",
            Frame::Loop { .. } => "LOOP",
            Frame::Case { .. } => "CASE",
        }
    }

    fn closer(&self) -> &'static str {
        match self {
            Frame::If { .. } => "ENDIF",
            Frame::Loop { .. } => "ENDLOOP",
            Frame::Case { .. } => "ENDCASE",
        }
    }

    fn line(&self) -> usize {
        match self {
            Frame::If { line, .. } | Frame::Loop { line, .. } | Frame::Case { line, .. } => *line,
        }
    }

    fn into_node(self) -> Node {
        match self {
            Frame::If {
                line,
                cond,
                then,
                otherwise,
            } => Node::If {
                line,
                cond,
                then,
                otherwise: otherwise.unwrap_or_default(),
            },
            Frame::Loop {
                line,
                var,
                first,
                last,
                step,
                body,
            } => Node::Loop {
                line,
                var,
                first,
                last,
                step,
                body,
            },
            Frame::Case { line, value, arms } => Node::Case { line, value, arms },
        }
    }
}

struct Parser {
    root: Vec<Node>,
    stack: Vec<Frame>,
}

impl Parser {
    fn new() -> Self {
        Parser {
            root: Vec::new(),
            stack: Vec::new(),
        }
    }

    /// Where lines go now; `None` between `CASE` and its first `CASEMATCH`.
    fn current(&mut self) -> Option<&mut Vec<Node>> {
        match self.stack.last_mut() {
            None => Some(&mut self.root),
            Some(Frame::If {
                then, otherwise, ..
            }) => Some(otherwise.as_mut().unwrap_or(then)),
            Some(Frame::Loop { body, .. }) => Some(body),
            Some(Frame::Case { arms, .. }) => arms.last_mut().map(|a| &mut a.body),
        }
    }

    fn push_node(&mut self, n: usize, node: Node) -> Result<(), TemplateError> {
        let case_line = match self.stack.last() {
            Some(Frame::Case { line, .. }) => *line,
            _ => 0,
        };
        match self.current() {
            Some(list) => {
                list.push(node);
                Ok(())
            }
            None => Err(syntax(
                n,
                format!(
                    "this line is between CASE (line {case_line}) and its first CASEMATCH, \
                     so it could never be written"
                ),
            )),
        }
    }

    fn open(&mut self, n: usize, frame: Frame) -> Result<(), TemplateError> {
        if self.stack.len() >= MAX_NESTING {
            return Err(limit(
                n,
                format!("blocks are nested more than {MAX_NESTING} deep"),
            ));
        }
        // A block opened before the first CASEMATCH is as unreachable as a line.
        if matches!(self.stack.last(), Some(Frame::Case { arms, .. }) if arms.is_empty()) {
            let case_line = self.stack.last().map_or(0, Frame::line);
            return Err(syntax(
                n,
                format!(
                    "this {} is between CASE (line {case_line}) and its first CASEMATCH, \
                     so it could never be written",
                    frame.keyword()
                ),
            ));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn close(&mut self, n: usize, keyword: &str, opener: &str) -> Result<(), TemplateError> {
        match self.stack.last() {
            None => Err(unbalanced(
                n,
                format!("{keyword} without a matching {opener}"),
            )),
            Some(top) if top.keyword() != opener => Err(unbalanced(
                n,
                format!(
                    "{keyword} found while {} from line {} is still open (missing {}?)",
                    top.keyword(),
                    top.line(),
                    top.closer()
                ),
            )),
            Some(_) => {
                if let Some(frame) = self.stack.pop() {
                    let node = frame.into_node();
                    self.push_node(n, node)?;
                }
                Ok(())
            }
        }
    }

    fn run(mut self, source: &str) -> Result<Template, TemplateError> {
        for (i, raw) in source.lines().enumerate() {
            let n = i + 1;
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            self.line(n, t)?;
        }
        if let Some(top) = self.stack.last() {
            return Err(unbalanced(
                top.line(),
                format!(
                    "{} at line {} has no {}",
                    top.keyword(),
                    top.line(),
                    top.closer()
                ),
            ));
        }
        Ok(Template { nodes: self.root })
    }

    fn line(&mut self, n: usize, t: &str) -> Result<(), TemplateError> {
        let (word, rest) = split_first_word(t);
        let no_args = |kw: &str| {
            if rest.is_empty() {
                Ok(())
            } else {
                Err(syntax(
                    n,
                    format!("{kw} must be alone on its line, found `{t}`"),
                ))
            }
        };
        match word {
            "IF" => {
                if rest.is_empty() {
                    return Err(syntax(n, "IF needs a condition"));
                }
                let cond = parse_condition(rest, n)?;
                self.open(
                    n,
                    Frame::If {
                        line: n,
                        cond,
                        then: Vec::new(),
                        otherwise: None,
                    },
                )
            }
            "ELSE" => {
                no_args("ELSE")?;
                match self.stack.last_mut() {
                    Some(Frame::If {
                        otherwise: otherwise @ None,
                        ..
                    }) => {
                        *otherwise = Some(Vec::new());
                        Ok(())
                    }
                    Some(Frame::If { line, .. }) => Err(unbalanced(
                        n,
                        format!("second ELSE for the IF at line {line}"),
                    )),
                    Some(top) => Err(unbalanced(
                        n,
                        format!(
                            "ELSE found while {} from line {} is still open (missing {}?)",
                            top.keyword(),
                            top.line(),
                            top.closer()
                        ),
                    )),
                    None => Err(unbalanced(n, "ELSE without a matching IF")),
                }
            }
            "ENDIF" => {
                no_args("ENDIF")?;
                self.close(n, "ENDIF", "IF")
            }
            "LOOP" => {
                let frame = parse_loop(rest, n)?;
                self.open(n, frame)
            }
            "ENDLOOP" => {
                no_args("ENDLOOP")?;
                self.close(n, "ENDLOOP", "LOOP")
            }
            "CASE" => {
                if rest.is_empty() {
                    return Err(syntax(n, "CASE needs a value to match, e.g. CASE $MODE"));
                }
                let value = parse_text(rest, n)?;
                self.open(
                    n,
                    Frame::Case {
                        line: n,
                        value,
                        arms: Vec::new(),
                    },
                )
            }
            "CASEMATCH" => {
                let pattern = parse_text(rest, n)?;
                match self.stack.last_mut() {
                    Some(Frame::Case { arms, .. }) => {
                        arms.push(Arm {
                            pattern,
                            body: Vec::new(),
                        });
                        Ok(())
                    }
                    Some(top) => Err(unbalanced(
                        n,
                        format!(
                            "CASEMATCH found while {} from line {} is still open (missing {}?)",
                            top.keyword(),
                            top.line(),
                            top.closer()
                        ),
                    )),
                    None => Err(unbalanced(n, "CASEMATCH without a matching CASE")),
                }
            }
            "ENDCASE" => {
                no_args("ENDCASE")?;
                self.close(n, "ENDCASE", "CASE")
            }
            "AT" => Err(unsupported(
                n,
                "AT (reading template lines from a file) is not supported; \
                 put the lines in the template itself",
            )),
            "LABELLINE" => {
                let pairs = parse_labels(rest, n)?;
                self.push_node(n, Node::Labels { line: n, pairs })
            }
            _ if t.starts_with('-') => self.continuation(n, t),
            _ => {
                let line = parse_line(t, n, 0)?;
                self.push_node(n, Node::Line(line))
            }
        }
    }

    fn continuation(&mut self, n: usize, t: &str) -> Result<(), TemplateError> {
        let body = t.trim_start_matches('-');
        let dashes = t.len() - body.len();
        let body = body.trim();
        match self.current().and_then(|list| list.last_mut()) {
            Some(Node::Line(parent)) => {
                // Follow the most recent chain of continuations down to the
                // line this one continues: CCP4i2 nests `--` under the `-`
                // above it and returns to the parent on a shorter run.
                let mut node = parent;
                let mut depth = 0;
                while depth + 1 < dashes && !node.children.is_empty() {
                    let last = node.children.len() - 1;
                    node = &mut node.children[last];
                    depth += 1;
                }
                if depth + 1 > MAX_NESTING {
                    return Err(limit(
                        n,
                        format!("continuation lines are nested more than {MAX_NESTING} deep"),
                    ));
                }
                let child = parse_line(body, n, depth + 1)?;
                node.children.push(child);
                Ok(())
            }
            Some(Node::Labels { pairs, .. }) => {
                let more = parse_labels(body, n)?;
                pairs.extend(more);
                Ok(())
            }
            // Nothing to continue: CCP4i2 drops the dashes and takes the line
            // as an ordinary one.
            _ => {
                let line = parse_line(body, n, 0)?;
                self.push_node(n, Node::Line(line))
            }
        }
    }
}

fn split_first_word(t: &str) -> (&str, &str) {
    match t.find(char::is_whitespace) {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, ""),
    }
}

fn has_python_fragment(text: &str) -> Option<&str> {
    let open = text.find('{')?;
    let close = text[open..].find('}')?;
    Some(&text[open..open + close + 1])
}

fn parse_line(t: &str, n: usize, depth: usize) -> Result<Line, TemplateError> {
    if t.is_empty() {
        return Err(syntax(n, "a continuation line needs a flag and text"));
    }
    if t.starts_with('{') {
        let expr = has_python_fragment(t).unwrap_or(t);
        return Err(no_python(n, expr));
    }
    let (flag_word, rest) = split_first_word(t);
    let flag = parse_condition(flag_word, n)?;
    if let Some(fragment) = has_python_fragment(rest) {
        return Err(no_python(n, fragment));
    }
    let (main, alt) = match rest.split_once('|') {
        Some((main, alt)) => (main.trim(), Some(alt.trim())),
        None => (rest, None),
    };
    Ok(Line {
        line: n,
        depth,
        flag,
        text: parse_text(main, n)?,
        alt: alt.map(|a| parse_text(a, n)).transpose()?,
        children: Vec::new(),
    })
}

fn parse_loop(rest: &str, n: usize) -> Result<Frame, TemplateError> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    if !(3..=4).contains(&words.len()) {
        return Err(syntax(
            n,
            format!(
                "LOOP takes a variable, a first and a last value and an optional step \
                 (LOOP N 1 $COUNT), found `LOOP {rest}`"
            ),
        ));
    }
    let var = words[0];
    if let Some(bare) = var.strip_prefix('$') {
        return Err(syntax(
            n,
            format!("the LOOP variable is named without `$`: LOOP {bare} ..."),
        ));
    }
    if !is_identifier(var) {
        return Err(syntax(
            n,
            format!("`{var}` is not a valid LOOP variable name"),
        ));
    }
    Ok(Frame::Loop {
        line: n,
        var: var.to_string(),
        first: parse_condition(words[1], n)?,
        last: parse_condition(words[2], n)?,
        step: words.get(3).map(|w| parse_condition(w, n)).transpose()?,
        body: Vec::new(),
    })
}

fn parse_labels(rest: &str, n: usize) -> Result<Vec<Label>, TemplateError> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    if !words.len().is_multiple_of(2) {
        return Err(syntax(
            n,
            "LABELLINE takes pairs of a label and a $ITEM, e.g. LABELLINE F $F_SIGF.F",
        ));
    }
    let mut pairs = Vec::new();
    for pair in words.chunks(2) {
        let (label, item) = (pair[0], pair[1]);
        match item.strip_prefix('$') {
            Some(r) if !label.starts_with('$') => pairs.push(Label {
                line: n,
                label: label.to_string(),
                value: parse_ref(r, n)?,
            }),
            _ => {
                return Err(syntax(
                    n,
                    format!("`{label} {item}` in LABELLINE is not a label and a $ITEM"),
                ));
            }
        }
    }
    Ok(pairs)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

fn parse_text(s: &str, n: usize) -> Result<Text, TemplateError> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        let ws = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        lit.push_str(&rest[..ws]);
        rest = &rest[ws..];
        if rest.is_empty() {
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        rest = &rest[end..];
        match word.strip_prefix('$') {
            Some(r) => {
                if !lit.is_empty() {
                    parts.push(TextPart::Lit(std::mem::take(&mut lit)));
                }
                parts.push(TextPart::Ref(parse_ref(r, n)?));
            }
            None => lit.push_str(word),
        }
    }
    if !lit.is_empty() {
        parts.push(TextPart::Lit(lit));
    }
    Ok(Text { parts })
}

/// Parses what follows a `$`.
fn parse_ref(r: &str, n: usize) -> Result<Ref, TemplateError> {
    if r.is_empty() {
        return Err(syntax(n, "`$` must be followed by a name"));
    }
    let (body, quote) = match r.strip_suffix(".quote") {
        Some(b) if !b.is_empty() => (b, true),
        _ => (r, false),
    };
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = body;
    while let Some(i) = rest.find(['[', ']']) {
        if rest[i..].starts_with(']') {
            return Err(syntax(n, format!("`]` without `[` in `${r}`")));
        }
        lit.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let close = after
            .find(']')
            .ok_or_else(|| syntax(n, format!("`[` without `]` in `${r}`")))?;
        let inner = &after[..close];
        let index = if let Some(v) = inner.strip_prefix('$') {
            if !is_identifier(v) {
                return Err(syntax(
                    n,
                    format!("bad index `[{inner}]` in `${r}`: use [2] or [$I]"),
                ));
            }
            Index::Var(v.to_string())
        } else if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
            Index::Const(
                inner
                    .parse()
                    .map_err(|_| syntax(n, format!("index `[{inner}]` in `${r}` is too large")))?,
            )
        } else {
            return Err(syntax(
                n,
                format!("bad index `[{inner}]` in `${r}`: use [2] or [$I]"),
            ));
        };
        if lit.is_empty() && parts.is_empty() {
            return Err(syntax(
                n,
                format!("an index needs a name before it: `${r}`"),
            ));
        }
        parts.push(RefPart::Lit(std::mem::take(&mut lit)));
        parts.push(RefPart::Index(index));
        rest = &after[close + 1..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(RefPart::Lit(lit));
    }
    Ok(Ref { parts, quote })
}

// ---------------------------------------------------------------------------
// Parsing conditions
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Tok {
    Ref(Ref),
    IsSet(Ref),
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    Op(&'static str),
}

/// Length of a reference body after `$` inside a condition: name characters,
/// dots, and bracketed indices.
fn ref_len(s: &str) -> usize {
    let mut in_index = false;
    for (i, c) in s.char_indices() {
        if in_index {
            if c == ']' {
                in_index = false;
            }
            continue;
        }
        match c {
            '[' => in_index = true,
            c if c.is_alphanumeric() || c == '_' || c == '.' => {}
            _ => return i,
        }
    }
    s.len()
}

fn lex(src: &str, n: usize) -> Result<Vec<Tok>, TemplateError> {
    let mut toks = Vec::new();
    let mut rest = src;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else {
            break;
        };
        if c == '{' || c == '}' {
            return Err(no_python(n, src));
        }
        if c == '$' {
            let len = ref_len(&rest[1..]);
            let body = &rest[1..1 + len];
            rest = &rest[1 + len..];
            if let Some(name) = body.strip_suffix(".isSet")
                && let Some(after) = rest.strip_prefix("()")
            {
                rest = after;
                toks.push(Tok::IsSet(parse_ref(name, n)?));
                continue;
            }
            if rest.starts_with('(') {
                return Err(unsupported(
                    n,
                    format!(
                        "calling `${body}(...)` is not supported in `{src}`: \
                         conditions may use $NAME.isSet() only"
                    ),
                ));
            }
            toks.push(Tok::Ref(parse_ref(body, n)?));
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && rest[1..].starts_with(|d: char| d.is_ascii_digit())) {
            let end = rest
                .find(|d: char| !(d.is_ascii_alphanumeric() || d == '.'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            rest = &rest[end..];
            if let Ok(i) = word.parse::<i64>() {
                toks.push(Tok::Int(i));
            } else if word
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E')
                && let Ok(f) = word.parse::<f64>()
            {
                toks.push(Tok::Float(f));
            } else {
                return Err(syntax(n, format!("`{word}` is not a number in `{src}`")));
            }
            continue;
        }
        if c == '\'' || c == '"' {
            let body = &rest[1..];
            let close = body
                .find(c)
                .ok_or_else(|| syntax(n, format!("unterminated quote in `{src}`")))?;
            toks.push(Tok::Str(body[..close].to_string()));
            rest = &body[close + 1..];
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let end = rest
                .find(|d: char| !(d.is_alphanumeric() || d == '_'))
                .unwrap_or(rest.len());
            toks.push(Tok::Ident(rest[..end].to_string()));
            rest = &rest[end..];
            continue;
        }
        let op = ["==", "!=", "<=", ">=", "<", ">", "+", "-", "(", ")"]
            .into_iter()
            .find(|op| rest.starts_with(op));
        match op {
            Some(op) => {
                toks.push(Tok::Op(op));
                rest = &rest[op.len()..];
            }
            None => {
                return Err(unsupported(
                    n,
                    format!(
                        "`{c}` in `{src}` is not supported: conditions may use $NAME, numbers, \
                         quoted text, True, False, None, not, and, or, comparisons, + and -, \
                         len($LIST) and $NAME.isSet()"
                    ),
                ));
            }
        }
    }
    Ok(toks)
}

fn parse_condition(src: &str, n: usize) -> Result<Expr, TemplateError> {
    let toks = lex(src, n)?;
    if toks.is_empty() {
        return Err(syntax(n, "empty condition"));
    }
    let mut p = CondParser {
        toks,
        pos: 0,
        src,
        n,
        depth: 0,
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(p.unexpected());
    }
    Ok(e)
}

struct CondParser<'s> {
    toks: Vec<Tok>,
    pos: usize,
    src: &'s str,
    n: usize,
    depth: usize,
}

impl CondParser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat_ident(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(w)) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn unexpected(&self) -> TemplateError {
        match self.peek() {
            Some(Tok::Ident(w)) if !is_keyword(w) => syntax(
                self.n,
                format!(
                    "unknown word `{w}` in condition `{}` (container items are written ${w})",
                    self.src
                ),
            ),
            Some(t) => syntax(
                self.n,
                format!("unexpected {} in condition `{}`", describe(t), self.src),
            ),
            None => syntax(self.n, format!("condition `{}` ends too soon", self.src)),
        }
    }

    fn deeper(&mut self) -> Result<(), TemplateError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(limit(
                self.n,
                format!("condition nested more than {MAX_NESTING} deep"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, TemplateError> {
        let mut e = self.and()?;
        while self.eat_ident("or") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, TemplateError> {
        let mut e = self.not()?;
        while self.eat_ident("and") {
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, TemplateError> {
        if self.eat_ident("not") {
            self.deeper()?;
            let e = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, TemplateError> {
        let first = self.sum()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Some(Tok::Op("==")) => CmpOp::Eq,
                Some(Tok::Op("!=")) => CmpOp::Ne,
                Some(Tok::Op("<")) => CmpOp::Lt,
                Some(Tok::Op("<=")) => CmpOp::Le,
                Some(Tok::Op(">")) => CmpOp::Gt,
                Some(Tok::Op(">=")) => CmpOp::Ge,
                _ => break,
            };
            self.pos += 1;
            rest.push((op, self.sum()?));
        }
        if rest.is_empty() {
            Ok(first)
        } else {
            Ok(Expr::Cmp(Box::new(first), rest))
        }
    }

    fn sum(&mut self) -> Result<Expr, TemplateError> {
        let mut e = self.unary()?;
        loop {
            if self.eat_op("+") {
                e = Expr::Add(Box::new(e), Box::new(self.unary()?));
            } else if self.eat_op("-") {
                e = Expr::Sub(Box::new(e), Box::new(self.unary()?));
            } else {
                return Ok(e);
            }
        }
    }

    fn unary(&mut self) -> Result<Expr, TemplateError> {
        if self.eat_op("-") {
            self.deeper()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Neg(Box::new(e)));
        }
        if self.eat_op("+") {
            self.deeper()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(e);
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, TemplateError> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.unexpected());
        };
        let e = match tok {
            Tok::Int(i) => Expr::Int(i),
            Tok::Float(f) => Expr::Float(f),
            Tok::Str(s) => Expr::Str(s),
            Tok::Ref(r) => Expr::Ref(r),
            Tok::IsSet(r) => Expr::IsSet(r),
            Tok::Op("(") => {
                self.pos += 1;
                self.deeper()?;
                let e = self.or()?;
                self.depth -= 1;
                if !self.eat_op(")") {
                    return Err(syntax(
                        self.n,
                        format!("`(` without `)` in condition `{}`", self.src),
                    ));
                }
                return Ok(e);
            }
            Tok::Ident(w) => match w.as_str() {
                "True" => Expr::Bool(true),
                "False" => Expr::Bool(false),
                "None" => Expr::None,
                "len" => {
                    self.pos += 1;
                    let r = match (self.toks.get(self.pos), self.toks.get(self.pos + 1)) {
                        (Some(Tok::Op("(")), Some(Tok::Ref(r))) => r.clone(),
                        _ => {
                            return Err(unsupported(
                                self.n,
                                format!(
                                    "len(...) takes one $LIST in conditions, in `{}`",
                                    self.src
                                ),
                            ));
                        }
                    };
                    self.pos += 2;
                    if !self.eat_op(")") {
                        return Err(unsupported(
                            self.n,
                            format!("len(...) takes one $LIST in conditions, in `{}`", self.src),
                        ));
                    }
                    return Ok(Expr::Len(r));
                }
                _ if matches!(self.toks.get(self.pos + 1), Some(Tok::Op("("))) => {
                    return Err(unsupported(
                        self.n,
                        format!(
                            "calling `{w}(...)` is not supported in `{}`: conditions may use \
                             len($LIST) and $NAME.isSet() only",
                            self.src
                        ),
                    ));
                }
                _ => return Err(self.unexpected()),
            },
            Tok::Op(_) => return Err(self.unexpected()),
        };
        self.pos += 1;
        Ok(e)
    }
}

fn is_keyword(w: &str) -> bool {
    matches!(w, "not" | "and" | "or" | "True" | "False" | "None" | "len")
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ref(_) | Tok::IsSet(_) => "`$` item".to_string(),
        Tok::Int(i) => format!("number `{i}`"),
        Tok::Float(f) => format!("number `{f}`"),
        Tok::Str(s) => format!("text `'{s}'`"),
        Tok::Ident(w) => format!("`{w}`"),
        Tok::Op(o) => format!("`{o}`"),
    }
}

// ---------------------------------------------------------------------------
// Expansion
// ---------------------------------------------------------------------------

/// A piece of an output line: template text (split on whitespace into
/// arguments) or one value (always one argument).
#[derive(Debug)]
enum Piece {
    /// The `  - ` that starts a continuation line.
    Marker,
    Text(String),
    Word(String),
}

/// A condition's value before it is used: items stay names so that a flag
/// asks [`Lookup::truth`] and a comparison asks [`Lookup::text`].
#[derive(Debug, Clone)]
enum Val {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    None,
    Item(String),
}

/// A value ready to compare.
#[derive(Debug)]
enum Scalar {
    Num(f64),
    Int(i64),
    Str(String),
    /// Text of a set item: a number when it reads as one.
    Item(String),
    Bool(bool),
    None,
}

impl Scalar {
    fn number(&self) -> Option<f64> {
        match self {
            Scalar::Num(f) => Some(*f),
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Bool(b) => Some(f64::from(u8::from(*b))),
            Scalar::Item(t) => t.trim().parse().ok(),
            Scalar::Str(_) | Scalar::None => None,
        }
    }

    fn int(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            Scalar::Bool(b) => Some(i64::from(*b)),
            Scalar::Item(t) => t.trim().parse().ok(),
            _ => None,
        }
    }
}

struct Expander<'a> {
    lookup: &'a dyn Lookup,
    vars: Vec<(String, i64)>,
    iterations: u64,
    bytes: usize,
    out: Vec<Vec<Piece>>,
}

impl Expander<'_> {
    fn var(&self, name: &str) -> Option<i64> {
        self.vars
            .iter()
            .rev()
            .find(|(v, _)| v == name)
            .map(|(_, value)| *value)
    }

    fn nodes(&mut self, nodes: &[Node]) -> Result<(), TemplateError> {
        for node in nodes {
            self.node(node)?;
        }
        Ok(())
    }

    fn node(&mut self, node: &Node) -> Result<(), TemplateError> {
        match node {
            Node::Line(l) => self.line(l),
            Node::If {
                line,
                cond,
                then,
                otherwise,
            } => {
                let v = self.eval(cond, *line)?;
                if self.truth(&v, *line)? {
                    self.nodes(then)
                } else {
                    self.nodes(otherwise)
                }
            }
            Node::Loop {
                line,
                var,
                first,
                last,
                step,
                body,
            } => {
                let first = self.int(first, *line, "first value")?;
                let last = self.int(last, *line, "last value")?;
                let step = match step {
                    Some(s) => self.int(s, *line, "step")?,
                    None => 1,
                };
                if step == 0 {
                    return Err(value_error(*line, "the LOOP step is zero"));
                }
                let mut v = first;
                while (step > 0 && v <= last) || (step < 0 && v >= last) {
                    self.iterations += 1;
                    if self.iterations > MAX_LOOP_ITERATIONS {
                        return Err(limit(
                            *line,
                            format!("loops ran more than {MAX_LOOP_ITERATIONS} times in all"),
                        ));
                    }
                    self.vars.push((var.clone(), v));
                    let r = self.nodes(body);
                    self.vars.pop();
                    r?;
                    match v.checked_add(step) {
                        Some(next) => v = next,
                        None => break,
                    }
                }
                Ok(())
            }
            Node::Case { line, value, arms } => {
                let value = self.plain(value, *line)?;
                for arm in arms {
                    if self.plain(&arm.pattern, *line)? == value {
                        return self.nodes(&arm.body);
                    }
                }
                Ok(())
            }
            Node::Labels { line, pairs } => {
                let mut pieces = vec![Piece::Text("LABIN".to_string())];
                for p in pairs {
                    match self.ref_text(&p.value, p.line)? {
                        Some(v) if !v.is_empty() => {
                            pieces.push(Piece::Text(" ".to_string()));
                            pieces.push(Piece::Word(format!("{}={v}", p.label)));
                        }
                        // CCP4i2 stops at the first unset label.
                        _ => break,
                    }
                }
                if pieces.len() > 1 {
                    self.emit(pieces, *line)?;
                }
                Ok(())
            }
        }
    }

    fn line(&mut self, l: &Line) -> Result<(), TemplateError> {
        let v = self.eval(&l.flag, l.line)?;
        let on = self.truth(&v, l.line)?;
        let text = if on { Some(&l.text) } else { l.alt.as_ref() };
        if let Some(text) = text {
            let mut pieces = Vec::new();
            if l.depth > 0 {
                pieces.push(Piece::Marker);
            }
            let mut blank = true;
            for part in &text.parts {
                match part {
                    TextPart::Lit(s) => {
                        blank &= s.trim().is_empty();
                        pieces.push(Piece::Text(s.clone()));
                    }
                    TextPart::Ref(r) => {
                        let w = self.word(r, l.line)?;
                        blank &= w.trim().is_empty();
                        pieces.push(Piece::Word(w));
                    }
                }
            }
            if !blank {
                self.emit(pieces, l.line)?;
            }
        }
        if on {
            for child in &l.children {
                self.line(child)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, pieces: Vec<Piece>, line: usize) -> Result<(), TemplateError> {
        let size: usize = pieces
            .iter()
            .map(|p| match p {
                Piece::Marker => 4,
                Piece::Text(s) | Piece::Word(s) => s.len() + 1,
            })
            .sum();
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > MAX_OUTPUT_BYTES {
            return Err(limit(
                line,
                format!(
                    "the expansion is larger than {} MiB",
                    MAX_OUTPUT_BYTES >> 20
                ),
            ));
        }
        self.out.push(pieces);
        Ok(())
    }

    /// Text with `$` words replaced, for CASE comparisons.
    fn plain(&mut self, text: &Text, line: usize) -> Result<String, TemplateError> {
        let mut s = String::new();
        for part in &text.parts {
            match part {
                TextPart::Lit(l) => s.push_str(l),
                TextPart::Ref(r) => s.push_str(&self.word(r, line)?),
            }
        }
        Ok(s.trim().to_string())
    }

    /// The text that replaces a `$` word.
    fn word(&mut self, r: &Ref, line: usize) -> Result<String, TemplateError> {
        let v = self.ref_text(r, line)?.unwrap_or_default();
        Ok(if r.quote { format!("\"{v}\"") } else { v })
    }

    /// A loop variable when the reference is just its name.
    fn ref_var(&self, r: &Ref) -> Option<i64> {
        match r.parts.as_slice() {
            [RefPart::Lit(name)] => self.var(name),
            _ => None,
        }
    }

    fn ref_name(&mut self, r: &Ref, line: usize) -> Result<String, TemplateError> {
        let mut name = String::new();
        for part in &r.parts {
            match part {
                RefPart::Lit(s) => name.push_str(s),
                RefPart::Index(Index::Const(i)) => name.push_str(&format!("[{i}]")),
                RefPart::Index(Index::Var(v)) => {
                    let i = match self.var(v) {
                        Some(i) => i,
                        None => {
                            let text = self.lookup.text(v).map_err(|e| lookup_error(line, v, e))?;
                            match text.as_deref().map(str::trim).map(str::parse::<i64>) {
                                Some(Ok(i)) => i,
                                _ => {
                                    return Err(value_error(
                                        line,
                                        format!(
                                            "index ${v} is {}, not a whole number",
                                            text.map_or("unset".to_string(), |t| {
                                                format!("`{t}`")
                                            })
                                        ),
                                    ));
                                }
                            }
                        }
                    };
                    if i < 0 {
                        return Err(value_error(
                            line,
                            format!("index ${v} is {i}; list items are counted from 0"),
                        ));
                    }
                    name.push_str(&format!("[{i}]"));
                }
            }
        }
        Ok(name)
    }

    fn ref_text(&mut self, r: &Ref, line: usize) -> Result<Option<String>, TemplateError> {
        if let Some(v) = self.ref_var(r) {
            return Ok(Some(v.to_string()));
        }
        let name = self.ref_name(r, line)?;
        self.lookup
            .text(&name)
            .map_err(|e| lookup_error(line, &name, e))
    }

    fn eval(&mut self, e: &Expr, line: usize) -> Result<Val, TemplateError> {
        Ok(match e {
            Expr::Int(i) => Val::Int(*i),
            Expr::Float(f) => Val::Float(*f),
            Expr::Str(s) => Val::Str(s.clone()),
            Expr::Bool(b) => Val::Bool(*b),
            Expr::None => Val::None,
            Expr::Ref(r) => match self.ref_var(r) {
                Some(v) => Val::Int(v),
                None => Val::Item(self.ref_name(r, line)?),
            },
            Expr::IsSet(r) => match self.ref_var(r) {
                Some(_) => Val::Bool(true),
                None => {
                    let name = self.ref_name(r, line)?;
                    let text = self
                        .lookup
                        .text(&name)
                        .map_err(|e| lookup_error(line, &name, e))?;
                    Val::Bool(text.is_some())
                }
            },
            Expr::Len(r) => {
                if self.ref_var(r).is_some() {
                    return Err(value_error(line, "len() of a LOOP variable"));
                }
                let name = self.ref_name(r, line)?;
                let n = self
                    .lookup
                    .list_len(&name)
                    .map_err(|e| lookup_error(line, &name, e))?;
                Val::Int(i64::try_from(n).unwrap_or(i64::MAX))
            }
            Expr::Not(a) => {
                let v = self.eval(a, line)?;
                Val::Bool(!self.truth(&v, line)?)
            }
            // Python's `and`/`or` only evaluate the right side when needed,
            // which lets `$X.isSet() and $X > 3` guard an unset item.
            Expr::And(a, b) => {
                let v = self.eval(a, line)?;
                if !self.truth(&v, line)? {
                    Val::Bool(false)
                } else {
                    let w = self.eval(b, line)?;
                    Val::Bool(self.truth(&w, line)?)
                }
            }
            Expr::Or(a, b) => {
                let v = self.eval(a, line)?;
                if self.truth(&v, line)? {
                    Val::Bool(true)
                } else {
                    let w = self.eval(b, line)?;
                    Val::Bool(self.truth(&w, line)?)
                }
            }
            Expr::Cmp(first, rest) => {
                let mut left = self.eval(first, line)?;
                for (op, right) in rest {
                    let right = self.eval(right, line)?;
                    if !self.compare(&left, *op, &right, line)? {
                        return Ok(Val::Bool(false));
                    }
                    left = right;
                }
                Val::Bool(true)
            }
            Expr::Add(a, b) => self.arith(a, b, line, true)?,
            Expr::Sub(a, b) => self.arith(a, b, line, false)?,
            Expr::Neg(a) => {
                let v = self.eval(a, line)?;
                let s = self.scalar(&v, line)?;
                match (s.int(), s.number()) {
                    (Some(i), _) => match i.checked_neg() {
                        Some(n) => Val::Int(n),
                        None => Val::Float(-(i as f64)),
                    },
                    (None, Some(f)) => Val::Float(-f),
                    _ => {
                        return Err(value_error(
                            line,
                            format!("`-` needs a number, found {}", show(&v, &s)),
                        ));
                    }
                }
            }
        })
    }

    fn arith(&mut self, a: &Expr, b: &Expr, line: usize, add: bool) -> Result<Val, TemplateError> {
        let (va, vb) = (self.eval(a, line)?, self.eval(b, line)?);
        let (sa, sb) = (self.scalar(&va, line)?, self.scalar(&vb, line)?);
        let op = if add { "+" } else { "-" };
        if let (Some(x), Some(y)) = (sa.int(), sb.int()) {
            let r = if add {
                x.checked_add(y)
            } else {
                x.checked_sub(y)
            };
            if let Some(r) = r {
                return Ok(Val::Int(r));
            }
        }
        match (sa.number(), sb.number()) {
            (Some(x), Some(y)) => Ok(Val::Float(if add { x + y } else { x - y })),
            _ => Err(value_error(
                line,
                format!(
                    "`{op}` needs numbers, found {} and {}",
                    show(&va, &sa),
                    show(&vb, &sb)
                ),
            )),
        }
    }

    fn scalar(&mut self, v: &Val, line: usize) -> Result<Scalar, TemplateError> {
        Ok(match v {
            Val::Int(i) => Scalar::Int(*i),
            Val::Float(f) => Scalar::Num(*f),
            Val::Str(s) => Scalar::Str(s.clone()),
            Val::Bool(b) => Scalar::Bool(*b),
            Val::None => Scalar::None,
            Val::Item(name) => match self
                .lookup
                .text(name)
                .map_err(|e| lookup_error(line, name, e))?
            {
                Some(t) => Scalar::Item(t),
                None => Scalar::None,
            },
        })
    }

    fn truth(&mut self, v: &Val, line: usize) -> Result<bool, TemplateError> {
        Ok(match v {
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::Bool(b) => *b,
            Val::None => false,
            Val::Item(name) => self
                .lookup
                .truth(name)
                .map_err(|e| lookup_error(line, name, e))?,
        })
    }

    fn int(&mut self, e: &Expr, line: usize, what: &str) -> Result<i64, TemplateError> {
        let v = self.eval(e, line)?;
        let s = self.scalar(&v, line)?;
        if let Some(i) = s.int() {
            return Ok(i);
        }
        // Python's int() truncates a float toward zero.
        match s.number() {
            // -2^63 and 2^63 are exact in f64; `as` saturates, so the
            // range check is what rejects out-of-range values.
            Some(f) if (-TWO_63..TWO_63).contains(&f) => Ok(f.trunc() as i64),
            _ => Err(value_error(
                line,
                format!(
                    "the LOOP {what} must be a whole number, found {}",
                    show(&v, &s)
                ),
            )),
        }
    }

    fn compare(&mut self, a: &Val, op: CmpOp, b: &Val, line: usize) -> Result<bool, TemplateError> {
        // A boolean against an item compares the item's truth, as Python
        // compares a CBoolean's value.
        if let (Val::Bool(x), Val::Item(_)) | (Val::Item(_), Val::Bool(x)) = (a, b)
            && matches!(op, CmpOp::Eq | CmpOp::Ne)
        {
            let item = if matches!(a, Val::Item(_)) { a } else { b };
            let t = self.truth(item, line)?;
            return Ok((t == *x) == (op == CmpOp::Eq));
        }
        let (sa, sb) = (self.scalar(a, line)?, self.scalar(b, line)?);
        let ordering = match (&sa, &sb) {
            (Scalar::None, Scalar::None) => None,
            (Scalar::None, _) | (_, Scalar::None) => {
                return match op {
                    CmpOp::Eq => Ok(false),
                    CmpOp::Ne => Ok(true),
                    _ => Err(value_error(
                        line,
                        format!(
                            "cannot order {} and {} with `{}`",
                            show(a, &sa),
                            show(b, &sb),
                            op.symbol()
                        ),
                    )),
                };
            }
            (Scalar::Str(x), Scalar::Str(y))
            | (Scalar::Str(x), Scalar::Item(y))
            | (Scalar::Item(x), Scalar::Str(y)) => Some(x.as_str().cmp(y.as_str())),
            (Scalar::Item(x), Scalar::Item(y)) => match (sa.number(), sb.number()) {
                (Some(p), Some(q)) => p.partial_cmp(&q),
                _ => Some(x.as_str().cmp(y.as_str())),
            },
            (Scalar::Int(x), Scalar::Int(y)) => Some(x.cmp(y)),
            _ => match (sa.number(), sb.number()) {
                (Some(p), Some(q)) => match p.partial_cmp(&q) {
                    Some(o) => Some(o),
                    // NaN is unequal to everything and unordered.
                    None => return Ok(op == CmpOp::Ne),
                },
                _ => {
                    return match op {
                        CmpOp::Eq => Ok(false),
                        CmpOp::Ne => Ok(true),
                        _ => Err(value_error(
                            line,
                            format!(
                                "cannot order {} and {} with `{}`",
                                show(a, &sa),
                                show(b, &sb),
                                op.symbol()
                            ),
                        )),
                    };
                }
            },
        };
        let Some(o) = ordering else {
            // Both unset: equal, and unordered.
            return match op {
                CmpOp::Eq => Ok(true),
                CmpOp::Ne => Ok(false),
                _ => Err(value_error(
                    line,
                    format!(
                        "cannot order {} and {} with `{}`",
                        show(a, &sa),
                        show(b, &sb),
                        op.symbol()
                    ),
                )),
            };
        };
        use std::cmp::Ordering::*;
        Ok(match op {
            CmpOp::Eq => o == Equal,
            CmpOp::Ne => o != Equal,
            CmpOp::Lt => o == Less,
            CmpOp::Le => o != Greater,
            CmpOp::Gt => o == Greater,
            CmpOp::Ge => o != Less,
        })
    }
}

fn show(v: &Val, s: &Scalar) -> String {
    match (v, s) {
        (Val::Item(name), Scalar::None) => format!("${name} (unset)"),
        (Val::Item(name), Scalar::Item(t)) => format!("${name} (`{t}`)"),
        (_, Scalar::Str(t)) => format!("'{t}'"),
        (_, Scalar::Int(i)) => i.to_string(),
        (_, Scalar::Num(f)) => f.to_string(),
        (_, Scalar::Bool(b)) => if *b { "True" } else { "False" }.to_string(),
        (_, Scalar::None) => "None".to_string(),
        (_, Scalar::Item(t)) => format!("`{t}`"),
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(t: &str, l: &MapLookup) -> String {
        match expand(t, l) {
            Ok(s) => s,
            Err(e) => panic!("expanding {t:?}: {e}"),
        }
    }

    fn err(t: &str, l: &MapLookup) -> TemplateError {
        match expand(t, l) {
            Ok(s) => panic!("expanding {t:?} should fail, gave {s:?}"),
            Err(e) => e,
        }
    }

    fn words(t: &str, l: &MapLookup) -> Vec<String> {
        match expand_words(t, l) {
            Ok(w) => w,
            Err(e) => panic!("expanding {t:?}: {e}"),
        }
    }

    /// The values of CCP4i2's own template tests (test_com_template_1).
    fn ccp4i2_values() -> MapLookup {
        MapLookup::new()
            .with("WHATEVER", "12")
            .with("TITLE", "Try this title")
            .with("TEST_PAR", "True")
            .with("TEST_VALUE", "24.0")
            .with("HOWEVER", "True")
            .with("TRAILER", "foo")
    }

    // --- the CCP4i2 wrappers that use templates -------------------------

    #[test]
    fn mtzdump() {
        let l = MapLookup::new()
            .with("HKLIN", "/data/gere.mtz")
            .with("HEADER", "True");
        assert_eq!(words("1 HKLIN $HKLIN", &l), ["HKLIN", "/data/gere.mtz"]);
        assert_eq!(
            ok("1 HEADER\n1 NREF -1\n1 END", &l),
            "HEADER\nNREF -1\nEND\n"
        );
        // The wrapper's own template tests its HEADER boolean.
        let t = "$HEADER HEADER\n1 NREF -1\n1 END\n";
        assert_eq!(ok(t, &l), "HEADER\nNREF -1\nEND\n");
        let off = l.clone().with("HEADER", "False");
        assert_eq!(ok(t, &off), "NREF -1\nEND\n");
    }

    #[test]
    fn pdbset() {
        let l = MapLookup::new()
            .with("XYZIN", "/tests/1df7.pdb")
            .with("XYZOUT", "/job/1df7_mangled.pdb")
            .with("CELL.a", "100.0")
            .with("CELL.b", "120.0")
            .with("CELL.c", "30.0")
            .with("CELL.alpha", "90.0")
            .with("CELL.beta", "90.0")
            .with("CELL.gamma", "89.1");
        assert_eq!(
            words("1 XYZIN $XYZIN XYZOUT $XYZOUT", &l),
            [
                "XYZIN",
                "/tests/1df7.pdb",
                "XYZOUT",
                "/job/1df7_mangled.pdb"
            ]
        );
        assert_eq!(
            words("1 XYZIN $XYZIN\n1 XYZOUT $XYZOUT", &l),
            [
                "XYZIN",
                "/tests/1df7.pdb",
                "XYZOUT",
                "/job/1df7_mangled.pdb"
            ]
        );
        assert_eq!(
            ok(
                "1 CELL $CELL.a $CELL.b $CELL.c $CELL.alpha $CELL.beta $CELL.gamma\n1 END",
                &l
            ),
            "CELL 100.0 120.0 30.0 90.0 90.0 89.1\nEND\n"
        );
    }

    #[test]
    fn unique_quote_and_unset_title() {
        let t = "1 SYMM $SPACEGROUPCELL.spaceGroup.quote
1 CELL $SPACEGROUPCELL.cell.a $SPACEGROUPCELL.cell.b $SPACEGROUPCELL.cell.c $SPACEGROUPCELL.cell.alpha $SPACEGROUPCELL.cell.beta $SPACEGROUPCELL.cell.gamma  
1 RESO $RESOLUTION
$TITLE TITLE $TITLE
1 END";
        let l = MapLookup::new()
            .with("SPACEGROUPCELL.spaceGroup", "P 21 21 21")
            .with("SPACEGROUPCELL.cell.a", "64.9")
            .with("SPACEGROUPCELL.cell.b", "78.3")
            .with("SPACEGROUPCELL.cell.c", "38.8")
            .with("SPACEGROUPCELL.cell.alpha", "90.0")
            .with("SPACEGROUPCELL.cell.beta", "90.0")
            .with("SPACEGROUPCELL.cell.gamma", "90.0")
            .with("RESOLUTION", "1.5")
            .with_unset("TITLE");
        assert_eq!(
            ok(t, &l),
            "SYMM \"P 21 21 21\"\nCELL 64.9 78.3 38.8 90.0 90.0 90.0\nRESO 1.5\nEND\n"
        );
        let titled = l.with("TITLE", "gere native");
        assert!(ok(t, &titled).contains("\nTITLE gere native\n"));
        // A quoted value is one argument, quotes included.
        assert_eq!(
            words("1 SYMM $SPACEGROUPCELL.spaceGroup.quote", &titled),
            ["SYMM", "\"P 21 21 21\""]
        );
    }

    // --- lines, flags, values ---------------------------------------------

    #[test]
    fn comments_blank_lines_and_indentation() {
        let t = "\n# a comment\n   \n   1 A\n\t# indented comment\n  0 B\n1 C # not a comment\n";
        assert_eq!(ok(t, &MapLookup::new()), "A\nC # not a comment\n");
        assert_eq!(ok("", &MapLookup::new()), "");
        assert_eq!(ok("# only\n\n#comments", &MapLookup::new()), "");
        assert!(words("", &MapLookup::new()).is_empty());
    }

    #[test]
    fn crlf_lines() {
        assert_eq!(ok("1 A\r\n1 B\r\n", &MapLookup::new()), "A\nB\n");
    }

    #[test]
    fn flags() {
        let l = MapLookup::new()
            .with("T", "True")
            .with("F", "False")
            .with("ZERO", "0")
            .with("ZEROF", "0.0")
            .with("TWO", "2")
            .with("S", "some text")
            .with("EMPTY", "")
            .with_unset("U")
            .with_list("L0", Vec::<String>::new())
            .with_list("L1", ["x"]);
        let t = "1 one\n0 zero\n$T t\n$F f\n$ZERO zero\n$ZEROF zerof\n$TWO two\n$S s\n\
                 $EMPTY empty\n$U u\n$L0 l0\n$L1 l1\nTrue true\nFalse false\nNone none\n2 two2";
        assert_eq!(ok(t, &l), "one\nt\ntwo\ns\nl1\ntrue\ntwo2\n");
    }

    #[test]
    fn flag_conditions_in_one_word() {
        let l = ccp4i2_values();
        assert_eq!(
            ok(
                "$WHATEVER>20 greater\n$WHATEVER<20 less\nnot($HOWEVER) no",
                &l
            ),
            "less\n"
        );
        assert_eq!(ok("$WHATEVER.isSet() set", &l), "set\n");
    }

    #[test]
    fn flag_only_line_writes_nothing_but_keeps_children() {
        let l = ccp4i2_values();
        assert_eq!(ok("1\n$HOWEVER\n- 1 child", &l), "  - child\n");
    }

    #[test]
    fn bare_word_flag_is_a_helpful_error() {
        let e = err("HKLIN $HKLIN", &MapLookup::new().with("HKLIN", "x"));
        assert!(matches!(e, TemplateError::Syntax { line: 1, .. }), "{e:?}");
        assert!(e.to_string().contains("$HKLIN"), "{e}");
    }

    #[test]
    fn unset_values_are_empty() {
        let l = MapLookup::new().with_unset("HKLIN").with("E", "");
        assert_eq!(ok("1 HKLIN $HKLIN\n1 END", &l), "HKLIN\nEND\n");
        assert_eq!(words("1 HKLIN $HKLIN $E", &l), ["HKLIN"]);
        // A line left empty is not written.
        assert_eq!(ok("1 $HKLIN\n1 $E $HKLIN\n1 END", &l), "END\n");
        assert_eq!(ok("1 $HKLIN.quote", &l), "\"\"\n");
    }

    #[test]
    fn only_whole_words_are_substituted() {
        let l = MapLookup::new().with("F", "FP");
        assert_eq!(ok("1 LABIN F=$F $F", &l), "LABIN F=$F FP\n");
        // Spacing between words is kept.
        assert_eq!(ok("1 A   $F\tB", &l), "A   FP\tB\n");
    }

    #[test]
    fn alternative_text() {
        let l = MapLookup::new().with("W", "0").with("N", "5");
        assert_eq!(ok("$W WEIGHT MATRIX $W | WEIGHT AUTO", &l), "WEIGHT AUTO\n");
        assert_eq!(ok("$N NCYC $N | NCYC 10", &l), "NCYC 5\n");
        assert_eq!(ok("$N NCYC $N |", &l), "NCYC 5\n");
        assert_eq!(ok("$W NCYC $W |", &l), "");
    }

    #[test]
    fn values_with_spaces_stay_one_word() {
        let l = MapLookup::new()
            .with("HKLIN", "/home/me/My Data/x.mtz")
            .with("N", "3");
        assert_eq!(
            words("1 HKLIN $HKLIN NCYC $N  extra   words", &l),
            [
                "HKLIN",
                "/home/me/My Data/x.mtz",
                "NCYC",
                "3",
                "extra",
                "words"
            ]
        );
    }

    #[test]
    fn line_breaks_in_values_stay_on_their_line() {
        let l = MapLookup::new().with("TITLE", "a\nEND\r\nb");
        assert_eq!(ok("1 TITLE $TITLE\n1 END", &l), "TITLE a END  b\nEND\n");
        assert_eq!(words("1 TITLE $TITLE", &l), ["TITLE", "a\nEND\r\nb"]);
    }

    #[test]
    fn unknown_name_names_it_and_the_line() {
        let l = MapLookup::new().with("A", "1");
        let e = err("1 A $A\n\n# c\n1 B $B", &l);
        assert_eq!(
            e,
            TemplateError::UnknownName {
                line: 4,
                name: "B".into()
            }
        );
        assert_eq!(e.to_string(), "template line 4: unknown name $B");
        let e = err("$NOPE x", &l);
        assert_eq!(e.line(), 1);
        assert!(e.to_string().contains("$NOPE"));
        let e = err("IF $X.isSet()\nENDIF", &l);
        assert!(matches!(e, TemplateError::UnknownName { line: 1, ref name } if name == "X"));
        let e = err("1 $CELL.a", &l);
        assert!(matches!(e, TemplateError::UnknownName { ref name, .. } if name == "CELL.a"));
    }

    #[test]
    fn unknown_names_on_unreached_lines_are_not_errors() {
        let l = MapLookup::new().with("OFF", "False");
        assert_eq!(ok("0 $NOPE\nIF $OFF\n1 $NOPE\nENDIF\n1 END", &l), "END\n");
    }

    #[test]
    fn lookup_failures_are_reported() {
        struct Broken;
        impl Lookup for Broken {
            fn text(&self, name: &str) -> Result<Option<String>, LookupError> {
                Err(LookupError::other(format!("{name} is ambiguous")))
            }
            fn list_len(&self, _: &str) -> Result<usize, LookupError> {
                Err(LookupError::other("no lists"))
            }
        }
        let e = expand("1 A $X", &Broken).unwrap_err();
        assert_eq!(
            e,
            TemplateError::Lookup {
                line: 1,
                name: "X".into(),
                message: "X is ambiguous".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "template line 1: cannot read $X: X is ambiguous"
        );
        let e = expand("LOOP I 1 len($L)\nENDLOOP", &Broken).unwrap_err();
        assert!(matches!(e, TemplateError::Lookup { line: 1, .. }));
    }

    // --- IF -----------------------------------------------------------------

    #[test]
    fn if_else_nested() {
        // CCP4i2's test_9, with its `{}` lines rewritten as IF blocks.
        let t = "
1 whatever $WHATEVER
IF $HOWEVER
  IF $TEST_PAR
    1 test $TEST_VALUE
  ELSE
    1 greater $WHATEVER
  ENDIF
ELSE
  IF $WHATEVER < 20
    1 less than $WHATEVER
  ENDIF
ENDIF
IF len($LIST) > 2
  1 $TRAILER
ENDIF
";
        let l = ccp4i2_values().with_list("LIST", ["a", "b", "c"]);
        assert_eq!(ok(t, &l), "whatever 12\ntest 24.0\nfoo\n");
        let l = l.with("TEST_PAR", "False");
        assert_eq!(ok(t, &l), "whatever 12\ngreater 12\nfoo\n");
        let l = l.with("HOWEVER", "False");
        assert_eq!(ok(t, &l), "whatever 12\nless than 12\nfoo\n");
    }

    #[test]
    fn if_without_else_and_empty_branches() {
        let l = ccp4i2_values();
        assert_eq!(ok("IF $HOWEVER\nENDIF\n1 x", &l), "x\n");
        assert_eq!(ok("IF not $HOWEVER\n1 a\nELSE\nENDIF", &l), "");
        assert_eq!(ok("IF $HOWEVER\nELSE\n1 b\nENDIF", &l), "");
    }

    #[test]
    fn conditions() {
        let l = ccp4i2_values()
            .with("NAME", "refmac")
            .with("NEG", "-3")
            .with("ZERO", "0")
            .with_unset("U")
            .with_list("EMPTY", Vec::<String>::new());
        let yes = |c: &str| {
            let t = format!("IF {c}\n1 yes\nELSE\n1 no\nENDIF");
            ok(&t, &l) == "yes\n"
        };
        assert!(yes("$WHATEVER"));
        assert!(yes("$WHATEVER == 12"));
        assert!(yes("$WHATEVER == 12.0"));
        assert!(yes("$WHATEVER != 13"));
        assert!(yes("10 < $WHATEVER < 15"));
        assert!(!yes("10 < $WHATEVER < 11"));
        assert!(yes("$WHATEVER >= 12 and $WHATEVER <= 12"));
        assert!(yes("$TEST_VALUE > $WHATEVER"));
        assert!(yes("$TEST_VALUE == 24"));
        assert!(yes("$NEG < 0"));
        assert!(yes("-$NEG == 3"));
        assert!(yes("$WHATEVER + 1 == 13"));
        assert!(yes("$WHATEVER - 0.5 > 11"));
        assert!(yes("$NAME == 'refmac'"));
        assert!(yes("$NAME == \"refmac\""));
        assert!(yes("$NAME != 'buster'"));
        assert!(yes("'a' < 'b'"));
        assert!(yes("not $ZERO"));
        assert!(yes("not $U"));
        assert!(yes("not $EMPTY"));
        assert!(yes("$U == None"));
        assert!(!yes("$U == 3"));
        assert!(yes("$U != 3"));
        assert!(yes("not $U.isSet()"));
        assert!(yes("$NAME.isSet()"));
        assert!(yes("$HOWEVER == True"));
        assert!(yes("$ZERO == False"));
        assert!(yes("$HOWEVER and ($ZERO or $TEST_PAR)"));
        assert!(yes("not ($ZERO or $U)"));
        assert!(yes("$ZERO or $U or 1"));
        assert!(!yes("$ZERO and $NOPE"));
        assert!(yes("$HOWEVER or $NOPE"));
        assert!(yes("$U.isSet() and $U > 3 or True"));
        assert!(yes("not not 1"));
        assert!(yes("len($EMPTY) == 0"));
        assert!(yes("'x' != 3"));
    }

    #[test]
    fn condition_value_errors() {
        let l = ccp4i2_values().with_unset("U");
        let e = err("IF $U > 3\nENDIF", &l);
        assert!(matches!(e, TemplateError::Value { line: 1, .. }), "{e:?}");
        assert!(e.to_string().contains("$U (unset)"), "{e}");
        let e = err("IF $TITLE < 3\nENDIF", &l);
        assert!(matches!(e, TemplateError::Value { .. }), "{e:?}");
        let e = err("IF 'a' + 1\nENDIF", &l);
        assert!(matches!(e, TemplateError::Value { .. }), "{e:?}");
        let e = err("IF $NOPE\nENDIF", &l);
        assert!(matches!(e, TemplateError::UnknownName { .. }), "{e:?}");
    }

    #[test]
    fn condition_syntax_errors() {
        let l = MapLookup::new();
        for (t, line) in [
            ("IF\nENDIF", 1),
            ("1 a\nIF $X ==\nENDIF", 2),
            ("IF ($X\nENDIF", 1),
            ("IF $X)\nENDIF", 1),
            ("IF 'abc\nENDIF", 1),
            ("IF foo\nENDIF", 1),
            ("IF $X $Y\nENDIF", 1),
            ("IF 12abc\nENDIF", 1),
            ("IF len $X\nENDIF", 1),
        ] {
            let e = Template::parse(t).unwrap_err();
            assert_eq!(e.line(), line, "{t:?}: {e}");
            assert!(
                matches!(
                    e,
                    TemplateError::Syntax { .. } | TemplateError::Unsupported { .. }
                ),
                "{t:?}: {e:?}"
            );
        }
        let _ = l;
    }

    #[test]
    fn python_beyond_the_subset_is_unsupported() {
        for t in [
            "IF $X.startswith('a')\nENDIF",
            "IF $X in [1, 2]\nENDIF",
            "IF $X * 2 > 3\nENDIF",
            "IF str($X)\nENDIF",
            "IF len($X) + len()\nENDIF",
            "IF $X % 2\nENDIF",
        ] {
            let e = Template::parse(t).unwrap_err();
            assert!(
                matches!(e, TemplateError::Unsupported { line: 1, .. }),
                "{t:?}: {e:?}"
            );
        }
    }

    // --- {expr} and AT ------------------------------------------------------

    #[test]
    fn python_fragments_are_refused_with_their_line() {
        let cases = [
            ("1 a\n{$WHATEVER >20} greater $WHATEVER", 2),
            ("1 TEST { $N * $TEST_VALUE }", 1),
            ("# c\n\nIF {$X > 2}\nENDIF", 3),
            ("IF $A\n  {len( $TRAILER )>2} $TRAILER\nENDIF", 2),
            ("$A x | y {1+1}", 1),
            ("1 a\n- {$X} b", 2),
            ("LOOP N 1 {3}\nENDLOOP", 1),
            ("{unterminated text", 1),
        ];
        for (t, line) in cases {
            let e = Template::parse(t).unwrap_err();
            assert!(
                matches!(e, TemplateError::Unsupported { .. }),
                "{t:?}: {e:?}"
            );
            assert_eq!(e.line(), line, "{t:?}");
            assert!(
                e.to_string()
                    .contains("expression evaluation is not supported"),
                "{e}"
            );
        }
        // A lone brace in text is ordinary text, as in CCP4i2.
        assert_eq!(ok("1 a { b", &MapLookup::new()), "a { b\n");
        assert_eq!(ok("1 a } b {", &MapLookup::new()), "a } b {\n");
    }

    #[test]
    fn at_is_unsupported() {
        let e = Template::parse("1 a\nAT $CCP4I2_TOP/x.com").unwrap_err();
        assert!(matches!(e, TemplateError::Unsupported { line: 2, .. }));
    }

    // --- LOOP -----------------------------------------------------------------

    #[test]
    fn loop_counts() {
        let l = ccp4i2_values().with("THREE", "3");
        assert_eq!(
            ok("LOOP N 1 $THREE\n  1 RUN $N\nENDLOOP", &l),
            "RUN 1\nRUN 2\nRUN 3\n"
        );
        assert_eq!(
            ok("LOOP N 1 $WHATEVER 5\n1 RUN $N\nENDLOOP", &l),
            "RUN 1\nRUN 6\nRUN 11\n"
        );
        assert_eq!(ok("LOOP N 3 1 -1\n1 $N\nENDLOOP", &l), "3\n2\n1\n");
        assert_eq!(ok("LOOP N 3 1\n1 $N\nENDLOOP", &l), "");
        // A float bound truncates, as Python's int() does.
        assert_eq!(ok("LOOP N 1 2.9\n1 $N\nENDLOOP", &l), "1\n2\n");
        assert_eq!(ok("LOOP N 1 $TEST_VALUE-22\n1 $N\nENDLOOP", &l), "1\n2\n");
    }

    #[test]
    fn loop_variable_in_conditions_and_nesting() {
        let l = MapLookup::new();
        let t = "
LOOP I 1 3
  LOOP J 1 2
    IF $I == 2 and $J == 2
      1 at $I $J
    ENDIF
    $J-1 j $J
  ENDLOOP
ENDLOOP";
        assert_eq!(ok(t, &l), "j 2\nat 2 2\nj 2\nj 2\n");
        // An inner variable of the same name shadows the outer one.
        let t = "LOOP I 1 2\nLOOP I 5 5\n1 $I\nENDLOOP\n1 $I\nENDLOOP";
        assert_eq!(ok(t, &l), "5\n1\n5\n2\n");
        // The loop variable shadows a container item of the same name.
        let l = MapLookup::new().with("N", "99");
        assert_eq!(ok("LOOP N 1 1\n1 $N\nENDLOOP\n1 $N", &l), "1\n99\n");
    }

    #[test]
    fn loop_over_a_list() {
        let l = MapLookup::new()
            .with_list("MODELS", ["a.pdb", "/x/my b.pdb"])
            .with("MODELS[0].chain", "A")
            .with("MODELS[1].chain", "B")
            .with("FIRST", "1");
        let t = "LOOP I 0 len($MODELS)-1\n1 MODEL $MODELS[$I] CHAIN $MODELS[$I].chain\nENDLOOP";
        assert_eq!(
            ok(t, &l),
            "MODEL a.pdb CHAIN A\nMODEL /x/my b.pdb CHAIN B\n"
        );
        assert_eq!(
            words(t, &l),
            [
                "MODEL",
                "a.pdb",
                "CHAIN",
                "A",
                "MODEL",
                "/x/my b.pdb",
                "CHAIN",
                "B"
            ]
        );
        assert_eq!(
            ok("1 $MODELS[1].chain $MODELS[$FIRST]", &l),
            "B /x/my b.pdb\n"
        );
        assert_eq!(ok("1 $MODELS", &l), "[a.pdb,/x/my b.pdb]\n");
        let empty = MapLookup::new().with_list("MODELS", Vec::<String>::new());
        assert_eq!(ok(t, &empty), "");
        let e = err("1 $MODELS[5]", &l);
        assert!(
            matches!(e, TemplateError::UnknownName { ref name, .. } if name == "MODELS[5]"),
            "{e:?}"
        );
        let e = err("LOOP I 0 len($FIRST)\nENDLOOP", &l);
        assert!(matches!(e, TemplateError::Lookup { .. }), "{e:?}");
        let e = err("LOOP I -1 -1\n1 $MODELS[$I]\nENDLOOP", &l);
        assert!(matches!(e, TemplateError::Value { line: 2, .. }), "{e:?}");
    }

    #[test]
    fn loop_errors() {
        let l = ccp4i2_values().with_unset("U");
        for t in [
            "LOOP N 1\nENDLOOP",
            "LOOP N 1 2 3 4\nENDLOOP",
            "LOOP $N 1 2\nENDLOOP",
            "LOOP 9N 1 2\nENDLOOP",
        ] {
            let e = Template::parse(t).unwrap_err();
            assert!(
                matches!(e, TemplateError::Syntax { line: 1, .. }),
                "{t:?}: {e:?}"
            );
        }
        let e = err("1 x\nLOOP N 1 3 0\nENDLOOP", &l);
        assert!(matches!(e, TemplateError::Value { line: 2, .. }), "{e:?}");
        let e = err("LOOP N 1 $U\nENDLOOP", &l);
        assert!(matches!(e, TemplateError::Value { line: 1, .. }), "{e:?}");
        let e = err("LOOP N 1 $TITLE\nENDLOOP", &l);
        assert!(e.to_string().contains("whole number"), "{e}");
    }

    // --- CASE -----------------------------------------------------------------

    #[test]
    fn case() {
        let l = ccp4i2_values();
        // CCP4i2's test_13 and test_14.
        let t = "
1 HOWEVER $HOWEVER
CASE $TRAILER
CASEMATCH bar
  1 matched bar
CASEMATCH foo
  1 matched foo
ENDCASE
1 WHATEVER $WHATEVER
";
        assert_eq!(ok(t, &l), "HOWEVER True\nmatched foo\nWHATEVER 12\n");
        let t = "
1 HOWEVER $HOWEVER
CASE $WHATEVER
CASEMATCH 12
  1 matched 12
CASEMATCH  24
  1 matched 24
ENDCASE
1 WHATEVER $WHATEVER
";
        assert_eq!(ok(t, &l), "HOWEVER True\nmatched 12\nWHATEVER 12\n");
        // No match writes nothing; the first match wins; patterns may use $.
        let t = "CASE $TRAILER\nCASEMATCH x\n1 x\nENDCASE";
        assert_eq!(ok(t, &l), "");
        let t = "CASE $TRAILER\nCASEMATCH foo\n1 one\nCASEMATCH foo\n1 two\nENDCASE";
        assert_eq!(ok(t, &l), "one\n");
        let t = "CASE $WHATEVER\nCASEMATCH $TEST_VALUE\n1 a\nCASEMATCH $WHATEVER\n1 b\nENDCASE";
        assert_eq!(ok(t, &l), "b\n");
        // An empty CASEMATCH matches an unset value.
        let l = l.with_unset("U");
        let t = "CASE $U\nCASEMATCH x\n1 x\nCASEMATCH\n1 unset\nENDCASE";
        assert_eq!(ok(t, &l), "unset\n");
        // Blocks inside arms.
        let t =
            "CASE $TRAILER\nCASEMATCH foo\nIF $HOWEVER\nLOOP N 1 2\n1 $N\nENDLOOP\nENDIF\nENDCASE";
        assert_eq!(ok(t, &l), "1\n2\n");
    }

    #[test]
    fn case_errors() {
        let e = Template::parse("CASE $X\n1 never\nCASEMATCH a\nENDCASE").unwrap_err();
        assert!(matches!(e, TemplateError::Syntax { line: 2, .. }), "{e:?}");
        let e = Template::parse("CASE $X\nIF $Y\nENDIF\nENDCASE").unwrap_err();
        assert!(matches!(e, TemplateError::Syntax { line: 2, .. }), "{e:?}");
        let e = Template::parse("CASE\nENDCASE").unwrap_err();
        assert!(matches!(e, TemplateError::Syntax { line: 1, .. }), "{e:?}");
        let e = Template::parse("CASEMATCH a").unwrap_err();
        assert!(
            matches!(e, TemplateError::Unbalanced { line: 1, .. }),
            "{e:?}"
        );
        let e = Template::parse("IF $X\nCASEMATCH a\nENDIF").unwrap_err();
        assert!(
            matches!(e, TemplateError::Unbalanced { line: 2, .. }),
            "{e:?}"
        );
        let e = err("CASE $X\nCASEMATCH a\nENDCASE", &MapLookup::new());
        assert!(
            matches!(e, TemplateError::UnknownName { line: 1, .. }),
            "{e:?}"
        );
    }

    // --- continuation lines -----------------------------------------------

    #[test]
    fn continuation_lines() {
        let l = ccp4i2_values();
        // CCP4i2's test_7 without its `{}` flags.
        let t = "1 whatever $WHATEVER\n- $TEST_PAR test $TEST_VALUE\n-- 0 greater $WHATEVER\n-- 1 less than $WHATEVER\n";
        assert_eq!(ok(t, &l), "whatever 12\n  - test 24.0\n  - less than 12\n");
        // Children of a false line are skipped; siblings are not.
        let l2 = l.clone().with("TEST_PAR", "False");
        assert_eq!(ok(t, &l2), "whatever 12\n");
        let t = "0 a\n- 1 b\n1 c\n- 1 d\n- 0 e\n-- 1 f\n- 1 g\n--- 1 h";
        assert_eq!(ok(t, &l), "c\n  - d\n  - g\n  - h\n");
        // `|` alternatives apply but do not open the children.
        assert_eq!(ok("0 a | b\n- 1 c", &l), "b\n");
        // The continuation marker is one argument in argv.
        assert_eq!(words("1 a\n- 1 b", &l), ["a", "-", "b"]);
    }

    #[test]
    fn orphan_continuation_is_an_ordinary_line() {
        let l = ccp4i2_values();
        assert_eq!(ok("- 1 a", &l), "a\n");
        assert_eq!(ok("IF $HOWEVER\n- 1 a\nENDIF\n- 1 b", &l), "a\nb\n");
        assert_eq!(ok("1 x\nIF $HOWEVER\nENDIF\n- 1 b", &l), "x\nb\n");
        let e = Template::parse("1 a\n---").unwrap_err();
        assert!(matches!(e, TemplateError::Syntax { line: 2, .. }), "{e:?}");
    }

    // --- LABELLINE ----------------------------------------------------------

    #[test]
    fn labelline() {
        let l = MapLookup::new()
            .with("F_SIGF.F", "ffoo")
            .with("F_SIGF.SIGF", "ffoosig")
            .with("PHI_W.PHI", "foophi")
            .with_unset("PHI_W.W");
        // CCP4i2's test_16.
        let t = "LABELLINE F $F_SIGF.F SIGF $F_SIGF.SIGF\nLABELLINE PHI $PHI_W.PHI W $PHI_W.W";
        assert_eq!(ok(t, &l), "LABIN F=ffoo SIGF=ffoosig\nLABIN PHI=foophi\n");
        let t = "LABELLINE F $F_SIGF.F\n- SIGF $F_SIGF.SIGF\n- PHI $PHI_W.PHI";
        assert_eq!(ok(t, &l), "LABIN F=ffoo SIGF=ffoosig PHI=foophi\n");
        assert_eq!(
            words(t, &l),
            ["LABIN", "F=ffoo", "SIGF=ffoosig", "PHI=foophi"]
        );
        assert_eq!(ok("LABELLINE W $PHI_W.W", &l), "");
        for bad in [
            "LABELLINE F",
            "LABELLINE F SIGF",
            "LABELLINE $F F",
            "LABELLINE F $F_SIGF.F\n- SIGF",
        ] {
            let e = Template::parse(bad).unwrap_err();
            assert!(matches!(e, TemplateError::Syntax { .. }), "{bad:?}: {e:?}");
        }
        let e = err("1 a\nLABELLINE F $NOPE", &l);
        assert!(
            matches!(e, TemplateError::UnknownName { line: 2, .. }),
            "{e:?}"
        );
    }

    // --- unbalanced blocks --------------------------------------------------

    #[test]
    fn unbalanced_blocks_name_the_line() {
        let cases: [(&str, usize, &str); 11] = [
            ("1 a\nIF $X\n1 b", 2, "IF at line 2 has no ENDIF"),
            ("ENDIF", 1, "ENDIF without a matching IF"),
            ("1 a\nELSE", 2, "ELSE without a matching IF"),
            (
                "IF $X\nELSE\nELSE\nENDIF",
                3,
                "second ELSE for the IF at line 1",
            ),
            ("LOOP N 1 2\n1 a", 1, "LOOP at line 1 has no ENDLOOP"),
            ("ENDLOOP", 1, "ENDLOOP without a matching LOOP"),
            ("CASE $X\nCASEMATCH a", 1, "CASE at line 1 has no ENDCASE"),
            ("ENDCASE", 1, "ENDCASE without a matching CASE"),
            (
                "LOOP N 1 2\nIF $X\nENDLOOP",
                3,
                "ENDLOOP found while IF from line 2 is still open (missing ENDIF?)",
            ),
            (
                "IF $X\nLOOP N 1 2\nENDIF\nENDLOOP",
                3,
                "ENDIF found while LOOP from line 2 is still open (missing ENDLOOP?)",
            ),
            (
                "IF $X\nLOOP N 1 2\nELSE\nENDLOOP\nENDIF",
                3,
                "ELSE found while LOOP from line 2 is still open (missing ENDLOOP?)",
            ),
        ];
        for (t, line, message) in cases {
            let e = Template::parse(t).unwrap_err();
            assert_eq!(
                e,
                TemplateError::Unbalanced {
                    line,
                    message: message.to_string()
                },
                "{t:?}"
            );
        }
        // The innermost open block is the one reported.
        let e = Template::parse("IF $A\nIF $B\nENDIF").unwrap_err();
        assert_eq!(e.line(), 1);
        let e = Template::parse("IF $A\nLOOP I 1 2").unwrap_err();
        assert_eq!(e.line(), 2);
    }

    #[test]
    fn keywords_take_no_arguments() {
        for t in [
            "IF $X\nELSE x\nENDIF",
            "IF $X\nENDIF x",
            "LOOP N 1 2\nENDLOOP x",
            "CASE $X\nENDCASE x",
        ] {
            let e = Template::parse(t).unwrap_err();
            assert!(matches!(e, TemplateError::Syntax { .. }), "{t:?}: {e:?}");
        }
    }

    // --- references ---------------------------------------------------------

    #[test]
    fn malformed_references() {
        for (t, line) in [
            ("1 a $", 1),
            ("1 a\n1 b $ c", 2),
            ("1 $X[", 1),
            ("1 $X]", 1),
            ("1 $X[a]", 1),
            ("1 $X[]", 1),
            ("1 $[1]", 1),
            ("1 $X[$]", 1),
            ("1 $X[99999999999999999999999]", 1),
            ("IF $ == 1\nENDIF", 1),
            ("$", 1),
        ] {
            let e = Template::parse(t).unwrap_err();
            assert!(matches!(e, TemplateError::Syntax { .. }), "{t:?}: {e:?}");
            assert_eq!(e.line(), line, "{t:?}");
        }
    }

    #[test]
    fn odd_references_go_to_the_lookup() {
        // The whole word is the name, as in CCP4i2: trailing punctuation is
        // part of it and so is unknown.
        let e = err("1 $X,", &MapLookup::new().with("X", "1"));
        assert!(matches!(e, TemplateError::UnknownName { ref name, .. } if name == "X,"));
        let l = MapLookup::new().with("quote", "q");
        assert_eq!(ok("1 $quote", &l), "q\n");
        assert_eq!(ok("1 $quote.quote", &l), "\"q\"\n");
    }

    // --- the map lookup -----------------------------------------------------

    #[test]
    fn map_lookup() {
        let mut l = MapLookup::new();
        l.insert("A", "1");
        l.insert_unset("B");
        l.insert_list("L", ["x", "y"]);
        assert_eq!(l.text("A"), Ok(Some("1".into())));
        assert_eq!(l.text("B"), Ok(None));
        assert_eq!(l.text("C"), Err(LookupError::unknown("C")));
        assert_eq!(l.text("L"), Ok(Some("[x,y]".into())));
        assert_eq!(l.text("L[1]"), Ok(Some("y".into())));
        assert_eq!(l.list_len("L"), Ok(2));
        assert!(matches!(l.list_len("A"), Err(LookupError::Other(_))));
        assert_eq!(l.list_len("C"), Err(LookupError::unknown("C")));
        assert_eq!(l.truth("L"), Ok(true));
        assert_eq!(l.truth("B"), Ok(false));
        assert_eq!(l.truth("C"), Err(LookupError::unknown("C")));
        let collected: MapLookup = vec![("X".to_string(), "2")].into_iter().collect();
        assert_eq!(collected.text("X"), Ok(Some("2".into())));
    }

    #[test]
    fn truth_of_text_rules() {
        for t in [
            "True", "true", "1", "-1", "0.5", "abc", "None", "[a]", "nan",
        ] {
            assert!(truth_of_text(t), "{t}");
        }
        for t in ["", "  ", "False", "false", "0", "0.0", "-0", "0e3"] {
            assert!(!truth_of_text(t), "{t}");
        }
    }

    #[test]
    fn a_parsed_template_can_be_reused() {
        let t = Template::parse("1 HKLIN $HKLIN").unwrap();
        let a = MapLookup::new().with("HKLIN", "a.mtz");
        let b = MapLookup::new().with("HKLIN", "b.mtz");
        assert_eq!(t.expand(&a).unwrap(), "HKLIN a.mtz\n");
        assert_eq!(t.expand_words(&b).unwrap(), ["HKLIN", "b.mtz"]);
    }

    #[test]
    fn errors_are_std_errors() {
        fn takes(_: &dyn std::error::Error) {}
        takes(&LookupError::unknown("X"));
        takes(&Template::parse("ENDIF").unwrap_err());
    }

    // --- adversarial input --------------------------------------------------

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = "IF 1\n".repeat(10_000) + &"ENDIF\n".repeat(10_000);
        let e = Template::parse(&deep).unwrap_err();
        assert!(matches!(e, TemplateError::Limit { line: 65, .. }), "{e:?}");
        // Exactly the limit is fine.
        let ok_deep = "IF 1\n".repeat(MAX_NESTING) + "1 x\n" + &"ENDIF\n".repeat(MAX_NESTING);
        assert_eq!(ok(&ok_deep, &MapLookup::new()), "x\n");
        let loops = "LOOP I 1 1\n".repeat(200) + &"ENDLOOP\n".repeat(200);
        assert!(matches!(
            Template::parse(&loops),
            Err(TemplateError::Limit { .. })
        ));
        let parens = format!("IF {}1{}\nENDIF", "(".repeat(5000), ")".repeat(5000));
        assert!(matches!(
            Template::parse(&parens),
            Err(TemplateError::Limit { line: 1, .. })
        ));
        let nots = format!("IF {}1\nENDIF", "not ".repeat(5000));
        assert!(matches!(
            Template::parse(&nots),
            Err(TemplateError::Limit { .. })
        ));
        let negs = format!("IF {}1\nENDIF", "-".repeat(5000));
        assert!(matches!(
            Template::parse(&negs),
            Err(TemplateError::Limit { .. })
        ));
        let mut dashes = String::from("1 a\n");
        for i in 1..2000 {
            dashes.push_str(&"-".repeat(i));
            dashes.push_str(" 1 b\n");
        }
        assert!(matches!(
            Template::parse(&dashes),
            Err(TemplateError::Limit { .. })
        ));
        // Long flat runs are fine.
        let flat = "- 1 b\n".repeat(10_000);
        let out = ok(&format!("1 a\n{flat}"), &MapLookup::new());
        assert_eq!(out.lines().count(), 10_001);
    }

    #[test]
    fn runaway_loops_and_output_are_limited() {
        let l = MapLookup::new();
        let e = err("LOOP I 1 1000000000\n1 $I\nENDLOOP", &l);
        assert!(matches!(e, TemplateError::Limit { line: 1, .. }), "{e:?}");
        let e = err("LOOP I 1 1000\nLOOP J 1 1000\nENDLOOP\nENDLOOP", &l);
        assert!(matches!(e, TemplateError::Limit { .. }), "{e:?}");
        let big = "x".repeat(1 << 20);
        let t = format!("LOOP I 1 100\n1 {big}\nENDLOOP");
        let e = err(&t, &l);
        assert!(matches!(e, TemplateError::Limit { line: 2, .. }), "{e:?}");
        // Bounds near the integer limits neither overflow nor loop forever.
        let t = format!("LOOP I {} {}\n1 $I\nENDLOOP", i64::MAX - 1, i64::MAX);
        assert_eq!(ok(&t, &l), format!("{}\n{}\n", i64::MAX - 1, i64::MAX));
        let t = format!("LOOP I {} {} -1\n1 $I\nENDLOOP", i64::MIN + 1, i64::MIN);
        assert_eq!(ok(&t, &l), format!("{}\n{}\n", i64::MIN + 1, i64::MIN));
        // Integer overflow falls back to floating point, as Python has no overflow.
        let t = format!("IF {} + 1 > {}\n1 big\nENDIF", i64::MAX, i64::MAX);
        assert_eq!(ok(&t, &l), "");
        let t = format!("IF {} + 1 > 0\n1 big\nENDIF", i64::MAX);
        assert_eq!(ok(&t, &l), "big\n");
        let e = err("LOOP I 1 1e300\nENDLOOP", &l);
        assert!(matches!(e, TemplateError::Value { .. }), "{e:?}");
    }

    #[test]
    fn huge_and_odd_lines() {
        let l = MapLookup::new().with("X", "v");
        let huge = format!("1 {}", "word ".repeat(200_000));
        assert_eq!(ok(&huge, &l).len(), "word ".len() * 200_000);
        let huge_ref = format!("1 ${}", "A".repeat(1 << 20));
        assert!(matches!(
            err(&huge_ref, &l),
            TemplateError::UnknownName { .. }
        ));
        let huge_num = format!("IF {}\nENDIF", "9".repeat(100_000));
        assert!(Template::parse(&huge_num).is_ok());
        assert_eq!(ok("1 ünïcødé $X ✓", &l), "ünïcødé v ✓\n");
        assert_eq!(ok("1 x $X\u{a0}y", &l), "x v\u{a0}y\n");
        let e = Template::parse("IF $X == 'é\nENDIF").unwrap_err();
        assert!(matches!(e, TemplateError::Syntax { .. }));
        assert!(Template::parse("IF é\nENDIF").is_err());
        assert!(Template::parse("IF $X.é\nENDIF").is_ok());
        assert!(Template::parse("\u{0}\u{1}\u{7f}").is_err());
        assert_eq!(ok("1 \u{0}", &l), "\u{0}\n");
        // `$` at the end of a line.
        let e = err("1 $X\n1 end $", &l);
        assert!(matches!(e, TemplateError::Syntax { line: 2, .. }), "{e:?}");
        let e = err("1 end $\n", &l);
        assert!(
            e.to_string().contains("`$` must be followed by a name"),
            "{e}"
        );
    }

    /// Random templates built from the language's own pieces must give a
    /// result or an error, never a panic.
    #[test]
    fn random_templates_never_panic() {
        let pieces = [
            "IF",
            "ELSE",
            "ENDIF",
            "LOOP",
            "ENDLOOP",
            "CASE",
            "CASEMATCH",
            "ENDCASE",
            "LABELLINE",
            "AT",
            "1",
            "0",
            "-",
            "--",
            "$X",
            "$L",
            "$L[$I]",
            "$L[0]",
            "$U",
            "$X.isSet()",
            "len($L)",
            "I",
            "(",
            ")",
            "not",
            "and",
            "or",
            "==",
            "<",
            ">=",
            "+",
            "-1",
            "'a'",
            "\"b",
            "{",
            "}",
            "|",
            "#",
            "$",
            "[",
            "]",
            "é",
            "2.5",
            "\t",
            "None",
            "True",
            "$I",
            "text",
            "1e400",
            "$X.quote",
        ];
        let l = MapLookup::new()
            .with("X", "3")
            .with_unset("U")
            .with_list("L", ["p", "q"]);
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut t = String::new();
            let lines = next() % 12;
            for _ in 0..lines {
                let words = next() % 6;
                for w in 0..words {
                    if w > 0 && next() % 4 != 0 {
                        t.push(' ');
                    }
                    t.push_str(pieces[(next() % pieces.len() as u64) as usize]);
                }
                t.push('\n');
            }
            let _ = expand(&t, &l);
            let _ = expand_words(&t, &l);
        }
    }
}
