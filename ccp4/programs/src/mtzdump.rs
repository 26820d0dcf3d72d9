//! `mtzdump`: prints the header of an MTZ file the way CCP4's mtzdump does.
//!
//! Command line `HKLIN <file>`; keywords on stdin: `HEADER`, `NREF n`, `END`
//! (or `GO`). The listing is libccp4's `ccp4_lhprt` output, character for
//! character, because CCP4i2's mtzdump wrapper parses it: it finds the line
//! containing `* Dataset ID, project/crystal/dataset names, cell dimensions,
//! wavelength:` and reads the cell from the line five below it (see
//! [`cell_from_log`]). After that block comes a column table with the ranges
//! recorded in the header. Reflections are not listed; `NREF` is accepted so
//! that existing scripts run, and the log says it was not acted on.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::keywords::{KeywordReader, logical_names};
use crate::mtz::{self, MissingValue, MtzError, MtzHeader};

/// The line CCP4i2 looks for; the first dataset's cell is five lines below.
pub const DATASET_MARKER: &str =
    "* Dataset ID, project/crystal/dataset names, cell dimensions, wavelength:";

/// Why mtzdump stopped.
#[derive(Debug, thiserror::Error)]
pub enum MtzdumpError {
    #[error("{0}")]
    Usage(String),
    #[error("no HKLIN given on the command line (usage: mtzdump HKLIN <file>)")]
    NoHklin,
    #[error("cannot read keyword input: {0}")]
    Stdin(io::Error),
    #[error("NREF needs an integer (got {0:?})")]
    BadNref(String),
    #[error("{0}")]
    Mtz(#[from] MtzError),
    #[error("cannot write the listing: {0}")]
    Stdout(io::Error),
}

/// Runs mtzdump: `args` are the words after the program name
/// (`["HKLIN", "file.mtz"]`), keywords are read from `stdin`, the listing
/// goes to `stdout`. Returns the exit code: 0 on success, 1 on any error
/// (reported on `stderr`).
pub fn run(
    args: &[String],
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let result = dump(args, stdin, stdout);
    let code = match &result {
        Ok(()) => 0,
        Err(e) => {
            // The message goes to both streams: stderr for whoever runs the
            // program, the log so that it is complete on its own.
            let _ = writeln!(stderr, " MTZDUMP:   {e}");
            if !matches!(e, MtzdumpError::Stdout(_)) {
                let _ = writeln!(stdout, "\n MTZDUMP:   {e}");
            }
            1
        }
    };
    let _ = stdout.flush();
    let _ = stderr.flush();
    code
}

fn dump(args: &[String], stdin: &mut dyn Read, stdout: &mut dyn Write) -> Result<(), MtzdumpError> {
    let out = |stdout: &mut dyn Write, text: &str| {
        stdout
            .write_all(text.as_bytes())
            .map_err(MtzdumpError::Stdout)
    };
    out(stdout, &crate::banner("mtzdump"))?;

    let mut hklin = None;
    for (name, value) in logical_names(args).map_err(|e| MtzdumpError::Usage(e.to_string()))? {
        if name == "HKLIN" {
            hklin = Some(value);
        } else {
            out(
                stdout,
                &format!(" WARNING: logical name {name} is not used by mtzdump; ignored\n"),
            )?;
        }
    }
    let hklin = hklin.ok_or(MtzdumpError::NoHklin)?;

    let mut nref = None;
    let mut keywords = KeywordReader::new(stdin);
    while let Some(line) = keywords.next_line().map_err(MtzdumpError::Stdin)? {
        out(stdout, &format!(" Data line--- {}\n", line.raw))?;
        if line.is("END") || line.is("GO") {
            break;
        } else if line.is("HEADER") {
            // The header is always printed.
        } else if line.is("NREF") {
            let word = line.words.get(1).cloned().unwrap_or_default();
            nref = Some(
                word.parse::<i64>()
                    .map_err(|_| MtzdumpError::BadNref(word))?,
            );
        } else {
            out(
                stdout,
                &format!(
                    " WARNING: keyword {} is not recognised by this mtzdump; ignored\n",
                    line.words[0]
                ),
            )?;
        }
    }

    let header = mtz::read_header(Path::new(&hklin))?;
    out(
        stdout,
        &format!("\n OPENED INPUT MTZ FILE \n Logical Name: HKLIN   Filename: {hklin} \n\n"),
    )?;
    out(stdout, &header_listing(&header))?;
    out(stdout, &column_table(&header))?;
    let skipped = match nref {
        Some(n) => format!(" (NREF {n} not acted on)"),
        None => String::new(),
    };
    out(
        stdout,
        &format!(
            " Reflections are not listed: this mtzdump prints the header only{skipped}.\n\n \
             MTZDUMP:   Normal termination\n"
        ),
    )
}

/// libccp4 keeps every number of an MTZ header in single precision; rounding
/// to f32 first makes the printed digits those the CCP4 program prints.
fn single(x: f64) -> f64 {
    x as f32 as f64
}

/// C's `%W.Pf` for a value libccp4 holds as a float (NaN prints as `nan`).
fn cf(x: f64, width: usize, precision: usize) -> String {
    let x = single(x);
    if x.is_nan() {
        format!("{:>width$}", "nan")
    } else {
        format!("{x:width$.precision$}")
    }
}

fn is_base(d: &mtz::Dataset) -> bool {
    d.id == 0 || (d.crystal == "HKL_base" && d.name == "HKL_base")
}

/// Datasets grouped by crystal, in order of first appearance, which is the
/// order libccp4's crystal/dataset tree gives them.
fn datasets_in_crystal_order(h: &MtzHeader) -> Vec<&mtz::Dataset> {
    let mut crystals: Vec<&str> = Vec::new();
    for d in &h.datasets {
        if !crystals.contains(&d.crystal.as_str()) {
            crystals.push(&d.crystal);
        }
    }
    crystals
        .iter()
        .flat_map(|x| h.datasets.iter().filter(move |d| d.crystal == *x))
        .collect()
}

/// Columns in libccp4's listing order: by dataset (in crystal order), file
/// order within a dataset; columns naming no known dataset come last.
fn columns_in_dataset_order(h: &MtzHeader) -> Vec<&mtz::Column> {
    let datasets = datasets_in_crystal_order(h);
    let mut cols: Vec<&mtz::Column> = datasets
        .iter()
        .flat_map(|d| h.columns.iter().filter(move |c| c.dataset_id == d.id))
        .collect();
    cols.extend(
        h.columns
            .iter()
            .filter(|c| h.dataset(c.dataset_id).is_none()),
    );
    cols
}

fn column_label(c: &mtz::Column) -> &str {
    // libccp4 stores M/ISYM as M_ISYM internally and prints the real name.
    if c.col_type == 'Y' && c.label == "M_ISYM" {
        "M/ISYM"
    } else {
        &c.label
    }
}

/// libccp4's `ccp4_lhprt` listing (print level 1) for this header: title,
/// datasets with their cells and wavelengths, column labels, types and
/// datasets, the obsolete overall cell, resolution range, sort order and
/// space group.
pub fn header_listing(h: &MtzHeader) -> String {
    let mut o = String::new();
    let _ = write!(o, " * Title:\n\n {}\n\n", h.title);

    let has_columns = |id: i32| h.columns.iter().any(|c| c.dataset_id == id);
    // A dataset with neither columns nor batches is not printed. Batches are
    // not attributed to datasets here, so any batch keeps all datasets.
    let active = |d: &&mtz::Dataset| has_columns(d.id) || h.nbatch > 0;
    let ordered = datasets_in_crystal_order(h);
    let base = ordered
        .iter()
        .find(|d| is_base(d))
        .filter(|d| has_columns(d.id));
    if let Some(base) = base {
        let _ = write!(
            o,
            " * Base dataset:\n\n {:8} HKL_base\n          HKL_base\n          HKL_base\n",
            base.id
        );
    }
    let printed: Vec<&mtz::Dataset> = ordered
        .iter()
        .copied()
        .filter(|d| !is_base(d))
        .filter(active)
        .collect();
    let _ = write!(o, "\n * Number of Datasets = {}\n\n", printed.len());
    let _ = write!(o, " {DATASET_MARKER}\n\n");
    for d in &printed {
        let cell = h.dataset_cell(d.id).to_array();
        let _ = write!(
            o,
            " {:8} {}\n          {}\n          {}\n          {}{}{}{}{}{}\n          {}\n",
            d.id,
            d.project,
            d.crystal,
            d.name,
            cf(cell[0], 10, 4),
            cf(cell[1], 10, 4),
            cf(cell[2], 10, 4),
            cf(cell[3], 10, 4),
            cf(cell[4], 10, 4),
            cf(cell[5], 10, 4),
            cf(d.wavelength, 10, 5),
        );
    }
    let _ = write!(o, "\n * Number of Columns = {}\n\n", h.columns.len());
    let _ = write!(o, " * Number of Reflections = {}\n\n", h.nref);
    match h.missing_value {
        MissingValue::NaN => o.push_str(" * Missing value set to NaN in input mtz file\n\n"),
        MissingValue::Value(v) => {
            let _ = write!(
                o,
                " * Missing value set to {:.6} in input mtz file\n\n",
                single(v)
            );
        }
    }
    if h.nbatch > 0 {
        let _ = write!(o, " * Number of Batches = {}\n\n", h.nbatch);
    }

    let columns = columns_in_dataset_order(h);
    o.push_str(" * Column Labels :\n\n");
    for c in &columns {
        let _ = write!(o, " {}", column_label(c));
    }
    o.push_str("\n\n * Column Types :\n\n");
    for c in &columns {
        let _ = write!(o, " {}", c.col_type);
    }
    o.push_str("\n\n * Associated datasets :\n\n");
    for c in &columns {
        let _ = write!(o, " {}", c.dataset_id);
    }

    o.push_str("\n\n * Cell Dimensions : (obsolete - refer to dataset cell dimensions above)\n\n");
    let first_cell = ordered
        .iter()
        .map(|d| h.dataset_cell(d.id))
        .find(|c| single(c.a) > 0.001);
    if let Some(cell) = first_cell {
        for v in cell.to_array() {
            let _ = write!(o, " {}", cf(v, 9, 4));
        }
        o.push_str(" \n\n");
    }

    o.push_str(" *  Resolution Range :\n\n");
    let (minres, maxres) = match h.resolution {
        Some(r) => (single(r.min_1_d2), single(r.max_1_d2)),
        None => (0.0, 0.0),
    };
    if maxres > 0.0 && minres > 0.0 {
        let _ = write!(
            o,
            " {} {}     ( {:10.3} - {:10.3} A )\n\n",
            cf(minres, 10, 5),
            cf(maxres, 10, 5),
            1.0 / minres.sqrt(),
            1.0 / maxres.sqrt()
        );
    } else if maxres > 0.0 {
        let _ = write!(
            o,
            " {} {}     ( inf  - {:10.3} A )\n\n",
            cf(minres, 10, 5),
            cf(maxres, 10, 5),
            1.0 / maxres.sqrt()
        );
    } else {
        o.push_str("   Not set - no crystals or reflections? \n\n");
    }
    let s = h.sort_order;
    let _ = write!(
        o,
        " * Sort Order :\n\n  {:5} {:5} {:5} {:5} {:5}\n\n",
        s[0], s[1], s[2], s[3], s[4]
    );
    let _ = write!(
        o,
        " * Space group = '{}' (number     {})\n\n",
        h.space_group_name, h.space_group_number
    );
    match h.symmetry.confidence {
        Some('L') => o.push_str("  (only Bravais lattice is fixed so far)\n\n"),
        Some('P') => o.push_str("  (only pointgroup is fixed so far)\n\n"),
        Some('E') => o.push_str("  (one of pair of enantiomorphic spacegroups)\n\n"),
        Some('S') => o.push_str("  (spacegroup is known)\n\n"),
        _ => {}
    }
    o
}

/// The columns with the ranges recorded in the header, in libccp4's
/// "labels, types, ranges" layout, numbered in file order.
pub fn column_table(h: &MtzHeader) -> String {
    let mut o = String::from(
        " * Column Labels, Types, Ranges [and Dataset IDs] (from the file header) :\n\n",
    );
    let _ = writeln!(
        o,
        " {:>3} {:<30} {:>4} {:>19} {:>19} {:>8}",
        "Col", "Label", "Type", "Min", "Max", "Dataset"
    );
    for (i, c) in h.columns.iter().enumerate() {
        let _ = writeln!(
            o,
            " {:>3} {:<30} {:>4} {} {} {:8} ",
            i + 1,
            column_label(c),
            c.col_type,
            cf(c.min, 19, 4),
            cf(c.max, 19, 4),
            c.dataset_id
        );
    }
    o.push('\n');
    o
}

/// Reads the cell from an mtzdump log the way CCP4i2's mtzdump wrapper does:
/// the six numbers on the fifth line below [`DATASET_MARKER`].
pub fn cell_from_log(log: &str) -> Option<[f64; 6]> {
    let lines: Vec<&str> = log.lines().collect();
    let at = lines.iter().position(|l| l.contains(DATASET_MARKER))?;
    let words: Vec<f64> = lines
        .get(at + 5)?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    words.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> String {
        format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    struct Output {
        code: i32,
        stdout: String,
        stderr: String,
    }

    fn mtzdump(args: &[&str], input: &str) -> Output {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut stdin = input.as_bytes();
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let code = run(&args, &mut stdin, &mut stdout, &mut stderr);
        Output {
            code,
            stdout: String::from_utf8(stdout).unwrap(),
            stderr: String::from_utf8(stderr).unwrap(),
        }
    }

    const SCRIPT: &str = "HEADER\nNREF -1\nEND\n";

    #[test]
    fn ccp4i2_reads_the_5e5z_cell_five_lines_below() {
        let out = mtzdump(&["HKLIN", &testdata("5e5z.mtz")], SCRIPT);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stderr, "");
        let cell = cell_from_log(&out.stdout).unwrap();
        assert_eq!(cell, [9.643, 9.609, 19.029, 90.0, 101.224, 90.0]);
        let lines: Vec<&str> = out.stdout.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.contains(DATASET_MARKER))
            .unwrap();
        assert_eq!(
            lines[at + 5],
            "              9.6430    9.6090   19.0290   90.0000  101.2240   90.0000"
        );
    }

