//! gemmi as a real program: the registry Kiln discovers finds the gemmi
//! executable a pyenv shim on `PATH` would run (a shim cannot run
//! confined), and the `mtzheader` task, CCP4i2's definition over
//! `gemmi mtz`, gives the values `gemmi mtz` prints when run by hand.
//! `.ci/run` installs gemmi-program.

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

fn main() -> std::process::ExitCode {
    kiln_test_support::run(vec![
        Test::new(
            "mtzheader_gives_what_gemmi_mtz_prints",
            mtzheader_gives_what_gemmi_mtz_prints,
        )
        .needs(GEMMI),
    ])
}
