//! `kiln watch ID`: a job's events from the server's event stream, drawn
//! as the live tree (or as lines, off a terminal), until the job's own
//! `finished`; then its final tree, and the exit status of its status.
//!
//! A dropped connection is reconnected with `Last-Event-ID`, for up to
//! [`RECONNECT_FOR`] without an event, and events seen before are not
//! shown again.

use super::super::ProgressView;
use super::super::output::exit_code;
use super::super::tree_view::{live_tree, printable};
use super::sse::{SseEvent, SseParser};
use super::status::{JobDoc, print_job};
use super::{
    Client, ClientError, Outcome, ServerArgs, check_id, display_url, finish_status, job_state,
    now_unix, unreachable,
};
use kiln_host::FinishStatus;
use kiln_host::events::{Event, EventKind};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::Deserialize;
use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long to keep reconnecting a lost event stream.
const RECONNECT_FOR: Duration = Duration::from_secs(30);

/// The largest line or event accepted from the stream.
const MAX_EVENT: usize = 1 << 20;

#[derive(clap::Args, Clone, Debug)]
pub struct WatchArgs {
    /// The job's id, as `kiln submit` printed it (or a sub-job's: 12.3).
    pub id: String,
    #[arg(long, value_enum, default_value_t = ProgressView::Auto)]
    pub progress: ProgressView,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn watch(args: WatchArgs) -> anyhow::Result<u8> {
    super::finish(
        async {
            check_id(&args.id)?;
            let client = Client::new(&args.server)?;
            follow_and_report(&client, &args.id, args.progress, false).await
        }
        .await,
    )
}

/// Follow job `id` to its end, showing it as `view` says; then print its
/// final tree (its JSON document, on one line, with `json`) and give the
/// exit status of its status.
pub async fn follow_and_report(
    client: &Client,
    id: &str,
    view: ProgressView,
    json: bool,
) -> Outcome {
    let view = match view {
        ProgressView::Auto if json => ProgressView::None,
        ProgressView::Auto if std::io::stderr().is_terminal() => ProgressView::Tree,
        ProgressView::Auto => ProgressView::Lines,
        v => v,
    };
    let (tx, tree) = match view {
        ProgressView::Tree => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(tx), Some(live_tree(id, rx, std::io::stderr(), None)))
        }
        _ => (None, None),
    };
    let on_event = move |e: &WireEvent| match (&tx, view) {
        (Some(tx), _) => {
            if let Some(host) = e.to_host_event() {
                let _ = tx.send((host, e.instant()));
            }
        }
        (None, ProgressView::Lines) => {
            if let Some(line) = e.line() {
                eprintln!("{line}");
            }
        }
        _ => {}
    };
    let end = tokio::select! {
        end = follow(client, id, on_event) => Some(end),
        _ = tokio::signal::ctrl_c() => None,
    };
    // The tree's last frame first: anything printed before it would be
    // drawn over.
    if let Some(tree) = tree {
        tree.stop().await;
    }
    let Some(end) = end else {
        eprintln!(
            "kiln: stopped watching; job {} goes on in the server (`kiln stop {}` stops it)",
            printable(id),
            printable(id)
        );
        return Ok(130);
    };
    let end = end?;
    // The final tree, as the server now has it.
    let url = client.endpoint(&["jobs", id]);
    match client.get_json(&url).await {
        Ok(doc) if json => println!("{doc}"),
        Ok(doc) => match super::decode::<JobDoc>(doc, &url) {
            Ok(job) => print_job(&job, now_unix()),
            Err(e) => {
                print_end(id, &end);
                e.report();
            }
        },
        Err(e) => {
            if json {
                let doc = serde_json::json!({
                    "id": id,
                    "status": end.status.as_str(),
                    "reason": end.reason,
                });
                println!("{doc}");
            } else {
                print_end(id, &end);
            }
            eprintln!("kiln: the job's final state could not be read:");
            e.report();
        }
    }
    Ok(exit_code(end.status))
}

fn print_end(id: &str, end: &End) {
    match &end.reason {
        Some(r) => println!(
            "job {} {}: {}",
            printable(id),
            end.status.as_str(),
            printable(r)
        ),
        None => println!("job {} {}", printable(id), end.status.as_str()),
    }
}

/// How the watched job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct End {
    pub status: FinishStatus,
    pub reason: Option<String>,
}

