//! Whole MTZ files read and written: a file written back reads the same in
//! Kiln and in gemmi (when gemmi's program is installed: `pip install
//! gemmi-program`; CI installs it), and a column added is what gemmi reads.

use kiln_ccp4_programs::mtz_file::{MtzFile, MtzWriteError};
use std::path::{Path, PathBuf};
use std::process::Command;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn gemmi(args: &[&str]) -> Option<String> {
    let out = Command::new("gemmi").args(args).output().ok()?;
    if !out.status.success() {
        eprintln!(
            "gemmi {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// gemmi's view of a file, without the parts that name the file itself.
fn gemmi_view(path: &Path) -> Option<String> {
    let p = path.to_str().unwrap();
    Some(gemmi(&["mtz", p])? + &gemmi(&["mtz", "--tsv", p])?)
}

fn gemmi_required() -> bool {
    let there = Command::new("gemmi")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !there && std::env::var("CI").is_ok_and(|v| v != "false" && v != "0") {
        panic!("gemmi is not installed (pip install gemmi-program)");
    }
    there
}

#[test]
fn a_file_written_back_reads_the_same_in_kiln_and_in_gemmi() {
    for name in ["5e5z.mtz", "rnase25_freer.mtz"] {
        let original = std::fs::read(testdata(name)).unwrap();
        let file = MtzFile::read(&original).unwrap();
        assert_eq!(file.data.len(), file.nref() * file.ncol());
        let written = file.write().unwrap();
        let again = MtzFile::read(&written).unwrap();
        assert_eq!(again.data.len(), file.data.len(), "{name}");
        for (a, b) in again.data.iter().zip(&file.data) {
            assert!(a == b || (a.is_nan() && b.is_nan()), "{name}: {a} != {b}");
        }
        let mut expected = file.header.clone();
        expected.byte_order = again.header.byte_order;
        assert_eq!(again.header, expected, "{name}");

        if !gemmi_required() {
            eprintln!("gemmi not installed; the cross-check is skipped");
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join(name);
        std::fs::write(&copy, &written).unwrap();
        let theirs = gemmi_view(&testdata(name)).unwrap();
        let ours = gemmi_view(&copy).unwrap();
        assert_eq!(
            ours, theirs,
            "{name}: gemmi reads the written file differently"
        );
    }
}

#[test]
fn a_column_added_is_read_by_gemmi_with_its_values() {
    let mut file = MtzFile::read(&std::fs::read(testdata("5e5z.mtz")).unwrap()).unwrap();
    let fp = file.column("FP").unwrap();
    let doubled: Vec<f32> = fp.iter().map(|f| f * 2.0).collect();
    file.add_column("FP2", 'F', 1, &doubled).unwrap();
    let same = |a: &[f32], b: &[f32]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
    };
    assert!(same(&file.column("FP2").unwrap(), &doubled));
    let col = file.header.column("FP2").unwrap().clone();
    let finite = doubled.iter().filter(|v| !v.is_nan());
    assert_eq!(
        col.max as f32,
        finite.clone().cloned().fold(f32::MIN, f32::max)
    );

    assert_eq!(
        file.add_column("FP2", 'F', 1, &doubled),
        Err(MtzWriteError::Duplicate("FP2".into()))
    );
    assert!(matches!(
        file.add_column("X", 'F', 1, &doubled[1..]),
        Err(MtzWriteError::Length { .. })
    ));
    assert_eq!(
        file.add_column("Y", 'F', 9, &doubled),
        Err(MtzWriteError::NoDataset(9))
    );

    if !gemmi_required() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("added.mtz");
    std::fs::write(&path, file.write().unwrap()).unwrap();
    let tsv = gemmi(&["mtz", "--tsv", path.to_str().unwrap()]).unwrap();
    let mut lines = tsv.lines();
    let labels: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let fp_at = labels.iter().position(|l| *l == "FP").unwrap();
    let fp2_at = labels.iter().position(|l| *l == "FP2").unwrap();
    let mut rows = 0;
    for line in lines {
        let v: Vec<&str> = line.split('\t').collect();
        let (a, b) = (v[fp_at].parse::<f32>(), v[fp2_at].parse::<f32>());
        match (a, b) {
            (Ok(a), Ok(b)) if a.is_nan() || b.is_nan() => {
                assert!(a.is_nan() && b.is_nan(), "{line}")
            }
            // gemmi prints five significant digits.
            (Ok(a), Ok(b)) => assert!((b - 2.0 * a).abs() <= 1e-3 * b.abs().max(1.0), "{line}"),
            _ => assert_eq!(
                v[fp_at].is_empty() || v[fp_at] == "nan",
                v[fp2_at].is_empty() || v[fp2_at] == "nan",
                "{line}"
            ),
        }
        rows += 1;
    }
    assert_eq!(rows, file.nref());
    let listing = gemmi(&["mtz", path.to_str().unwrap()]).unwrap();
    assert!(listing.contains("Number of Columns = 9"), "{listing}");
}
