//! Reading the header of an MTZ file, CCP4's binary reflection file format.
//!
//! Layout: bytes 0..4 are `MTZ `, bytes 4..8 the header pointer (a 4-byte
//! integer counting 4-byte words from 1, so the header starts at byte
//! `(ptr - 1) * 4`; the value -1 means a 64-bit pointer follows at bytes
//! 12..20), bytes 8..12 the machine stamp giving the byte order, the
//! reflection data from byte 80, and after them the header: 80-character
//! ASCII records (`VERS`, `TITLE`, `NCOL`, `CELL`, `SORT`, `SYMINF`, `SYMM`,
//! `RESO`, `VALM`, `COLUMN`, `COLSRC`, `NDIF`, `PROJECT`, `CRYSTAL`,
//! `DATASET`, `DCELL`, `DWAVEL`, `BATCH`) up to `END`, then the history
//! (`MTZHIST n` and n lines), batch headers (`MTZBATS`) and
//! `MTZENDOFHEADERS`.
//!
//! Only the header is read; the reflections are not. The reader never
//! trusts the file: every count, pointer and number is checked, and any
//! inconsistency is a [`FormatError`], never a panic.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub use crate::Cell;

/// Size of the fixed preamble (magic, header pointer, machine stamp,
/// 64-bit header pointer) that must be present in every MTZ file.
const PREAMBLE: usize = 20;
/// Reflection data start at byte 80 (word 21).
const DATA_START: u64 = 80;
/// Every header record is 80 characters.
const RECORD: usize = 80;

/// Byte order of the binary parts of the file, from the machine stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

/// The resolution range from the `RESO` record, as 1/d² in Å⁻².
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolution {
    /// Smallest 1/d² (the low-resolution limit).
    pub min_1_d2: f64,
    /// Largest 1/d² (the high-resolution limit).
    pub max_1_d2: f64,
}

impl Resolution {
    /// Low-resolution limit in Å (infinite when `min_1_d2` is 0).
    pub fn d_max(&self) -> f64 {
        1.0 / self.min_1_d2.sqrt()
    }

    /// High-resolution limit in Å.
    pub fn d_min(&self) -> f64 {
        1.0 / self.max_1_d2.sqrt()
    }
}

/// How missing reflection values are marked (`VALM` record).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MissingValue {
    NaN,
    Value(f64),
}

/// One column (`COLUMN` and `COLSRC` records).
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub label: String,
    /// CCP4 column type: H index, F amplitude, Q sigma, I integer, J
    /// intensity, P phase, ...
    pub col_type: char,
    pub min: f64,
    pub max: f64,
    pub dataset_id: i32,
    /// The `COLSRC` text (how the column was created), when present.
    pub source: Option<String>,
}

/// One dataset (`PROJECT`, `CRYSTAL`, `DATASET`, `DCELL`, `DWAVEL` records
/// sharing a dataset id). Id 0 is the `HKL_base` dataset holding H, K, L.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub id: i32,
    pub project: String,
    pub crystal: String,
    pub name: String,
    /// The dataset cell from `DCELL`; `None` when the file has none.
    pub cell: Option<Cell>,
    /// Wavelength in Å from `DWAVEL` (0 when unknown).
    pub wavelength: f64,
}

/// Symmetry description from `SYMINF` and `SYMM`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Symmetry {
    /// Number of symmetry operators.
    pub nsym: i32,
    /// Number of primitive symmetry operators.
    pub nsymp: i32,
    /// Lattice type (`P`, `C`, `I`, `F`, `R`, ...).
    pub lattice: char,
    /// Point group name, e.g. `PG222`.
    pub point_group: String,
    /// Space group confidence flag (`L`, `P`, `E`, `S`, `X`), when present.
    pub confidence: Option<char>,
    /// The `SYMM` operators as written, e.g. `X,  Y+1/2,  -Z`.
    pub operators: Vec<String>,
}

