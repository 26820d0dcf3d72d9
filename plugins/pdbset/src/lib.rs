//! Task `pdbset`: write `inputData.CELL` into the CRYST1 record of
//! `inputData.XYZIN` with CCP4's pdbset, giving `outputData.XYZOUT`
//! (`XYZOUT.pdb` in the job directory unless set).

use kiln_sdk::template::{expand, expand_words};
use kiln_sdk::{Description, Job, Task, TaskError};

const DEF_XML: &str = include_str!("../pdbset.def.xml");
const COMLINE_TEMPLATE: &str = "1 XYZIN $XYZIN XYZOUT $XYZOUT";
const COM_TEMPLATE: &str =
    "1 CELL $CELL.a $CELL.b $CELL.c $CELL.alpha $CELL.beta $CELL.gamma\n1 END";

struct Pdbset;

impl Task for Pdbset {
    fn describe() -> Description {
        Description::new("pdbset", "0.1.0", "Set the cell of a coordinate file")
            .definition(DEF_XML)
            .programs(["pdbset"])
    }

    fn run(job: &Job) -> Result<(), TaskError> {
        for name in ["a", "b", "c", "alpha", "beta", "gamma"] {
            job.float(&format!("inputData.CELL.{name}"))?;
        }
        if !job.is_set("outputData.XYZOUT")? {
            job.set_file("outputData.XYZOUT", "XYZOUT.pdb")?;
        }
        let lookup = job.lookup();
        let args = expand_words(COMLINE_TEMPLATE, &lookup)?;
        let script = expand(COM_TEMPLATE, &lookup)?;
        job.progress(Some(0.1), "pdbset", "writing the cell")?;
        job.program("pdbset")
            .args(args)
            .stdin(script)
            .run()?
            .check()?;
        Ok(())
    }
}

kiln_sdk::export_task!(Pdbset);
