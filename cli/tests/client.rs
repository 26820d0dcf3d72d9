//! The client subcommands (`submit`, `status`, `watch`, `stop`, `jobs`)
//! against a scripted HTTP server on the loopback: what they send, what
//! they print, their exit statuses, and `watch` reconnecting with
//! `Last-Event-ID`. The last test runs them against a real `kiln serve`.

mod common;

use common::{KILN, command_in, data, registry, text};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const TOKEN: &str = "s3cret-token-for-tests";

/// A request as the scripted server read it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does with one connection, after reading its request.
type Reply = Box<dyn FnOnce(&Recorded, &mut TcpStream) + Send>;

/// A server on the loopback answering one connection per reply, in turn,
/// then closing its socket.
struct Scripted {
    url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    thread: Option<JoinHandle<()>>,
}

impl Scripted {
    fn start(replies: Vec<Reply>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let thread = std::thread::spawn(move || {
            for reply in replies {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let Some(request) = read_request(&mut stream) else {
                    return;
                };
                seen.lock().unwrap().push(request.clone());
                reply(&request, &mut stream);
                let _ = stream.flush();
                let _ = stream.shutdown(Shutdown::Both);
            }
        });
        Scripted {
            url,
            requests,
            thread: Some(thread),
        }
    }

    /// The requests, once every reply was given.
    fn requests(mut self) -> Vec<Recorded> {
        self.thread.take().unwrap().join().unwrap();
        self.requests.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = find("content-length") {
        body.resize(len.parse().ok()?, 0);
        reader.read_exact(&mut body).ok()?;
    } else if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    Some(Recorded {
        method,
        target,
        headers,
        body,
    })
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

fn json(status: &'static str, body: &'static str) -> Reply {
    Box::new(move |_, s| respond(s, status, "application/json", body))
}

fn problem(status: &'static str, body: &'static str) -> Reply {
    Box::new(move |_, s| respond(s, status, "application/problem+json", body))
}

/// An event stream sending `events`; cut off mid-stream (no last chunk)
/// when `drop`.
fn sse(events: String, drop: bool) -> Reply {
    Box::new(move |_, s| {
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        // Two chunks, the second starting mid-line.
        let cut = events.len() / 2;
        for part in [&events[..cut], &events[cut..]] {
            if !part.is_empty() {
                let _ = write!(s, "{:x}\r\n{part}\r\n", part.len());
                let _ = s.flush();
            }
        }
        if !drop {
            let _ = write!(s, "0\r\n\r\n");
        }
    })
}

fn event(seq: u32, job: &str, task: &str, rest: &str) -> String {
    let kind = rest
        .split("\"event\": \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    format!(
        "id: {seq}\nevent: {kind}\ndata: {{\"seq\": {seq}, \"time\": 1700000000.{seq}, \
         \"job_id\": \"{job}\", \"task\": \"{task}\", {rest}}}\n\n"
    )
}

/// `kiln ARGS` against `server`, with the token in the environment.
fn client(server: &str, args: &[&str]) -> Output {
    let tmp = std::env::temp_dir();
    command_in(&tmp, KILN)
        .args(args)
        .env("KILN_SERVER", server)
        .env("KILN_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn assert_no_token(out: &Output) {
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains(TOKEN), "the token was printed: {all}");
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn an_unreachable_server_exits_1_saying_which_url_and_that_kiln_serve_must_run() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    for args in [
        vec!["status", "1"],
        vec!["jobs"],
        vec!["stop", "1"],
        vec!["watch", "1"],
        vec!["submit", "demo_copycell"],
    ] {
        let out = client(&url, &args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&url), "{args:?}: {stderr}");
        assert!(
            stderr.contains("`kiln serve` must be running"),
            "{args:?}: {stderr}"
        );
        assert_no_token(&out);
    }
    // --server wins over KILN_SERVER; a URL that is not http is a usage error.
    let out = client("http://127.0.0.1:1", &["status", "1", "--server", &url]);
    assert!(text(&out.stderr).contains(&url), "{}", text(&out.stderr));
    let out = client("https://127.0.0.1:1", &["status", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("plain HTTP only"));
}

#[test]
fn a_refused_submission_prints_the_problem_and_its_field_errors_and_exits_2() {
    let server = Scripted::start(vec![
        problem(
            "422 Unprocessable Entity",
            r#"{"type": "https://kiln/problems/invalid-params", "title": "Invalid parameters",
                "status": 422, "detail": "1 parameter is wrong",
                "errors": [{"path": "inputData.HKLIN", "message": "no such file", "code": 201}]}"#,
        ),
        problem(
            "503 Service Unavailable",
            r#"{"title": "Shutting down", "status": 503, "detail": "try later"}"#,
        ),
    ]);
    let out = client(
        &server.url,
        &[
            "submit",
            "demo_copycell",
            "--param",
            "HKLIN=/no.mtz",
            "--priority",
            "-2",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "kiln: Invalid parameters: 1 parameter is wrong\n  \
         inputData.HKLIN: no such file (code 201)\n"
    );
    assert_eq!(text(&out.stdout), "");
    assert_no_token(&out);
    let out = client(&server.url, &["submit", "demo_copycell", "--grants", "lab"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "kiln: Shutting down: try later\n");

    let requests = server.requests();
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.target.as_str()), ("POST", "/jobs"));
    assert_eq!(r.header("authorization"), Some(&*format!("Bearer {TOKEN}")));
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"task": "demo_copycell", "params": {"HKLIN": "/no.mtz"}, "priority": -2})
    );
    let key = r.header("idempotency-key").unwrap();
    assert!(
        key.len() >= 16 && key.chars().all(|c| c.is_ascii_hexdigit()),
        "{key}"
    );
    let body: serde_json::Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(body["grants"], "lab");
    assert_ne!(
        requests[1].header("idempotency-key"),
        Some(key),
        "a key per invocation"
    );
}

