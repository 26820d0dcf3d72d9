//! `kiln run`: submit a task, show live progress on a terminal, print the
//! job tree (or one JSON document) and exit with the job's status.

use super::output::{exit_code, print_report, watch_progress};
use super::tree_view::live_tree;
use super::{EXIT_USAGE, HostArgs, ProgressView, build_host, load_registry};
use kiln_host::grants::Grants;
use kiln_host::{Host, JobReport, RunRequest, TaskRef};
use std::io::IsTerminal;
use std::path::Path;

/// `NAME=VALUE` into its two halves.
pub fn parse_params(params: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    params
        .iter()
        .map(|p| match p.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
            _ => anyhow::bail!("--param {p:?}: expected NAME=VALUE, e.g. --param HKLIN=data.mtz"),
        })
        .collect()
}

pub async fn run(
    task: &str,
    params: &[String],
    grants: Option<&Path>,
    args: HostArgs,
    json: bool,
    view: ProgressView,
) -> anyhow::Result<u8> {
    let params = parse_params(params)?;
    let manifest = grants.map(Grants::from_file).transpose()?;
    let host = build_host(&args, load_registry(&args)?).await?;
    let (code, _) = run_request(
        &host,
        RunRequest {
            task: TaskRef::parse(task),
            params,
            grants: manifest,
        },
        json,
        view,
    )
    .await?;
    Ok(code)
}

/// Run a request to its end and report it; shared with `kiln demo`. The
/// report is `None` when the job could not be created.
pub async fn run_request(
    host: &Host,
    request: RunRequest,
    json: bool,
    view: ProgressView,
) -> anyhow::Result<(u8, Option<JobReport>)> {
    if let Some(m) = &request.grants {
        let info = host.describe(&request.task).await?;
        let (_, missing) = host.effective_grants(&info, Some(m)).await?;
        if !missing.is_empty() {
            eprintln!(
                "kiln: {} requests capabilities the grants manifest does not give:",
                info.name
            );
            for line in &missing {
                eprintln!("  {line}");
            }
            eprintln!("kiln: running anyway; those requests will be denied.");
        }
    }
    let job = match host.submit(request).await {
        Ok(job) => job,
        Err(e) => {
            eprintln!("kiln: {e}");
            // A request to change is a usage error; the host's own trouble
            // (its jobs directory) a failure.
            let code = match e.kind() {
                kiln_host::ErrorKind::BadRequest | kiln_host::ErrorKind::BadTask => EXIT_USAGE,
                kiln_host::ErrorKind::Host => 1,
            };
            return Ok((code, None));
        }
    };
    let view = match view {
        ProgressView::Auto if json => ProgressView::None,
        ProgressView::Auto if std::io::stderr().is_terminal() => ProgressView::Tree,
        ProgressView::Auto => ProgressView::Lines,
        v => v,
    };
    let events = host.events().subscribe();
    let (tree, lines) = match view {
        ProgressView::Tree => (
            Some(live_tree(&job.id, events, std::io::stderr(), None)),
            None,
        ),
        ProgressView::Lines => {
            let (stop, stopped) = tokio::sync::oneshot::channel();
            (
                None,
                Some((stop, tokio::spawn(watch_progress(events, stopped)))),
            )
        }
        _ => (None, None),
    };
    host.start(&job);
    tokio::select! {
        _ = job.wait() => {}
        _ = tokio::signal::ctrl_c() => {
            eprintln!("kiln: interrupted; cancelling job {}", job.id);
            job.cancel();
            job.wait().await;
        }
    }
    if let Some(tree) = tree {
        tree.stop().await;
    }
    if let Some((stop, lines)) = lines {
        let _ = stop.send(());
        let _ = lines.await;
    }
    let report = host.report(&job);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok((exit_code(report.status), Some(report)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_need_a_name_and_an_equals_sign() {
        let ok = parse_params(&["HKLIN=a=b.mtz".into()]).unwrap();
        assert_eq!(ok, vec![("HKLIN".to_string(), "a=b.mtz".to_string())]);
        assert!(parse_params(&["HKLIN".into()]).is_err());
        assert!(parse_params(&["=x".into()]).is_err());
    }
}
