//! Dotted item paths: `inputData.CELL.a`, list items as `LIST.0` or
//! `LIST[0]`, the empty path for the root.
//!
//! Paths are resolved to positions in the tree once, so the mutable walk
//! that follows cannot disagree with the checks made on the way down.

use crate::error::ContainerError;
use crate::model::{Data, Node};
use crate::xml::is_simple_name;

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Name(String),
    Index(usize),
}

/// Longest path accepted, in bytes; far beyond any real one.
const MAX_PATH: usize = 4096;

/// Split a path into steps.
pub(crate) fn parse(path: &str) -> Result<Vec<Seg>, ContainerError> {
    let bad = |reason: &str| ContainerError::InvalidPath {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if path.len() > MAX_PATH {
        return Err(bad("longer than 4096 bytes"));
    }
    let mut segs = Vec::new();
    if path.is_empty() {
        return Ok(segs);
    }
    for part in path.split('.') {
        if part.is_empty() {
            return Err(bad("empty segment (leading, trailing or doubled '.')"));
        }
        let (head, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if head.is_empty() {
            return Err(bad("'[' must follow an item name"));
        } else if head.bytes().all(|b| b.is_ascii_digit()) {
            segs.push(Seg::Index(
                parse_index(head).ok_or_else(|| bad("index too large"))?,
            ));
        } else if is_simple_name(head) {
            segs.push(Seg::Name(head.to_string()));
        } else {
            return Err(bad(&format!(
                "{head:?} is not an item name (letters, digits, '_' and '-')"
            )));
        }
        while !rest.is_empty() {
            let close = rest.find(']').ok_or_else(|| bad("'[' without ']'"))?;
            let idx = &rest[1..close];
            if idx.is_empty() || !idx.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("list index must be a non-negative integer"));
            }
            segs.push(Seg::Index(
                parse_index(idx).ok_or_else(|| bad("index too large"))?,
            ));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(bad("unexpected text after ']'"));
            }
        }
    }
    Ok(segs)
}

fn parse_index(s: &str) -> Option<usize> {
    s.parse().ok()
}

/// The canonical dotted form of `segs`.
pub(crate) fn render(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        if !out.is_empty() {
            out.push('.');
        }
        match s {
            Seg::Name(n) => out.push_str(n),
            Seg::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

/// `parent.name`, or `name` at the root.
pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// Resolve `segs` below `root` to child positions (indexes into each
/// level's [`Node::kids`]).
pub(crate) fn locate(root: &Node, path: &str, segs: &[Seg]) -> Result<Vec<usize>, ContainerError> {
    let mut cur = root;
    let mut pos = Vec::with_capacity(segs.len());
    for (depth, seg) in segs.iter().enumerate() {
        let here = if depth == 0 {
            "the root".to_string()
        } else {
            render(&segs[..depth])
        };
        let missing = |reason: String| ContainerError::NoSuchItem {
            path: path.to_string(),
            reason,
        };
        let idx = match (seg, &cur.data) {
            (Seg::Name(n), Data::Container(kids) | Data::Composite(kids)) => kids
                .iter()
                .position(|k| &k.name == n)
                .ok_or_else(|| missing(format!("{here} has no item {n:?}")))?,
            (Seg::Index(i), Data::List { items, .. }) => {
                if *i >= items.len() {
                    return Err(missing(format!(
                        "{here} has {} item(s), no index {i}",
                        items.len()
                    )));
                }
                *i
            }
            (Seg::Name(n), Data::List { .. }) => {
                return Err(missing(format!(
                    "{here} is a list; address its items by index, not {n:?}"
                )));
            }
            (Seg::Index(i), Data::Container(_) | Data::Composite(_)) => {
                return Err(missing(format!(
                    "{here} is a {}, not a list; it has no index {i}",
                    cur.class_name
                )));
            }
            (_, _) => {
                return Err(missing(format!(
                    "{here} is a {} value and has no items",
                    cur.class_name
                )));
            }
        };
        pos.push(idx);
        cur = &cur.kids()[idx];
    }
    Ok(pos)
}

/// The node at positions `pos` (as returned by [`locate`] on the same tree).
pub(crate) fn at<'a>(root: &'a Node, pos: &[usize]) -> Option<&'a Node> {
    let mut cur = root;
    for &i in pos {
        cur = cur.kids().get(i)?;
    }
    Some(cur)
}

/// The node at positions `pos`, mutably.
pub(crate) fn at_mut<'a>(root: &'a mut Node, pos: &[usize]) -> Option<&'a mut Node> {
    let mut cur = root;
    for &i in pos {
        cur = cur.kids_mut()?.get_mut(i)?;
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &str) -> Vec<Seg> {
        parse(p).unwrap()
    }

    #[test]
    fn forms() {
        assert_eq!(names(""), vec![]);
        assert_eq!(
            names("inputData.CELL.a"),
            vec![
                Seg::Name("inputData".into()),
                Seg::Name("CELL".into()),
                Seg::Name("a".into())
            ]
        );
        assert_eq!(names("x.L[2].a"), names("x.L.2.a"));
        assert_eq!(names("x.L[2][3]"), names("x.L.2.3"));
        assert_eq!(render(&names("x.L[2].a")), "x.L.2.a");
    }

    #[test]
    fn bad_forms() {
        for p in [
            ".",
            "a.",
            ".a",
            "a..b",
            "a[",
            "a[x]",
            "a[1]b",
            "[1]",
            "a b",
            "a.$b",
            "a[99999999999999999999999]",
        ] {
            assert!(parse(p).is_err(), "{p}");
        }
        assert!(parse(&"a.".repeat(5000)).is_err());
    }
}
