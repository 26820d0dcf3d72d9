//! What `kiln` prints: the job tree at the end, live progress lines on a
//! terminal while jobs run, and the exit status of a finished job.

use kiln_host::events::{Event, EventKind};
use kiln_host::{FinishStatus, JobReport};
use tokio::sync::broadcast::{self, error::RecvError};

pub fn exit_code(status: FinishStatus) -> u8 {
    match status {
        FinishStatus::Succeeded => 0,
        FinishStatus::Failed => 1,
        FinishStatus::Unsatisfactory => 3,
        FinishStatus::Interrupted => 4,
    }
}

/// The job and its sub-jobs, one line each, then the status and reason.
pub fn print_report(report: &JobReport) {
    print_node(report, "", true, true);
    println!();
    match &report.reason {
        Some(reason) => println!(
            "job {} {}: {}",
            report.job_id,
            report.status.as_str(),
            // Newlines are the reason's own; other control characters (an
            // escape sequence from a plugin) are not printed.
            reason
                .split('\n')
                .map(super::tree_view::printable)
                .collect::<Vec<_>>()
                .join("\n")
        ),
        None => println!("job {} {}", report.job_id, report.status.as_str()),
    }
    println!("job directory: {}", report.job_dir.display());
}

fn print_node(r: &JobReport, prefix: &str, last: bool, root: bool) {
    let elapsed = r
        .elapsed_seconds
        .map(|s| format!("{s:.3} s"))
        .unwrap_or_else(|| "-".into());
    let branch = if root {
        String::new()
    } else if last {
        format!("{prefix}└─ ")
    } else {
        format!("{prefix}├─ ")
    };
    let dir = r
        .job_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let label = format!("{branch}{}", r.job_id);
    let note = match (&r.reused_from, r.attempts) {
        (Some(from), _) => format!("  reused job {from}"),
        (None, n) if n > 1 => format!("  {n} attempts"),
        _ => String::new(),
    };
    println!(
        "{label:<14} {:<16} {:<14} {elapsed:>9}  {dir}{note}",
        r.task,
        r.state.as_str(),
    );
    let child_prefix = if root {
        String::new()
    } else if last {
        format!("{prefix}   ")
    } else {
        format!("{prefix}│  ")
    };
    for (i, c) in r.sub_jobs.iter().enumerate() {
        print_node(c, &child_prefix, i + 1 == r.sub_jobs.len(), false);
    }
}

/// Print a line per job state change and progress report until `stop`,
/// then the lines of the events already sent.
pub async fn watch_progress(
    mut rx: broadcast::Receiver<Event>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            e = rx.recv() => match e {
                Ok(e) => {
                    if let Some(line) = progress_line(&e) {
                        eprintln!("{line}");
                    }
                }
                Err(RecvError::Lagged(n)) => eprintln!("  ({n} progress events skipped)"),
                Err(RecvError::Closed) => return,
            },
            _ = &mut stop => break,
        }
    }
    loop {
        match rx.try_recv() {
            Ok(e) => {
                if let Some(line) = progress_line(&e) {
                    eprintln!("{line}");
                }
            }
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                eprintln!("  ({n} progress events skipped)")
            }
            Err(_) => break,
        }
    }
}

fn progress_line(e: &Event) -> Option<String> {
    progress_text(e).map(|l| super::tree_view::printable(&l))
}

fn progress_text(e: &Event) -> Option<String> {
    let indent = "  ".repeat(e.job_id.matches('.').count());
    let head = format!("{indent}[{} {}]", e.job_id, e.task);
    match &e.kind {
        EventKind::State { state } => Some(format!("{head} {}", state.as_str())),
        EventKind::Progress {
            fraction, message, ..
        } => Some(match fraction {
            Some(f) => format!("{head} {:>3.0}% {message}", f * 100.0),
            None => format!("{head} {message}"),
        }),
        EventKind::Finished { .. }
        | EventKind::Signal { .. }
        | EventKind::Log { .. }
        | EventKind::Output { .. } => None,
    }
}