/// The parts of a multipart/form-data body: (headers, content).
fn parts(r: &Recorded) -> Vec<(String, Vec<u8>)> {
    let ct = r.header("content-type").unwrap();
    assert!(ct.starts_with("multipart/form-data"), "{ct}");
    let boundary = format!(
        "--{}",
        ct.split("boundary=").nth(1).unwrap().trim_matches('"')
    );
    let body = &r.body;
    let mut out = Vec::new();
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut at = find(body, boundary.as_bytes(), 0).unwrap() + boundary.len();
    while body[at..].starts_with(b"\r\n") {
        let head_end = find(body, b"\r\n\r\n", at).unwrap();
        let head = String::from_utf8_lossy(&body[at + 2..head_end]).into_owned();
        let next = find(body, format!("\r\n{boundary}").as_bytes(), head_end).unwrap();
        out.push((head, body[head_end + 4..next].to_vec()));
        at = next + 2 + boundary.len();
    }
    out
}

#[test]
fn submit_sends_files_as_multipart_and_prints_the_id() {
    let server = Scripted::start(vec![
        json(
            "202 Accepted",
            r#"{"job_id": "12", "state": "queued", "status_url": "/jobs/12", "events_url": "/jobs/12/events"}"#,
        ),
        json("202 Accepted", r#"{"job_id": "13", "state": "queued"}"#),
    ]);
    let xyzin = data("rnase_frag.pdb");
    let hklin = data("5e5z.mtz");
    let out = client(
        &server.url,
        &[
            "submit",
            "demo_copycell",
            "--file",
            &format!("XYZIN={}", xyzin.display()),
            "--file",
            &format!("HKLIN={}", hklin.display()),
            "--param",
            "NCYC=3",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "12\n");
    let out = client(&server.url, &["submit", "demo_copycell", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["job_id"], "13");

    let requests = server.requests();
    let parts = parts(&requests[0]);
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert!(parts[0].0.contains("name=\"request\""), "{}", parts[0].0);
    assert!(parts[0].0.contains("application/json"), "{}", parts[0].0);
    let request: serde_json::Value = serde_json::from_slice(&parts[0].1).unwrap();
    assert_eq!(
        request,
        serde_json::json!({"task": "demo_copycell", "params": {"NCYC": "3"}})
    );
    for ((head, content), (name, path)) in parts[1..]
        .iter()
        .zip([("XYZIN", &xyzin), ("HKLIN", &hklin)])
    {
        let file_name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            head.contains(&format!("name=\"{name}\"; filename=\"{file_name}\"")),
            "{head}"
        );
        assert_eq!(content, &std::fs::read(path).unwrap(), "{name}");
    }
}

#[test]
fn a_submission_that_got_no_answer_is_sent_once_more_with_the_same_key() {
    let server = Scripted::start(vec![
        // Read, then hang up without an answer.
        Box::new(|_, _| {}),
        json("202 Accepted", r#"{"job_id": "7", "state": "queued"}"#),
    ]);
    let out = client(&server.url, &["submit", "demo_copycell"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "7\n");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].header("idempotency-key"),
        requests[1].header("idempotency-key")
    );
    assert_eq!(requests[0].body, requests[1].body);
}

const FINAL_JOB: &str = r#"{"id": "12", "task": "demo_copycell", "state": "unsatisfactory",
    "status": "unsatisfactory", "reason": "the cell did not change", "priority": 0,
    "submitted_at": 1700000000.0, "started_at": 1700000000.1, "ended_at": 1700000000.6,
    "progress": null, "outputs": {"XYZOUT": "/jobs/job_12/XYZOUT.pdb"},
    "sub_jobs": [{"id": "12.1", "task": "mtzdump", "state": "finished", "status": "succeeded",
        "reason": null, "priority": 0, "submitted_at": 1700000000.1, "started_at": 1700000000.2,
        "ended_at": 1700000000.4, "progress": null, "outputs": {}, "sub_jobs": []}]}"#;

#[test]
fn watch_reconnects_with_last_event_id_shows_each_event_once_and_exits_with_the_status() {
    let e1 = event(
        1,
        "12",
        "demo_copycell",
        r#""event": "state", "state": "running""#,
    );
    let e2 = event(
        2,
        "12.1",
        "mtzdump",
        r#""event": "state", "state": "running""#,
    );
    let e3 = event(
        3,
        "12",
        "demo_copycell",
        r#""event": "progress", "fraction": 0.5, "phase": "", "message": "halfway""#,
    );
    let e4 = event(
        4,
        "12.1",
        "mtzdump",
        r#""event": "state", "state": "finished""#,
    );
    let e5 = event(
        5,
        "12.1",
        "mtzdump",
        r#""event": "finished", "status": "succeeded", "reason": null"#,
    );
    let e6 = event(
        6,
        "12",
        "demo_copycell",
        r#""event": "state", "state": "unsatisfactory""#,
    );
    let e7 = event(
        7,
        "12",
        "demo_copycell",
        r#""event": "finished", "status": "unsatisfactory", "reason": "the cell did not change""#,
    );
    let server = Scripted::start(vec![
        sse(format!(": keep-alive\n\n{e1}{e2}{e3}"), true),
        // The server resends 3: it must not be shown twice.
        sse(format!("{e3}: keep-alive\n\n{e4}{e5}{e6}{e7}"), false),
        json("200 OK", FINAL_JOB),
    ]);
    let out = client(&server.url, &["watch", "12", "--progress", "lines"]);
    let stderr = text(&out.stderr);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert_eq!(
        stderr,
        "[12 demo_copycell] running\n  [12.1 mtzdump] running\n[12 demo_copycell]  50% halfway\n  \
         [12.1 mtzdump] finished\n[12 demo_copycell] unsatisfactory\n\
         [12 demo_copycell] unsatisfactory: the cell did not change\n"
    );
    assert!(stdout.starts_with("12 "), "{stdout}");
    assert!(
        stdout.contains("└─ 12.1") && stdout.contains("succeeded"),
        "{stdout}"
    );
    assert!(
        stdout.contains("job 12 unsatisfactory: the cell did not change"),
        "{stdout}"
    );
    assert!(
        stdout.contains("XYZOUT = /jobs/job_12/XYZOUT.pdb"),
        "{stdout}"
    );
    assert_no_token(&out);

    let requests = server.requests();
    let targets: Vec<&str> = requests.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/jobs/12/events", "/jobs/12/events", "/jobs/12"]);
    assert_eq!(requests[0].header("last-event-id"), None);
    assert_eq!(requests[1].header("last-event-id"), Some("3"));
    assert_eq!(
        requests[1].header("authorization"),
        Some(&*format!("Bearer {TOKEN}"))
    );
}

/// A sub-job is watched in its top-level job's stream, to its own end.
#[test]
fn watch_of_a_sub_job_shows_its_events_only_and_ends_at_its_finished() {
    let stream = [
        event(
            1,
            "12",
            "refine_scan",
            r#""event": "state", "state": "running""#,
        ),
        event(
            2,
            "12.1",
            "refmac",
            r#""event": "state", "state": "running""#,
        ),
        event(
            3,
            "12.10",
            "refmac",
            r#""event": "state", "state": "running""#,
        ),
        event(
            4,
            "12.1.1",
            "mtzdump",
            r#""event": "state", "state": "running""#,
        ),
        event(
            5,
            "12.1.1",
            "mtzdump",
            r#""event": "finished", "status": "succeeded", "reason": null"#,
        ),
        event(
            6,
            "12.1",
            "refmac",
            r#""event": "state", "state": "failed""#,
        ),
        event(
            7,
            "12.1",
            "refmac",
            r#""event": "finished", "status": "failed", "reason": "diverged""#,
        ),
        event(
            8,
            "12",
            "refine_scan",
            r#""event": "state", "state": "finished""#,
        ),
    ]
    .concat();
    let server = Scripted::start(vec![
        sse(stream, false),
        json(
            "200 OK",
            r#"{"id": "12.1", "task": "refmac", "state": "failed", "status": "failed",
                "reason": "diverged", "sub_jobs": []}"#,
        ),
    ]);
    let out = client(&server.url, &["watch", "12.1", "--progress", "lines"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "  [12.1 refmac] running\n    [12.1.1 mtzdump] running\n  [12.1 refmac] failed\n  \
         [12.1 refmac] failed: diverged\n"
    );
    assert!(text(&out.stdout).contains("job 12.1 failed: diverged"));
    let requests = server.requests();
    let targets: Vec<&str> = requests.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/jobs/12/events", "/jobs/12.1"]);
}

/// A sub-job whose own end never came (its host died): the top-level
/// job's end closes the watch, with the sub-job's recorded status.
#[test]
fn watch_of_a_sub_job_ends_with_its_top_level_job() {
    let stream = [
        event(
            1,
            "12.2",
            "refmac",
            r#""event": "state", "state": "running""#,
        ),
        event(
            2,
            "12",
            "refine_scan",
            r#""event": "finished", "status": "interrupted", "reason": "host died""#,
        ),
    ]
    .concat();
    let server = Scripted::start(vec![
        sse(stream, false),
        json(
            "200 OK",
            r#"{"id": "12.2", "task": "refmac", "state": "interrupted", "status": "interrupted",
                "reason": "host died", "sub_jobs": []}"#,
        ),
        json(
            "200 OK",
            r#"{"id": "12.2", "task": "refmac", "state": "interrupted", "status": "interrupted",
                "reason": "host died", "sub_jobs": []}"#,
        ),
    ]);
    let out = client(&server.url, &["watch", "12.2", "--progress", "none"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("job 12.2 interrupted: host died"));
    let requests = server.requests();
    let targets: Vec<&str> = requests.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/jobs/12/events", "/jobs/12.2", "/jobs/12.2"]);
}

