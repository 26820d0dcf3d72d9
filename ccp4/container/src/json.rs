//! JSON view of a container's values, for the command line's `--json` and
//! for anything else that wants the whole tree at once.
//!
//! Containers and composites are objects, lists are arrays, leaves are
//! their effective value (explicit, else default) or `null`. A file is
//! `{"path", "file_type", "annotation"}`. Structured values of classes this
//! crate does not know become nested objects of their elements' text.

use crate::model::{Data, GenericValue, Node, Value};
use crate::xml::Elem;
use serde_json::{Map, Value as Json, json};

/// The JSON for `node` and everything below it.
pub(crate) fn node_json(node: &Node) -> Json {
    match &node.data {
        Data::Container(kids) | Data::Composite(kids) => Json::Object(
            kids.iter()
                .map(|k| (k.name.clone(), node_json(k)))
                .collect::<Map<_, _>>(),
        ),
        Data::List { items, .. } => Json::Array(items.iter().map(node_json).collect()),
        Data::Generic {
            value: Some(GenericValue::Raw(children)),
            ..
        } => elems_json(children),
        _ => node.effective().map_or(Json::Null, |v| value_json(&v)),
    }
}

/// The JSON for one value.
pub(crate) fn value_json(v: &Value) -> Json {
    match v {
        Value::Int(i) => json!(i),
        // Floats in a container are finite, so this never falls back.
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Text(t) => json!(t),
        Value::Bool(b) => json!(b),
        Value::File(f) => json!({
            "path": f.path,
            "file_type": f.file_type,
            "annotation": f.annotation,
        }),
    }
}

fn elems_json(children: &[Elem]) -> Json {
    Json::Object(
        children
            .iter()
            .map(|c| {
                let v = if c.children.is_empty() {
                    json!(c.text)
                } else {
                    elems_json(&c.children)
                };
                (c.name.clone(), v)
            })
            .collect::<Map<_, _>>(),
    )
}
