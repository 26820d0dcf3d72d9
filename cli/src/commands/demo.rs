//! `kiln demo`: demo_copycell (or, with `pipeline`, refine_scan) on bundled
//! copies of 5e5z.mtz and rnase_frag.pdb. Unless `--registry` names real
//! programs, mtzdump and pdbset are Kiln's own small implementations and
//! refmac5 a stand-in (`kiln tool ...`).

use super::run::run_request;
use super::{DemoKind, HostArgs, ProgressView, build_host, load_registry};
use anyhow::Context;
use kiln_host::registry::{ProgramEntry, Registry};
use kiln_host::{RunRequest, TaskRef};

const DEMO_MTZ: &[u8] = include_bytes!("../../demo-data/5e5z.mtz");
const DEMO_PDB: &[u8] = include_bytes!("../../demo-data/rnase_frag.pdb");

/// A registry whose mtzdump and pdbset are this binary's `tool` subcommand.
fn builtin_registry() -> anyhow::Result<Registry> {
    let exe = std::env::current_exe().context("failed to find the kiln executable")?;
    let mut registry = Registry::default();
    registry.source = "Kiln's built-in mtzdump, pdbset and refmac5 stand-in".into();
    for &name in kiln_ccp4_programs::PROGRAM_NAMES {
        registry.insert(
            name,
            ProgramEntry {
                path: exe.clone(),
                args: vec!["tool".into(), name.into()],
                env: Default::default(),
                sha256: None,
            },
        )?;
    }
    Ok(registry)
}

pub async fn demo(
    which: DemoKind,
    args: HostArgs,
    json: bool,
    view: ProgressView,
) -> anyhow::Result<u8> {
    let registry = match &args.registry {
        Some(_) => load_registry(&args)?,
        None => {
            if !json {
                println!(
                    "kiln demo: mtzdump and pdbset are Kiln's own small implementations \
                     and refmac5 a stand-in that simulates refinement (`kiln tool NAME`); \
                     pass --registry FILE to use real CCP4 programs."
                );
            }
            builtin_registry()?
        }
    };
    let data = args.jobs_dir.join("demo-data");
    std::fs::create_dir_all(&data)
        .with_context(|| format!("failed to create {}", data.display()))?;
    let data = std::fs::canonicalize(&data)?;
    let mtz = data.join("5e5z.mtz");
    let pdb = data.join("rnase_frag.pdb");
    std::fs::write(&mtz, DEMO_MTZ).with_context(|| format!("failed to write {}", mtz.display()))?;
    std::fs::write(&pdb, DEMO_PDB).with_context(|| format!("failed to write {}", pdb.display()))?;
    let task = match which {
        DemoKind::Copycell => "demo_copycell",
        DemoKind::Pipeline => "refine_scan",
    };
    if !json {
        println!(
            "kiln demo: {task} with HKLIN={} XYZIN={}\n",
            mtz.display(),
            pdb.display()
        );
    }
    let host = build_host(&args, registry).await?;
    let request = RunRequest {
        task: TaskRef::Name(task.into()),
        params: vec![
            ("HKLIN".into(), mtz.display().to_string()),
            ("XYZIN".into(), pdb.display().to_string()),
        ],
        grants: None,
    };
    let (code, report) = run_request(&host, request, json, view).await?;
    if let (false, Some(report)) = (json, &report) {
        print_result(report);
    }
    Ok(code)
}

/// Where the result is, and its CRYST1 record.
fn print_result(report: &kiln_host::JobReport) {
    let Some(xyzout) = report.outputs["XYZOUT"]["path"].as_str() else {
        return;
    };
    println!("XYZOUT: {xyzout}");
    if let (Some(w), Some(r)) = (
        report.outputs["BEST_WEIGHT"].as_f64(),
        report.outputs["RFREE"].as_f64(),
    ) {
        println!("best matrix weight {w}, R free {r:.4}");
    }
    let cryst1 = std::fs::read_to_string(xyzout).ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("CRYST1"))
            .map(str::to_string)
    });
    if let Some(line) = cryst1 {
        println!("{line}");
    }
}
