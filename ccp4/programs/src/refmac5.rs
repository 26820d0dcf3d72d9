//! `refmac5` stand-in: simulates a restrained refinement run so that
//! refinement pipelines (weight scans, prosmart_refmac-like fan-outs) can be
//! run and tested without CCP4. It does not refine anything.
//!
//! Command line `HKLIN <mtz> XYZIN <in> XYZOUT <out> [HKLOUT <mtz>]`;
//! keywords on stdin: `WEIGHT MATRIX <w>` (or `WEIGHT AUTO`, taken as 0.5),
//! `NCYCLES <n>` (default 10), `END`; other keywords are echoed and ignored.
//!
//! Each cycle takes 50 ms and prints a line; the run ends with refmac's
//! "Final results" table, whose `R free` line pipelines parse. The R values
//! are a smooth function of the matrix weight with its optimum at a weight
//! that depends on the contents of XYZIN, so a scan over weights has one
//! best answer and the same inputs always give the same numbers. XYZOUT is
//! XYZIN with `REMARK   3` lines giving the final R values; HKLOUT, when
//! asked for, is a copy of HKLIN.

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::keywords::{KeywordReader, logical_names};

const CYCLE: Duration = Duration::from_millis(50);
const MAX_CYCLES: u32 = 1000;

/// The simulated outcome of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Simulated {
    pub r_work: f64,
    pub r_free: f64,
}

/// FNV-1a: a stable hash of the model, for the simulated optimum.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The final R values for a model and a matrix weight.
pub fn simulate(model: &[u8], weight: f64) -> Simulated {
    let h = (fnv1a(model) % 10_000) as f64 / 10_000.0;
    let optimum = 0.2 + 0.4 * h;
    let miss = (weight / optimum).ln();
    let r_free = 0.21 + 0.05 * h + 0.06 * miss * miss;
    Simulated {
        r_work: r_free - 0.035 - 0.01 * h,
        r_free,
    }
}

pub fn run(
    args: &[String],
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    match refmac(args, stdin, stdout) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(stdout, "\n Refmac:  {e}");
            let _ = writeln!(stderr, " Refmac:  {e}");
            1
        }
    }
}

