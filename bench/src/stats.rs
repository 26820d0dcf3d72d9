//! Medians and the printed tables.

use std::fmt::{self, Write as _};

/// The median of `values` (the mean of the middle two for an even count);
/// NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// A table of measurements: one row per variant, one column per setting.
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<(String, Vec<String>)>,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.title)?;
        let label_w = self
            .rows
            .iter()
            .map(|(l, _)| l.len())
            .max()
            .unwrap_or(0)
            .max(8);
        let mut col_w: Vec<usize> = self.columns.iter().map(String::len).collect();
        for (_, cells) in &self.rows {
            for (i, c) in cells.iter().enumerate() {
                if let Some(w) = col_w.get_mut(i) {
                    *w = (*w).max(c.len());
                }
            }
        }
        let mut line = format!("  {:<label_w$}", "");
        for (c, w) in self.columns.iter().zip(&col_w) {
            let _ = write!(line, "  {c:>w$}");
        }
        writeln!(f, "{}", line.trim_end())?;
        for (label, cells) in &self.rows {
            let mut line = format!("  {label:<label_w$}");
            for (c, w) in cells.iter().zip(&col_w) {
                let _ = write!(line, "  {c:>w$}");
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// One line of the targets table.
pub struct Row {
    label: String,
    value: String,
    target: String,
    verdict: &'static str,
}

impl Row {
    /// A measured value against a target: `op` is `<=`, `<` or `>=`.
    pub fn ratio(label: &str, value: Option<f64>, op: &str, target: f64, unit: &str) -> Row {
        let show = |x: f64| {
            if unit == "x" {
                format!("{x:.2}x")
            } else if unit.is_empty() {
                format!("{x:.2}")
            } else {
                format!("{x:.1}{unit}")
            }
        };
        let (value_text, verdict) = match value.filter(|v| v.is_finite()) {
            None => ("n/a".to_string(), "FAIL"),
            Some(v) => {
                let pass = match op {
                    "<=" => v <= target,
                    "<" => v < target,
                    _ => v >= target,
                };
                (show(v), if pass { "PASS" } else { "FAIL" })
            }
        };
        Row {
            label: label.to_string(),
            value: value_text,
            target: format!("{op} {}", show(target)),
            verdict,
        }
    }

    /// A target that could not be measured in this run.
    pub fn skipped(label: &str, why: &str) -> Row {
        Row {
            label: label.to_string(),
            value: "-".into(),
            target: why.to_string(),
            verdict: "SKIP",
        }
    }

    /// A number reported without a target.
    pub fn info(label: &str, value: String) -> Row {
        Row {
            label: label.to_string(),
            value,
            target: String::new(),
            verdict: "",
        }
    }
}

pub fn write_targets(f: &mut fmt::Formatter<'_>, rows: &[Row]) -> fmt::Result {
    writeln!(f, "Targets")?;
    let lw = rows.iter().map(|r| r.label.len()).max().unwrap_or(0);
    let vw = rows.iter().map(|r| r.value.len()).max().unwrap_or(0);
    let tw = rows
        .iter()
        .filter(|r| !r.verdict.is_empty())
        .map(|r| r.target.len())
        .max()
        .unwrap_or(0);
    for r in rows {
        let line = if r.verdict.is_empty() {
            format!("  {:<lw$}  {:>vw$}", r.label, r.value)
        } else {
            format!(
                "  {:<lw$}  {:>vw$}  {:<tw$}  {}",
                r.label, r.value, r.target, r.verdict
            )
        };
        writeln!(f, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
