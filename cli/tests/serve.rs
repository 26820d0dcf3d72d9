//! `kiln serve` as its clients see it: a job submitted over HTTP, followed
//! over SSE and read back through the files API; a server killed with
//! SIGKILL right after a `202` and in the middle of a job; an SSE client
//! reconnecting across a restart; tokens and scopes; validation errors.

mod common;

use common::{KILN, data, programs_in, registry};
use reqwest::blocking::{Client, Response, multipart};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A `kiln serve` on a free loopback port.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Server {
        Server::try_start(dir, extra).unwrap_or_else(|e| panic!("kiln serve did not start: {e}"))
    }

    /// Start it; `Err` with its stderr if it exits instead.
    fn try_start(dir: &Path, extra: &[&str]) -> Result<Server, String> {
        let mut child = common::command_in(dir, KILN)
            .args(["serve", "--listen", "127.0.0.1:0", "--jobs-dir", "jobs"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let Some(url) = line.trim().strip_prefix("kiln serve: listening on ") else {
            let out = child.wait_with_output().unwrap();
            let mut holders = String::new();
            for p in std::fs::read_dir("/proc").unwrap().flatten() {
                let fds = p.path().join("fd");
                for fd in std::fs::read_dir(&fds).into_iter().flatten().flatten() {
                    if std::fs::read_link(fd.path())
                        .is_ok_and(|l| l.to_string_lossy().contains("kiln.db.lock"))
                    {
                        holders.push_str(&format!(
                            " {:?} {}",
                            p.path(),
                            std::fs::read_to_string(p.path().join("cmdline"))
                                .unwrap_or_default()
                                .replace('\0', " ")
                        ));
                    }
                }
            }
            return Err(format!("{}{holders}", String::from_utf8_lossy(&out.stderr)));
        };
        Ok(Server {
            url: url.to_string(),
            child,
        })
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

fn json_of(r: Response) -> Value {
    let status = r.status();
    let text = r.text().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not JSON: {text}"))
}

/// A multipart submit of `task` with the bundled MTZ and PDB uploaded.
fn upload_form(task: &str, params: Value) -> multipart::Form {
    let request = json!({"task": task, "params": params}).to_string();
    multipart::Form::new()
        .text("request", request)
        .file("HKLIN", data("5e5z.mtz"))
        .unwrap()
        .file("XYZIN", data("rnase_frag.pdb"))
        .unwrap()
}

fn submit(server: &Server, task: &str, params: Value) -> String {
    let r = client()
        .post(server.url("/jobs"))
        .multipart(upload_form(task, params))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    json_of(r)["job_id"].as_str().unwrap().to_string()
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: i64,
    event: String,
    data: Value,
}

/// Read an SSE stream until it ends (or `stop` says so), returning its
/// events.
fn read_sse(r: Response, mut stop: impl FnMut(&Sse) -> bool) -> Vec<Sse> {
    assert_eq!(r.status(), 200);
    let mut events = Vec::new();
    let (mut id, mut event, mut data) = (None, String::new(), String::new());
    for line in BufReader::new(r).lines() {
        let Ok(line) = line else { break };
        if line.is_empty() {
            if let Some(i) = id.take() {
                let e = Sse {
                    id: i,
                    event: std::mem::take(&mut event),
                    data: serde_json::from_str(&data).unwrap(),
                };
                data.clear();
                let done = stop(&e);
                events.push(e);
                if done {
                    break;
                }
            }
            continue;
        }
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse().unwrap());
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = v.to_string();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push_str(v);
        }
    }
    events
}

fn events_of(server: &Server, id: &str, after: Option<i64>) -> Vec<Sse> {
    let mut req = client().get(server.url(&format!("/jobs/{id}/events")));
    if let Some(a) = after {
        req = req.header("Last-Event-ID", a.to_string());
    }
    read_sse(req.send().unwrap(), |_| false)
}

/// Check a job's whole stream: numbered 1, 2, ... without a gap or a
/// repeat, and its own `finished` exactly once, last.
fn assert_whole_stream(events: &[Sse], id: &str) {
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    let expected: Vec<i64> = (1..=events.len() as i64).collect();
    assert_eq!(ids, expected, "event numbers");
    let finished: Vec<&Sse> = events
        .iter()
        .filter(|e| e.event == "finished" && e.data["job_id"] == id)
        .collect();
    assert_eq!(finished.len(), 1, "one finished: {events:?}");
    assert_eq!(events.last(), Some(finished[0]), "finished comes last");
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn job(server: &Server, id: &str) -> Value {
    json_of(
        client()
            .get(server.url(&format!("/jobs/{id}")))
            .send()
            .unwrap(),
    )
}

/// A registry whose refmac5 notes each start in its job directory and
/// then runs for `secs` seconds.
fn slow_registry(dir: &Path, secs: u32) -> PathBuf {
    let path = dir.join("slow.toml");
    std::fs::write(
        &path,
        format!(
            "[programs.refmac5]\npath = \"/bin/sh\"\nargs = [\"-c\", \"echo started >> starts.txt; sleep {secs}\"]\n"
        ),
    )
    .unwrap();
    path
}

/// Every start noted by `slow_registry`'s refmac5 below `dir`.
fn starts_below(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            n += starts_below(&p);
        } else if p.file_name().is_some_and(|f| f == "starts.txt") {
            n += std::fs::read_to_string(&p).unwrap().lines().count();
        }
    }
    n
}

