//! `pdbset`: sets the unit cell of a PDB coordinate file, as CCP4's pdbset
//! does with its `CELL` keyword.
//!
//! Command line `XYZIN <in> XYZOUT <out>`; keywords on stdin:
//! `CELL a b c [alpha beta gamma]` (angles default to 90, as in CCP4) and
//! `END`. The CRYST1 record is rewritten in fixed PDB columns: 1-6 `CRYST1`,
//! 7-15 a, 16-24 b, 25-33 c (F9.3), 34-40 alpha, 41-47 beta, 48-54 gamma
//! (F7.2); columns 55 to the end of the input record (space group from
//! column 56, Z in 67-70) are kept as they were. A file without CRYST1 gets
//! one, with space group `P 1` and Z 1, before its first ATOM, HETATM or
//! MODEL record. Every other byte of the file is copied unchanged, line
//! endings included. Other pdbset keywords are refused rather than
//! silently ignored, since ignoring them would produce a wrong file.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::Cell;
use crate::keywords::{KeywordReader, logical_names};

/// Why pdbset stopped.
#[derive(Debug, thiserror::Error)]
pub enum PdbsetError {
    #[error("{0}")]
    Usage(String),
    #[error("no {0} given on the command line (usage: pdbset XYZIN <in> XYZOUT <out>)")]
    MissingFile(&'static str),
    #[error("cannot read keyword input: {0}")]
    Stdin(io::Error),
    #[error("keyword {0} is not supported by this implementation (only CELL and END are)")]
    Unsupported(String),
    #[error("no CELL keyword given: nothing to do")]
    MissingCell,
    #[error("bad CELL {text:?}: {reason}")]
    BadCell { text: String, reason: String },
    #[error("cannot read XYZIN {}: {error}", path.display())]
    ReadInput { path: PathBuf, error: io::Error },
    #[error("XYZIN {} {problem}", path.display())]
    BadInput {
        path: PathBuf,
        problem: &'static str,
    },
    #[error("cannot write XYZOUT {}: {error}", path.display())]
    WriteOutput { path: PathBuf, error: io::Error },
    #[error("cannot write the log: {0}")]
    Stdout(io::Error),
}

/// What [`set_cell`] did to the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    /// The CRYST1 records before and after, one pair per record rewritten.
    pub rewritten: Vec<(String, String)>,
    /// The record inserted when the input had no CRYST1, and its 1-based
    /// line number in the output.
    pub inserted: Option<(usize, String)>,
    /// Lines in the output.
    pub lines: usize,
}

/// Runs pdbset: `args` are the words after the program name
/// (`["XYZIN", "in.pdb", "XYZOUT", "out.pdb"]`), keywords come from `stdin`,
/// the log goes to `stdout`. Returns 0 on success, 1 on any error (reported
/// on `stderr`; XYZOUT is then left untouched).
pub fn run(
    args: &[String],
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let result = pdbset(args, stdin, stdout);
    let code = match &result {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(stderr, " PDBSET:   {e}");
            if !matches!(e, PdbsetError::Stdout(_)) {
                let _ = writeln!(stdout, "\n PDBSET:   {e}");
            }
            1
        }
    };
    let _ = stdout.flush();
    let _ = stderr.flush();
    code
}

