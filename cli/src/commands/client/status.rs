//! `kiln status ID`: a job as the server records it, as a tree (the job,
//! its sub-jobs, theirs: id, task, state, progress, elapsed time, reason),
//! or its JSON document.

use super::super::tree_view::printable;
use super::{Client, Outcome, ServerArgs, check_id, cut, decode, duration, now_unix, utc};
use serde::Deserialize;

#[derive(clap::Args, Clone, Debug)]
pub struct StatusArgs {
    /// The job's id (12, or 12.1 for a sub-job).
    pub id: String,
    /// Print the server's JSON document instead of the tree.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn status(args: StatusArgs) -> anyhow::Result<u8> {
    super::finish(show(args).await)
}

async fn show(args: StatusArgs) -> Outcome {
    check_id(&args.id)?;
    let client = Client::new(&args.server)?;
    let url = client.endpoint(&["jobs", &args.id]);
    let doc = client.get_json(&url).await?;
    // Checked even for --json: what is printed is a job.
    let job: JobDoc = decode(doc.clone(), &url)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print_job(&job, now_unix());
    }
    Ok(0)
}

/// `GET /jobs/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct JobDoc {
    pub id: String,
    #[serde(default)]
    pub task: String,
    pub state: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub submitted_at: Option<f64>,
    #[serde(default)]
    pub started_at: Option<f64>,
    #[serde(default)]
    pub ended_at: Option<f64>,
    #[serde(default)]
    pub progress: Option<Progress>,
    #[serde(default)]
    pub outputs: serde_json::Value,
    #[serde(default)]
    pub sub_jobs: Vec<JobDoc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Progress {
    #[serde(default)]
    pub fraction: Option<f64>,
    #[serde(default)]
    pub phase: String,
    #[serde(default)]
    pub message: String,
}

pub fn print_job(job: &JobDoc, now: f64) {
    for line in job_lines(job, now) {
        println!("{line}");
    }
}