#[test]
fn watch_of_a_job_that_is_not_there_exits_2_and_bad_events_exit_1() {
    let server = Scripted::start(vec![
        problem(
            "404 Not Found",
            r#"{"title": "No such job", "status": 404, "detail": "job 99 is not known"}"#,
        ),
        sse(
            "id: 1\ndata: {\"job_id\": \"5\", \"event\": \"state\"}\n\n".into(),
            false,
        ),
        json("200 OK", r#"{"not": "an event stream"}"#),
    ]);
    let out = client(&server.url, &["watch", "99"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "kiln: No such job: job 99 is not known\n"
    );
    let out = client(&server.url, &["watch", "5"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("is not a Kiln event"),
        "{}",
        text(&out.stderr)
    );
    let out = client(&server.url, &["watch", "5"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("did not answer with an event stream"));
    server.requests();
}

#[test]
fn jobs_follows_the_cursor_up_to_the_limit() {
    let server = Scripted::start(vec![
        json(
            "200 OK",
            r#"{"jobs": [
                {"id": "14", "task": "refine_scan", "state": "running", "status": null,
                 "reason": null, "submitted_at": 1700000300.0, "ended_at": null},
                {"id": "13", "task": "demo_copycell", "state": "failed", "status": "failed",
                 "reason": "pdbset exited 1", "submitted_at": 1700000200.0, "ended_at": 1700000201.0}],
               "next_cursor": "c2"}"#,
        ),
        json(
            "200 OK",
            r#"{"jobs": [{"id": "12", "task": "demo_copycell", "state": "finished",
                 "status": "succeeded", "reason": null, "submitted_at": 1700000100.0,
                 "ended_at": 1700000101.0}], "next_cursor": "c3"}"#,
        ),
        json("200 OK", r#"{"jobs": [], "next_cursor": null}"#),
    ]);
    let out = client(
        &server.url,
        &[
            "jobs",
            "--limit",
            "3",
            "--task",
            "demo copycell&x",
            "--state",
            "failed",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].starts_with("ID "), "{stdout}");
    assert!(lines[1].starts_with("14 ") && lines[1].contains("running"));
    assert!(lines[2].contains("failed") && lines[2].ends_with("pdbset exited 1"));
    assert!(lines[3].starts_with("12 ") && lines[3].contains("succeeded"));
    assert!(
        text(&out.stderr).contains("--limit 3"),
        "{}",
        text(&out.stderr)
    );
    let out = client(&server.url, &["jobs", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc, serde_json::json!({"jobs": [], "next_cursor": null}));

    let requests = server.requests();
    let targets: Vec<&str> = requests.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/jobs?state=failed&task=demo+copycell%26x&limit=3",
            "/jobs?state=failed&task=demo+copycell%26x&limit=1&cursor=c2",
            "/jobs?limit=20",
        ]
    );
}

