//! `kiln def check`: parse CCP4i2 task definitions (def.xml), report each
//! file in one line, and check that every item survives params.xml: each
//! is set (to its default, or a value of its class within its qualifiers),
//! written, read back and compared, item by item.

use kiln_container::{Container, ParamsHeader, dir_resolver};
use std::path::{Path, PathBuf};

/// Exit 0 when every file is fine, 2 (input error) otherwise.
pub fn check(files: &[PathBuf], top: Option<&Path>) -> u8 {
    let top = top
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CCP4I2_TOP").map(PathBuf::from));
    let mut failed = false;
    for file in files {
        match check_one(file, top.as_deref()) {
            Ok(summary) => println!("{}: ok: {summary}", file.display()),
            Err(why) => {
                failed = true;
                println!("{}: error: {why}", file.display());
            }
        }
    }
    if failed { super::EXIT_USAGE } else { 0 }
}

fn check_one(file: &Path, top: Option<&Path>) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read: {e}"))?;
    let container = match top {
        Some(top) => Container::from_def_xml_with_includes(&text, &dir_resolver(top)),
        None => Container::from_def_xml(&text),
    }
    .map_err(|e| match top {
        None if e.to_string().contains("include not resolved") => {
            format!("{e} (give the CCP4i2 installation with --top DIR or CCP4I2_TOP)")
        }
        _ => e.to_string(),
    })?;
    let name = container
        .plugin_name()
        .unwrap_or("(no pluginName)")
        .to_string();
    // Round trip: every item set, written, read back, compared one by one.
    let mut filled = container.clone();
    let set = fill(&mut filled, "");
    let xml = filled.to_params_xml(&ParamsHeader::new(name.clone()));
    let back = Container::from_params_xml(container.clone(), &xml)
        .map_err(|e| format!("params written from it do not read back: {e}"))?;
    let lost = differences(&filled, &back, &set.items);
    if !lost.is_empty() {
        return Err(format!(
            "params round-trip: {} of {} items read back different: {}",
            lost.len(),
            set.items.len(),
            lost.join("; ")
        ));
    }
    let (containers, items) = count(&container, "");
    let mut summary = format!(
        "task {name}, {containers} containers, {items} items, params round-trip ok ({} items set and read back equal",
        set.items.len()
    );
    if set.lists > 0 {
        summary.push_str(&format!(", {} lists given one item", set.lists));
    }
    summary.push(')');
    for path in &set.unset {
        summary.push_str(&format!(
            "; warning: no value of its class could be set for {path}"
        ));
    }
    for w in container.warnings() {
        summary.push_str(&format!("; warning: {w}"));
    }
    Ok(summary)
}

/// (containers, leaf items) below `path`.
fn count(c: &Container, path: &str) -> (usize, usize) {
    let Ok(children) = c.children(path) else {
        return (0, 1);
    };
    let mut totals = (0, 0);
    for child in children {
        let p = if path.is_empty() {
            child
        } else {
            format!("{path}.{child}")
        };
        if c.class_name(&p).is_ok_and(|n| n == "CContainer") {
            totals.0 += 1;
        }
        let (cs, is) = match c.children(&p) {
            Ok(k) if !k.is_empty() => count(c, &p),
            _ => (0, 1),
        };
        totals.0 += cs;
        totals.1 += is;
    }
    totals
}

/// What [`fill`] set.
#[derive(Default)]
struct Filled {
    /// Leaves given a value.
    items: Vec<String>,
    /// Lists given one item (whose leaves are then in `items`).
    lists: usize,
    /// Leaves no representative value could be set for.
    unset: Vec<String>,
}

/// Set every leaf below `path` explicitly: to its default where it has
/// one, else to a value of its class within its qualifiers. An empty list
/// gets one item, so that its item's class is exercised too.
fn fill(c: &mut Container, path: &str) -> Filled {
    let mut done = Filled::default();
    fill_into(c, path, &mut done);
    done
}

fn fill_into(c: &mut Container, path: &str, done: &mut Filled) {
    let children = c.children(path).unwrap_or_default();
    if children.is_empty() && !path.is_empty() {
        if let Ok(item) = c.push_item(path) {
            done.lists += 1;
            return fill_into(c, &item, done);
        }
        match representatives(c, path)
            .into_iter()
            .any(|text| c.set_from_str(path, &text).is_ok())
        {
            true => done.items.push(path.to_string()),
            false => done.unset.push(path.to_string()),
        }
        return;
    }
    for child in children {
        let p = if path.is_empty() {
            child
        } else {
            format!("{path}.{child}")
        };
        fill_into(c, &p, done);
    }
}