/// The tree, then the job's status, times and outputs.
pub fn job_lines(job: &JobDoc, now: f64) -> Vec<String> {
    let mut lines = Vec::new();
    node_lines(job, "", true, true, now, &mut lines);
    lines.push(String::new());
    let shown = shown_state(job);
    lines.push(match &job.reason {
        // The reason's own newlines are kept; other control characters
        // (an escape sequence from a plugin) are not printed.
        Some(r) if !r.is_empty() => format!(
            "job {} {shown}: {}",
            printable(&job.id),
            r.split('\n').map(printable).collect::<Vec<_>>().join("\n")
        ),
        _ => format!("job {} {shown}", printable(&job.id)),
    });
    let times: Vec<String> = [
        ("submitted", job.submitted_at),
        ("started", job.started_at),
        ("ended", job.ended_at),
    ]
    .into_iter()
    .filter_map(|(what, t)| t.map(|t| format!("{what} {}", utc(t))))
    .collect();
    if !times.is_empty() {
        lines.push(times.join(", "));
    }
    if let Some(p) = job.priority.filter(|p| *p != 0) {
        lines.push(format!("priority {p}"));
    }
    match &job.outputs {
        serde_json::Value::Object(map) if !map.is_empty() => {
            lines.push("outputs:".into());
            for (name, value) in map {
                let value = match value {
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                lines.push(format!(
                    "  {} = {}",
                    printable(name),
                    printable(&cut(&value, 300))
                ));
            }
        }
        _ => {}
    }
    lines
}

/// The status of a finished job, its state before; both when they differ
/// in what they say (`finished/failed`).
fn shown_state(job: &JobDoc) -> String {
    let state = printable(&job.state);
    match job.status.as_deref().map(printable) {
        None => state,
        Some(status) => {
            let same = status == state || (state == "finished" && status == "succeeded");
            if same {
                status
            } else {
                format!("{state}/{status}")
            }
        }
    }
}

fn node_lines(
    job: &JobDoc,
    prefix: &str,
    last: bool,
    root: bool,
    now: f64,
    lines: &mut Vec<String>,
) {
    let branch = match (root, last) {
        (true, _) => String::new(),
        (false, true) => format!("{prefix}└─ "),
        (false, false) => format!("{prefix}├─ "),
    };
    let label = format!("{branch}{}", printable(&job.id));
    let finished = job.status.is_some();
    let percent = match &job.progress {
        Some(Progress {
            fraction: Some(f), ..
        }) if f.is_finite() && !finished => format!("{:>3.0}%", f.clamp(0.0, 1.0) * 100.0),
        _ => String::new(),
    };
    let elapsed = match (job.started_at, job.ended_at) {
        (Some(s), Some(e)) => duration(e - s),
        (Some(s), None) => duration(now - s),
        _ => "-".into(),
    };
    let mut notes = Vec::new();
    if let Some(p) = &job.progress
        && !finished
    {
        let text = match (p.phase.is_empty(), p.message.is_empty()) {
            (true, _) => p.message.clone(),
            (false, true) => p.phase.clone(),
            (false, false) => format!("{}: {}", p.phase, p.message),
        };
        if !text.is_empty() {
            notes.push(text);
        }
    }
    if !root && let Some(r) = job.reason.as_deref().filter(|r| !r.is_empty()) {
        notes.push(r.to_string());
    }
    let line = format!(
        "{label:<14} {:<16} {:<20} {percent:>4} {elapsed:>9}  {}",
        printable(&job.task),
        shown_state(job),
        printable(&notes.join("; ")),
    );
    lines.push(line.trim_end().to_string());
    let child_prefix = match (root, last) {
        (true, _) => String::new(),
        (false, true) => format!("{prefix}   "),
        (false, false) => format!("{prefix}│  "),
    };
    for (i, sub) in job.sub_jobs.iter().enumerate() {
        node_lines(
            sub,
            &child_prefix,
            i + 1 == job.sub_jobs.len(),
            false,
            now,
            lines,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> JobDoc {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_running_job_is_a_tree_with_states_progress_and_reasons() {
        let job = doc(r#"{
            "id": "12", "task": "refine_scan", "state": "running", "status": null,
            "reason": null, "priority": 5,
            "submitted_at": 1700000000.0, "started_at": 1700000001.0, "ended_at": null,
            "progress": {"fraction": 0.5, "phase": "refinement", "message": "4 of 8"},
            "outputs": {},
            "sub_jobs": [
                {"id": "12.1", "task": "prepare", "state": "finished", "status": "succeeded",
                 "reason": null, "priority": 0, "submitted_at": 1700000001.0,
                 "started_at": 1700000001.0, "ended_at": 1700000003.5, "progress": null,
                 "outputs": {}, "sub_jobs": [
                    {"id": "12.1.1", "task": "mtzdump", "state": "failed", "status": "failed",
                     "reason": "exit\n1", "started_at": 1700000001.0, "ended_at": 1700000002.0,
                     "sub_jobs": []}
                 ]},
                {"id": "12.2", "task": "refmac", "state": "interrupted", "status": "unsatisfactory",
                 "reason": "R-free did not drop", "sub_jobs": []}
            ]}"#);
        let lines = job_lines(&job, 1_700_000_061.0);
        let text = lines.join("\n");
        assert!(lines[0].starts_with("12 "), "{text}");
        assert!(lines[0].contains("refine_scan") && lines[0].contains("running"));
        assert!(
            lines[0].contains(" 50%") && lines[0].contains("1m00s"),
            "{text}"
        );
        assert!(lines[0].contains("refinement: 4 of 8"), "{text}");
        assert!(lines[1].starts_with("├─ 12.1 ") && lines[1].contains("succeeded"));
        assert!(!lines[1].contains("finished"), "{text}");
        assert!(lines[1].contains("2.5 s"), "{text}");
        assert!(lines[2].starts_with("│  └─ 12.1.1") && lines[2].contains("exit 1"));
        assert!(lines[3].starts_with("└─ 12.2"), "{text}");
        assert!(lines[3].contains("interrupted/unsatisfactory"), "{text}");
        assert!(lines[3].contains("R-free did not drop") && lines[3].contains(" - "));
        assert_eq!(lines[4], "");
        assert_eq!(lines[5], "job 12 running");
        assert_eq!(
            lines[6],
            "submitted 2023-11-14 22:13:20 UTC, started 2023-11-14 22:13:21 UTC"
        );
        assert_eq!(lines[7], "priority 5");
        assert_eq!(lines.len(), 8, "{text}");
    }

    #[test]
    fn a_finished_job_shows_its_status_reason_and_outputs() {
        let job = doc(r#"{"id": "3", "task": "demo_copycell", "state": "failed",
            "status": "failed", "reason": "pdbset failed:\nno CRYST1\u001b[31m",
            "progress": {"fraction": 0.5, "phase": "", "message": "half"},
            "outputs": {"XYZOUT": "/j/XYZOUT.pdb", "N": {"a": 1}}}"#);
        let lines = job_lines(&job, 0.0);
        assert!(!lines[0].contains("50%") && !lines[0].contains("half"));
        assert!(
            !lines[0].contains("pdbset failed"),
            "the root's reason is below"
        );
        assert_eq!(lines[2], "job 3 failed: pdbset failed:\nno CRYST1 [31m");
        assert_eq!(lines[3], "outputs:");
        assert!(lines.contains(&"  N = {\"a\":1}".to_string()), "{lines:#?}");
        assert!(lines.contains(&"  XYZOUT = /j/XYZOUT.pdb".to_string()));
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn a_document_that_is_no_job_is_refused_by_decode() {
        let url = reqwest::Url::parse("http://127.0.0.1:1/jobs/1").unwrap();
        for bad in [
            serde_json::json!({"id": 1, "state": "running"}),
            serde_json::json!({"id": "1"}),
            serde_json::json!({"id": "1", "state": "x", "sub_jobs": [{"id": "1.1"}]}),
            serde_json::json!([]),
        ] {
            let e = decode::<JobDoc>(bad, &url).unwrap_err();
            assert_eq!(e.exit_code(), 1);
            assert!(e.to_string().contains("not what this kiln expects"), "{e}");
        }
    }
}