#[test]
fn status_prints_the_tree_and_stop_posts() {
    let server = Scripted::start(vec![
        json("200 OK", FINAL_JOB),
        json("200 OK", FINAL_JOB),
        json("202 Accepted", r#"{"job_id": "12", "state": "running"}"#),
        json("200 OK", r#"{"id": "12"}"#),
    ]);
    let out = client(&server.url, &["status", "12"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("12 "), "{stdout}");
    assert!(
        stdout.contains("demo_copycell") && stdout.contains("└─ 12.1"),
        "{stdout}"
    );
    assert!(stdout.contains("job 12 unsatisfactory: the cell did not change"));
    assert!(
        stdout.contains("submitted 2023-11-14 22:13:20 UTC"),
        "{stdout}"
    );
    let out = client(&server.url, &["status", "12", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["sub_jobs"][0]["id"], "12.1");
    let out = client(&server.url, &["stop", "12"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "job 12: stop requested (state: running)\n"
    );
    // A document that is not a job is said so, not shown.
    let out = client(&server.url, &["status", "12"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not what this kiln expects"));

    let requests = server.requests();
    let calls: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.target.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("GET", "/jobs/12"),
            ("GET", "/jobs/12"),
            ("POST", "/jobs/12/stop"),
            ("GET", "/jobs/12")
        ]
    );
}

/// A `kiln serve` child, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /health` on the loopback: whether it answered 200.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        s,
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn start_serve(dir: &Path) -> (Serve, String) {
    let reg = registry(dir);
    let port = closed_port();
    let child = command_in(dir, KILN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--jobs-dir",
        ])
        .arg(dir.join("jobs"))
        .arg("--registry")
        .arg(&reg)
        .env_remove("KILN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut serve = Serve(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !healthy(port) {
        if let Ok(Some(status)) = serve.0.try_wait() {
            panic!("kiln serve exited: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "kiln serve did not get healthy in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (serve, format!("http://127.0.0.1:{port}"))
}

fn kiln_at(dir: &Path, server: &str, args: &[&str]) -> Output {
    let mut c: Command = command_in(dir, KILN);
    c.args(args)
        .args(["--server", server])
        .env_remove("KILN_TOKEN")
        .env_remove("KILN_SERVER")
        .stdin(Stdio::null());
    c.output().unwrap()
}

#[test]
fn submit_watch_status_and_jobs_against_kiln_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let (_serve, server) = start_serve(tmp.path());
    let xyzin = format!("XYZIN={}", data("rnase_frag.pdb").display());
    let hklin = format!("HKLIN={}", data("5e5z.mtz").display());
    let out = kiln_at(
        tmp.path(),
        &server,
        &[
            "submit",
            "demo_copycell",
            "--file",
            &xyzin,
            "--file",
            &hklin,
            "--watch",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let id = stdout.lines().next().unwrap().trim().to_string();
    assert!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("job {id} succeeded")), "{stdout}");
    assert!(
        stdout.contains("mtzdump") && stdout.contains("pdbset"),
        "{stdout}"
    );
    // The lines view (stderr is no terminal) showed the job run.
    assert!(
        stderr.contains(&format!("[{id} demo_copycell] running")),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches(&format!("[{id} demo_copycell] running"))
            .count(),
        1,
        "{stderr}"
    );

    let out = kiln_at(tmp.path(), &server, &["status", &id, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["id"], id.as_str());
    assert_eq!(doc["task"], "demo_copycell");
    assert_eq!(doc["state"], "finished");
    assert_eq!(doc["status"], "succeeded");
    let subs = doc["sub_jobs"].as_array().unwrap();
    assert_eq!(subs.len(), 2, "{doc:#}");
    assert!(subs.iter().all(|s| s["status"] == "succeeded"), "{doc:#}");

    let out = kiln_at(tmp.path(), &server, &["status", &id]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains(&format!("├─ {id}.1")) && stdout.contains(&format!("└─ {id}.2")));
    assert!(stdout.contains(&format!("job {id} succeeded")), "{stdout}");

    // A watch after the end replays the events to the same end.
    let out = kiln_at(tmp.path(), &server, &["watch", &id, "--progress", "none"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = kiln_at(tmp.path(), &server, &["jobs", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["jobs"][0]["id"], id.as_str(), "{doc:#}");
    assert_eq!(doc["jobs"][0]["status"], "succeeded", "{doc:#}");
    let out = kiln_at(
        tmp.path(),
        &server,
        &["jobs", "--task", "demo_copycell", "--limit", "1"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).lines().nth(1).unwrap().starts_with(&id));

    // Bad input is the server's 4xx: exit 2 with its problem.
    let out = kiln_at(tmp.path(), &server, &["status", "999999"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("kiln: "),
        "{}",
        text(&out.stderr)
    );
    let out = kiln_at(tmp.path(), &server, &["submit", "no_such_task"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