/// Everything in an MTZ header that Kiln uses.
#[derive(Debug, Clone, PartialEq)]
pub struct MtzHeader {
    pub byte_order: ByteOrder,
    /// The `VERS` text, e.g. `MTZ:V1.1`.
    pub version: String,
    pub title: String,
    /// Number of columns (from `NCOL`, checked against the `COLUMN` records).
    pub ncol: usize,
    /// Number of reflections.
    pub nref: u64,
    /// Number of batches (0 for merged data).
    pub nbatch: u64,
    /// The overall cell from `CELL` (obsolete in favour of dataset cells,
    /// but still written and read by everyone).
    pub cell: Cell,
    pub sort_order: [i32; 5],
    /// Space group name as in `SYMINF`, e.g. `P 1 21 1`; empty when the file
    /// has no `SYMINF`.
    pub space_group_name: String,
    /// CCP4 space group number; 0 when the file has no `SYMINF`.
    pub space_group_number: i32,
    pub symmetry: Symmetry,
    /// `None` when the file has no `RESO` record.
    pub resolution: Option<Resolution>,
    pub missing_value: MissingValue,
    pub columns: Vec<Column>,
    /// Datasets in header order, `HKL_base` (id 0) usually first.
    pub datasets: Vec<Dataset>,
    /// History lines (`MTZHIST`), trailing blanks removed.
    pub history: Vec<String>,
}

impl MtzHeader {
    /// The dataset with this id.
    pub fn dataset(&self, id: i32) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.id == id)
    }

    /// The first column with this label.
    pub fn column(&self, label: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.label == label)
    }

    /// The cell of a dataset: its `DCELL` when it has one, otherwise the
    /// overall cell (as libccp4 does for files without dataset cells).
    pub fn dataset_cell(&self, id: i32) -> Cell {
        self.dataset(id).and_then(|d| d.cell).unwrap_or(self.cell)
    }
}

/// Reading an MTZ file failed; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum MtzError {
    #[error("cannot read MTZ file {}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{} is not a readable MTZ file: {problem}", path.display())]
    Format { path: PathBuf, problem: FormatError },
}

impl MtzError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            MtzError::Io { path, .. } | MtzError::Format { path, .. } => path,
        }
    }
}

/// What is wrong with the bytes of an MTZ file.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("it is {len} bytes long, shorter than the {PREAMBLE}-byte MTZ preamble")]
    TooShort { len: u64 },
    #[error("it does not start with \"MTZ \" (starts with {found:?})")]
    NotMtz { found: String },
    #[error("its header pointer ({pointer}) lies outside the file ({len} bytes)")]
    HeaderOutsideFile { pointer: i64, len: u64 },
    #[error("no VERS record where the header pointer points (found {found:?})")]
    NoHeaderAtPointer { found: String },
    #[error("the header ends without an END record (truncated file?)")]
    MissingEnd,
    #[error("the header has no {0} record")]
    MissingRecord(&'static str),
    #[error("malformed {key} record {record:?}: {reason}")]
    BadRecord {
        key: &'static str,
        record: String,
        reason: &'static str,
    },
    #[error("NCOL declares {declared} columns but the header has {found} COLUMN records")]
    ColumnCount { declared: usize, found: usize },
    #[error(
        "NCOL declares {nref} reflections of {ncol} columns, more than the \
         {available} bytes between the data start and the header"
    )]
    DataTooLarge {
        nref: u64,
        ncol: usize,
        available: u64,
    },
    #[error("read error: {0}")]
    Io(#[from] io::Error),
}

/// Reads the header of the MTZ file at `path`.
pub fn read_header(path: impl AsRef<Path>) -> Result<MtzHeader, MtzError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|error| MtzError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(MtzError::Io {
            path: path.to_path_buf(),
            error: io::Error::new(io::ErrorKind::IsADirectory, "is a directory"),
        });
    }
    parse_header(BufReader::new(file)).map_err(|problem| match problem {
        FormatError::Io(error) => MtzError::Io {
            path: path.to_path_buf(),
            error,
        },
        problem => MtzError::Format {
            path: path.to_path_buf(),
            problem,
        },
    })
}

