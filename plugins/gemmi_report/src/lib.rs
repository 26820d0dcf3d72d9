//! Pipeline `gemmi_report`: a model and its data, checked with gemmi.
//!
//! 1. `mtzheader` (the data's header) and `model_contents` (the model's
//!    composition) at once.
//! 2. `sfcalc_r` at the data's own high resolution limit and at each
//!    cut-off of `controlParameters.CUTOFFS` below it, all at once; each
//!    R factor as it comes is a custom signal `r_factor`
//!    (`{"x": "dmin", "dmin", "r", "reflections"}`).
//! 3. The report: a table in `report.txt` in the job directory, the same
//!    lines in the job's log, and a signal `report` with all of it.
//!
//! The pipeline fails when the header or the composition cannot be read,
//! or when no R factor could be computed; a cut-off whose step fails is
//! reported as failed in the table.

use kiln_sdk::{Description, FailurePolicy, Job, SubJob, Task, TaskError, Value, wait_any};

const DEF_XML: &str = include_str!("../gemmi_report.def.xml");

struct GemmiReport;

fn number(step: &SubJob, path: &str) -> Result<f64, TaskError> {
    match step.get(path)? {
        Some(Value::Float(f)) => Ok(f),
        Some(Value::Int(i)) => Ok(i as f64),
        other => Err(TaskError::failed(format!(
            "step {} ({}) gave no number for {path}: {other:?}",
            step.id(),
            step.task()
        ))),
    }
}

fn text(step: &SubJob, path: &str) -> String {
    match step.get(path) {
        Ok(Some(Value::Text(t))) => t,
        Ok(Some(Value::Boolean(b))) => b.to_string(),
        _ => String::new(),
    }
}

