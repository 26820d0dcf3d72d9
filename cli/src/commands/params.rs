//! `kiln params show`: print a CCP4i2 PARAMS file (params.xml): its header
//! and every value, read against a task definition when one is given.

use kiln_container::{Container, ParamsHeader};
use std::path::Path;

pub fn show(file: &Path, def: Option<&Path>, json: bool) -> anyhow::Result<u8> {
    use anyhow::Context;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("failed to read {}", file.display()))?;
    let header =
        ParamsHeader::from_params_xml(&text).with_context(|| format!("{}", file.display()))?;
    let values: Vec<(String, String)> = match def {
        Some(def) => {
            let def_text = std::fs::read_to_string(def)
                .with_context(|| format!("failed to read {}", def.display()))?;
            let container =
                Container::from_def_xml(&def_text).with_context(|| format!("{}", def.display()))?;
            let container = Container::from_params_xml(container, &text)
                .with_context(|| format!("{}", file.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&container.to_json())?);
                return Ok(0);
            }
            flatten(&container.to_json(), "")
        }
        None => kiln_container::params_xml::values(&text)
            .with_context(|| format!("{}", file.display()))?,
    };
    if json {
        let doc = serde_json::json!({
            "header": header.present_fields().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
            "values": values.to_vec(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    for (name, value) in header.present_fields() {
        println!("{name}: {value}");
    }
    println!();
    for (path, value) in values {
        println!("{path} = {value}");
    }
    Ok(0)
}

/// Leaves of a JSON values tree as (dotted path, text); nulls are unset.
fn flatten(v: &serde_json::Value, prefix: &str) -> Vec<(String, String)> {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        serde_json::Value::Object(m) if m.contains_key("path") && m.contains_key("file_type") => {
            vec![(
                prefix.to_string(),
                m["path"].as_str().unwrap_or_default().to_string(),
            )]
        }
        serde_json::Value::Object(m) => m.iter().flat_map(|(k, v)| flatten(v, &join(k))).collect(),
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .flat_map(|(i, v)| flatten(v, &format!("{prefix}[{i}]")))
            .collect(),
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::String(s) => vec![(prefix.to_string(), s.clone())],
        other => vec![(prefix.to_string(), other.to_string())],
    }
}