/// Reads an MTZ header from any seekable source (a file, or bytes in a
/// `Cursor`).
pub fn parse_header<R: Read + Seek>(mut input: R) -> Result<MtzHeader, FormatError> {
    let len = input.seek(SeekFrom::End(0))?;
    input.seek(SeekFrom::Start(0))?;
    let mut pre = [0u8; PREAMBLE];
    let have = usize::try_from(len).map_or(PREAMBLE, |l| l.min(PREAMBLE));
    input.read_exact(&mut pre[..have])?;
    // A wrong magic is the more useful message even for tiny files.
    if have >= 4 && &pre[0..4] != b"MTZ " {
        return Err(FormatError::NotMtz {
            found: String::from_utf8_lossy(&pre[0..4]).into_owned(),
        });
    }
    if have < PREAMBLE {
        return Err(FormatError::TooShort { len });
    }
    let byte_order = byte_order(pre[9]);
    let word4 = |b: &[u8]| {
        let b = [b[0], b[1], b[2], b[3]];
        match byte_order {
            ByteOrder::Little => i32::from_le_bytes(b),
            ByteOrder::Big => i32::from_be_bytes(b),
        }
    };
    let mut pointer = i64::from(word4(&pre[4..8]));
    if pointer == -1 {
        // Files over 8 GiB: the 4-byte pointer is -1 and a 64-bit one follows.
        let mut b = [0u8; 8];
        b.copy_from_slice(&pre[12..20]);
        pointer = match byte_order {
            ByteOrder::Little => i64::from_le_bytes(b),
            ByteOrder::Big => i64::from_be_bytes(b),
        };
    }
    let header_pos = pointer
        .checked_sub(1)
        .and_then(|w| w.checked_mul(4))
        .and_then(|p| u64::try_from(p).ok())
        .filter(|&p| p >= DATA_START && p.saturating_add(RECORD as u64) <= len)
        .ok_or(FormatError::HeaderOutsideFile { pointer, len })?;
    input.seek(SeekFrom::Start(header_pos))?;

    let mut builder = Builder::default();
    let mut first = true;
    loop {
        let Some(record) = read_record(&mut input)? else {
            return Err(FormatError::MissingEnd);
        };
        if first && !record.starts_with("VERS") {
            return Err(FormatError::NoHeaderAtPointer {
                found: record.trim_end().to_string(),
            });
        }
        first = false;
        if record.starts_with("END") && record[3..].starts_with(' ') {
            break;
        }
        builder.record(&record)?;
    }
    let history = read_history(&mut input)?;
    builder.finish(byte_order, history, header_pos - DATA_START)
}

/// The machine stamp's second byte holds the integer format in its high
/// nibble: 1 big-endian, 4 little-endian. Other values occur only in files
/// from long-gone machines; they are read as little-endian, the byte order
/// of every current writer.
fn byte_order(stamp_int: u8) -> ByteOrder {
    if stamp_int & 0xf0 == 0x10 {
        ByteOrder::Big
    } else {
        ByteOrder::Little
    }
}

/// One 80-byte record as text (bytes mapped to chars one to one, so that
/// column positions stay byte positions), or `None` at end of file.
fn read_record(input: &mut impl Read) -> io::Result<Option<String>> {
    let mut buf = [0u8; RECORD];
    let mut filled = 0;
    while filled < RECORD {
        match input.read(&mut buf[filled..]) {
            Ok(0) => return Ok(None),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(buf.iter().map(|&b| char::from(b)).collect()))
}

/// The history lines after `END`. Reading stops at `MTZBATS` (batch headers
/// are partly binary and not needed) or `MTZENDOFHEADERS`; a file cut short
/// here still has a usable header, so end of file is not an error.
fn read_history(input: &mut impl Read) -> io::Result<Vec<String>> {
    let mut history = Vec::new();
    let mut remaining = 0usize;
    while let Some(record) = read_record(input)? {
        if record.starts_with("MTZENDOFHEADERS") || record.starts_with("MTZBATS") {
            break;
        }
        if remaining > 0 {
            history.push(record.trim().to_string());
            remaining -= 1;
        } else if let Some(rest) = record.strip_prefix("MTZHIST") {
            remaining = rest.trim().parse().unwrap_or(0);
        }
    }
    Ok(history)
}

/// A cursor over the words of a record.
struct Fields<'a> {
    rest: &'a str,
}

impl<'a> Fields<'a> {
    /// The fields after the record's keyword.
    fn after_key(record: &'a str) -> Self {
        let rest = record.trim_start();
        let rest = rest.find(' ').map_or("", |i| &rest[i..]);
        Fields { rest }
    }

