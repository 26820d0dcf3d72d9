//! `kiln def check`: parse CCP4i2 task definitions (def.xml), report each
//! file in one line, and check that parameters written from the definition
//! read back equal.

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
    // Round trip: what is written from the container reads back equal.
    let xml = container.to_params_xml(&ParamsHeader::new(name.clone()));
    let back = Container::from_params_xml(container.clone(), &xml)
        .map_err(|e| format!("params written from it do not read back: {e}"))?;
    if back != container {
        return Err("params written from it read back different".into());
    }
    let (containers, items) = count(&container, "");
    let mut summary =
        format!("task {name}, {containers} containers, {items} items, params round-trip ok");
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
