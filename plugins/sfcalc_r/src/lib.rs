//! Task `sfcalc_r`: structure factors of a model to a resolution cut-off,
//! and the R factor against measured amplitudes, with `gemmi sfcalc`
//! (registry name `gemmi-sfcalc`): bulk solvent and anisotropic scaling to
//! the measured F (`--scale-to`), then the R factor over the reflections
//! used, as its verbose output says (`... R=13.050%`, after `Calculating
//! scale factors using N points`). The calculated F's go to `FCALC`.

use kiln_sdk::template::expand_words;
use kiln_sdk::{Description, Job, Task, TaskError};

const DEF_XML: &str = include_str!("../sfcalc_r.def.xml");
/// The files, a word each; gemmi wants the rest joined to its options.
const FILES_TEMPLATE: &str = "1 $HKLIN $FCALC $XYZIN";

struct SfcalcR;

impl Task for SfcalcR {
    fn describe() -> Description {
        Description::new(
            "sfcalc_r",
            "0.1.0",
            "Structure factors of a model and its R factor against measured F (gemmi sfcalc)",
        )
        .definition(DEF_XML)
        .programs(["gemmi-sfcalc"])
    }

    fn run(job: &Job) -> Result<(), TaskError> {
        if !job.is_set("outputData.FCALC")? {
            job.set_file("outputData.FCALC", "FCALC.mtz")?;
        }
        let dmin = job.float("controlParameters.DMIN")?;
        let files = expand_words(FILES_TEMPLATE, &job.lookup())?;
        let [hklin, fcalc, xyzin] = <[String; 3]>::try_from(files)
            .map_err(|w| TaskError::failed(format!("the files are not three words: {w:?}")))?;
        let args = vec![
            "-v".to_string(),
            format!("--dmin={dmin}"),
            format!("--to-mtz={fcalc}"),
            format!(
                "--scale-to={hklin}:{}:{}",
                job.text("controlParameters.F")?,
                job.text("controlParameters.SIGF")?
            ),
            xyzin,
        ];
        job.progress(Some(0.1), "gemmi sfcalc", &format!("to {dmin} A"))?;
        let finished = job.program("gemmi-sfcalc").args(args).run()?;
        finished.check()?;
        let text = format!("{}\n{}", finished.stderr_text(), finished.stdout_text());
        let (r, n) = r_factor(&text)?;
        job.set("outputData.RFACTOR", r)?;
        job.set("outputData.NREFLECTIONS", n)?;
        job.progress(
            Some(1.0),
            "done",
            &format!("R {:.2} % over {n} reflections to {dmin} A", r * 100.0),
        )?;
        Ok(())
    }
}

/// The R factor (a fraction) and the number of reflections it is over.
fn r_factor(text: &str) -> Result<(f64, i64), TaskError> {
    let r = text
        .rmatch_indices("R=")
        .find_map(|(i, _)| {
            let rest = &text[i + 2..];
            let end = rest.find('%')?;
            rest[..end].trim().parse::<f64>().ok()
        })
        .filter(|r| r.is_finite() && *r >= 0.0)
        .ok_or_else(|| TaskError::failed("gemmi sfcalc printed no R factor (`R=...%`)"))?;
    let n = text
        .lines()
        .find_map(|l| {
            let rest = l.split("scale factors using ").nth(1)?;
            rest.split_whitespace().next()?.parse::<i64>().ok()
        })
        .ok_or_else(|| {
            TaskError::failed("gemmi sfcalc did not say how many reflections it scaled")
        })?;
    Ok((r / 100.0, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_r_factor_and_its_count_are_read() {
        let out = "Sigma cutoff (F/sigF > 0) excluded 0 out of 403 points.\n\
            After scaling: Calculating scale factors using 121 points...\n\
            RMSE=6.2358  17.04%  max|dF|=20.51  R=13.050%\n";
        let (r, n) = r_factor(out).unwrap();
        assert!((r - 0.1305).abs() < 1e-12 && n == 121, "{r} {n}");
        assert!(r_factor("RMSE=6.2  17.04%").is_err());
    }
}

kiln_sdk::export_task!(SfcalcR);
