//! Kiln's own small implementations of the CCP4 programs `mtzdump` and
//! `pdbset`, and a `refmac5` stand-in.
//!
//! They exist so that the `kiln demo` runs without a CCP4 installation and so
//! that the conformance suite has programs whose output is byte-for-byte what
//! the CCP4i2 wrappers parse. They implement only what those pipelines use:
//!
//! - [`mtz`] reads the header of a binary MTZ reflection file, and
//!   [`mtz_file`] whole files, with their reflections, read and written;
//! - [`mtzdump`] prints the libccp4 header listing of an MTZ file
//!   (`HKLIN <file>`, keywords `HEADER`, `NREF`, `END` on stdin);
//! - [`pdbset`] rewrites the unit cell in a PDB file's CRYST1 record
//!   (`XYZIN <in> XYZOUT <out>`, keywords `CELL ...`, `END` on stdin);
//! - [`refmac5`] is a stand-in, not an implementation: it simulates a
//!   refinement run (log, R values, output model) for pipeline examples.
//!
//! Every program has the same entry point shape, [`Program`]: the command-line
//! words after the program name, the three standard streams, and the exit
//! code as the result. [`program`] looks one up by name.

use std::io::{Read, Write};

mod keywords;
pub mod mtz;
pub mod mtz_file;
pub mod mtzdump;
pub mod pdbset;
pub mod refmac5;

/// The entry point of a program: `run(args, stdin, stdout, stderr)` returns
/// the process exit code. `args` are the command-line words after the program
/// name (for mtzdump `["HKLIN", "file.mtz"]`).
pub type Program = fn(&[String], &mut dyn Read, &mut dyn Write, &mut dyn Write) -> i32;

/// Names of the programs this crate implements, in the order [`program`]
/// knows them.
pub const PROGRAM_NAMES: &[&str] = &["mtzdump", "pdbset", "refmac5"];

/// Looks up a program by its CCP4 name (`mtzdump`, `pdbset`).
pub fn program(name: &str) -> Option<Program> {
    match name {
        "mtzdump" => Some(mtzdump::run),
        "pdbset" => Some(pdbset::run),
        "refmac5" => Some(refmac5::run),
        _ => None,
    }
}

/// Unit cell parameters: edge lengths in ångström, angles in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
}

impl Cell {
    /// Builds a cell from `[a, b, c, alpha, beta, gamma]`.
    pub fn from_array(p: [f64; 6]) -> Cell {
        Cell {
            a: p[0],
            b: p[1],
            c: p[2],
            alpha: p[3],
            beta: p[4],
            gamma: p[5],
        }
    }

    /// The parameters as `[a, b, c, alpha, beta, gamma]`.
    pub fn to_array(&self) -> [f64; 6] {
        [self.a, self.b, self.c, self.alpha, self.beta, self.gamma]
    }
}

/// The CCP4-style program banner, marked as Kiln's implementation so that
/// nobody mistakes the log for one written by the CCP4 program itself.
pub(crate) fn banner(program: &str) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let rule = format!(" {}\n", "#".repeat(63));
    let title = format!(" ### CCP4 (Kiln {version} implementation): {program}");
    let title = format!("{title:<61}##\n");
    format!(
        "\n{rule}{rule}{rule}{title}{rule} This is Kiln's own implementation of {program}, \
         not the CCP4 program.\n\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_by_name() {
        for name in PROGRAM_NAMES {
            assert!(program(name).is_some(), "{name}");
        }
        assert!(program("phaser").is_none());
    }

    #[test]
    fn banner_names_program_and_implementation() {
        let b = banner("mtzdump");
        assert!(b.contains("### CCP4 (Kiln "), "{b}");
        assert!(b.contains("implementation): mtzdump"), "{b}");
        assert!(b.contains("not the CCP4 program"), "{b}");
    }
}
