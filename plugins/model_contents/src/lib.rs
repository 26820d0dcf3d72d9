//! Task `model_contents`: what a model holds, from `gemmi contents`
//! (registry name `gemmi-contents`): its space group, residue and heavy
//! atom counts, estimated molecular weight, Matthews coefficient and
//! solvent content (for a protein density of 1.35 g/cm³).

use kiln_sdk::template::expand_words;
use kiln_sdk::{Description, Job, Task, TaskError};

const DEF_XML: &str = include_str!("../model_contents.def.xml");

struct ModelContents;

/// (output item, the line's start in gemmi's report)
const NUMBERS: &[(&str, &str)] = &[
    ("HEAVY_ATOMS", "Heavy (not H) atom count:"),
    ("MOLECULAR_WEIGHT", "Estimated molecular weight:"),
    ("MATTHEWS", "Matthews coefficient:"),
    ("SOLVENT_PERCENT", "Solvent % (for protein density 1.35):"),
];

impl Task for ModelContents {
    fn describe() -> Description {
        Description::new(
            "model_contents",
            "0.1.0",
            "Residues, atoms, weight and solvent content of a model (gemmi contents)",
        )
        .definition(DEF_XML)
        .programs(["gemmi-contents"])
    }

    fn run(job: &Job) -> Result<(), TaskError> {
        let args = expand_words("1 $XYZIN", &job.lookup())?;
        let finished = job.program("gemmi-contents").args(args).run()?;
        finished.check()?;
        let text = finished.stdout_text();
        let space_group = value(&text, "Spacegroup")?;
        job.set("outputData.SPACEGROUP", space_group)?;
        let residues = value(&text, "Residue count excl. solvent and buffer:")?;
        job.set(
            "outputData.RESIDUES",
            residues
                .parse::<i64>()
                .map_err(|_| bad("residue count", residues))?,
        )?;
        for (item, label) in NUMBERS {
            let v = value(&text, label)?;
            let n = v
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or_else(|| bad(label, v))?;
            job.set(&format!("outputData.{item}"), n)?;
        }
        Ok(())
    }
}

fn bad(what: &str, value: &str) -> TaskError {
    TaskError::failed(format!("gemmi contents: {what} is not a number: {value:?}"))
}

/// The rest of the first line of gemmi's report that starts with `label`.
fn value<'a>(text: &'a str, label: &str) -> Result<&'a str, TaskError> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(label).map(str::trim))
        .ok_or_else(|| TaskError::failed(format!("gemmi contents printed no `{label}` line")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_are_found_by_label() {
        let t = " Spacegroup   P 1 21 1\n Heavy (not H) atom count:                    47.000\n";
        assert_eq!(value(t, "Spacegroup").unwrap(), "P 1 21 1");
        assert_eq!(value(t, "Heavy (not H) atom count:").unwrap(), "47.000");
        assert!(value(t, "Matthews coefficient:").is_err());
    }
}

kiln_sdk::export_task!(ModelContents);