    #[test]
    fn lhprt_block_is_exact_for_5e5z() {
        let out = mtzdump(&["hklin", &testdata("5e5z.mtz")], SCRIPT);
        let expected = "
 OPENED INPUT MTZ FILE 
 Logical Name: HKLIN   Filename: {PATH} 

 * Title:

 

 * Base dataset:

        0 HKL_base
          HKL_base
          HKL_base

 * Number of Datasets = 1

 * Dataset ID, project/crystal/dataset names, cell dimensions, wavelength:

        1 5e5z
          5e5z
          1
              9.6430    9.6090   19.0290   90.0000  101.2240   90.0000
             0.00000

 * Number of Columns = 8

 * Number of Reflections = 441

 * Missing value set to NaN in input mtz file

 * Column Labels :

 H K L FREE FP SIGFP I SIGI

 * Column Types :

 H H H I F Q J Q

 * Associated datasets :

 0 0 0 1 1 1 1 1

 * Cell Dimensions : (obsolete - refer to dataset cell dimensions above)

    9.6430    9.6090   19.0290   90.0000  101.2240   90.0000 

 *  Resolution Range :

    0.00287    0.36117     (     18.665 -      1.664 A )

 * Sort Order :

      0     0     0     0     0

 * Space group = 'P 1 21 1' (number     4)

 * Column Labels, Types, Ranges [and Dataset IDs] (from the file header) :

 Col Label                          Type                 Min                 Max  Dataset
   1 H                                 H             -5.0000              5.0000        0 
   2 K                                 H              0.0000              5.0000        0 
   3 L                                 H              0.0000             11.0000        0 
   4 FREE                              I              0.0000              1.0000        1 
   5 FP                                F              2.1354            146.1090        1 
   6 SIGFP                             Q              0.0779              5.9438        1 
   7 I                                 J             -0.3009            216.6050        1 
   8 SIGI                              Q              0.0158             11.0270        1 

 Reflections are not listed: this mtzdump prints the header only (NREF -1 not acted on).

 MTZDUMP:   Normal termination
"
        .replace("{PATH}", &testdata("5e5z.mtz"));
        let start = out.stdout.find("\n OPENED INPUT").unwrap();
        assert_eq!(&out.stdout[start..], expected);
        assert!(
            out.stdout
                .contains(" Data line--- HEADER\n Data line--- NREF -1\n Data line--- END\n")
        );
        assert!(out.stdout.contains("implementation): mtzdump"));
    }