fn pdbset(
    args: &[String],
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
) -> Result<(), PdbsetError> {
    let out = |stdout: &mut dyn Write, text: &str| {
        stdout
            .write_all(text.as_bytes())
            .map_err(PdbsetError::Stdout)
    };
    out(stdout, &crate::banner("pdbset"))?;

    let (mut xyzin, mut xyzout) = (None, None);
    for (name, value) in logical_names(args).map_err(|e| PdbsetError::Usage(e.to_string()))? {
        match name.as_str() {
            "XYZIN" => xyzin = Some(PathBuf::from(value)),
            "XYZOUT" => xyzout = Some(PathBuf::from(value)),
            _ => out(
                stdout,
                &format!(" WARNING: logical name {name} is not used by pdbset; ignored\n"),
            )?,
        }
    }
    let xyzin = xyzin.ok_or(PdbsetError::MissingFile("XYZIN"))?;
    let xyzout = xyzout.ok_or(PdbsetError::MissingFile("XYZOUT"))?;

    let mut cell = None;
    let mut keywords = KeywordReader::new(stdin);
    while let Some(line) = keywords.next_line().map_err(PdbsetError::Stdin)? {
        out(stdout, &format!(" Data line--- {}\n", line.raw))?;
        if line.is("END") {
            break;
        } else if line.is("CELL") {
            cell = Some(parse_cell(&line.words[1..], &line.raw)?);
        } else {
            return Err(PdbsetError::Unsupported(line.words[0].clone()));
        }
    }
    let cell = cell.ok_or(PdbsetError::MissingCell)?;

    let input = fs::read(&xyzin).map_err(|error| PdbsetError::ReadInput {
        path: xyzin.clone(),
        error,
    })?;
    let bad_input = |problem| PdbsetError::BadInput {
        path: xyzin.clone(),
        problem,
    };
    if input.is_empty() {
        return Err(bad_input("is empty"));
    }
    if looks_like_mmcif(&input) {
        return Err(bad_input(
            "is mmCIF; this implementation reads PDB format only",
        ));
    }
    let (output, edit) = set_cell(&input, &cell).map_err(|reason| PdbsetError::BadCell {
        text: format_cell(&cell),
        reason,
    })?;
    write_atomically(&xyzout, &output).map_err(|error| PdbsetError::WriteOutput {
        path: xyzout.clone(),
        error,
    })?;

    let mut log = format!(
        "\n Input coordinates:  XYZIN  {}\n Output coordinates: XYZOUT {}\n\n",
        xyzin.display(),
        xyzout.display()
    );
    log.push_str(&format!(" Cell set to {}\n\n", format_cell(&cell)));
    for (before, after) in &edit.rewritten {
        log.push_str(&format!(
            " CRYST1 record rewritten:\n   input:  {before}\n   output: {after}\n"
        ));
    }
    if let Some((line, record)) = &edit.inserted {
        log.push_str(&format!(
            " XYZIN has no CRYST1 record; inserted at line {line} (space group P 1, Z 1):\n   output: {record}\n"
        ));
    }
    log.push_str(&format!(
        "\n {} lines written to XYZOUT; all other records copied unchanged.\n\n PDBSET:   Normal termination\n",
        edit.lines
    ));
    out(stdout, &log)
}

fn format_cell(c: &Cell) -> String {
    c.to_array().map(|v| v.to_string()).join(" ")
}

/// Parses the numbers after `CELL`: three lengths, optionally followed by
/// angles (missing ones are 90, as CCP4's cell parser does).
fn parse_cell(words: &[String], raw: &str) -> Result<Cell, PdbsetError> {
    let bad = |reason: &str| PdbsetError::BadCell {
        text: raw.to_string(),
        reason: reason.to_string(),
    };
    if words.len() < 3 || words.len() > 6 {
        return Err(bad("expected a b c [alpha beta gamma]"));
    }
    let mut p = [90.0; 6];
    for (slot, word) in p.iter_mut().zip(words) {
        *slot = word
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| bad(&format!("{word:?} is not a number")))?;
    }
    let cell = Cell::from_array(p);
    check_cell(&cell).map_err(|reason| bad(&reason))?;
    Ok(cell)
}

/// Checks that the cell is a real cell and fits the fixed columns, so that
/// a bad value is an error instead of a shifted or starred record.
fn check_cell(c: &Cell) -> Result<(), String> {
    for (name, v) in [("a", c.a), ("b", c.b), ("c", c.c)] {
        if !(v > 0.0 && format!("{v:.3}").len() <= 9) {
            return Err(format!("{name} = {v} must be positive and fit F9.3"));
        }
    }
    for (name, v) in [("alpha", c.alpha), ("beta", c.beta), ("gamma", c.gamma)] {
        if !(v > 0.0 && v < 180.0) {
            return Err(format!("{name} = {v} must lie between 0 and 180 degrees"));
        }
    }
    // The squared volume factor must be positive for the angles to close.
    let (ca, cb, cg) = (
        c.alpha.to_radians().cos(),
        c.beta.to_radians().cos(),
        c.gamma.to_radians().cos(),
    );
    if 1.0 - ca * ca - cb * cb - cg * cg + 2.0 * ca * cb * cg <= 1e-12 {
        return Err("these angles do not form a unit cell".to_string());
    }
    Ok(())
}

