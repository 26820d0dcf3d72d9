//! Task `mtzdump`: run CCP4's mtzdump on `inputData.HKLIN` and read the cell
//! from its log into `outputData.CELL`, the way CCP4i2's mtzdump wrapper
//! does: the cell is the line five below the `* Dataset ID, ...` line.

use kiln_sdk::template::{expand, expand_words};
use kiln_sdk::{Description, Job, Task, TaskError};

const DEF_XML: &str = include_str!("../mtzdump.def.xml");
const COMLINE_TEMPLATE: &str = "1 HKLIN $HKLIN";
const COM_TEMPLATE: &str = "1 HEADER\n1 NREF -1\n1 END";

/// The line of mtzdump's header listing that the cell block follows.
const DATASET_MARKER: &str =
    "* Dataset ID, project/crystal/dataset names, cell dimensions, wavelength:";
const CELL_NAMES: [&str; 6] = ["a", "b", "c", "alpha", "beta", "gamma"];

struct Mtzdump;

impl Task for Mtzdump {
    fn describe() -> Description {
        Description::new("mtzdump", "0.1.0", "Read the header of an MTZ file")
            .definition(DEF_XML)
            .programs(["mtzdump"])
    }

    fn run(job: &Job) -> Result<(), TaskError> {
        let lookup = job.lookup();
        let args = expand_words(COMLINE_TEMPLATE, &lookup)?;
        let script = expand(COM_TEMPLATE, &lookup)?;
        job.progress(Some(0.1), "mtzdump", "reading the MTZ header")?;
        let finished = job.program("mtzdump").args(args).stdin(script).run()?;
        finished.check()?;
        let cell = cell_from_log(&finished.stdout_text())?;
        for (name, value) in CELL_NAMES.iter().zip(cell) {
            job.set(&format!("outputData.CELL.{name}"), value)?;
        }
        job.info(&format!("cell {cell:?}"));
        Ok(())
    }
}

/// The six cell numbers on the fifth line below the dataset marker.
fn cell_from_log(log: &str) -> Result<[f64; 6], TaskError> {
    let line = log
        .lines()
        .skip_while(|l| !l.contains(DATASET_MARKER))
        .nth(5)
        .ok_or_else(|| {
            TaskError::failed("mtzdump's log has no dataset cell block (`* Dataset ID` line)")
        })?;
    let numbers: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| {
            TaskError::failed(format!("mtzdump's cell line is not six numbers: {line:?}"))
        })?;
    numbers
        .try_into()
        .map_err(|_| TaskError::failed(format!("mtzdump's cell line is not six numbers: {line:?}")))
}

kiln_sdk::export_task!(Mtzdump);