    #[test]
    fn rnase_title_wavelength_and_space_group() {
        let out = mtzdump(&["HKLIN", &testdata("rnase25_freer.mtz")], "head\ngo\n");
        assert_eq!(out.code, 0, "{}", out.stderr);
        let log = &out.stdout;
        assert!(
            log.contains(" * Title:\n\n Scaleit tests.......\n\n"),
            "{log}"
        );
        assert!(log.contains(
            "        1 RNASE\n          RNASE\n          NATIVE\n             64.8970   78.3230   38.7920   90.0000   90.0000   90.0000\n             1.54200\n"
        ), "{log}");
        assert!(
            log.contains(" * Space group = 'P 21 21 21' (number     19)\n\n"),
            "{log}"
        );
        assert!(log.contains("      1     2     3     0     0\n"), "{log}");
        assert!(
            log.contains("    0.00040    0.16000     (     50.106 -      2.500 A )"),
            "{log}"
        );
        assert!(
            log.contains("this mtzdump prints the header only.\n"),
            "{log}"
        );
        assert_eq!(
            cell_from_log(log),
            Some([64.897, 78.323, 38.792, 90.0, 90.0, 90.0])
        );
    }

    #[test]
    fn comments_unknown_keywords_and_end_of_input() {
        let script = "# a comment\n! another\n\nSYMMETRY 4\nHEADER\nEND\nBOGUS\n";
        let out = mtzdump(&["HKLIN", &testdata("5e5z.mtz")], script);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(
            out.stdout
                .contains(" WARNING: keyword SYMMETRY is not recognised"),
            "{}",
            out.stdout
        );
        assert!(!out.stdout.contains("comment"));
        // Input after END is not read.
        assert!(!out.stdout.contains("BOGUS"));
        // No keywords at all is fine too.
        let out = mtzdump(&["HKLIN", &testdata("5e5z.mtz")], "");
        assert_eq!(out.code, 0);
        assert!(cell_from_log(&out.stdout).is_some());
    }

