//! Task `mtzheader`: the header of an MTZ file into the outputs of
//! CCP4i2's own mtzheader (its def.xml, `mtzheader.def.xml`, is CCP4i2
//! 3.0.1's unchanged): the cell and space group, the high resolution
//! limit, the number of reflections, and whether the file is merged (it has
//! no batch headers).
//!
//! CCP4i2's wrapper reads these with gemmi's Python library; here the
//! program `gemmi mtz --headers` (registry name `gemmi-mtz`) prints the
//! file's header records, which carry the same numbers at full precision:
//! `NCOL` (columns, reflections, batches), `CELL`, `SYMINF` (the space
//! group's name in quotes) and `RESO` (the smallest and largest 1/d², of
//! which gemmi's `resolution_high()` is the square root of the inverse).

use kiln_sdk::template::expand_words;
use kiln_sdk::{Description, Job, Task, TaskError};

const DEF_XML: &str = include_str!("../mtzheader.def.xml");
const COMLINE_TEMPLATE: &str = "1 --headers $HKLIN";
const CELL_NAMES: [&str; 6] = ["a", "b", "c", "alpha", "beta", "gamma"];

struct Mtzheader;

/// What the header says.
#[derive(Debug, PartialEq)]
struct Header {
    reflections: i64,
    batches: i64,
    cell: [f64; 6],
    space_group: String,
    high_resolution: f64,
}

impl Task for Mtzheader {
    fn describe() -> Description {
        Description::new(
            "mtzheader",
            "0.1.0",
            "Read cell, space group, resolution and reflection count from an MTZ header (gemmi)",
        )
        .definition(DEF_XML)
        .programs(["gemmi-mtz"])
    }

    fn run(job: &Job) -> Result<(), TaskError> {
        let args = expand_words(COMLINE_TEMPLATE, &job.lookup())?;
        job.progress(Some(0.1), "gemmi mtz", "reading the MTZ header")?;
        let finished = job.program("gemmi-mtz").args(args).run()?;
        finished.check()?;
        let header = parse_headers(&finished.stdout_text())?;
        job.set("outputData.MERGED", header.batches == 0)?;
        for (name, value) in CELL_NAMES.iter().zip(header.cell) {
            job.set(&format!("outputData.SPACEGROUPCELL.cell.{name}"), value)?;
        }
        job.set(
            "outputData.SPACEGROUPCELL.spaceGroup",
            header.space_group.as_str(),
        )?;
        job.set("outputData.MAXRESOLUTION", header.high_resolution)?;
        job.set("outputData.NO_REFLECTIONS", header.reflections)?;
        job.info(&format!(
            "{} reflections, {}, cell {:?}, {} to {:.3} A",
            header.reflections,
            if header.batches == 0 {
                "merged"
            } else {
                "unmerged"
            },
            header.cell,
            header.space_group,
            header.high_resolution
        ));
        job.progress(Some(1.0), "done", "header read")?;
        Ok(())
    }
}

fn parse_headers(text: &str) -> Result<Header, TaskError> {
    let record = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .filter(|rest| rest.starts_with(' '))
                    .map(str::trim)
            })
            .ok_or_else(|| {
                TaskError::failed(format!("gemmi mtz printed no {name} record of the header"))
            })
    };
    let numbers = |name: &str, count: usize| -> Result<Vec<f64>, TaskError> {
        let line = record(name)?;
        let values: Vec<f64> = line
            .split_whitespace()
            .take(count)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| {
                TaskError::failed(format!("the {name} record is not numbers: {line:?}"))
            })?;
        if values.len() < count || values.iter().any(|v| !v.is_finite()) {
            return Err(TaskError::failed(format!(
                "the {name} record does not have {count} numbers: {line:?}"
            )));
        }
        Ok(values)
    };
    let ncol = numbers("NCOL", 3)?;
    let cell: [f64; 6] = numbers("CELL", 6)?.try_into().expect("six numbers");
    let reso = numbers("RESO", 2)?;
    let max_1_d2 = reso[0].max(reso[1]);
    if max_1_d2 <= 0.0 {
        return Err(TaskError::failed(format!(
            "the RESO record gives no resolution: {reso:?}"
        )));
    }
    let syminf = record("SYMINF")?;
    let space_group = syminf
        .split('\'')
        .nth(1)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            TaskError::failed(format!(
                "the SYMINF record names no space group: {syminf:?}"
            ))
        })?;
    Ok(Header {
        reflections: ncol[1] as i64,
        batches: ncol[2] as i64,
        cell,
        space_group: space_group.to_string(),
        high_resolution: (1.0 / max_1_d2).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADERS: &str = "VERS MTZ:V1.1\nTITLE\nNCOL        8          441        0\n\
        CELL     9.6430    9.6090   19.0290   90.0000  101.2240   90.0000\n\
        SORT    0   0   0   0   0\nSYMINF   2  2 P     4             'P 1 21 1'   PG2\n\
        SYMM X,  Y,  Z\nRESO 0.0028703967109323   0.3611701726913452\nVALM NAN\n";

    #[test]
    fn the_header_records_give_the_outputs() {
        let h = parse_headers(HEADERS).unwrap();
        assert_eq!(h.reflections, 441);
        assert_eq!(h.batches, 0);
        assert_eq!(h.cell, [9.643, 9.609, 19.029, 90.0, 101.224, 90.0]);
        assert_eq!(h.space_group, "P 1 21 1");
        assert!(
            (h.high_resolution - 1.66395).abs() < 1e-4,
            "{}",
            h.high_resolution
        );
    }

    #[test]
    fn a_missing_or_bad_record_is_named() {
        let e = parse_headers("NCOL 8 441 0\n").unwrap_err();
        assert!(format!("{e:?}").contains("no CELL record"), "{e:?}");
        let e = parse_headers(&HEADERS.replace("'P 1 21 1'", "''")).unwrap_err();
        assert!(format!("{e:?}").contains("names no space group"), "{e:?}");
        let e = parse_headers(&HEADERS.replace("101.2240", "nan")).unwrap_err();
        assert!(
            format!("{e:?}").contains("CELL record does not have 6 numbers"),
            "{e:?}"
        );
    }
}

kiln_sdk::export_task!(Mtzheader);