#[test]
fn a_job_submitted_over_http_is_followed_to_its_end_and_its_output_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let server = Server::start(tmp.path(), &["--registry", reg.to_str().unwrap()]);
    let id = submit(&server, "demo_copycell", json!({}));
    let events = events_of(&server, &id, None);
    assert_whole_stream(&events, &id);
    assert_eq!(events.last().unwrap().data["status"], "succeeded");

    let view = job(&server, &id);
    assert_eq!(view["state"], "finished", "{view}");
    let subs = view["sub_jobs"].as_array().unwrap();
    assert_eq!(subs.len(), 2, "{view}");
    assert!(subs.iter().all(|s| s["status"] == "succeeded"), "{view}");
    let pdbset = &subs[1];
    let file = pdbset["outputs"]["outputData.XYZOUT"]["file"]
        .as_str()
        .unwrap();
    let r = client()
        .get(server.url(&format!(
            "/jobs/{}/files/{file}",
            pdbset["id"].as_str().unwrap()
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let pdb = r.text().unwrap();
    let cryst1 = pdb.lines().find(|l| l.starts_with("CRYST1")).unwrap();
    assert!(
        cryst1.contains("9.643") && cryst1.contains("101.22"),
        "{cryst1}"
    );
    // A sub-job's stream: its part of the pipeline's, numbered as there.
    let sub = format!("{id}.2");
    let part = events_of(&server, &sub, None);
    assert!(
        !part.is_empty() && part.iter().all(|e| e.data["job_id"] == sub.as_str()),
        "{part:?}"
    );
    let whole: Vec<&Sse> = events
        .iter()
        .filter(|e| e.data["job_id"] == sub.as_str())
        .collect();
    assert_eq!(part.iter().collect::<Vec<_>>(), whole);
    assert_eq!(part.last().unwrap().event, "finished");
    let r = client()
        .get(server.url(&format!("/jobs/{id}.9/events")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);

    // The pipeline's own output is the same file, read through its job.
    let top = &view["outputs"]["outputData.XYZOUT"];
    assert_eq!(
        top["sha256"], pdbset["outputs"]["outputData.XYZOUT"]["sha256"],
        "{view}"
    );
    let r = client()
        .get(server.url(&format!(
            "/jobs/{id}/files/{}",
            top["file"].as_str().unwrap()
        )))
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), pdb);

    // Nothing outside the job directory, and no link out of it.
    for path in ["../kiln.db", "%2e%2e/kiln.db", "inputs/../../kiln.db"] {
        let r = client()
            .get(server.url(&format!("/jobs/{id}/files/{path}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    std::os::unix::fs::symlink(
        "/etc/passwd",
        tmp.path().join(format!("jobs/job_{id}/link")),
    )
    .unwrap();
    let r = client()
        .get(server.url(&format!("/jobs/{id}/files/link")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[test]
fn invalid_parameters_are_reported_with_path_rule_and_code_and_nothing_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let server = Server::start(tmp.path(), &["--registry", reg.to_str().unwrap()]);
    let r = client()
        .post(server.url("/jobs"))
        .multipart(upload_form("refine_scan", json!({"NCYCLES": 0})))
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    let problem = json_of(r);
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{problem}");
    assert_eq!(errors[0]["path"], "controlParameters.NCYCLES", "{problem}");
    assert_eq!(errors[0]["rule"], "min");
    assert_eq!(errors[0]["code"], 101);
    assert!(problem["detail"].as_str().unwrap().contains("(code 101)"));
    // The number it was given is not reused, and no directory is left.
    let listed = json_of(client().get(server.url("/jobs")).send().unwrap());
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 0);
    assert!(!tmp.path().join("jobs/job_1").exists());

    let r = client()
        .post(server.url("/jobs"))
        .header("content-type", "application/json")
        .body("{\"task\": 3}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client()
        .post(server.url("/jobs"))
        .json(&json!({"task": "no_such_task"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(
        json_of(r)["detail"]
            .as_str()
            .unwrap()
            .contains("no_such_task")
    );
    // A server path as an input, without a profile that grants it.
    let r = client()
        .post(server.url("/jobs"))
        .json(&json!({"task": "demo_copycell", "params": {
            "HKLIN": data("5e5z.mtz"), "XYZIN": data("rnase_frag.pdb")}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(json_of(r)["detail"].as_str().unwrap().contains("read_dirs"));
}

#[test]
fn a_retried_submit_with_the_same_idempotency_key_returns_the_first_job() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let server = Server::start(tmp.path(), &["--registry", reg.to_str().unwrap()]);
    let send = || {
        let r = client()
            .post(server.url("/jobs"))
            .header("Idempotency-Key", "submit-7f3a")
            .multipart(upload_form("demo_copycell", json!({})))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        json_of(r)["job_id"].as_str().unwrap().to_string()
    };
    let first = send();
    let second = send();
    assert_eq!(first, second);
    let listed = json_of(client().get(server.url("/jobs")).send().unwrap());
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1, "{listed}");
    let dirs = std::fs::read_dir(tmp.path().join("jobs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("job_"))
        .count();
    assert_eq!(dirs, 1);
}

#[test]
fn a_server_killed_after_a_202_runs_the_job_once_and_a_running_job_ends_interrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = slow_registry(tmp.path(), 2);
    let args = ["--registry", reg.to_str().unwrap()];
    let jobs = tmp.path().join("jobs");

    // Killed right after the 202.
    let server = Server::start(tmp.path(), &args);
    let first = submit(&server, "refmac", json!({}));
    server.kill();
    let server = Server::start(tmp.path(), &args);
    let events = events_of(&server, &first, None);
    assert_whole_stream(&events, &first);
    let view = job(&server, &first);
    assert!(
        ["finished", "failed", "interrupted", "unsatisfactory"]
            .contains(&view["state"].as_str().unwrap()),
        "{view}"
    );
    assert!(
        starts_below(&jobs.join(format!("job_{first}"))) <= 1,
        "run at most once"
    );
    if view["state"] != "interrupted" {
        assert_eq!(
            starts_below(&jobs.join(format!("job_{first}"))),
            1,
            "{view}"
        );
    }

    // Killed while the job's program runs.
    server.kill();
    std::fs::write(&reg, "[programs.refmac5]\npath = \"/bin/sh\"\nargs = [\"-c\", \"echo started >> starts.txt; sleep 60\"]\n").unwrap();
    let server = Server::start(tmp.path(), &args);
    let second = submit(&server, "refmac", json!({}));
    assert!(second.parse::<u64>().unwrap() > first.parse::<u64>().unwrap());
    let dir = jobs.join(format!("job_{second}"));
    wait_for("the program to start", 60, || !programs_in(&dir).is_empty());
    server.kill();
    let server = Server::start(tmp.path(), &args);
    let view = job(&server, &second);
    assert_eq!(view["state"], "interrupted", "{view}");
    assert!(view["reason"].as_str().unwrap().contains("host"), "{view}");
    wait_for("the dead server's program to be killed", 30, || {
        programs_in(&dir).is_empty()
    });
    assert_eq!(starts_below(&dir), 1);
    let events = events_of(&server, &second, None);
    assert_whole_stream(&events, &second);
    assert_eq!(events.last().unwrap().data["status"], "interrupted");

    // Ids are never reused: not after a restart, not after a job and its
    // directory are deleted, not with the database deleted.
    let r = client()
        .delete(server.url(&format!("/jobs/{second}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(!dir.exists());
    server.kill();
    let server = Server::start(tmp.path(), &args);
    let third = submit(&server, "refmac", json!({}));
    assert!(third.parse::<u64>().unwrap() > second.parse::<u64>().unwrap());
    server.kill();
    for f in ["kiln.db", "kiln.db-wal", "kiln.db-shm"] {
        let _ = std::fs::remove_file(jobs.join(f));
    }
    let server = Server::start(tmp.path(), &args);
    let fourth = submit(&server, "refmac", json!({}));
    assert!(fourth.parse::<u64>().unwrap() > third.parse::<u64>().unwrap());
    let r = client()
        .post(server.url(&format!("/jobs/{fourth}/stop")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let events = events_of(&server, &fourth, None);
    assert_eq!(events.last().unwrap().data["status"], "interrupted");
    // A stop after the end is accepted and changes nothing.
    let r = client()
        .post(server.url(&format!("/jobs/{fourth}/stop")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(job(&server, &fourth)["state"], "interrupted");
}

#[test]
fn a_reconnecting_client_gets_every_event_once_in_order_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = slow_registry(tmp.path(), 60);
    let args = ["--registry", reg.to_str().unwrap()];
    let server = Server::start(tmp.path(), &args);
    let id = submit(&server, "refmac", json!({}));
    // Read until the job runs its program, then lose the server.
    let r = client()
        .get(server.url(&format!("/jobs/{id}/events")))
        .send()
        .unwrap();
    let before = read_sse(r, |e| e.event == "state" && e.data["state"] == "running");
    let dir = tmp.path().join(format!("jobs/job_{id}"));
    wait_for("the program to start", 60, || !programs_in(&dir).is_empty());
    server.kill();
    let server = Server::start(tmp.path(), &args);
    let last = before.last().unwrap().id;
    let after = events_of(&server, &id, Some(last));
    let mut all = before.clone();
    all.extend(after.clone());
    assert_whole_stream(&all, &id);
    assert_eq!(all, events_of(&server, &id, None), "the journal's stream");
    // A client that has seen the end is told nothing more, and the
    // stream ends.
    let last_of_all = all.last().unwrap().id;
    assert!(events_of(&server, &id, Some(last_of_all)).is_empty());
    // `?after=` says the same as the header.
    let r = client()
        .get(server.url(&format!("/jobs/{id}/events?after={last}")))
        .send()
        .unwrap();
    assert_eq!(read_sse(r, |_| false), after);
}

#[test]
fn tokens_need_the_right_scope_and_a_profile_limits_what_a_submitter_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let tokens = tmp.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[token]]\nname = \"reader\"\ntoken = \"reader-secret-0123456789\"\nscopes = [\"read\"]\n\n\
         [[token]]\nname = \"bot\"\ntoken = \"submit-secret-0123456789\"\nscopes = [\"read\", \"submit\"]\ngrants = \"copycell-only\"\n",
    )
    .unwrap();
    let grants = tmp.path().join("grants.toml");
    std::fs::write(
        &grants,
        "[profiles.copycell-only]\ntasks = [\"demo_copycell\", \"mtzdump\", \"pdbset\"]\nprograms = [\"mtzdump\", \"pdbset\"]\n",
    )
    .unwrap();
    let server = Server::start(
        tmp.path(),
        &[
            "--registry",
            reg.to_str().unwrap(),
            "--tokens",
            tokens.to_str().unwrap(),
            "--grants",
            grants.to_str().unwrap(),
        ],
    );
    let r = client().get(server.url("/jobs")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = client()
        .get(server.url("/jobs"))
        .bearer_auth("not-a-token-at-all")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(server.url("/jobs"))
        .bearer_auth("reader-secret-0123456789")
        .json(&json!({"task": "demo_copycell"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(json_of(r)["detail"].as_str().unwrap().contains("submit"));
    let r = client()
        .post(server.url("/jobs"))
        .bearer_auth("submit-secret-0123456789")
        .multipart(upload_form("refine_scan", json!({})))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        json_of(r)["detail"]
            .as_str()
            .unwrap()
            .contains("copycell-only")
    );
    let r = client()
        .post(server.url("/jobs"))
        .bearer_auth("submit-secret-0123456789")
        .multipart(upload_form("demo_copycell", json!({})))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = json_of(r)["job_id"].as_str().unwrap().to_string();
    // A submitter cannot pick a wider profile than its token's.
    let r = client()
        .post(server.url("/jobs"))
        .bearer_auth("submit-secret-0123456789")
        .json(&json!({"task": "demo_copycell", "grants": "other"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client()
        .post(server.url(&format!("/jobs/{id}/stop")))
        .bearer_auth("submit-secret-0123456789")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client()
        .get(server.url(&format!("/jobs/{id}")))
        .bearer_auth("reader-secret-0123456789")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Health is open; the document describes the API.
    assert_eq!(
        client().get(server.url("/health")).send().unwrap().status(),
        200
    );
    let doc = json_of(client().get(server.url("/openapi.json")).send().unwrap());
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/jobs/{id}/events"].is_object());
}

#[test]
fn the_service_refuses_to_start_where_it_should() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let reg = reg.to_str().unwrap();
    // Open to the network without tokens.
    let out = common::command_in(tmp.path(), KILN)
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--jobs-dir",
            "jobs",
            "--registry",
            reg,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a tokens file"));
    // A database file that is not one, and another program's database.
    std::fs::create_dir_all(tmp.path().join("jobs")).unwrap();
    let db = tmp.path().join("jobs/kiln.db");
    std::fs::write(
        &db,
        b"this is not a database, it is a text file of some length",
    )
    .unwrap();
    let err = Server::try_start(tmp.path(), &["--registry", reg])
        .err()
        .unwrap();
    assert!(
        err.contains("kiln.db") && err.contains("not an SQLite database"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        b"this is not a database, it is a text file of some length",
        "left as it was"
    );
    // Two services on one database.
    std::fs::remove_file(&db).unwrap();
    let _server = Server::start(tmp.path(), &["--registry", reg]);
    let err = Server::try_start(tmp.path(), &["--registry", reg])
        .err()
        .unwrap();
    assert!(err.contains("used by another process"), "{err}");
}

#[test]
fn queued_jobs_start_once_after_a_restart_and_a_recorded_stop_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = slow_registry(tmp.path(), 60);
    let args = ["--registry", reg.to_str().unwrap(), "--max-jobs", "1"];
    let jobs = tmp.path().join("jobs");
    let server = Server::start(tmp.path(), &args);
    let running = submit(&server, "refmac", json!({}));
    let queued = submit(&server, "refmac", json!({}));
    let stopped = submit(&server, "refmac", json!({}));
    let r = client()
        .post(server.url(&format!("/jobs/{stopped}/stop")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_for("the first job's program", 60, || {
        starts_below(&jobs.join(format!("job_{running}"))) == 1
    });
    assert_eq!(job(&server, &queued)["state"], "queued");
    server.kill();

    let server = Server::start(tmp.path(), &args);
    assert_eq!(job(&server, &running)["state"], "interrupted");
    let view = job(&server, &stopped);
    assert_eq!(view["state"], "interrupted", "{view}");
    assert_eq!(
        starts_below(&jobs.join(format!("job_{stopped}"))),
        0,
        "a stopped job never runs"
    );
    let queued_dir = jobs.join(format!("job_{queued}"));
    wait_for("the queued job to start", 60, || {
        starts_below(&queued_dir) == 1
    });
    let r = client()
        .post(server.url(&format!("/jobs/{queued}/stop")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let events = events_of(&server, &queued, None);
    assert_whole_stream(&events, &queued);
    assert_eq!(events.last().unwrap().data["status"], "interrupted");
    assert_eq!(starts_below(&queued_dir), 1, "started once");
    for id in [&running, &stopped] {
        assert_whole_stream(&events_of(&server, id, None), id);
    }
}

#[test]
fn sigterm_cancels_or_drains_running_jobs_and_records_them() {
    let tmp = tempfile::tempdir().unwrap();
    let slow = slow_registry(tmp.path(), 60);
    let server = Server::start(tmp.path(), &["--registry", slow.to_str().unwrap()]);
    let id = submit(&server, "refmac", json!({}));
    let dir = tmp.path().join(format!("jobs/job_{id}"));
    wait_for("the program", 60, || !programs_in(&dir).is_empty());
    let terminate = |mut server: Server| {
        // SAFETY: a signal to the child this test started.
        unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        let status = server.child.wait().unwrap();
        assert!(status.success(), "{status}");
        start.elapsed()
    };
    let took = terminate(server);
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(programs_in(&dir).is_empty(), "its programs are stopped");

    let fast = registry(tmp.path());
    let server = Server::start(
        tmp.path(),
        &[
            "--registry",
            fast.to_str().unwrap(),
            "--on-shutdown",
            "drain",
        ],
    );
    let view = job(&server, &id);
    assert_eq!(view["state"], "interrupted", "{view}");
    assert!(
        !view["reason"]
            .as_str()
            .unwrap()
            .contains("host running this job ended"),
        "{view}"
    );
    assert_whole_stream(&events_of(&server, &id, None), &id);
    let drained = submit(&server, "demo_copycell", json!({}));
    terminate(server);
    let server = Server::start(tmp.path(), &["--registry", fast.to_str().unwrap()]);
    let view = job(&server, &drained);
    assert_eq!(view["status"], "succeeded", "{view}");
}

#[test]
fn the_dashboard_and_what_it_reads_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry(tmp.path());
    let server = Server::start(tmp.path(), &["--registry", reg.to_str().unwrap()]);

    // The page and its assets, from this origin only.
    let r = client().get(server.url("/")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("connect-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(r.text().unwrap().contains("/ui/app.js"));
    let js = client().get(server.url("/ui/app.js")).send().unwrap();
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let r = client().get(server.url("/ui/../kiln.db")).send().unwrap();
    assert_eq!(r.status(), 404);
    let r = client().get(server.url("/ui/secret.js")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // The submit form's fields, from the task's def.xml.
    let task = json_of(
        client()
            .get(server.url("/tasks/refine_scan"))
            .send()
            .unwrap(),
    );
    let form = task["form"].as_array().unwrap();
    let ncycles = form
        .iter()
        .find(|f| f["path"] == "controlParameters.NCYCLES")
        .unwrap_or_else(|| panic!("{task}"));
    assert_eq!(ncycles["kind"], "int");
    assert_eq!(
        (ncycles["min"].as_f64(), ncycles["max"].as_f64()),
        (Some(1.0), Some(1000.0))
    );
    assert_eq!(ncycles["default"], "10");
    let hklin = form
        .iter()
        .find(|f| f["path"] == "inputData.HKLIN")
        .unwrap();
    assert_eq!(
        (&hklin["kind"], &hklin["required"]),
        (&json!("file"), &json!(true))
    );
    assert_eq!(hklin["label"], "Reflections");

    // The list: progress and start of each job, and where its events go on.
    let id = submit(&server, "demo_copycell", json!({}));
    let events = events_of(&server, &id, None);
    let listed = json_of(client().get(server.url("/jobs")).send().unwrap());
    let item = &listed["jobs"][0];
    assert_eq!(item["id"], id.as_str());
    assert!(item["started_at"].as_f64().unwrap() <= item["ended_at"].as_f64().unwrap());
    assert_eq!(item["progress"]["fraction"].as_f64(), Some(1.0), "{listed}");
    let last = listed["last_event"].as_i64().unwrap();
    assert!(last >= events.len() as i64, "{listed}");
    // The newest event is the one numbered `last_event`.
    let r = client()
        .get(server.url(&format!("/events?after={}", last - 1)))
        .send()
        .unwrap();
    let newest = read_sse(r, |_| true);
    assert_eq!(newest[0].id, last);
    assert_eq!(newest[0].event, "finished");
}