fn refmac(args: &[String], stdin: &mut dyn Read, stdout: &mut dyn Write) -> Result<(), String> {
    let mut out = |text: String| {
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("cannot write the log: {e}"))
    };
    out(crate::banner("refmac5"))?;
    out(
        " This stand-in simulates refinement; its R values are not computed from data.\n\n".into(),
    )?;
    let (mut hklin, mut xyzin, mut xyzout, mut hklout) = (None, None, None, None);
    for (name, value) in logical_names(args).map_err(|e| e.to_string())? {
        let slot = match name.as_str() {
            "HKLIN" => &mut hklin,
            "XYZIN" => &mut xyzin,
            "XYZOUT" => &mut xyzout,
            "HKLOUT" => &mut hklout,
            other => return Err(format!("unknown logical name {other}")),
        };
        *slot = Some(PathBuf::from(value));
    }
    let (Some(hklin), Some(xyzin), Some(xyzout)) = (hklin, xyzin, xyzout) else {
        return Err("usage: refmac5 HKLIN <mtz> XYZIN <in> XYZOUT <out> [HKLOUT <mtz>]".into());
    };
    let (mut weight, mut cycles) = (0.5f64, 10u32);
    let mut keywords = KeywordReader::new(stdin);
    while let Some(line) = keywords
        .next_line()
        .map_err(|e| format!("cannot read keyword input: {e}"))?
    {
        out(format!("  Data line--- {}\n", line.raw))?;
        let word = |i: usize| line.words.get(i).map(String::as_str).unwrap_or("");
        if line.is("END") {
            break;
        } else if line.is("WEIGHT") {
            weight = match word(1).to_ascii_uppercase().as_str() {
                "AUTO" => 0.5,
                w if w.starts_with("MATR") => word(2)
                    .parse()
                    .ok()
                    .filter(|w: &f64| w.is_finite() && *w > 0.0)
                    .ok_or_else(|| format!("bad WEIGHT MATRIX value {:?}", word(2)))?,
                _ => {
                    return Err(format!(
                        "WEIGHT {} is not supported here (MATRIX or AUTO)",
                        word(1)
                    ));
                }
            };
        } else if line.is("NCYCLES") {
            cycles = word(1)
                .parse()
                .ok()
                .filter(|n| (1..=MAX_CYCLES).contains(n))
                .ok_or_else(|| format!("bad NCYCLES value {:?} (1 to {MAX_CYCLES})", word(1)))?;
        }
    }
    let model =
        fs::read(&xyzin).map_err(|e| format!("cannot read XYZIN {}: {e}", xyzin.display()))?;
    fs::metadata(&hklin).map_err(|e| format!("cannot read HKLIN {}: {e}", hklin.display()))?;
    let end = simulate(&model, weight);
    let (start_work, start_free) = (0.32, 0.35);
    for k in 1..=cycles {
        std::thread::sleep(CYCLE);
        let t = f64::from(k) / f64::from(cycles);
        out(format!(
            " Cycle {k:>4}   R factor {:.4}   R free {:.4}\n",
            start_work + (end.r_work - start_work) * t,
            start_free + (end.r_free - start_free) * t
        ))?;
    }
    let mut text = String::new();
    for line in String::from_utf8_lossy(&model).lines() {
        let first_atom =
            line.starts_with("ATOM") || line.starts_with("HETATM") || line.starts_with("MODEL");
        if first_atom && !text.contains("REMARK   3") {
            text.push_str(&format!(
                "REMARK   3   R VALUE            (WORKING SET) : {:.4}\nREMARK   3   FREE R VALUE                     : {:.4}\n",
                end.r_work, end.r_free
            ));
        }
        text.push_str(line);
        text.push('\n');
    }
    fs::write(&xyzout, text)
        .map_err(|e| format!("cannot write XYZOUT {}: {e}", xyzout.display()))?;
    if let Some(hklout) = hklout {
        fs::copy(&hklin, &hklout)
            .map_err(|e| format!("cannot write HKLOUT {}: {e}", hklout.display()))?;
    }
    out(format!(
        "\n     $TEXT:Result: $$ Final results $$\n                      Initial    Final\n           R factor    {start_work:.4}   {:.4}\n             R free    {start_free:.4}   {:.4}\n     $$\n",
        end.r_work, end.r_free
    ))?;
    out(format!(
        " Refmac:  End of Refcycle ({cycles} cycles, matrix weight {weight})\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(args: &[&str], keywords: &str) -> (i32, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&args, &mut keywords.as_bytes(), &mut out, &mut err);
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn one_weight_is_best_and_the_log_and_model_say_so() {
        let model = b"CRYST1   10.000   10.000   10.000  90.00  90.00  90.00 P 1\nATOM      1  CA  ALA A   1       0.0   0.0   0.0\n";
        let free: Vec<f64> = [0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.6]
            .iter()
            .map(|w| simulate(model, *w).r_free)
            .collect();
        let best = free.iter().cloned().fold(f64::MAX, f64::min);
        assert!(free.iter().filter(|f| **f == best).count() == 1, "{free:?}");
        assert_eq!(simulate(model, 0.3), simulate(model, 0.3));

        let tmp = tempfile::tempdir().unwrap();
        let (xyzin, xyzout, hklin) = (
            tmp.path().join("in.pdb"),
            tmp.path().join("out.pdb"),
            tmp.path().join("in.mtz"),
        );
        fs::write(&xyzin, model).unwrap();
        fs::write(&hklin, b"MTZ ").unwrap();
        let (code, log) = run_with(
            &[
                "HKLIN",
                hklin.to_str().unwrap(),
                "XYZIN",
                xyzin.to_str().unwrap(),
                "XYZOUT",
                xyzout.to_str().unwrap(),
            ],
            "WEIGHT MATRIX 0.3\nNCYC 2\nEND\n",
        );
        assert_eq!(code, 0, "{log}");
        let r_free = format!("{:.4}", simulate(model, 0.3).r_free);
        let final_line = log
            .lines()
            .find(|l| l.trim_start().starts_with("R free"))
            .unwrap();
        assert!(final_line.ends_with(&r_free), "{final_line} vs {r_free}");
        assert_eq!(log.matches(" Cycle ").count(), 2);
        let written = fs::read_to_string(&xyzout).unwrap();
        assert!(written.contains(&format!("FREE R VALUE                     : {r_free}")));
        assert!(written.ends_with("0.0   0.0   0.0\n"));
    }

    #[test]
    fn bad_input_is_named() {
        let (code, log) = run_with(&["XYZIN", "a.pdb"], "END\n");
        assert_eq!(code, 1);
        assert!(log.contains("usage: refmac5"), "{log}");
        let (code, log) = run_with(
            &["HKLIN", "a", "XYZIN", "b", "XYZOUT", "c"],
            "WEIGHT MATRIX -1\n",
        );
        assert_eq!(code, 1);
        assert!(log.contains("bad WEIGHT MATRIX value"), "{log}");
    }
}