/// Texts to try for leaf `path`, best first: its default, its first
/// enumerator, a number within its range, a boolean, a word, a file name
/// with an extension it allows.
fn representatives(c: &Container, path: &str) -> Vec<String> {
    let mut texts = Vec::new();
    if let Ok(Some(v)) = c.get(path) {
        texts.push(v.to_text());
    }
    let Ok(q) = c.qualifiers(path) else {
        return texts;
    };
    // A file item takes any text as its path.
    let class = c.class_name(path).unwrap_or_default();
    if let Some(file) = kiln_container::file_class(&class) {
        let ext = q
            .file_extensions
            .first()
            .map(String::as_str)
            .or(file.extensions.first().copied())
            .unwrap_or("dat");
        texts.push(format!("/data/representative.{ext}"));
        return texts;
    }
    texts.extend(q.enumerators.first().cloned());
    let number = match (q.min, q.max) {
        (Some(min), _) => min,
        (None, Some(max)) => max.min(1.0),
        (None, None) => 1.0,
    };
    // The bound itself (a float item takes it), else the integer above it.
    texts.push(format!("{number}"));
    texts.push(format!("{}", number.ceil()));
    texts.push("True".into());
    texts.push("x".repeat(q.min_length.unwrap_or(1).max(1)));
    texts
}

/// `path: wrote X, read Y` for each of `items` whose value in `back`
/// differs from what `written` holds.
fn differences(written: &Container, back: &Container, items: &[String]) -> Vec<String> {
    let show = |v: Result<Option<kiln_container::Value>, _>| match v {
        Ok(Some(v)) => v.describe(),
        Ok(None) => "nothing".to_string(),
        Err(e) => format!("an error ({e})"),
    };
    items
        .iter()
        .filter_map(|path| {
            let (w, b) = (written.get(path), back.get(path));
            let same =
                matches!((&w, &b), (Ok(x), Ok(y)) if x == y) && back.is_set(path).unwrap_or(false);
            (!same).then(|| format!("{path}: wrote {}, read {}", show(w), show(b)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEF: &str = r#"<?xml version="1.0"?>
<ccp4i2><ccp4i2_header><pluginName>t</pluginName></ccp4i2_header>
<ccp4i2_body>
<container id="controlParameters">
  <content id="NCYC"><className>CInt</className><qualifiers><min>3</min><max>9</max></qualifiers></content>
  <content id="W"><className>CFloat</className><qualifiers><default>0.25</default></qualifiers></content>
  <content id="MODE"><className>CString</className><qualifiers><enumerators>fast,slow</enumerators><onlyEnumerators>True</onlyEnumerators></qualifiers></content>
  <content id="FLAG"><className>CBoolean</className></content>
</container>
<container id="inputData">
  <content id="HKLIN"><className>CMtzDataFile</className></content>
</container>
</ccp4i2_body></ccp4i2>"#;

    #[test]
    fn every_item_is_set_within_its_qualifiers() {
        let mut c = Container::from_def_xml(DEF).unwrap();
        let set = fill(&mut c, "");
        assert_eq!(set.items.len(), 5, "{:?} unset {:?}", set.items, set.unset);
        assert!(set.unset.is_empty());
        let get = |p: &str| c.get(p).unwrap().unwrap().to_text();
        assert_eq!(get("controlParameters.NCYC"), "3");
        assert_eq!(get("controlParameters.W"), "0.25");
        assert_eq!(get("controlParameters.MODE"), "fast");
        assert_eq!(get("controlParameters.FLAG"), "True");
        assert_eq!(get("inputData.HKLIN"), "/data/representative.mtz");
        assert!(
            c.validate().iter().all(|r| !r.severity.is_error()),
            "{:?}",
            c.validate()
        );
    }

    #[test]
    fn an_item_that_reads_back_different_is_named() {
        let mut c = Container::from_def_xml(DEF).unwrap();
        let set = fill(&mut c, "");
        let mut back = c.clone();
        assert!(differences(&c, &back, &set.items).is_empty());
        back.set("controlParameters.NCYC", kiln_container::Value::Int(4))
            .unwrap();
        back.unset("controlParameters.FLAG").unwrap();
        let lost = differences(&c, &back, &set.items);
        assert_eq!(lost.len(), 2, "{lost:?}");
        assert!(
            lost[0].contains("NCYC: wrote integer 3, read integer 4"),
            "{lost:?}"
        );
        assert!(lost[1].starts_with("controlParameters.FLAG"), "{lost:?}");
    }
}
