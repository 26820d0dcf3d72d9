//! Whole MTZ files: the header ([`MtzHeader`], read by [`mtz`]) with the
//! reflections, read into memory and written back, so that a task can read
//! columns, add new ones and write a file that gemmi and CCP4's libraries
//! read (checked against gemmi in this crate's tests).
//!
//! The reflections are `nref` rows of `ncol` 32-bit floats from byte 80, in
//! the byte order of the machine stamp; a missing value is NaN (or the
//! file's `VALM`). Files are always written little-endian, with the header
//! records libccp4 writes, in its order. Batch headers (unmerged data) are
//! not kept: writing a file that has batches is refused, never done with
//! them lost.
//!
//! [`mtz`]: crate::mtz

use crate::mtz::{
    self, ByteOrder, Column, FormatError, MissingValue, MtzHeader, Resolution, parse_header,
};
use std::io::Cursor;

const DATA_START: usize = 80;
const RECORD: usize = 80;

/// An MTZ file in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct MtzFile {
    pub header: MtzHeader,
    /// Row-major: reflection `r`'s value of column `c` is
    /// `data[r * ncol + c]`.
    pub data: Vec<f32>,
}

/// Why a file cannot be written, or a column not added.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MtzWriteError {
    #[error("the file has {0} batch headers, which are not kept; unmerged files cannot be written")]
    Batches(u64),
    #[error("column label `{0}` is already in the file")]
    Duplicate(String),
    #[error("column label `{0}` is empty, over 30 characters, or has spaces")]
    BadLabel(String),
    #[error("column `{label}` has {got} values for {nref} reflections")]
    Length {
        label: String,
        got: usize,
        nref: usize,
    },
    #[error("there is no dataset {0} for the column")]
    NoDataset(i32),
    #[error("the file holds {0} columns x reflections, more than this host can address")]
    TooLarge(u64),
}

impl MtzFile {
    /// Read a whole file from its bytes.
    pub fn read(bytes: &[u8]) -> Result<MtzFile, FormatError> {
        let header = parse_header(Cursor::new(bytes))?;
        let n = usize::try_from(header.nref)
            .ok()
            .and_then(|r| r.checked_mul(header.ncol))
            .ok_or(FormatError::DataTooLarge {
                nref: header.nref,
                ncol: header.ncol,
                available: bytes.len() as u64,
            })?;
        // parse_header checked that the data fit before the header.
        let raw = &bytes[DATA_START..DATA_START + 4 * n];
        let data = raw
            .chunks_exact(4)
            .map(|b| {
                let b = [b[0], b[1], b[2], b[3]];
                match header.byte_order {
                    ByteOrder::Little => f32::from_le_bytes(b),
                    ByteOrder::Big => f32::from_be_bytes(b),
                }
            })
            .collect();
        Ok(MtzFile { header, data })
    }

    pub fn nref(&self) -> usize {
        self.header.nref as usize
    }

    pub fn ncol(&self) -> usize {
        self.header.ncol
    }

    /// The values of the first column labelled `label`, missing ones as
    /// NaN whatever the file's `VALM`.
    pub fn column(&self, label: &str) -> Option<Vec<f32>> {
        let c = self.header.columns.iter().position(|c| c.label == label)?;
        let missing = match self.header.missing_value {
            MissingValue::NaN => None,
            MissingValue::Value(v) => Some(v as f32),
        };
        Some(
            self.data
                .chunks_exact(self.ncol())
                .map(|row| match missing {
                    Some(m) if row[c] == m => f32::NAN,
                    _ => row[c],
                })
                .collect(),
        )
    }

    /// Add a column after the others, in dataset `dataset_id`; missing
    /// values are NaN.
    pub fn add_column(
        &mut self,
        label: &str,
        col_type: char,
        dataset_id: i32,
        values: &[f32],
    ) -> Result<(), MtzWriteError> {
        if label.is_empty() || label.len() > 30 || label.contains(char::is_whitespace) {
            return Err(MtzWriteError::BadLabel(label.to_string()));
        }
        if self.header.column(label).is_some() {
            return Err(MtzWriteError::Duplicate(label.to_string()));
        }
        if values.len() != self.nref() {
            return Err(MtzWriteError::Length {
                label: label.to_string(),
                got: values.len(),
                nref: self.nref(),
            });
        }
        if self.header.dataset(dataset_id).is_none() {
            return Err(MtzWriteError::NoDataset(dataset_id));
        }
        let missing = match self.header.missing_value {
            MissingValue::NaN => f32::NAN,
            MissingValue::Value(v) => v as f32,
        };
        let ncol = self.ncol();
        let mut data = Vec::with_capacity(self.data.len() + values.len());
        for (row, &v) in self.data.chunks_exact(ncol).zip(values) {
            data.extend_from_slice(row);
            data.push(if v.is_nan() { missing } else { v });
        }
        self.data = data;
        self.header.columns.push(Column {
            label: label.to_string(),
            col_type,
            min: 0.0,
            max: 0.0,
            dataset_id,
            source: None,
        });
        self.header.ncol += 1;
        self.update_ranges();
        Ok(())
    }

