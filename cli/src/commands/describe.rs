//! `kiln describe`: a task's definition and requested capabilities, checked
//! against a grants manifest when one is given.

use super::{HostArgs, build_host, load_registry};
use kiln_host::TaskRef;
use kiln_host::grants::Grants;
use std::path::Path;

pub async fn describe(
    task: &str,
    grants: Option<&Path>,
    args: HostArgs,
    json: bool,
) -> anyhow::Result<u8> {
    let manifest = grants.map(Grants::from_file).transpose()?;
    let host = build_host(&args, load_registry(&args)?).await?;
    let info = host.describe(&TaskRef::parse(task)).await?;
    let (effective, missing) = host.effective_grants(&info, manifest.as_ref()).await?;
    if json {
        let doc = serde_json::json!({
            "name": info.name,
            "version": info.version,
            "title": info.title,
            "requests": info.requests,
            "requests_with_sub_tasks": host.effective_grants(&info, None).await?.0,
            "granted": effective,
            "not_granted": missing,
            "definition": info.definition,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    println!("{} {} - {}", info.name, info.version, info.title);
    println!();
    println!("Requests:");
    let r = &info.requests;
    let list = |v: &std::collections::BTreeSet<String>| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    println!("  programs:  {}", list(&r.programs));
    println!("  sub-tasks: {}", list(&r.tasks));
    println!("  axes:      {}", list(&r.axes));
    println!("  env:       {}", list(&r.env));
    println!("  network:   {}", if r.network { "yes" } else { "no" });
    if !r.tasks.is_empty() {
        let all = host.effective_grants(&info, None).await?.0;
        println!("  with its sub-tasks, programs: {}", list(&all.programs));
    }
    if manifest.is_some() {
        println!();
        if missing.is_empty() {
            println!("Everything requested is granted.");
        } else {
            println!("Requested but not granted:");
            for m in &missing {
                println!("  {m}");
            }
        }
    }
    println!();
    println!("Definition (def.xml):");
    println!("{}", info.definition.trim_end());
    Ok(0)
}