    fn word(&mut self) -> Option<&'a str> {
        let s = self.rest.trim_start();
        if s.is_empty() {
            return None;
        }
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        self.rest = &s[end..];
        Some(&s[..end])
    }

    fn parse<T: std::str::FromStr>(&mut self) -> Option<T> {
        self.word()?.parse().ok()
    }

    /// The rest of the record without surrounding blanks.
    fn rest(&self) -> &'a str {
        self.rest.trim()
    }
}

#[derive(Default)]
struct Builder {
    version: Option<String>,
    title: String,
    ncol: Option<(usize, u64, u64)>,
    cell: Option<Cell>,
    sort_order: [i32; 5],
    space_group_name: String,
    space_group_number: i32,
    symmetry: Symmetry,
    resolution: Option<Resolution>,
    missing_value: Option<MissingValue>,
    columns: Vec<Column>,
    datasets: Vec<Dataset>,
}

impl Builder {
    fn record(&mut self, record: &str) -> Result<(), FormatError> {
        let bad = |key: &'static str, reason: &'static str| FormatError::BadRecord {
            key,
            record: record.trim_end().to_string(),
            reason,
        };
        let mut f = Fields::after_key(record);
        let key = record.get(..4).unwrap_or("");
        match key {
            "VERS" => self.version = Some(f.rest().to_string()),
            "TITL" => self.title = record.get(6..).unwrap_or("").trim_end().to_string(),
            "NCOL" => {
                let ncol: i64 = f.parse().ok_or(bad("NCOL", "no column count"))?;
                let nref: i64 = f.parse().ok_or(bad("NCOL", "no reflection count"))?;
                // Files from before batches were counted have no third field.
                let nbatch: i64 = match f.word() {
                    None => 0,
                    Some(w) => w.parse().map_err(|_| bad("NCOL", "bad batch count"))?,
                };
                let ncol = usize::try_from(ncol).map_err(|_| bad("NCOL", "negative count"))?;
                let nref = u64::try_from(nref).map_err(|_| bad("NCOL", "negative count"))?;
                let nbatch = u64::try_from(nbatch).map_err(|_| bad("NCOL", "negative count"))?;
                self.ncol = Some((ncol, nref, nbatch));
            }
            "CELL" => self.cell = Some(cell(&mut f).ok_or(bad("CELL", "needs six numbers"))?),
            "SORT" => {
                for slot in &mut self.sort_order {
                    *slot = f.parse().ok_or(bad("SORT", "needs five integers"))?;
                }
            }
            "SYMI" => self
                .syminf(&mut f)
                .ok_or(bad("SYMINF", "unexpected layout"))?,
            "SYMM" => self.symmetry.operators.push(f.rest().to_string()),
            "RESO" => {
                let min_1_d2 = f.parse().ok_or(bad("RESO", "needs two numbers"))?;
                let max_1_d2 = f.parse().ok_or(bad("RESO", "needs two numbers"))?;
                self.resolution = Some(Resolution { min_1_d2, max_1_d2 });
            }
            "VALM" => {
                let word = f.word().unwrap_or("NAN");
                self.missing_value = Some(if word.eq_ignore_ascii_case("NAN") {
                    MissingValue::NaN
                } else {
                    MissingValue::Value(word.parse().map_err(|_| bad("VALM", "bad number"))?)
                });
            }
            "COLU" => {
                let label = f.word().ok_or(bad("COLUMN", "no label"))?.to_string();
                let col_type = f
                    .word()
                    .and_then(|t| t.chars().next())
                    .ok_or(bad("COLUMN", "no type"))?;
                let min = f.parse().ok_or(bad("COLUMN", "bad minimum"))?;
                let max = f.parse().ok_or(bad("COLUMN", "bad maximum"))?;
                // Files older than MTZ:V1.1 have no dataset id.
                let dataset_id = match f.word() {
                    None => 0,
                    Some(w) => w.parse().map_err(|_| bad("COLUMN", "bad dataset id"))?,
                };
                self.columns.push(Column {
                    label,
                    col_type,
                    min,
                    max,
                    dataset_id,
                    source: None,
                });
            }
            "COLS" => {
                // COLSRC follows the COLUMN it describes; anything else is
                // ignored, as libccp4 does.
                let label = f.word();
                if let (Some(col), Some(label)) = (self.columns.last_mut(), label)
                    && col.label == label
                {
                    col.source = f.word().map(str::to_string);
                }
            }
            "PROJ" | "CRYS" | "DATA" | "DCEL" | "DWAV" => {
                let name = match key {
                    "PROJ" => "PROJECT",
                    "CRYS" => "CRYSTAL",
                    "DATA" => "DATASET",
                    "DCEL" => "DCELL",
                    _ => "DWAVEL",
                };
                let id: i32 = f.parse().ok_or(bad(name, "no dataset id"))?;
                let dataset = self.dataset_mut(id);
                match key {
                    "PROJ" => dataset.project = f.rest().to_string(),
                    "CRYS" => dataset.crystal = f.rest().to_string(),
                    "DATA" => dataset.name = f.rest().to_string(),
                    "DCEL" => {
                        dataset.cell = Some(cell(&mut f).ok_or(bad(name, "needs six numbers"))?)
                    }
                    _ => dataset.wavelength = f.parse().ok_or(bad(name, "bad wavelength"))?,
                }
            }
            // NDIF (dataset count), COLGRP, BATCH and records from newer
            // writers carry nothing this reader reports.
            _ => {}
        }
        Ok(())
    }

