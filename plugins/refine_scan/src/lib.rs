//! Pipeline `refine_scan`, shaped like CCP4i2's prosmart_refmac: a
//! preparation step, then refinements in parallel, then a choice.
//!
//! 1. `demo_copycell` gives the starting model the cell of the data
//!    (a pipeline itself: mtzdump, then pdbset).
//! 2. One `refmac` step per weight in `controlParameters.WEIGHTS`, all
//!    started at once; the host runs at most `MAXNJOBS` (default 4) and
//!    queues the rest. A refinement that fails does not stop the others
//!    (policy `continue`).
//! 3. The best refinement is the one with the lowest R free, read from the
//!    "Final results" table at the end of each step's log. Its model is
//!    `outputData.XYZOUT`, its weight and R free `BEST_WEIGHT` and `RFREE`;
//!    the custom signal `best` carries the same as JSON. Each refinement
//!    that ends says its weight and R free in a signal `refinement`
//!    (`"x": "weight"` names the number a chart plots the others against).
//!
//! The pipeline fails when the preparation fails or no refinement succeeds.

use kiln_sdk::{Description, FailurePolicy, Job, SubJob, Task, TaskError, wait_any};

const DEF_XML: &str = include_str!("../refine_scan.def.xml");

struct RefineScan;

impl Task for RefineScan {
    fn describe() -> Description {
        Description::new(
            "refine_scan",
            "0.1.0",
            "Refine at several weights in parallel and keep the best (prosmart_refmac-like)",
        )
        .definition(DEF_XML)
        .tasks(["demo_copycell", "refmac"])
    }

    fn run(job: &Job) -> Result<(), TaskError> {
        let weights = parse_weights(&job.text("controlParameters.WEIGHTS")?)?;
        let cap = job.int("controlParameters.MAXNJOBS")?;
        job.max_running_sub_jobs(u32::try_from(cap).unwrap_or(u32::MAX))?;

        job.progress(
            Some(0.0),
            "preparation",
            "giving the model the cell of the data",
        )?;
        let prep = job.sub_job("demo_copycell")?;
        prep.copy_from_parent("inputData.HKLIN", "inputData.HKLIN")?;
        prep.copy_from_parent("inputData.XYZIN", "inputData.XYZIN")?;
        prep.run().map_err(|e| e.context("preparation"))?;

        let mut steps: Vec<(f64, SubJob)> = Vec::with_capacity(weights.len());
        for &w in &weights {
            let step = job.sub_job("refmac")?;
            step.copy_from_parent("inputData.HKLIN", "inputData.HKLIN")?;
            step.copy_from("inputData.XYZIN", &prep, "outputData.XYZOUT")?;
            step.copy_from_parent("controlParameters.NCYCLES", "controlParameters.NCYCLES")?;
            step.set("controlParameters.WEIGHT", w)?;
            step.on_failure(FailurePolicy::Continue)?;
            step.start()?;
            steps.push((w, step));
        }

        let mut pending: Vec<usize> = (0..steps.len()).collect();
        let mut best: Option<(f64, f64, usize)> = None;
        let mut failures = Vec::new();
        while !pending.is_empty() {
            let handles: Vec<&SubJob> = pending.iter().map(|&i| &steps[i].1).collect();
            let i = pending.remove(wait_any(&handles)?);
            let (weight, step) = &steps[i];
            let result = step.wait()?;
            let done = steps.len() - pending.len();
            job.progress(
                Some(done as f32 / steps.len() as f32),
                "refinement",
                &format!("{done} of {} refinements ended", steps.len()),
            )?;
            if !result.succeeded() {
                failures.push(format!(
                    "weight {weight}: {}",
                    result.reason.unwrap_or_default()
                ));
                continue;
            }
            let log = format!("/job/{}/log.txt", step.directory());
            let text = std::fs::read_to_string(&log)
                .map_err(|e| TaskError::failed(format!("cannot read {log}: {e}")))?;
            let r_free = final_r_free(&text).ok_or_else(|| {
                TaskError::failed(format!("no final R free in {log} (step {})", step.id()))
            })?;
            job.info(&format!(
                "weight {weight}: R free {r_free:.4} (step {})",
                step.id()
            ));
            job.signal(
                "refinement",
                &format!(
                    "{{\"x\": \"weight\", \"weight\": {weight}, \"r_free\": {r_free}, \"job\": \"{}\"}}",
                    step.id()
                ),
            )?;
            if best.is_none_or(|(_, b, _)| r_free < b) {
                best = Some((*weight, r_free, i));
            }
        }

        let Some((weight, r_free, i)) = best else {
            return Err(TaskError::failed(format!(
                "no refinement succeeded: {}",
                failures.join("; ")
            )));
        };
        steps[i]
            .1
            .copy_to_parent("outputData.XYZOUT", "outputData.XYZOUT")?;
        job.set("outputData.BEST_WEIGHT", weight)?;
        job.set("outputData.RFREE", r_free)?;
        job.signal(
            "best",
            &format!(
                "{{\"weight\": {weight}, \"r_free\": {r_free}, \"job\": \"{}\"}}",
                steps[i].1.id()
            ),
        )?;
        job.progress(
            Some(1.0),
            "done",
            &format!("best weight {weight}, R free {r_free:.4}"),
        )?;
        Ok(())
    }
}

fn parse_weights(text: &str) -> Result<Vec<f64>, TaskError> {
    let weights: Vec<f64> = text
        .split_whitespace()
        .map(|w| {
            w.parse::<f64>()
                .ok()
                .filter(|w| w.is_finite() && *w > 0.0)
                .ok_or_else(|| {
                    TaskError::failed(format!(
                        "controlParameters.WEIGHTS: `{w}` is not a positive number"
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    if weights.is_empty() {
        return Err(TaskError::failed(
            "controlParameters.WEIGHTS: give at least one weight",
        ));
    }
    Ok(weights)
}

/// The final R free of a refmac log: the last number of the `R free` line
/// of its "Final results" table.
fn final_r_free(log: &str) -> Option<f64> {
    let table = &log[log.rfind("Final results")?..];
    table
        .lines()
        .find(|l| l.trim_start().starts_with("R free"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

kiln_sdk::export_task!(RefineScan);
