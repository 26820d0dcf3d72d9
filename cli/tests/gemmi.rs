//! gemmi as real programs, on real data (5e5z.mtz and its model 5e5z.pdb):
//! the registry Kiln discovers finds the gemmi executable a pyenv shim on
//! `PATH` would run (a shim cannot run confined); `mtzheader` (CCP4i2's
//! definition over `gemmi mtz`), `sfcalc_r` and the `gemmi_report`
//! pipeline give what gemmi gives run by hand; `coord_convert` round-trips
//! a model through mmCIF. `.ci/run` installs gemmi-program.

mod common;

use common::{KILN, command_in, data};
use kiln_test_support::{Need, Test};
use serde_json::Value;
use std::process::Command;

const GEMMI: Need = Need {
    name: "gemmi",
    check: || match Command::new("gemmi").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err("gemmi is not installed (pip install gemmi-program)".into()),
    },
};

/// The value after `prefix` on the line of `gemmi mtz`'s output that has it.
fn after<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("gemmi mtz printed no {prefix:?}:\n{text}"))
        .trim()
}

fn numbers(text: &str) -> Vec<f64> {
    text.split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect()
}

fn mtzheader_gives_what_gemmi_mtz_prints() {
    let tmp = tempfile::tempdir().unwrap();
    let mtz = data("5e5z.mtz");
    // No --registry: the programs are discovered.
    let out = command_in(tmp.path(), KILN)
        .args(["run", "mtzheader", "--json", "--param"])
        .arg(format!("HKLIN={}", mtz.display()))
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(report["status"], "succeeded", "{report}");
    let o = &report["outputs"];

    let by_hand = Command::new("gemmi").arg("mtz").arg(&mtz).output().unwrap();
    let by_hand = String::from_utf8(by_hand.stdout).unwrap();
    assert_eq!(
        o["NO_REFLECTIONS"].as_i64().unwrap().to_string(),
        after(&by_hand, "Number of Reflections =")
    );
    assert_eq!(
        o["MERGED"].as_bool().unwrap(),
        after(&by_hand, "Number of Batches =") == "0"
    );
    assert_eq!(
        o["SPACEGROUPCELL"]["spaceGroup"],
        after(&by_hand, "Space Group:")
    );
    // "Resolution: 1.66 - 18.67 A", to two decimals.
    let high = after(&by_hand, "Resolution:").split(" - ").next().unwrap();
    assert_eq!(format!("{:.2}", o["MAXRESOLUTION"].as_f64().unwrap()), high);
    let cell = numbers(after(&by_hand, "Global Cell (obsolete):"));
    for (name, expected) in ["a", "b", "c", "alpha", "beta", "gamma"].iter().zip(cell) {
        let got = o["SPACEGROUPCELL"]["cell"][name].as_f64().unwrap();
        assert!(
            (got - expected).abs() < 1e-3,
            "{name}: {got} against {expected}"
        );
    }
}

/// `kiln run TASK --json` with `params`, in `dir`, through discovery.
fn run(dir: &std::path::Path, task: &str, params: &[String]) -> Value {
    let mut command = command_in(dir, KILN);
    command.args(["run", task, "--json"]);
    for p in params {
        command.arg("--param").arg(p);
    }
    let out = command.output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["status"], "succeeded", "{report}");
    report
}

