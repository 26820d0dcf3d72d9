//! A small owned XML tree and a pretty-printing writer.
//!
//! roxmltree gives a borrowed, read-only view of one document; the def.xml
//! include merge has to move elements between documents and the params.xml
//! reader keeps unknown structured values for writing back, so both work on
//! this owned copy. Namespace prefixes are dropped on reading (CCP4i2 files
//! use a prefix only on the root element) and element text is the
//! concatenation of an element's direct text, which is all CCP4i2 puts in it.

use std::borrow::Cow;

/// Deepest element nesting accepted. CCP4i2 files are a handful of levels
/// deep; the limit keeps recursion over hostile input bounded.
pub(crate) const MAX_DEPTH: usize = 128;

/// Largest document accepted, in bytes. roxmltree addresses text with 32-bit
/// offsets, and no definition or params file comes near this.
pub(crate) const MAX_BYTES: usize = 64 << 20;

/// Most nodes one document may have, to bound memory on random input.
const MAX_NODES: u32 = 2_000_000;

/// One element: local name, attributes, direct text and child elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Elem {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Elem>,
}

/// Why a document could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum XmlError {
    /// Not well-formed, or too large; the text says where and why.
    Syntax(String),
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl Elem {
    /// A bare element with only a name.
    pub fn new(name: &str) -> Elem {
        Elem {
            name: name.to_string(),
            attrs: Vec::new(),
            text: String::new(),
            children: Vec::new(),
        }
    }

    /// The first child element called `name`.
    pub fn child(&self, name: &str) -> Option<&Elem> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `id` attribute, the key CCP4i2 merges containers and contents by.
    pub fn id(&self) -> Option<&str> {
        self.attr("id")
    }

    /// Trimmed text of the first child called `name`, if that child exists.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
}

/// Parse a whole document and return its root element.
pub(crate) fn parse(text: &str) -> Result<Elem, XmlError> {
    if text.len() > MAX_BYTES {
        return Err(XmlError::Syntax(format!(
            "document is {} bytes, more than the {} accepted",
            text.len(),
            MAX_BYTES
        )));
    }
    // roxmltree descends one call per element level, so a hostile depth
    // would overflow the stack before it could be refused afterwards.
    if nesting_exceeds(text.as_bytes(), MAX_DEPTH + 1) {
        return Err(XmlError::TooDeep);
    }
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
    };
    let doc = roxmltree::Document::parse_with_options(text, opts)
        .map_err(|e| XmlError::Syntax(e.to_string()))?;
    convert(doc.root_element(), 0)
}

