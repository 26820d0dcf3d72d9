//! Task `refmac`: one restrained refinement of `inputData.XYZIN` against
//! `inputData.HKLIN` with CCP4's refmac5 at the matrix weight
//! `controlParameters.WEIGHT`, giving `outputData.XYZOUT` (`XYZOUT.pdb` in
//! the job directory unless set). The log (`log.txt`) ends with refmac's
//! "Final results" table. Retryable: it writes only into its own job
//! directory.

use kiln_sdk::template::{expand, expand_words};
use kiln_sdk::{Description, Job, Task, TaskError};

const DEF_XML: &str = include_str!("../refmac.def.xml");
const COMLINE_TEMPLATE: &str = "1 HKLIN $HKLIN XYZIN $XYZIN XYZOUT $XYZOUT";
const COM_TEMPLATE: &str = "1 WEIGHT MATRIX $WEIGHT\n1 NCYCLES $NCYCLES\n1 END";

struct Refmac;

impl Task for Refmac {
    fn describe() -> Description {
        Description::new("refmac", "0.1.0", "Refine a model at one matrix weight")
            .definition(DEF_XML)
            .programs(["refmac5"])
            .retryable()
    }

    fn run(job: &Job) -> Result<(), TaskError> {
        if !job.is_set("outputData.XYZOUT")? {
            job.set_file("outputData.XYZOUT", "XYZOUT.pdb")?;
        }
        let lookup = job.lookup();
        let args = expand_words(COMLINE_TEMPLATE, &lookup)?;
        let script = expand(COM_TEMPLATE, &lookup)?;
        let weight = job.float("controlParameters.WEIGHT")?;
        job.progress(None, "refinement", &format!("refining at weight {weight}"))?;
        job.program("refmac5")
            .args(args)
            .stdin(script)
            .run()?
            .check()?;
        Ok(())
    }
}

kiln_sdk::export_task!(Refmac);