/// An event as the server sends it in `data:`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireEvent {
    #[serde(default)]
    pub seq: Option<u64>,
    /// Unix seconds.
    #[serde(default)]
    pub time: Option<f64>,
    pub job_id: String,
    #[serde(default)]
    pub task: String,
    #[serde(flatten)]
    pub kind: WireKind,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WireKind {
    State {
        state: String,
    },
    Progress {
        #[serde(default)]
        fraction: Option<f32>,
        #[serde(default)]
        phase: String,
        #[serde(default)]
        message: String,
    },
    Signal {
        name: String,
        #[serde(default)]
        payload: serde_json::Value,
    },
    Log {
        #[serde(default)]
        level: String,
        #[serde(default)]
        message: String,
    },
    Finished {
        status: String,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Kinds this client does not show (a program's output lines, kinds
    /// added later).
    #[serde(other)]
    Other,
}

impl WireEvent {
    /// The event as the live tree takes it; `None` for what it does not
    /// draw (and for a state it does not know).
    pub fn to_host_event(&self) -> Option<Event> {
        let kind = match &self.kind {
            WireKind::State { state } => EventKind::State {
                state: job_state(state)?,
            },
            WireKind::Progress {
                fraction,
                phase,
                message,
            } => EventKind::Progress {
                fraction: fraction.filter(|f| f.is_finite()),
                phase: phase.clone(),
                message: message.clone(),
            },
            WireKind::Signal { name, payload } => EventKind::Signal {
                name: name.clone(),
                payload: payload.clone(),
            },
            WireKind::Log { level, message } => EventKind::Log {
                level: level.clone(),
                message: message.clone(),
            },
            WireKind::Finished { status, reason } => EventKind::Finished {
                status: finish_status(status)?,
                reason: reason.clone(),
            },
            WireKind::Other => return None,
        };
        Some(Event {
            job_id: self.job_id.clone(),
            task: self.task.clone(),
            kind,
        })
    }

    /// When the event happened, on this machine's monotonic clock (now,
    /// for an event without a time or from the future).
    pub fn instant(&self) -> Instant {
        let now = Instant::now();
        let Some(t) = self.time.filter(|t| t.is_finite() && *t >= 0.0) else {
            return now;
        };
        let Ok(since) = SystemTime::now().duration_since(UNIX_EPOCH) else {
            return now;
        };
        Duration::try_from_secs_f64(since.as_secs_f64() - t)
            .ok()
            .and_then(|ago| now.checked_sub(ago))
            .unwrap_or(now)
    }

    /// The line shown for the event off a terminal (as `kiln run` shows
    /// them): state changes, progress, and the reason a job ended.
    pub fn line(&self) -> Option<String> {
        let indent = "  ".repeat(self.job_id.matches('.').count().min(16));
        let head = format!("{indent}[{} {}]", self.job_id, self.task);
        let line = match &self.kind {
            WireKind::State { state } => format!("{head} {state}"),
            WireKind::Progress {
                fraction, message, ..
            } => match fraction.filter(|f| f.is_finite()) {
                Some(f) => format!("{head} {:>3.0}% {message}", f * 100.0),
                None => format!("{head} {message}"),
            },
            WireKind::Finished {
                status,
                reason: Some(reason),
            } => format!("{head} {status}: {reason}"),
            _ => return None,
        };
        Some(printable(&line))
    }
}

/// One event of the stream, read from its `data:`.
pub fn parse_event(sse: &SseEvent, url: &Url) -> Result<WireEvent, ClientError> {
    serde_json::from_str(&sse.data).map_err(|e| {
        ClientError::Server(format!(
            "event {} from {} is not a Kiln event ({e}): {}",
            sse.id.as_deref().unwrap_or("(no id)"),
            display_url(url),
            super::cut(&sse.data, 200)
        ))
    })
}

/// What is known of the stream so far: what to reconnect with, and which
/// events were already handed on.
#[derive(Debug, Default)]
pub struct Cursor {
    pub last_id: Option<String>,
    last_seq: Option<u64>,
}

impl Cursor {
    /// Whether the event is new (and, if so, it is now the last seen).
    pub fn admit(&mut self, sse: &SseEvent, event: &WireEvent) -> bool {
        let seq = sse
            .id
            .as_deref()
            .and_then(|id| id.trim().parse::<u64>().ok())
            .or(event.seq);
        if let (Some(seq), Some(last)) = (seq, self.last_seq)
            && seq <= last
        {
            return false;
        }
        if seq.is_none() && sse.id.is_some() && sse.id == self.last_id {
            return false;
        }
        if seq.is_some() {
            self.last_seq = seq;
        }
        // An id that cannot be sent back in a header is not kept.
        let sendable = |id: &str| id.len() <= 200 && id.bytes().all(|b| (0x20..0x7f).contains(&b));
        if let Some(id) = sse.id.as_deref().filter(|id| sendable(id)) {
            self.last_id = Some(id.to_string());
        } else if let Some(seq) = seq {
            self.last_id = Some(seq.to_string());
        }
        true
    }
}

/// Read job `id`'s events (its own and its sub-jobs'), handing each new
/// one to `on_event`, until the job's own `finished`.
pub async fn follow(
    client: &Client,
    id: &str,
    mut on_event: impl FnMut(&WireEvent),
) -> Result<End, ClientError> {
    // A sub-job's events are in its top-level job's stream.
    let top = id.split('.').next().unwrap_or(id);
    let ours = |job: &str| {
        job == id
            || job
                .strip_prefix(id)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    let url = client.endpoint(&["jobs", top, "events"]);
    let mut cursor = Cursor::default();
    let mut connected = false;
    let mut delay = Duration::from_millis(250);
    // Since when no event came through (while reconnecting).
    let mut lost_since: Option<Instant> = None;
    loop {
        let mut rb = client
            .request(Method::GET, &url)
            .header(ACCEPT, "text/event-stream");
        if let Some(last) = &cursor.last_id {
            rb = rb.header("Last-Event-ID", last.as_str());
        }
        let why = match rb.send().await {
            Err(e) if connected => unreachable(&url, &e),
            // Never connected at all: most likely no server; say so now.
            Err(e) => return Err(unreachable(&url, &e)),
            Ok(response) if response.status().is_server_error() && connected => {
                let status = response.status();
                ClientError::Server(format!("{} answered {status}", display_url(&url)))
            }
            Ok(response) => {
                let response = super::check(response, &url).await?;
                let event_stream = response
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
                if !event_stream {
                    return Err(ClientError::Server(format!(
                        "{} did not answer with an event stream; is that a Kiln server?",
                        display_url(&url)
                    )));
                }
                connected = true;
                let mut response = response;
                let mut parser = SseParser::new(MAX_EVENT);
                let mut fresh = false;
                let why = loop {
                    let chunk = match response.chunk().await {
                        Ok(Some(chunk)) => chunk,
                        Ok(None) => break None,
                        Err(e) => break Some(unreachable(&url, &e)),
                    };
                    let events = parser.feed(&chunk).map_err(|too| {
                        ClientError::Server(format!(
                            "{} sent an event or line of more than {} KiB; is that a Kiln server?",
                            display_url(&url),
                            too.0 >> 10
                        ))
                    })?;
                    for sse in events {
                        let event = parse_event(&sse, &url)?;
                        if !cursor.admit(&sse, &event) {
                            continue;
                        }
                        fresh = true;
                        lost_since = None;
                        delay = Duration::from_millis(250);
                        if !ours(&event.job_id) {
                            // The top-level job's end is the stream's: a
                            // sub-job it did not see end, its record tells.
                            if event.job_id == top
                                && matches!(event.kind, WireKind::Finished { .. })
                            {
                                return Ok(match recorded_end(client, id).await? {
                                    Some(end) => end,
                                    None => End {
                                        status: FinishStatus::Interrupted,
                                        reason: Some(format!(
                                            "job {top} ended before its sub-job {id} did"
                                        )),
                                    },
                                });
                            }
                            continue;
                        }
                        on_event(&event);
                        if let WireKind::Finished { status, reason } = &event.kind
                            && event.job_id == id
                        {
                            let status = finish_status(status).ok_or_else(|| {
                                ClientError::Server(format!(
                                    "job {id} finished with a status this kiln does not know: {status:?}"
                                ))
                            })?;
                            return Ok(End {
                                status,
                                reason: reason.clone(),
                            });
                        }
                    }
                    if let Some(retry) = parser.retry() {
                        delay = retry.clamp(Duration::from_millis(100), Duration::from_secs(5));
                    }
                };
                match why {
                    Some(e) => e,
                    None => {
                        // The server ended the stream before the job's
                        // end and had nothing new: if the job is over, its
                        // record says how.
                        let recorded = match fresh {
                            true => Ok(None),
                            false => recorded_end(client, id).await,
                        };
                        match recorded {
                            Ok(Some(end)) => {
                                eprintln!(
                                    "kiln: the event stream of job {} ended without its end; \
                                     the job's record says {}",
                                    printable(id),
                                    end.status.as_str()
                                );
                                return Ok(end);
                            }
                            Ok(None) => ClientError::Server(format!(
                                "{} ended the stream before job {id} finished",
                                display_url(&url)
                            )),
                            Err(e @ ClientError::Unreachable { .. }) => e,
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        };
        let since = *lost_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= RECONNECT_FOR {
            eprintln!(
                "kiln: lost the event stream of job {} and could not get it back in {} s",
                printable(id),
                RECONNECT_FOR.as_secs()
            );
            return Err(why);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// How the job ended, by its record; `None` while it has not.
async fn recorded_end(client: &Client, id: &str) -> Result<Option<End>, ClientError> {
    let url = client.endpoint(&["jobs", id]);
    let job: JobDoc = super::decode(client.get_json(&url).await?, &url)?;
    Ok(job
        .status
        .as_deref()
        .and_then(finish_status)
        .map(|status| End {
            status,
            reason: job.reason.clone(),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::tree_view::TreeModel;

    fn sse(id: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: "message".into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    fn url() -> Url {
        Url::parse("http://127.0.0.1:7878/jobs/12/events").unwrap()
    }

    const STREAM: &[u8] = b": keep-alive\n\n\
        id: 1\nevent: state\ndata: {\"seq\": 1, \"time\": 1700000000.0, \"job_id\": \"12\", \"task\": \"demo_copycell\", \"event\": \"state\", \"state\": \"running\"}\n\n\
        id: 2\nevent: state\ndata: {\"seq\": 2, \"time\": 1700000000.5, \"job_id\": \"12.1\", \"task\": \"mtzdump\", \"event\": \"state\", \"state\": \"running\"}\n\n\
        id: 3\nevent: progress\ndata: {\"seq\": 3, \"time\": 1700000001.0, \"job_id\": \"12\", \"task\": \"demo_copycell\", \"event\": \"progress\", \"fraction\": 0.5, \"phase\": \"cell\", \"message\": \"1 of 2\"}\n\n\
        id: 4\nevent: output\ndata: {\"seq\": 4, \"time\": 1700000002.0, \"job_id\": \"12.1\", \"task\": \"mtzdump\", \"event\": \"output\", \"process\": 1, \"stream\": \"stdout\", \"line\": \"x\"}\n\n\
        id: 5\nevent: signal\ndata: {\"seq\": 5, \"time\": 1700000002.1, \"job_id\": \"12.1\", \"task\": \"mtzdump\", \"event\": \"signal\", \"name\": \"cell\", \"payload\": {\"a\": 9.6}}\n\n\
        id: 6\nevent: log\ndata: {\"seq\": 6, \"time\": 1700000002.2, \"job_id\": \"12.1\", \"task\": \"mtzdump\", \"event\": \"log\", \"level\": \"info\", \"message\": \"hi\"}\n\n\
        id: 7\nevent: state\ndata: {\"seq\": 7, \"time\": 1700000003.0, \"job_id\": \"12.1\", \"task\": \"mtzdump\", \"event\": \"state\", \"state\": \"failed\"}\n\n\
        id: 8\nevent: finished\ndata: {\"seq\": 8, \"time\": 1700000003.0, \"job_id\": \"12.1\", \"task\": \"mtzdump\", \"event\": \"finished\", \"status\": \"failed\", \"reason\": \"mtzdump exited 1\\n\\u001b[2Jcleared\"}\n\n\
        id: 9\nevent: mystery\ndata: {\"seq\": 9, \"job_id\": \"12\", \"task\": \"demo_copycell\", \"event\": \"mystery\"}\n\n";

    fn events() -> Vec<(SseEvent, WireEvent)> {
        let mut p = SseParser::new(MAX_EVENT);
        p.feed(STREAM)
            .unwrap()
            .into_iter()
            .map(|s| {
                let e = parse_event(&s, &url()).unwrap();
                (s, e)
            })
            .collect()
    }

    #[test]
    fn every_kind_of_event_is_read_and_unknown_kinds_are_passed_over() {
        let events = events();
        assert_eq!(events.len(), 9);
        let hosts: Vec<Option<Event>> = events.iter().map(|(_, e)| e.to_host_event()).collect();
        assert!(matches!(
            hosts[0].as_ref().unwrap().kind,
            EventKind::State {
                state: kiln_host::JobState::Running
            }
        ));
        assert!(hosts[3].is_none(), "output lines are not drawn");
        assert!(matches!(
            hosts[7].as_ref().unwrap().kind,
            EventKind::Finished {
                status: FinishStatus::Failed,
                ..
            }
        ));
        assert!(hosts[8].is_none());
        assert!(matches!(events[8].1.kind, WireKind::Other));
        let lines: Vec<String> = events.iter().filter_map(|(_, e)| e.line()).collect();
        assert_eq!(
            lines,
            [
                "[12 demo_copycell] running",
                "  [12.1 mtzdump] running",
                "[12 demo_copycell]  50% 1 of 2",
                "  [12.1 mtzdump] failed",
                "  [12.1 mtzdump] failed: mtzdump exited 1  [2Jcleared",
            ]
        );
    }

    #[test]
    fn bad_event_data_is_a_clear_error_not_a_panic() {
        for data in [
            "not json",
            "{}",
            r#"{"job_id": "12", "event": "state"}"#,
            r#"{"job_id": 12, "event": "state", "state": "running"}"#,
            r#"{"job_id": "12", "event": "progress", "fraction": "half"}"#,
            "[]",
        ] {
            let e = parse_event(&sse(Some("4"), data), &url()).unwrap_err();
            assert_eq!(e.exit_code(), 1);
            let text = e.to_string();
            assert!(
                text.contains("event 4 from http://127.0.0.1:7878/jobs/12/events"),
                "{text}"
            );
        }
        // A state this client does not know is not drawn, and is no error.
        let e = parse_event(
            &sse(
                None,
                r#"{"job_id": "12", "event": "state", "state": "paused"}"#,
            ),
            &url(),
        )
        .unwrap();
        assert!(e.to_host_event().is_none());
    }

    #[test]
    fn events_seen_before_a_reconnection_are_not_handed_on_again() {
        let events = events();
        let mut cursor = Cursor::default();
        let first: Vec<bool> = events[..5]
            .iter()
            .map(|(s, e)| cursor.admit(s, e))
            .collect();
        assert_eq!(first, [true; 5]);
        assert_eq!(cursor.last_id.as_deref(), Some("5"));
        // The server replays from 4 after the reconnection.
        let again: Vec<bool> = events[3..]
            .iter()
            .map(|(s, e)| cursor.admit(s, e))
            .collect();
        assert_eq!(again, [false, false, true, true, true, true]);
        assert_eq!(cursor.last_id.as_deref(), Some("9"));
        // Without an SSE id, the data's seq stands in.
        let e = parse_event(
            &sse(None, r#"{"seq": 9, "job_id": "12", "event": "log"}"#),
            &url(),
        )
        .unwrap();
        assert!(!cursor.admit(&sse(None, ""), &e));
    }

    #[test]
    fn the_tree_is_drawn_from_the_streamed_events_with_their_own_times() {
        let mut model = TreeModel::new("12");
        for (_, e) in events() {
            if let Some(h) = e.to_host_event() {
                model.apply(&h, e.instant());
            }
        }
        let lines = model.render(Instant::now(), 200);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].starts_with("12 ") && lines[0].contains("demo_copycell"));
        assert!(lines[0].contains("running") && lines[0].contains(" 50%"));
        assert!(lines[0].contains("cell: 1 of 2"), "{}", lines[0]);
        // Started in 2023 by its event's time: minutes, not 0.0s.
        assert!(lines[0].contains('m'), "{}", lines[0]);
        assert!(lines[1].starts_with("└ 12.1") && lines[1].contains("failed"));
        assert!(lines[1].contains("mtzdump exited 1"), "{}", lines[1]);
        assert!(lines[1].contains("2.5s"), "{}", lines[1]);
        assert!(lines.iter().all(|l| !l.chars().any(char::is_control)));
    }

    /// The live tree fed through the channel `kiln watch` uses ends when
    /// the channel closes, with every event in its last frame.
    #[tokio::test]
    async fn the_live_tree_takes_events_from_a_channel() {
        #[derive(Clone, Default)]
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Shared::default();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let tree = live_tree("12", rx, out.clone(), Some(200));
        for (_, e) in events() {
            if let Some(h) = e.to_host_event() {
                tx.send((h, e.instant())).unwrap();
            }
        }
        drop(tx);
        tree.stop().await;
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let last = text.rsplit("\x1b[J").nth(1).unwrap();
        assert!(last.contains("12.1") && last.contains("failed"), "{text:?}");
        assert!(last.contains(" 50%"), "{last:?}");
    }
}