/// Columns 1-54 of a CRYST1 record for this cell.
pub fn cryst1_prefix(c: &Cell) -> Result<String, String> {
    check_cell(c)?;
    Ok(format!(
        "CRYST1{:9.3}{:9.3}{:9.3}{:7.2}{:7.2}{:7.2}",
        c.a, c.b, c.c, c.alpha, c.beta, c.gamma
    ))
}

/// Sets the cell in PDB file bytes: returns the new bytes and what changed.
/// Fails only when the cell is invalid (see [`cryst1_prefix`]).
pub fn set_cell(input: &[u8], cell: &Cell) -> Result<(Vec<u8>, Edit), String> {
    let prefix = cryst1_prefix(cell)?;
    let mut output = Vec::with_capacity(input.len() + 81);
    let mut edit = Edit {
        rewritten: Vec::new(),
        inserted: None,
        lines: 0,
    };
    let lines: Vec<&[u8]> = input.split_inclusive(|&b| b == b'\n').collect();
    let has_cryst1 = lines.iter().any(|l| l.starts_with(b"CRYST1"));
    let insert_at = if has_cryst1 {
        None
    } else {
        // Before the coordinates; failing that before END/MASTER, which must
        // stay last; failing that at the end.
        let record = |names: &[&[u8]]| {
            lines
                .iter()
                .position(|l| names.iter().any(|n| l.starts_with(n)))
        };
        Some(
            record(&[b"ATOM", b"HETATM", b"MODEL"])
                .or_else(|| record(&[b"END", b"MASTER"]))
                .unwrap_or(lines.len()),
        )
    };
    let newline_of = |line: &[u8]| -> &'static [u8] {
        if line.ends_with(b"\r\n") {
            b"\r\n"
        } else {
            b"\n"
        }
    };
    for (i, line) in lines.iter().enumerate() {
        if insert_at == Some(i) {
            let record = format!("{prefix} {:<11}{:>4}", "P 1", 1);
            output.extend_from_slice(record.as_bytes());
            output.extend_from_slice(newline_of(line));
            edit.lines += 1;
            edit.inserted = Some((edit.lines, record));
        }
        if line.starts_with(b"CRYST1") {
            let (body, ending) = line.split_at(line.len() - line_ending_len(line));
            let new_body = [prefix.as_bytes(), body.get(54..).unwrap_or(&[])].concat();
            output.extend_from_slice(&new_body);
            output.extend_from_slice(ending);
            edit.rewritten.push((
                String::from_utf8_lossy(body).into_owned(),
                String::from_utf8_lossy(&new_body).into_owned(),
            ));
        } else {
            output.extend_from_slice(line);
        }
        edit.lines += 1;
    }
    if insert_at == Some(lines.len()) {
        if !output.is_empty() && !output.ends_with(b"\n") {
            output.push(b'\n');
        }
        let record = format!("{prefix} {:<11}{:>4}", "P 1", 1);
        output.extend_from_slice(record.as_bytes());
        output.push(b'\n');
        edit.lines += 1;
        edit.inserted = Some((edit.lines, record));
    }
    Ok((output, edit))
}

fn line_ending_len(line: &[u8]) -> usize {
    if line.ends_with(b"\r\n") {
        2
    } else if line.ends_with(b"\n") {
        1
    } else {
        0
    }
}

/// mmCIF files start with a `data_` block header (after comments).
fn looks_like_mmcif(input: &[u8]) -> bool {
    input
        .split(|&b| b == b'\n')
        .map(|l| l.trim_ascii())
        .find(|l| !l.is_empty() && !l.starts_with(b"#"))
        .is_some_and(|l| l.starts_with(b"data_"))
}