    /// Each column's recorded range from its values (missing ones left
    /// out), as a writer must keep it.
    fn update_ranges(&mut self) {
        let ncol = self.ncol();
        let missing = match self.header.missing_value {
            MissingValue::NaN => None,
            MissingValue::Value(v) => Some(v as f32),
        };
        for (c, column) in self.header.columns.iter_mut().enumerate() {
            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
            for row in self.data.chunks_exact(ncol) {
                let v = row[c];
                if v.is_nan() || Some(v) == missing {
                    continue;
                }
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if lo <= hi {
                column.min = f64::from(lo);
                column.max = f64::from(hi);
            }
        }
    }

    /// The file's bytes, little-endian.
    pub fn write(&self) -> Result<Vec<u8>, MtzWriteError> {
        let h = &self.header;
        if h.nbatch > 0 {
            return Err(MtzWriteError::Batches(h.nbatch));
        }
        let words = (DATA_START / 4) as u64 + self.data.len() as u64;
        let mut out = Vec::with_capacity(DATA_START + 4 * self.data.len() + 80 * 64);
        out.extend_from_slice(b"MTZ ");
        let pointer = words + 1;
        match i32::try_from(pointer) {
            Ok(p) => out.extend_from_slice(&p.to_le_bytes()),
            Err(_) => out.extend_from_slice(&(-1i32).to_le_bytes()),
        }
        // The machine stamp: IEEE floats, little-endian integers.
        out.extend_from_slice(&[0x44, 0x41, 0x00, 0x00]);
        if i32::try_from(pointer).is_err() {
            out.extend_from_slice(&(pointer as i64).to_le_bytes());
        }
        out.resize(DATA_START, 0);
        for v in &self.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for record in self.header_records() {
            let mut bytes: Vec<u8> = record.bytes().filter(u8::is_ascii).take(RECORD).collect();
            bytes.resize(RECORD, b' ');
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    fn header_records(&self) -> Vec<String> {
        let h = &self.header;
        let cell = |c: &mtz::Cell| {
            format!(
                "{:10.4}{:10.4}{:10.4}{:10.4}{:10.4}{:10.4}",
                c.a, c.b, c.c, c.alpha, c.beta, c.gamma
            )
        };
        let mut r = vec![
            "VERS MTZ:V1.1".to_string(),
            format!("TITLE {}", h.title),
            format!("NCOL {:8} {:12} {:8}", h.ncol, h.nref, h.nbatch),
            format!("CELL {}", cell(&h.cell)),
            format!(
                "SORT  {:3} {:3} {:3} {:3} {:3}",
                h.sort_order[0], h.sort_order[1], h.sort_order[2], h.sort_order[3], h.sort_order[4]
            ),
        ];
        let s = &h.symmetry;
        if h.space_group_number != 0 || !h.space_group_name.is_empty() {
            let mut syminf = format!(
                "SYMINF {:3} {:2} {} {:5} {:>22} {}",
                s.nsym,
                s.nsymp,
                if s.lattice == '\0' { 'P' } else { s.lattice },
                h.space_group_number,
                format!("'{}'", h.space_group_name),
                s.point_group
            );
            if let Some(c) = s.confidence {
                syminf.push_str(&format!(" {c}"));
            }
            r.push(syminf);
        }
        for op in &s.operators {
            r.push(format!("SYMM {op}"));
        }
        let reso = h.resolution.unwrap_or_else(|| self.resolution());
        r.push(format!(
            "RESO {:<20.16} {:<20.16}",
            reso.min_1_d2, reso.max_1_d2
        ));
        r.push(match h.missing_value {
            MissingValue::NaN => "VALM NAN".to_string(),
            MissingValue::Value(v) => format!("VALM {v}"),
        });
        for c in &h.columns {
            r.push(format!(
                "COLUMN {:<30} {} {:>17} {:>17} {:4}",
                c.label,
                c.col_type,
                short(c.min),
                short(c.max),
                c.dataset_id
            ));
            if let Some(src) = &c.source {
                r.push(format!(
                    "COLSRC {:<30} {:<36} {:4}",
                    c.label, src, c.dataset_id
                ));
            }
        }
        r.push(format!("NDIF {:8}", h.datasets.len()));
        for d in &h.datasets {
            r.push(format!("PROJECT {:7} {}", d.id, d.project));
            r.push(format!("CRYSTAL {:7} {}", d.id, d.crystal));
            r.push(format!("DATASET {:7} {}", d.id, d.name));
            r.push(format!(
                "DCELL   {:7} {}",
                d.id,
                cell(&d.cell.unwrap_or(h.cell))
            ));
            r.push(format!("DWAVEL  {:7} {:10.5}", d.id, d.wavelength));
        }
        r.push("END".to_string());
        r.push(format!("MTZHIST {:3}", h.history.len()));
        r.extend(h.history.iter().cloned());
        r.push("MTZENDOFHEADERS".to_string());
        r
    }

    /// The range of 1/d² over the reflections, from H, K, L and the cell.
    fn resolution(&self) -> Resolution {
        let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
        let ncol = self.ncol();
        if ncol >= 3 {
            let g = reciprocal_metric(&self.header.cell);
            for row in self.data.chunks_exact(ncol) {
                let (h, k, l) = (f64::from(row[0]), f64::from(row[1]), f64::from(row[2]));
                let s = h * h * g[0]
                    + k * k * g[1]
                    + l * l * g[2]
                    + 2.0 * (h * k * g[3] + h * l * g[4] + k * l * g[5]);
                if s > 0.0 {
                    lo = lo.min(s);
                    hi = hi.max(s);
                }
            }
        }
        if !lo.is_finite() {
            lo = 0.0;
        }
        Resolution {
            min_1_d2: lo,
            max_1_d2: hi,
        }
    }
}

/// The reciprocal metric tensor's a*², b*², c*², a*b*, a*c*, b*c* terms.
fn reciprocal_metric(c: &mtz::Cell) -> [f64; 6] {
    let (ca, cb, cg) = (
        c.alpha.to_radians().cos(),
        c.beta.to_radians().cos(),
        c.gamma.to_radians().cos(),
    );
    let (sa, sb, sg) = (
        c.alpha.to_radians().sin(),
        c.beta.to_radians().sin(),
        c.gamma.to_radians().sin(),
    );
    let v = c.a * c.b * c.c * (1.0 - ca * ca - cb * cb - cg * cg + 2.0 * ca * cb * cg).sqrt();
    let (ar, br, cr) = (c.b * c.c * sa / v, c.a * c.c * sb / v, c.a * c.b * sg / v);
    let cos_ar = (cb * cg - ca) / (sb * sg);
    let cos_br = (ca * cg - cb) / (sa * sg);
    let cos_gr = (ca * cb - cg) / (sa * sb);
    [
        ar * ar,
        br * br,
        cr * cr,
        ar * br * cos_gr,
        ar * cr * cos_br,
        br * cr * cos_ar,
    ]
}

/// A column range as libccp4 writes it, C's `%.9g`: nine significant
/// digits, trailing zeros dropped, exponent form outside 1e-5..1e9.
fn short(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_nan() {
            "nan".into()
        } else if v == 0.0 {
            "0".into()
        } else {
            format!("{v}")
        };
    }
    let exp = v.abs().log10().floor() as i32;
    let trim = |t: String| {
        if t.contains('.') {
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            t
        }
    };
    if !(-5..9).contains(&exp) {
        let t = format!("{v:.8e}");
        let (mantissa, e) = t.split_once('e').unwrap_or((&t, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        format!(
            "{}e{}{:02}",
            trim(mantissa.to_string()),
            if e < 0 { '-' } else { '+' },
            e.abs()
        )
    } else {
        let decimals = (8 - exp).max(0) as usize;
        trim(format!("{v:.decimals$}"))
    }
}

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn ranges_are_written_as_c_writes_nine_significant_digits() {
        assert_eq!(short(-5.0), "-5");
        assert_eq!(short(f64::from(2.1354_f32)), "2.13540006");
        assert_eq!(short(-0.300900012), "-0.300900012");
        assert_eq!(short(146.108994), "146.108994");
        assert_eq!(short(1.5e-7), "1.5e-07");
        assert_eq!(short(0.0), "0");
    }
}
