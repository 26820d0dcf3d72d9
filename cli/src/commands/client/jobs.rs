//! `kiln jobs`: the server's history of jobs, newest first, a page at a
//! time up to `--limit`.

use super::super::tree_view::printable;
use super::{Client, ClientError, Outcome, ServerArgs, cut, decode, utc};
use serde::Deserialize;

/// Pages read at most, whatever the server's cursors say.
const MAX_PAGES: usize = 1000;

#[derive(clap::Args, Clone, Debug)]
pub struct JobsArgs {
    /// Only jobs in this state (queued, running, finished, failed, ...).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Only jobs of this task.
    #[arg(long, value_name = "TASK")]
    pub task: Option<String>,
    /// Show at most this many jobs.
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
    /// Print one JSON document ({"jobs": [...], "next_cursor": ...}).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `GET /jobs`.
#[derive(Debug, Deserialize)]
struct Page {
    jobs: Vec<serde_json::Value>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// One job of the history.
#[derive(Debug, Clone, Deserialize)]
pub struct JobSummary {
    pub id: String,
    #[serde(default)]
    pub task: String,
    pub state: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub submitted_at: Option<f64>,
    #[serde(default)]
    pub ended_at: Option<f64>,
}

pub async fn jobs(args: JobsArgs) -> anyhow::Result<u8> {
    super::finish(list(args).await)
}

async fn list(args: JobsArgs) -> Outcome {
    let client = Client::new(&args.server)?;
    let limit = args.limit as usize;
    let mut jobs: Vec<serde_json::Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut more: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut url = client.endpoint(&["jobs"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = &args.state {
                q.append_pair("state", s);
            }
            if let Some(t) = &args.task {
                q.append_pair("task", t);
            }
            q.append_pair("limit", &(limit - jobs.len()).to_string());
            if let Some(c) = &cursor {
                q.append_pair("cursor", c);
            }
        }
        let page: Page = decode(client.get_json(&url).await?, &url)?;
        let n = page.jobs.len();
        let room = limit - jobs.len();
        let whole = n <= room;
        jobs.extend(page.jobs.into_iter().take(room));
        more = if whole {
            page.next_cursor.clone()
        } else {
            None
        };
        match page.next_cursor {
            // An empty page, or the same cursor again, would loop forever.
            Some(next) if jobs.len() < limit && n > 0 && cursor.as_ref() != Some(&next) => {
                cursor = Some(next);
            }
            _ => break,
        }
    }
    let summaries = jobs
        .iter()
        .map(|j| {
            let url = client.endpoint(&["jobs"]);
            decode::<JobSummary>(j.clone(), &url)
        })
        .collect::<Result<Vec<_>, ClientError>>()?;
    if args.json {
        let doc = serde_json::json!({"jobs": jobs, "next_cursor": more});
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(0);
    }
    for line in table(&summaries) {
        println!("{line}");
    }
    if more.is_some() && summaries.len() >= limit {
        eprintln!("kiln: more jobs than --limit {limit}; raise it to see them");
    }
    Ok(0)
}

/// The history as a table, a header first; "no jobs" when it is empty.
pub fn table(jobs: &[JobSummary]) -> Vec<String> {
    if jobs.is_empty() {
        return vec!["no jobs".into()];
    }
    let id_width = jobs
        .iter()
        .map(|j| printable(&j.id).chars().count())
        .max()
        .unwrap_or(2)
        .clamp(4, 24);
    let mut lines = vec![
        format!(
            "{:<id_width$} {:<16} {:<16} {:<23} {:<23} REASON",
            "ID", "TASK", "STATUS", "SUBMITTED", "ENDED"
        )
        .trim_end()
        .to_string(),
    ];
    for j in jobs {
        let status = match &j.status {
            Some(s) => printable(s),
            None => printable(&j.state),
        };
        let reason = j
            .reason
            .as_deref()
            .map(|r| cut(&printable(r), 80))
            .unwrap_or_default();
        let line = format!(
            "{:<id_width$} {:<16} {:<16} {:<23} {:<23} {reason}",
            printable(&j.id),
            printable(&j.task),
            status,
            j.submitted_at.map(utc).unwrap_or_else(|| "-".into()),
            j.ended_at.map(utc).unwrap_or_else(|| "-".into()),
        );
        lines.push(line.trim_end().to_string());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_is_a_table_of_status_times_and_reason() {
        let jobs: Vec<JobSummary> = serde_json::from_str(
            r#"[{"id": "13", "task": "demo_copycell", "state": "running", "status": null,
                 "reason": null, "submitted_at": 1700000000.0, "ended_at": null},
                {"id": "12", "task": "refine_scan", "state": "failed", "status": "failed",
                 "reason": "refmac5 exited 1\nsee log", "submitted_at": 1699999000.0,
                 "ended_at": 1699999100.0}]"#,
        )
        .unwrap();
        let lines = table(&jobs);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID   TASK"), "{lines:#?}");
        assert!(lines[1].starts_with("13   demo_copycell    running"));
        assert!(
            lines[1].contains("2023-11-14 22:13:20 UTC -"),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains("failed") && lines[2].ends_with("refmac5 exited 1 see log"));
        assert_eq!(table(&[]), ["no jobs"]);
    }
}