/// The R factor and reflection count of `gemmi sfcalc` run by hand.
fn sfcalc_by_hand(dir: &std::path::Path, dmin: f64) -> (f64, i64) {
    let out = Command::new("gemmi")
        .current_dir(dir)
        .arg("sfcalc")
        .arg("-v")
        .arg(format!("--dmin={dmin}"))
        .arg("--to-mtz=by-hand.mtz")
        .arg(format!(
            "--scale-to={}:FP:SIGFP",
            data("5e5z.mtz").display()
        ))
        .arg(data("5e5z.pdb"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let r = text
        .rsplit("R=")
        .next()
        .and_then(|rest| rest.split('%').next())
        .and_then(|r| r.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no R in gemmi sfcalc's output:\n{text}"));
    let n = text
        .split("scale factors using ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in gemmi sfcalc's output:\n{text}"));
    (r / 100.0, n)
}

fn sfcalc_r_and_the_pipeline_give_the_r_factors_of_gemmi_sfcalc_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = [
        format!("HKLIN={}", data("5e5z.mtz").display()),
        format!("XYZIN={}", data("5e5z.pdb").display()),
    ];
    let mut params = inputs.to_vec();
    params.push("DMIN=2.5".into());
    let one = run(tmp.path(), "sfcalc_r", &params);
    let (r, n) = sfcalc_by_hand(tmp.path(), 2.5);
    assert!(
        (one["outputs"]["RFACTOR"].as_f64().unwrap() - r).abs() < 1e-9,
        "{one}"
    );
    assert_eq!(one["outputs"]["NREFLECTIONS"].as_i64(), Some(n));
    assert!(n > 50 && r > 0.05 && r < 0.5, "{r} over {n}");

    let report = run(tmp.path(), "gemmi_report", &inputs);
    let subs = report["sub_jobs"].as_array().unwrap();
    let tasks: Vec<&str> = subs.iter().map(|s| s["task"].as_str().unwrap()).collect();
    assert_eq!(
        tasks,
        [
            "mtzheader",
            "model_contents",
            "sfcalc_r",
            "sfcalc_r",
            "sfcalc_r",
            "sfcalc_r"
        ],
        "{report}"
    );
    let high = report["outputs"]["HIGH_RESOLUTION"].as_f64().unwrap();
    let table = std::fs::read_to_string(
        std::path::Path::new(report["job_dir"].as_str().unwrap()).join("report.txt"),
    )
    .unwrap();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip_while(|l| !l.contains("d_min"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 4, "{table}");
    for (row, dmin) in rows.iter().zip([high, 2.0, 2.5, 3.0]) {
        let (r, n) = sfcalc_by_hand(tmp.path(), dmin);
        assert_eq!(row[0], format!("{dmin:.3}"), "{table}");
        assert_eq!(row[1], n.to_string(), "{table}");
        assert_eq!(row[2], format!("{r:.4}"), "{table}");
    }
    let (r_high, _) = sfcalc_by_hand(tmp.path(), high);
    assert!((report["outputs"]["RFACTOR"].as_f64().unwrap() - r_high).abs() < 1e-9);
    assert!(table.contains("6 residues, 47 heavy atoms"), "{table}");
    assert!(
        table.contains("441 reflections, merged, space group P 1 21 1"),
        "{table}"
    );
}

fn coord_convert_round_trips_through_mmcif() {
    let tmp = tempfile::tempdir().unwrap();
    let cif = run(
        tmp.path(),
        "coord_convert",
        &[format!("XYZIN={}", data("5e5z.pdb").display())],
    );
    let cif_path = cif["outputs"]["XYZOUT"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(cif_path.ends_with(".cif"), "{cif}");
    let text = std::fs::read_to_string(&cif_path).unwrap();
    assert!(
        text.starts_with("data_") && text.contains("_atom_site."),
        "{}",
        &text[..200.min(text.len())]
    );
    let pdb = run(
        tmp.path(),
        "coord_convert",
        &[format!("XYZIN={cif_path}"), "FORMAT=pdb".into()],
    );
    let pdb_path = pdb["outputs"]["XYZOUT"]["path"].as_str().unwrap();
    let atoms = |path: &str| {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("ATOM") || l.starts_with("HETATM"))
            .map(|l| l[12..54].to_string())
            .collect::<Vec<_>>()
    };
    let original = atoms(data("5e5z.pdb").to_str().unwrap());
    assert!(!original.is_empty());
    assert_eq!(atoms(pdb_path), original);
}

fn main() -> std::process::ExitCode {
    kiln_test_support::run(vec![
        Test::new(
            "mtzheader_gives_what_gemmi_mtz_prints",
            mtzheader_gives_what_gemmi_mtz_prints,
        )
        .needs(GEMMI),
        Test::new(
            "sfcalc_r_and_the_pipeline_give_the_r_factors_of_gemmi_sfcalc_by_hand",
            sfcalc_r_and_the_pipeline_give_the_r_factors_of_gemmi_sfcalc_by_hand,
        )
        .needs(GEMMI),
        Test::new(
            "coord_convert_round_trips_through_mmcif",
            coord_convert_round_trips_through_mmcif,
        )
        .needs(GEMMI),
    ])
}