/// Whether elements in `text` nest deeper than `limit`. Exact for
/// well-formed XML (comments, CDATA, processing instructions and quoted
/// attribute values are skipped); on malformed text it only has to be
/// cheap and never under-count, since the parser rejects such text anyway.
fn nesting_exceeds(text: &[u8], limit: usize) -> bool {
    let find = |from: usize, pat: &[u8]| {
        text.get(from..)
            .and_then(|rest| rest.windows(pat.len()).position(|w| w == pat))
            .map_or(text.len(), |i| from + i + pat.len())
    };
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &text[i..];
        if rest.starts_with(b"<!--") {
            i = find(i + 4, b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            i = find(i + 9, b"]]>");
        } else if rest.starts_with(b"<?") {
            i = find(i + 2, b"?>");
        } else if rest.starts_with(b"</") {
            depth = depth.saturating_sub(1);
            i = find(i + 2, b">");
        } else if rest.starts_with(b"<!") {
            i = find(i + 2, b">");
        } else {
            // A start tag: find its end outside quoted attribute values.
            let mut j = i + 1;
            let mut quote = None;
            while j < text.len() {
                match (quote, text[j]) {
                    (None, b'"' | b'\'') => quote = Some(text[j]),
                    (Some(q), c) if c == q => quote = None,
                    (None, b'>') => break,
                    _ => {}
                }
                j += 1;
            }
            if j > 0 && text.get(j - 1) != Some(&b'/') {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            i = j + 1;
        }
    }
    false
}

fn convert(node: roxmltree::Node<'_, '_>, depth: usize) -> Result<Elem, XmlError> {
    if depth > MAX_DEPTH {
        return Err(XmlError::TooDeep);
    }
    let mut elem = Elem::new(node.tag_name().name());
    elem.attrs = node
        .attributes()
        .map(|a| (a.name().to_string(), a.value().to_string()))
        .collect();
    for child in node.children() {
        if child.is_element() {
            elem.children.push(convert(child, depth + 1)?);
        } else if child.is_text()
            && let Some(t) = child.text()
        {
            elem.text.push_str(t);
        }
    }
    // Around child elements, text is only indentation (CCP4i2 writes no
    // mixed content); dropping it makes a kept element compare equal after
    // it has been written with different indentation and read again.
    if !elem.children.is_empty() {
        elem.text = elem.text.trim().to_string();
    }
    Ok(elem)
}

/// Escape text content. Carriage returns are written as a character
/// reference because XML parsers turn a literal CR (and CRLF) into LF, and
/// a value must read back exactly as it was written.
pub fn escape_text(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Escape an attribute value (quotes included; whitespace other than a space
/// would be normalised away by a reader, so it is written as references).
pub(crate) fn escape_attr(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, attr: bool) -> Cow<'_, str> {
    let needs = s.chars().any(|c| {
        matches!(c, '&' | '<' | '>' | '\r') || (attr && matches!(c, '"' | '\'' | '\n' | '\t'))
    });
    if !needs {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            '"' if attr => out.push_str("&quot;"),
            '\'' if attr => out.push_str("&apos;"),
            '\n' if attr => out.push_str("&#10;"),
            '\t' if attr => out.push_str("&#9;"),
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The first character XML 1.0 cannot carry at all, even as a reference
/// (control characters other than tab, LF and CR, and U+FFFE/U+FFFF).
pub(crate) fn unrepresentable_char(s: &str) -> Option<char> {
    s.chars().find(|&c| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}'
    })
}

/// Whether `s` can be an element name as written by this crate: ASCII
/// letters, digits, `_` and `-`, not starting with a digit or `-`. CCP4i2
/// names are Python identifiers, a subset of this; the dot is excluded
/// because it separates path segments.
pub(crate) fn is_simple_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Builds indented XML text, two spaces a level, the layout CCP4i2 writes.
pub(crate) struct Writer {
    out: String,
    depth: usize,
}

impl Writer {
    /// Start a document with its XML declaration.
    pub fn new() -> Writer {
        Writer {
            out: String::from("<?xml version='1.0' encoding='UTF-8'?>\n"),
            depth: 0,
        }
    }

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn push_attrs(&mut self, attrs: &[(&str, &str)]) {
        for (k, v) in attrs {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            self.out.push_str(&escape_attr(v));
            self.out.push('"');
        }
    }

    /// Open an element that will have child elements.
    pub fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.push_attrs(attrs);
        self.out.push_str(">\n");
        self.depth += 1;
    }

    /// Close the element opened last.
    pub fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    /// An element with text only (written self-closing when the text is empty).
    pub fn leaf(&mut self, name: &str, text: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        if text.is_empty() {
            self.out.push_str("/>\n");
        } else {
            self.out.push('>');
            self.out.push_str(&escape_text(text));
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push_str(">\n");
        }
    }

    /// Write a kept element back as it was read (renamed to `name`).
    pub fn elem_as(&mut self, name: &str, e: &Elem) {
        let attrs: Vec<(&str, &str)> = e
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if e.children.is_empty() {
            self.indent();
            self.out.push('<');
            self.out.push_str(name);
            self.push_attrs(&attrs);
            if e.text.is_empty() {
                self.out.push_str("/>\n");
            } else {
                self.out.push('>');
                self.out.push_str(&escape_text(&e.text));
                self.out.push_str("</");
                self.out.push_str(name);
                self.out.push_str(">\n");
            }
            return;
        }
        self.open(name, &attrs);
        // Mixed content is not something CCP4i2 writes; keeping the text
        // before the children is enough to not lose it.
        if !e.text.trim().is_empty() {
            self.indent();
            self.out.push_str(&escape_text(e.text.trim()));
            self.out.push('\n');
        }
        for c in &e.children {
            self.elem_as(&c.name, c);
        }
        self.close(name);
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_reads_back() {
        let nasty = "a<b>&c \"q\" 'r'\r\nline2\ttab";
        let mut w = Writer::new();
        w.open("root", &[("attr", nasty)]);
        w.leaf("v", nasty);
        w.close("root");
        let text = w.finish();
        let root = parse(&text).unwrap();
        assert_eq!(root.attr("attr"), Some(nasty));
        assert_eq!(root.child("v").unwrap().text, nasty);
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let n = 100_000;
        let text = format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        assert_eq!(parse(&text), Err(XmlError::TooDeep));
    }

    #[test]
    fn nesting_scan() {
        assert!(!nesting_exceeds(
            b"<a><b/><c x='>' y=\"<\"><!-- <d> --><![CDATA[<e>]]></c></a>",
            2
        ));
        assert!(nesting_exceeds(b"<a><b><c/></b></a>", 1));
        assert!(!nesting_exceeds(b"<a><b><c/></b></a>", 2));
        assert!(!nesting_exceeds(b"<?xml version='1.0'?><a></a><", 1));
    }

    #[test]
    fn dtd_is_refused() {
        let text = "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><x>&a;</x>";
        assert!(matches!(parse(text), Err(XmlError::Syntax(_))));
    }

    #[test]
    fn names() {
        assert!(is_simple_name("HKLIN"));
        assert!(is_simple_name("_x-1"));
        assert!(!is_simple_name("1x"));
        assert!(!is_simple_name("a.b"));
        assert!(!is_simple_name(""));
        assert!(!is_simple_name("a b"));
    }
}