/// The cut-offs to compute at: the data's limit, then each asked for that
/// lies below it (a larger d), in order, without repeats.
fn cutoffs(high: f64, asked: &str) -> Result<Vec<f64>, TaskError> {
    let mut out = vec![high];
    for word in asked.split_whitespace() {
        let d: f64 = word
            .parse()
            .ok()
            .filter(|d: &f64| d.is_finite() && *d > 0.0)
            .ok_or_else(|| {
                TaskError::failed(format!(
                    "controlParameters.CUTOFFS: `{word}` is not a resolution in A"
                ))
            })?;
        if d > high + 1e-6 && !out.iter().any(|o| (o - d).abs() < 1e-6) {
            out.push(d);
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

impl Task for GemmiReport {
    fn describe() -> Description {
        Description::new(
            "gemmi_report",
            "0.1.0",
            "Header, composition and R factors at several resolutions of a model and its data (gemmi)",
        )
        .definition(DEF_XML)
        .tasks(["mtzheader", "model_contents", "sfcalc_r"])
    }

    fn run(job: &Job) -> Result<(), TaskError> {
        job.progress(
            Some(0.0),
            "reading",
            "the data's header and the model's contents",
        )?;
        let header = job.sub_job("mtzheader")?;
        header.copy_from_parent("inputData.HKLIN", "inputData.HKLIN")?;
        let contents = job.sub_job("model_contents")?;
        contents.copy_from_parent("inputData.XYZIN", "inputData.XYZIN")?;
        header.start()?;
        contents.start()?;
        for (step, what) in [
            (&header, "the data's header"),
            (&contents, "the model's contents"),
        ] {
            let result = step.wait()?;
            if !result.succeeded() {
                return Err(TaskError::failed(format!(
                    "{what} (step {}): {}",
                    step.id(),
                    result.reason.unwrap_or_default()
                )));
            }
        }

        let high = number(&header, "outputData.MAXRESOLUTION")?;
        job.set("outputData.HIGH_RESOLUTION", high)?;
        let cuts = cutoffs(high, &job.text("controlParameters.CUTOFFS")?)?;
        let mut steps = Vec::with_capacity(cuts.len());
        for &d in &cuts {
            let step = job.sub_job("sfcalc_r")?;
            step.copy_from_parent("inputData.HKLIN", "inputData.HKLIN")?;
            step.copy_from_parent("inputData.XYZIN", "inputData.XYZIN")?;
            step.copy_from_parent("controlParameters.F", "controlParameters.F")?;
            step.copy_from_parent("controlParameters.SIGF", "controlParameters.SIGF")?;
            step.set("controlParameters.DMIN", d)?;
            step.on_failure(FailurePolicy::Continue)?;
            step.start()?;
            steps.push((d, step));
        }

        let mut rows: Vec<(f64, Result<(f64, i64), String>)> = Vec::new();
        let mut pending: Vec<usize> = (0..steps.len()).collect();
        while !pending.is_empty() {
            let handles: Vec<&SubJob> = pending.iter().map(|&i| &steps[i].1).collect();
            let i = pending.remove(wait_any(&handles)?);
            let (d, step) = &steps[i];
            let result = step.wait()?;
            let row = if result.succeeded() {
                let r = number(step, "outputData.RFACTOR")?;
                let n = number(step, "outputData.NREFLECTIONS")? as i64;
                job.signal(
                    "r_factor",
                    &format!(
                        "{{\"x\": \"dmin\", \"dmin\": {d}, \"r\": {r}, \"reflections\": {n}}}"
                    ),
                )?;
                Ok((r, n))
            } else {
                Err(result.reason.unwrap_or_else(|| "failed".into()))
            };
            rows.push((*d, row));
            let done = steps.len() - pending.len();
            job.progress(
                Some(done as f32 / steps.len() as f32),
                "R factors",
                &format!("{done} of {} cut-offs done", steps.len()),
            )?;
        }
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let Some(r_at_limit) = rows.iter().find_map(|(d, r)| {
            ((d - high).abs() < 1e-9)
                .then(|| r.as_ref().ok().map(|r| r.0))
                .flatten()
        }) else {
            return Err(TaskError::failed(format!(
                "no R factor at the data's resolution ({high:.3} A): {}",
                rows.iter()
                    .filter_map(|(d, r)| r.as_ref().err().map(|e| format!("{d} A: {e}")))
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        };
        job.set("outputData.RFACTOR", r_at_limit)?;

        let mut lines = vec![
            format!(
                "data: {} reflections, {}, space group {}, cell {}, to {high:.3} A",
                number(&header, "outputData.NO_REFLECTIONS")? as i64,
                if text(&header, "outputData.MERGED") == "true" {
                    "merged"
                } else {
                    "unmerged"
                },
                text(&header, "outputData.SPACEGROUPCELL.spaceGroup"),
                ["a", "b", "c", "alpha", "beta", "gamma"]
                    .iter()
                    .map(
                        |p| number(&header, &format!("outputData.SPACEGROUPCELL.cell.{p}"))
                            .map(|v| format!("{v}"))
                            .unwrap_or_default()
                    )
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            format!(
                "model: space group {}, {} residues, {} heavy atoms, molecular weight {:.1}, Matthews {:.2}, solvent {:.1} %",
                text(&contents, "outputData.SPACEGROUP"),
                number(&contents, "outputData.RESIDUES")?,
                number(&contents, "outputData.HEAVY_ATOMS")?,
                number(&contents, "outputData.MOLECULAR_WEIGHT")?,
                number(&contents, "outputData.MATTHEWS")?,
                number(&contents, "outputData.SOLVENT_PERCENT")?,
            ),
            format!("{:>10}  {:>11}  {:>8}", "d_min (A)", "reflections", "R"),
        ];
        let mut table = Vec::new();
        for (d, r) in &rows {
            lines.push(match r {
                Ok((r, n)) => format!("{d:>10.3}  {n:>11}  {r:>8.4}"),
                Err(e) => format!("{d:>10.3}  failed: {e}"),
            });
            if let Ok((r, n)) = r {
                table.push(format!(
                    "{{\"dmin\": {d}, \"r\": {r}, \"reflections\": {n}}}"
                ));
            }
        }
        let report = lines.join("\n") + "\n";
        std::fs::write("/job/report.txt", &report)
            .map_err(|e| TaskError::failed(format!("cannot write report.txt: {e}")))?;
        for line in &lines {
            job.info(line);
        }
        job.signal(
            "report",
            &format!(
                "{{\"high_resolution\": {high}, \"rows\": [{}]}}",
                table.join(", ")
            ),
        )?;
        job.progress(
            Some(1.0),
            "done",
            &format!("R {:.4} at {high:.3} A", r_at_limit),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_start_at_the_data_limit_and_skip_finer_or_repeated_ones() {
        assert_eq!(
            cutoffs(1.664, "3.0 2.0 1.5 2.0").unwrap(),
            [1.664, 2.0, 3.0]
        );
        assert!(cutoffs(1.664, "2.0 x").is_err());
    }
}

kiln_sdk::export_task!(GemmiReport);
