//! Pipeline `demo_copycell`: copy the cell of an MTZ file into a coordinate
//! file. Step 1 runs `mtzdump` on HKLIN as sub-job 1; step 2 runs `pdbset`
//! on XYZIN with that cell as sub-job 2. A failing step fails the pipeline
//! with the step's reason.

use kiln_sdk::{Description, Job, Task, TaskError};

const DEF_XML: &str = include_str!("../demo_copycell.def.xml");

struct DemoCopycell;

impl Task for DemoCopycell {
    fn describe() -> Description {
        Description::new(
            "demo_copycell",
            "0.1.0",
            "Copy the cell of an MTZ file into a PDB file (mtzdump, then pdbset)",
        )
        .definition(DEF_XML)
        .tasks(["mtzdump", "pdbset"])
    }

    fn run(job: &Job) -> Result<(), TaskError> {
        job.progress(Some(0.0), "mtzdump", "reading the cell of HKLIN")?;
        let mtzdump = job.sub_job("mtzdump")?;
        mtzdump.copy_from_parent("inputData.HKLIN", "inputData.HKLIN")?;
        mtzdump.run().map_err(|e| e.context("step 1"))?;

        job.progress(Some(0.5), "pdbset", "writing the cell into XYZIN")?;
        let pdbset = job.sub_job("pdbset")?;
        pdbset.copy_from_parent("inputData.XYZIN", "inputData.XYZIN")?;
        pdbset.copy_from("inputData.CELL", &mtzdump, "outputData.CELL")?;
        if job.is_set("outputData.XYZOUT")? {
            pdbset.copy_from_parent("outputData.XYZOUT", "outputData.XYZOUT")?;
        }
        pdbset.run().map_err(|e| e.context("step 2"))?;

        pdbset.copy_to_parent("outputData.XYZOUT", "outputData.XYZOUT")?;
        mtzdump.copy_to_parent("outputData.CELL", "outputData.CELL")?;
        job.progress(Some(1.0), "done", "cell copied")?;
        Ok(())
    }
}

kiln_sdk::export_task!(DemoCopycell);