    /// `SYMINF nsym nsymp lattice number 'name' pointgroup [confidence]`;
    /// old files have the name unquoted.
    fn syminf(&mut self, f: &mut Fields) -> Option<()> {
        self.symmetry.nsym = f.parse()?;
        self.symmetry.nsymp = f.parse()?;
        self.symmetry.lattice = f.word()?.chars().next()?;
        self.space_group_number = f.parse()?;
        let rest = f.rest();
        let after_name = if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted.find('\'')?;
            self.space_group_name = quoted[..end].to_string();
            &quoted[end + 1..]
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            self.space_group_name = rest[..end].to_string();
            &rest[end..]
        };
        let mut tail = Fields { rest: after_name };
        self.symmetry.point_group = tail.word().unwrap_or("").to_string();
        self.symmetry.confidence = tail.word().and_then(|w| w.chars().next());
        Some(())
    }

    fn dataset_mut(&mut self, id: i32) -> &mut Dataset {
        let index = match self.datasets.iter().position(|d| d.id == id) {
            Some(i) => i,
            None => {
                self.datasets.push(Dataset {
                    id,
                    project: String::new(),
                    crystal: String::new(),
                    name: String::new(),
                    cell: None,
                    wavelength: 0.0,
                });
                self.datasets.len() - 1
            }
        };
        &mut self.datasets[index]
    }

    fn finish(
        self,
        byte_order: ByteOrder,
        history: Vec<String>,
        data_bytes: u64,
    ) -> Result<MtzHeader, FormatError> {
        let version = self.version.ok_or(FormatError::MissingRecord("VERS"))?;
        let (ncol, nref, nbatch) = self.ncol.ok_or(FormatError::MissingRecord("NCOL"))?;
        let cell = self.cell.ok_or(FormatError::MissingRecord("CELL"))?;
        if ncol != self.columns.len() {
            return Err(FormatError::ColumnCount {
                declared: ncol,
                found: self.columns.len(),
            });
        }
        let needed = nref.checked_mul(ncol as u64).and_then(|n| n.checked_mul(4));
        if needed.is_none_or(|n| n > data_bytes) {
            return Err(FormatError::DataTooLarge {
                nref,
                ncol,
                available: data_bytes,
            });
        }
        let mut datasets = self.datasets;
        if datasets.is_empty() {
            // Files from before datasets existed: libccp4 and gemmi put
            // every column in an implicit HKL_base dataset.
            datasets.push(Dataset {
                id: 0,
                project: "HKL_base".into(),
                crystal: "HKL_base".into(),
                name: "HKL_base".into(),
                cell: Some(cell),
                wavelength: 0.0,
            });
        }
        Ok(MtzHeader {
            byte_order,
            version,
            title: self.title,
            ncol,
            nref,
            nbatch,
            cell,
            sort_order: self.sort_order,
            space_group_name: self.space_group_name,
            space_group_number: self.space_group_number,
            symmetry: self.symmetry,
            resolution: self.resolution,
            missing_value: self.missing_value.unwrap_or(MissingValue::NaN),
            columns: self.columns,
            datasets,
            history,
        })
    }
}