/// Writes `data` to `path` so that readers see either the old file or the
/// complete new one, never a partial file: a temporary file in the same
/// directory (rename is atomic only within a file system), synced, then
/// renamed over the target.
fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    for attempt in 0u32..100 {
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{attempt}.tmp", std::process::id()));
        let tmp = dir.join(tmp_name);
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        let result = file
            .write_all(data)
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::rename(&tmp, path));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        return result;
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "could not create a temporary file next to it",
    ))
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

    fn pdbset(args: &[&str], input: &str) -> Output {
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

    const DEMO_CELL: &str = "CELL 9.643 9.609 19.029 90 101.224 90\nEND\n";
    const DEMO_CRYST1: &str = "CRYST1    9.643    9.609   19.029  90.00 101.22  90.00 P 21 21 21";

    fn dir_entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn demo_cryst1_is_exact_and_everything_else_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let xyzout = dir.path().join("out.pdb");
        let xyzin = testdata("rnase_frag.pdb");
        let out = pdbset(
            &["XYZIN", &xyzin, "XYZOUT", xyzout.to_str().unwrap()],
            DEMO_CELL,
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stderr, "");
        let input = fs::read_to_string(&xyzin).unwrap();
        let output = fs::read_to_string(&xyzout).unwrap();
        let cryst1: Vec<&str> = output.lines().filter(|l| l.starts_with("CRYST1")).collect();
        assert_eq!(cryst1, [DEMO_CRYST1]);
        // Byte for byte: only the cell columns of CRYST1 differ.
        let expected = input.replace(
            "CRYST1   64.897   78.323   38.792  90.00  90.00  90.00 P 21 21 21",
            DEMO_CRYST1,
        );
        assert_ne!(expected, input);
        assert_eq!(output, expected);
        assert!(
            out.stdout.contains(&format!("   output: {DEMO_CRYST1}\n")),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains(" PDBSET:   Normal termination"));
        assert!(out.stdout.contains(" Data line--- CELL 9.643"));
        assert_eq!(dir_entries(dir.path()), ["out.pdb"]);
    }

    #[test]
    fn keeps_space_group_z_and_tail_columns() {
        let input = b"HEADER    TEST\r\nCRYST1   64.897   78.323   38.792  90.00  90.00  90.00 P 21 21 21    4          \r\nATOM      1  N   GLY A   1      1.000   2.000   3.000  1.00 10.00           N\xe9\r\nEND";
        let cell = Cell::from_array([9.643, 9.609, 19.029, 90.0, 101.224, 90.0]);
        let (out, edit) = set_cell(input, &cell).unwrap();
        let expected = [
            &b"HEADER    TEST\r\n"[..],
            b"CRYST1    9.643    9.609   19.029  90.00 101.22  90.00 P 21 21 21    4          \r\n",
            b"ATOM      1  N   GLY A   1      1.000   2.000   3.000  1.00 10.00           N\xe9\r\n",
            b"END",
        ]
        .concat();
        assert_eq!(out, expected);
        assert_eq!(edit.rewritten.len(), 1);
        assert_eq!(edit.lines, 4);
        assert!(edit.inserted.is_none());
    }

    #[test]
    fn short_cryst1_keeps_only_what_it_had() {
        let cell = Cell::from_array([10.0, 20.0, 30.0, 90.0, 90.0, 120.0]);
        let (out, _) = set_cell(b"CRYST1   1.0\n", &cell).unwrap();
        assert_eq!(
            out,
            b"CRYST1   10.000   20.000   30.000  90.00  90.00 120.00\n"
        );
    }

    #[test]
    fn inserts_cryst1_when_missing() {
        let cell = Cell::from_array([9.643, 9.609, 19.029, 90.0, 101.224, 90.0]);
        let p1 = "CRYST1    9.643    9.609   19.029  90.00 101.22  90.00 P 1           1";
        let (out, edit) = set_cell(b"REMARK x\nATOM  1\nATOM  2\nEND\n", &cell).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("REMARK x\n{p1}\nATOM  1\nATOM  2\nEND\n")
        );
        assert_eq!(edit.inserted, Some((2, p1.to_string())));
        assert_eq!(edit.lines, 5);

        let (out, _) = set_cell(b"REMARK x\r\nHETATM 1\r\n", &cell).unwrap();
        assert_eq!(
            out,
            format!("REMARK x\r\n{p1}\r\nHETATM 1\r\n").into_bytes()
        );
        let (out, _) = set_cell(b"REMARK x\nEND\n", &cell).unwrap();
        assert_eq!(out, format!("REMARK x\n{p1}\nEND\n").into_bytes());
        let (out, _) = set_cell(b"REMARK x", &cell).unwrap();
        assert_eq!(out, format!("REMARK x\n{p1}\n").into_bytes());
        assert_eq!(p1.len(), 70);
    }

    #[test]
    fn cell_keyword_forms() {
        let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let c = parse_cell(&words("10 20 30"), "").unwrap();
        assert_eq!(c.to_array(), [10.0, 20.0, 30.0, 90.0, 90.0, 90.0]);
        for bad in [
            "10 20",
            "10 20 30 90 90 90 90",
            "10 x 30",
            "-10 20 30",
            "0 20 30",
            "100000 20 30",
            "10 20 30 180 90 90",
            "10 20 30 90 0 90",
            "10 20 30 10 10 170",
            "10 20 30 nan 90 90",
            "inf 20 30",
        ] {
            assert!(parse_cell(&words(bad), bad).is_err(), "{bad}");
        }
        assert!(parse_cell(&words("99999.999 1 1"), "").is_ok());
    }

    #[test]
    fn errors_exit_1_and_leave_no_output() {
        let dir = tempfile::tempdir().unwrap();
        let xyzout = dir.path().join("out.pdb");
        let out_arg = xyzout.to_str().unwrap();
        let xyzin = testdata("rnase_frag.pdb");
        let cases: &[(&[&str], &str, &str)] = &[
            (
                &["XYZIN", "/nonexistent/in.pdb", "XYZOUT", out_arg],
                DEMO_CELL,
                "cannot read XYZIN /nonexistent/in.pdb",
            ),
            (
                &["XYZIN", &xyzin, "XYZOUT", out_arg],
                "END\n",
                "no CELL keyword",
            ),
            (&["XYZIN", &xyzin, "XYZOUT", out_arg], "", "no CELL keyword"),
            (
                &["XYZIN", &xyzin, "XYZOUT", out_arg],
                "CELL 9.6 x 19 90 90 90\nEND\n",
                "\"x\" is not a number",
            ),
            (
                &["XYZIN", &xyzin, "XYZOUT", out_arg],
                "CELL 9.6 9.6\nEND\n",
                "expected a b c",
            ),
            (
                &["XYZIN", &xyzin, "XYZOUT", out_arg],
                "CELL 9 9 9 90 90 90\nSYMGEN X,Y,Z\nEND\n",
                "SYMGEN is not supported by this implementation",
            ),
            (&["XYZIN", &xyzin], DEMO_CELL, "no XYZOUT"),
            (&["XYZOUT", out_arg], DEMO_CELL, "no XYZIN"),
            (
                &["XYZIN", &xyzin, "XYZOUT"],
                DEMO_CELL,
                "XYZOUT has no file name",
            ),
            (
                &[
                    "XYZIN",
                    &testdata("5e5z.mtz"),
                    "XYZOUT",
                    dir.path().to_str().unwrap(),
                ],
                DEMO_CELL,
                "cannot write XYZOUT",
            ),
        ];
        for (args, script, message) in cases {
            let out = pdbset(args, script);
            assert_eq!(out.code, 1, "{args:?} {script:?}");
            assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
            assert!(out.stderr.starts_with(" PDBSET:   "), "{}", out.stderr);
            assert_eq!(dir_entries(dir.path()), Vec::<String>::new(), "{args:?}");
        }
    }

    #[test]
    fn rejects_empty_and_mmcif_input() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pdb");
        let cif = dir.path().join("x.cif");
        fs::write(&empty, "").unwrap();
        fs::write(&cif, "# comment\ndata_5E5Z\n_cell.length_a 9.643\n").unwrap();
        let xyzout = dir.path().join("out.pdb");
        for (input, message) in [(&empty, "is empty"), (&cif, "is mmCIF")] {
            let out = pdbset(
                &[
                    "XYZIN",
                    input.to_str().unwrap(),
                    "XYZOUT",
                    xyzout.to_str().unwrap(),
                ],
                DEMO_CELL,
            );
            assert_eq!(out.code, 1);
            assert!(out.stderr.contains(message), "{}", out.stderr);
            assert!(!xyzout.exists());
        }
    }

    #[test]
    fn overwrites_existing_output_and_accepts_lower_case() {
        let dir = tempfile::tempdir().unwrap();
        let xyzout = dir.path().join("out.pdb");
        fs::write(&xyzout, "old").unwrap();
        let out = pdbset(
            &[
                "xyzin",
                &testdata("rnase_frag.pdb"),
                "xyzout",
                xyzout.to_str().unwrap(),
            ],
            "# set the cell\n\ncell 9.643, 9.609, 19.029, 90, 101.224, 90\nend\n",
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(fs::read_to_string(&xyzout).unwrap().contains(DEMO_CRYST1));
        assert_eq!(dir_entries(dir.path()), ["out.pdb"]);
    }
}