    #[test]
    fn missing_or_unreadable_hklin_fails() {
        let out = mtzdump(&["HKLIN", "/nonexistent/in.mtz"], SCRIPT);
        assert_eq!(out.code, 1);
        assert!(out.stderr.contains("/nonexistent/in.mtz"), "{}", out.stderr);
        assert!(
            out.stderr.starts_with(" MTZDUMP:   cannot read MTZ file"),
            "{}",
            out.stderr
        );

        let out = mtzdump(&["HKLIN", &testdata("rnase_frag.pdb")], SCRIPT);
        assert_eq!(out.code, 1);
        assert!(
            out.stderr.contains("does not start with \"MTZ \""),
            "{}",
            out.stderr
        );
        assert_eq!(cell_from_log(&out.stdout), None);

        let out = mtzdump(&[], SCRIPT);
        assert_eq!(out.code, 1);
        assert!(out.stderr.contains("no HKLIN"), "{}", out.stderr);

        let out = mtzdump(&["HKLIN"], SCRIPT);
        assert_eq!(out.code, 1);
        assert!(
            out.stderr.contains("HKLIN has no file name"),
            "{}",
            out.stderr
        );

        let out = mtzdump(&["HKLIN", &testdata("5e5z.mtz")], "NREF lots\nEND\n");
        assert_eq!(out.code, 1);
        assert!(
            out.stderr.contains("NREF needs an integer"),
            "{}",
            out.stderr
        );
    }

    #[test]
    fn truncated_file_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let full = std::fs::read(testdata("5e5z.mtz")).unwrap();
        for len in [0, 3, 19, 100, 14192, 14192 + 81, full.len() - 300] {
            let path = dir.path().join(format!("cut{len}.mtz"));
            std::fs::write(&path, &full[..len]).unwrap();
            let out = mtzdump(&["HKLIN", path.to_str().unwrap()], SCRIPT);
            assert_eq!(out.code, 1, "cut at {len}");
            assert!(
                out.stderr.contains(&format!("cut{len}.mtz")),
                "{}",
                out.stderr
            );
        }
    }

    #[test]
    fn cell_from_log_needs_six_numbers() {
        assert_eq!(cell_from_log("nothing here"), None);
        let log = format!(" {DATASET_MARKER}\n\n 1 p\n x\n d\n 1 2 3 90 90\n");
        assert_eq!(cell_from_log(&log), None);
    }

    #[test]
    fn c_formatting() {
        assert_eq!(cf(f64::NAN, 6, 2), "   nan");
        assert_eq!(cf(101.224, 10, 4), "  101.2240");
        assert_eq!(cf(1.542, 10, 5), "   1.54200");
    }
}
