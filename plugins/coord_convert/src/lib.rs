//! Task `coord_convert`: coordinates between PDB and mmCIF with
//! `gemmi convert` (registry name `gemmi-convert`), which reads either and
//! writes the format the output's extension names.

use kiln_sdk::template::expand_words;
use kiln_sdk::{Description, Job, Task, TaskError};

const DEF_XML: &str = include_str!("../coord_convert.def.xml");
const COMLINE_TEMPLATE: &str = "1 $XYZIN $XYZOUT";

struct CoordConvert;

impl Task for CoordConvert {
    fn describe() -> Description {
        Description::new(
            "coord_convert",
            "0.1.0",
            "Convert coordinates between PDB and mmCIF (gemmi convert)",
        )
        .definition(DEF_XML)
        .programs(["gemmi-convert"])
    }

    fn run(job: &Job) -> Result<(), TaskError> {
        let extension = match job.text("controlParameters.FORMAT")?.as_str() {
            "pdb" => "pdb",
            _ => "cif",
        };
        if !job.is_set("outputData.XYZOUT")? {
            job.set_file("outputData.XYZOUT", &format!("XYZOUT.{extension}"))?;
        }
        let args = expand_words(COMLINE_TEMPLATE, &job.lookup())?;
        job.progress(Some(0.1), "gemmi convert", "converting the coordinates")?;
        job.program("gemmi-convert").args(args).run()?.check()?;
        job.progress(Some(1.0), "done", &format!("written as {extension}"))?;
        Ok(())
    }
}

kiln_sdk::export_task!(CoordConvert);