fn cell(f: &mut Fields) -> Option<Cell> {
    let mut p = [0.0; 6];
    for v in &mut p {
        *v = f.parse()?;
    }
    Some(Cell::from_array(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::process::Command;

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    fn bytes(name: &str) -> Vec<u8> {
        std::fs::read(testdata(name)).expect("test data file")
    }

    #[test]
    fn reads_5e5z() {
        let h = read_header(testdata("5e5z.mtz")).unwrap();
        assert_eq!(h.byte_order, ByteOrder::Little);
        assert_eq!(h.version, "MTZ:V1.1");
        assert_eq!(h.title, "");
        assert_eq!((h.ncol, h.nref, h.nbatch), (8, 441, 0));
        assert_eq!(
            h.cell.to_array(),
            [9.643, 9.609, 19.029, 90.0, 101.224, 90.0]
        );
        assert_eq!(h.space_group_name, "P 1 21 1");
        assert_eq!(h.space_group_number, 4);
        assert_eq!(h.symmetry.nsym, 2);
        assert_eq!(h.symmetry.lattice, 'P');
        assert_eq!(h.symmetry.point_group, "PG2");
        assert_eq!(h.symmetry.operators, ["X,  Y,  Z", "-X,  Y+1/2,  -Z"]);
        let reso = h.resolution.unwrap();
        assert_eq!(reso.min_1_d2, 0.0028703967109323);
        assert_eq!(reso.max_1_d2, 0.3611701726913452);
        assert_eq!(
            format!("{:.2} {:.2}", reso.d_max(), reso.d_min()),
            "18.67 1.66"
        );
        assert_eq!(h.missing_value, MissingValue::NaN);
        let labels: Vec<&str> = h.columns.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["H", "K", "L", "FREE", "FP", "SIGFP", "I", "SIGI"]);
        let fp = h.column("FP").unwrap();
        assert_eq!(
            (fp.col_type, fp.min, fp.max, fp.dataset_id),
            ('F', 2.13540006, 146.108994, 1)
        );
        assert_eq!(fp.source.as_deref(), Some("CREATED_17/05/2019_12:15:14"));
        assert_eq!(h.datasets.len(), 2);
        let d = h.dataset(1).unwrap();
        assert_eq!(
            (d.project.as_str(), d.crystal.as_str(), d.name.as_str()),
            ("5e5z", "5e5z", "1")
        );
        assert_eq!(
            d.cell.unwrap().to_array(),
            [9.643, 9.609, 19.029, 90.0, 101.224, 90.0]
        );
        assert_eq!(d.wavelength, 0.0);
        assert_eq!(h.dataset(0).unwrap().name, "HKL_base");
        assert_eq!(h.history, ["From cif2mtz 17/ 5/2019 12:15:14"]);
    }

    #[test]
    fn reads_rnase25_freer() {
        let h = read_header(testdata("rnase25_freer.mtz")).unwrap();
        assert_eq!(h.title, "Scaleit tests.......");
        assert_eq!((h.ncol, h.nref), (4, 7262));
        assert_eq!(
            h.cell.to_array(),
            [64.897, 78.323, 38.792, 90.0, 90.0, 90.0]
        );
        assert_eq!(h.sort_order, [1, 2, 3, 0, 0]);
        assert_eq!(h.space_group_name, "P 21 21 21");
        assert_eq!(h.space_group_number, 19);
        assert_eq!(h.symmetry.confidence, Some('X'));
        assert_eq!(h.symmetry.operators.len(), 4);
        let d = h.dataset(1).unwrap();
        assert_eq!(
            (d.project.as_str(), d.crystal.as_str(), d.name.as_str()),
            ("RNASE", "RNASE", "NATIVE")
        );
        assert_eq!(d.wavelength, 1.542);
        assert_eq!(h.dataset_cell(1), h.cell);
        let freer = h.column("FREER").unwrap();
        assert_eq!((freer.col_type, freer.min, freer.max), ('I', 0.0, 19.0));
        assert_eq!(h.history.len(), 18);
        assert_eq!(h.history[17], "data from CAD on  9/11/12");
    }

    /// Cross-checks against gemmi when its command-line program is
    /// installed (`pip install gemmi-program`); the expected values are also
    /// pinned in the tests above, so nothing is lost when it is not.
    #[test]
    fn agrees_with_gemmi_when_available() {
        for name in ["5e5z.mtz", "rnase25_freer.mtz"] {
            let path = testdata(name);
            let Ok(out) = Command::new("gemmi")
                .arg("mtz")
                .arg("--dump")
                .arg(&path)
                .output()
            else {
                eprintln!("gemmi not installed; skipping the cross-check");
                return;
            };
            if !out.status.success() {
                // A version-manager shim answers even when gemmi is absent.
                eprintln!("gemmi mtz --dump failed; skipping the cross-check");
                return;
            }
            let dump = String::from_utf8_lossy(&out.stdout);
            let h = read_header(&path).unwrap();
            let field = |prefix: &str| -> String {
                dump.lines()
                    .find_map(|l| l.strip_prefix(prefix))
                    .unwrap_or_else(|| panic!("gemmi output has no {prefix:?}"))
                    .trim()
                    .to_string()
            };
            assert_eq!(field("Number of Columns = "), h.ncol.to_string());
            assert_eq!(field("Number of Reflections = "), h.nref.to_string());
            assert_eq!(field("Space Group: "), h.space_group_name);
            assert_eq!(
                field("Space Group Number: "),
                h.space_group_number.to_string()
            );
            assert_eq!(field("Title:"), h.title);
            let global: Vec<f64> = field("Global Cell (obsolete):")
                .split_whitespace()
                .map(|w| w.parse().unwrap())
                .collect();
            assert_eq!(global, h.cell.to_array());
            // Column rows: label, type, dataset, min, max.
            for col in &h.columns {
                let row = dump
                    .lines()
                    .map(|l| l.split_whitespace().collect::<Vec<_>>())
                    .find(|w| w.len() == 5 && w[0] == col.label)
                    .unwrap_or_else(|| panic!("no gemmi row for {}", col.label));
                assert_eq!(row[1], col.col_type.to_string());
                assert_eq!(row[2], col.dataset_id.to_string());
                let (min, max): (f64, f64) = (row[3].parse().unwrap(), row[4].parse().unwrap());
                assert!(
                    (min - col.min).abs() <= 1e-3 * col.min.abs().max(1.0),
                    "{name} {}",
                    col.label
                );
                assert!(
                    (max - col.max).abs() <= 1e-3 * col.max.abs().max(1.0),
                    "{name} {}",
                    col.label
                );
            }
            for d in &h.datasets {
                let head = format!(
                    "Dataset {:>4}   {} > {} > {}:",
                    d.id, d.project, d.crystal, d.name
                );
                assert!(dump.contains(&head), "{name}: gemmi has no {head:?}");
                let wl = format!("wavelength  {}", d.wavelength);
                assert!(dump.contains(&wl), "{name}: gemmi has no {wl:?}");
            }
        }
    }

    #[test]
    fn rejects_non_mtz_with_the_file_name() {
        let path = testdata("rnase_frag.pdb");
        let err = read_header(&path).unwrap_err();
        assert!(matches!(
            err,
            MtzError::Format {
                problem: FormatError::NotMtz { .. },
                ..
            }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("rnase_frag.pdb") && msg.contains("does not start with"),
            "{msg}"
        );
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let err = read_header("/nonexistent/x.mtz").unwrap_err();
        assert!(matches!(err, MtzError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/x.mtz"));
        let err = read_header(env!("CARGO_MANIFEST_DIR")).unwrap_err();
        assert!(matches!(err, MtzError::Io { .. }), "{err}");
    }

    #[test]
    fn every_truncation_is_an_error_or_a_complete_header() {
        for name in ["5e5z.mtz", "rnase25_freer.mtz"] {
            let full = bytes(name);
            let whole = parse_header(Cursor::new(&full)).unwrap();
            // Cutting anywhere before the END record must fail cleanly;
            // cutting in the history may still give the header.
            let step = if full.len() > 20_000 { 7 } else { 1 };
            for len in (0..full.len()).step_by(step) {
                match parse_header(Cursor::new(&full[..len])) {
                    Ok(h) => {
                        assert_eq!(h.columns, whole.columns, "{name} cut at {len}");
                        assert_eq!(h.datasets, whole.datasets, "{name} cut at {len}");
                    }
                    Err(e) => assert!(!matches!(e, FormatError::Io(_)), "{name} cut at {len}: {e}"),
                }
            }
        }
    }

    /// xorshift64*: deterministic, good enough to make garbage.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..2000 {
            let len = (rng.next() % 600) as usize;
            let mut data = rng.bytes(len);
            if i % 2 == 0 && len >= 20 {
                // Get past the magic and point the header somewhere inside.
                data[..4].copy_from_slice(b"MTZ ");
                let ptr = 1 + (rng.next() % (len as u64 / 4 + 2)) as i32;
                data[4..8].copy_from_slice(&ptr.to_le_bytes());
                data[9] = 0x41;
            }
            assert!(
                parse_header(Cursor::new(&data)).is_err(),
                "random input {i} parsed"
            );
        }
    }

    #[test]
    fn corrupted_headers_never_panic() {
        let full = bytes("5e5z.mtz");
        let header_pos = 14192;
        let mut rng = Rng(42);
        let printable = b" 0123456789.-+'ENDVRSCOLUMNTYPHabcxyz\0\xff";
        for _ in 0..3000 {
            let mut data = full.clone();
            for _ in 0..(1 + rng.next() % 8) {
                let at = header_pos + (rng.next() as usize % (data.len() - header_pos));
                data[at] = printable[rng.next() as usize % printable.len()];
            }
            let _ = parse_header(Cursor::new(&data));
        }
    }

    #[test]
    fn big_endian_and_64_bit_pointers() {
        let full = bytes("5e5z.mtz");
        let expected = parse_header(Cursor::new(&full)).unwrap();
        let ptr = i32::from_le_bytes([full[4], full[5], full[6], full[7]]);

        let mut be = full.clone();
        be[4..8].copy_from_slice(&ptr.to_be_bytes());
        be[8..12].copy_from_slice(&[0x11, 0x11, 0, 0]);
        let h = parse_header(Cursor::new(&be)).unwrap();
        assert_eq!(h.byte_order, ByteOrder::Big);
        assert_eq!(h.columns, expected.columns);

        let mut wide = full.clone();
        wide[4..8].copy_from_slice(&(-1i32).to_le_bytes());
        wide[12..20].copy_from_slice(&i64::from(ptr).to_le_bytes());
        assert_eq!(parse_header(Cursor::new(&wide)).unwrap(), expected);
    }

    #[test]
    fn specific_format_errors() {
        let full = bytes("5e5z.mtz");
        let err = |data: &[u8]| parse_header(Cursor::new(data)).unwrap_err();
        assert!(matches!(err(b"MTZ "), FormatError::TooShort { len: 4 }));
        assert!(matches!(
            err(&full[..14000]),
            FormatError::HeaderOutsideFile { .. }
        ));
        assert!(matches!(err(&full[..14192 + 400]), FormatError::MissingEnd));

        let mut zero_ptr = full.clone();
        zero_ptr[4..8].copy_from_slice(&0i32.to_le_bytes());
        assert!(matches!(
            err(&zero_ptr),
            FormatError::HeaderOutsideFile { pointer: 0, .. }
        ));

        let mut shifted = full.clone();
        let ptr = i32::from_le_bytes([full[4], full[5], full[6], full[7]]);
        shifted[4..8].copy_from_slice(&(ptr - 1).to_le_bytes());
        assert!(matches!(
            err(&shifted),
            FormatError::NoHeaderAtPointer { .. }
        ));

        let replace = |from: &str, to: &str| {
            let text: String = full.iter().map(|&b| char::from(b)).collect();
            assert!(text.contains(from));
            let text = text.replacen(from, to, 1);
            text.chars().map(|c| c as u8).collect::<Vec<u8>>()
        };
        let e = err(&replace("NCOL        8", "NCOL        9"));
        assert!(
            matches!(
                e,
                FormatError::ColumnCount {
                    declared: 9,
                    found: 8
                }
            ),
            "{e}"
        );
        let e = err(&replace(
            "NCOL        8          441",
            "NCOL        8         9441",
        ));
        assert!(matches!(e, FormatError::DataTooLarge { .. }), "{e}");
        let e = err(&replace("CELL     9.6430", "CELL     x.6430"));
        assert!(
            matches!(e, FormatError::BadRecord { key: "CELL", .. }),
            "{e}"
        );
        assert!(e.to_string().contains("x.6430"), "{e}");
        let e = err(&replace("CELL ", "CELX "));
        assert!(matches!(e, FormatError::MissingRecord("CELL")), "{e}");
    }
}
