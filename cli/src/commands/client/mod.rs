//! The client of a running `kiln serve`: `kiln submit`, `status`, `watch`,
//! `stop` and `jobs`, over plain HTTP.
//!
//! What they share lives here: `--server` and the token, building
//! endpoint URLs, sending a request, and the errors a person sees. A
//! request the server refuses answers `application/problem+json`; it is
//! printed as `kiln: <title>: <detail>` (and a line per field error) and
//! exits 2 for a 4xx answer, 1 for a 5xx one. A server that cannot be
//! reached, or that answers with something this client cannot read, exits
//! 1. Nothing the server sends is trusted to be well formed or printable.

mod jobs;
mod sse;
mod status;
mod stop;
mod submit;
mod watch;

pub use jobs::{JobsArgs, jobs};
pub use status::{StatusArgs, status};
pub use stop::{StopArgs, stop};
pub use submit::{SubmitArgs, submit};
pub use watch::{WatchArgs, watch};

use super::EXIT_USAGE;
use super::tree_view::printable;
use kiln_host::{FinishStatus, JobState};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use std::fmt;
use std::time::Duration;

/// Where `kiln serve` listens when neither `--server` nor `KILN_SERVER`
/// says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7878";

/// The largest answer read into memory (a job document, a page of jobs, a
/// problem document): a server sending more is misbehaving.
const MAX_BODY: usize = 16 << 20;

/// A connection that sends nothing at all (not even a keep-alive comment)
/// for this long is taken for lost.
const READ_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// The `kiln serve` to talk to [default: $KILN_SERVER, else
    /// http://127.0.0.1:7878]. Plain HTTP only, no TLS: a server on this
    /// machine, or one reached through a proxy or a tunnel that does the
    /// TLS. The token, if any, is read from $KILN_TOKEN.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// Why a client command did not do what it was asked.
#[derive(Debug)]
pub enum ClientError {
    /// The command line (or a file it names) is wrong: exit 2.
    Usage(String),
    /// The server answered with an error status: 2 for 4xx, 1 otherwise.
    Http {
        status: u16,
        title: String,
        detail: Option<String>,
        errors: Vec<FieldError>,
    },
    /// The server could not be reached, or the connection was lost: exit 1.
    Unreachable { url: String, cause: String },
    /// The server answered, but not with anything this client can use:
    /// exit 1.
    Server(String),
}

/// One entry of a problem document's `errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
    pub code: Option<String>,
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => EXIT_USAGE,
            ClientError::Http { status, .. } if (400..500).contains(status) => EXIT_USAGE,
            ClientError::Http { .. } | ClientError::Unreachable { .. } | ClientError::Server(_) => {
                1
            }
        }
    }

    /// The lines to print on stderr, control characters made harmless.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ClientError::Usage(m) | ClientError::Server(m) => {
                vec![format!("kiln: {}", printable(m))]
            }
            ClientError::Http {
                title,
                detail,
                errors,
                ..
            } => {
                let errors: Vec<String> = errors
                    .iter()
                    .map(|e| {
                        let mut line =
                            format!("  {}: {}", printable(&e.path), printable(&e.message));
                        if let Some(code) = &e.code {
                            line.push_str(&format!(" (code {})", printable(code)));
                        }
                        line
                    })
                    .collect();
                // The detail's own lines are kept; those that only repeat
                // a field error (a server may list them in both) are not.
                let detail: Vec<String> = detail
                    .as_deref()
                    .unwrap_or("")
                    .split('\n')
                    .map(printable)
                    .filter(|l| !errors.iter().any(|e| e.trim() == l.trim()))
                    .collect();
                let detail = detail.join("\n");
                let mut lines = vec![match detail.trim() {
                    "" => format!("kiln: {}", printable(title)),
                    _ => format!("kiln: {}: {}", printable(title), detail.trim_end()),
                }];
                lines.extend(errors);
                lines
            }
            ClientError::Unreachable { url, cause } => vec![format!(
                "kiln: cannot reach the Kiln server at {} ({}); `kiln serve` must be \
                 running there (see --server and KILN_SERVER)",
                printable(url),
                printable(cause)
            )],
        }
    }

    /// Print the lines and give the exit status.
    pub fn report(&self) -> u8 {
        for line in self.lines() {
            eprintln!("{line}");
        }
        self.exit_code()
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

/// What a client command returns: its exit status, or the error to report.
pub type Outcome = Result<u8, ClientError>;

/// Print the error of a client command, if any; the exit status.
pub fn finish(outcome: Outcome) -> anyhow::Result<u8> {
    Ok(outcome.unwrap_or_else(|e| e.report()))
}

/// The server to talk to, and how.
pub struct Client {
    base: Url,
    http: reqwest::Client,
    token: Option<HeaderValue>,
}

impl Client {
    pub fn new(args: &ServerArgs) -> Result<Client, ClientError> {
        let from_env = std::env::var("KILN_SERVER").ok().filter(|s| !s.is_empty());
        let server = args
            .server
            .clone()
            .or(from_env)
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        let token = match std::env::var("KILN_TOKEN") {
            Ok(t) if !t.is_empty() => Some(t),
            Ok(_) => None,
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(ClientError::Usage(
                    "KILN_TOKEN is not valid text; it is not sent".into(),
                ));
            }
        };
        Client::with(&server, token.as_deref())
    }

    /// A client of `server` sending `token`.
    pub fn with(server: &str, token: Option<&str>) -> Result<Client, ClientError> {
        let base = parse_server(server)?;
        let token = token
            .map(|t| {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                    ClientError::Usage(
                        "KILN_TOKEN holds characters that cannot be sent in a header".into(),
                    )
                })?;
                v.set_sensitive(true);
                Ok(v)
            })
            .transpose()?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")));
        // A proxy set for the outside world must not see the loopback.
        if is_loopback(&base) {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Server(format!("cannot set up an HTTP client: {e}")))?;
        Ok(Client { base, http, token })
    }

    /// The server's URL with these path segments appended, each one
    /// escaped (a job id is one segment, whatever it holds).
    pub fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request to `url` with the token.
    pub fn request(&self, method: Method, url: &Url) -> RequestBuilder {
        let rb = self.http.request(method, url.clone());
        match &self.token {
            Some(t) => rb.header(AUTHORIZATION, t.clone()),
            None => rb,
        }
    }

    /// Send a request; an answer other than 2xx is the error it says.
    pub async fn send(&self, rb: RequestBuilder, url: &Url) -> Result<Response, ClientError> {
        let response = rb.send().await.map_err(|e| unreachable(url, &e))?;
        check(response, url).await
    }

    /// GET a JSON document.
    pub async fn get_json(&self, url: &Url) -> Result<serde_json::Value, ClientError> {
        let response = self.send(self.request(Method::GET, url), url).await?;
        read_json(response, url).await
    }
}

/// `--server` as a base URL for the API.
fn parse_server(server: &str) -> Result<Url, ClientError> {
    let url = Url::parse(server).map_err(|e| {
        ClientError::Usage(format!(
            "--server {server:?} is not a URL ({e}); e.g. --server {DEFAULT_SERVER}"
        ))
    })?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(ClientError::Usage(format!(
                "--server {}: this kiln speaks plain HTTP only; reach an HTTPS server \
                 through a local proxy or tunnel that does the TLS",
                display_url(&url)
            )));
        }
        other => {
            return Err(ClientError::Usage(format!(
                "--server {}: `{other}` URLs are not supported; give an http:// URL",
                display_url(&url)
            )));
        }
    }
    if url.host().is_none() || url.cannot_be_a_base() {
        return Err(ClientError::Usage(format!(
            "--server {server:?} names no host; e.g. --server {DEFAULT_SERVER}"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ClientError::Usage(format!(
            "--server {}: give the server's address without a query or fragment",
            display_url(&url)
        )));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    url.host_str().is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// A URL as printed: without a password, should one be in it.
pub fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(None);
    }
    shown.to_string()
}

/// A transport error (no answer) as the error a person sees.
pub fn unreachable(url: &Url, e: &reqwest::Error) -> ClientError {
    ClientError::Unreachable {
        url: display_url(url),
        cause: cause(e),
    }
}

/// The innermost cause of an error: "Connection refused (os error 111)"
/// rather than "error sending request for url (...)".
pub fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    if e.downcast_ref::<reqwest::Error>()
        .is_some_and(|e| e.is_timeout())
    {
        return "timed out".into();
    }
    let mut inner: &dyn std::error::Error = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}

/// A 2xx answer as it is; any other as its error.
async fn check(response: Response, url: &Url) -> Result<Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let problem_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let body = read_body(response, url, 1 << 20).await.unwrap_or_default();
    Err(http_error(status, problem_type, &body, url))
}

/// The error for an answer with `status`: from its problem document when
/// it is one, else from the status and the start of the body.
pub fn http_error(status: StatusCode, json: bool, body: &[u8], url: &Url) -> ClientError {
    let reason = status.canonical_reason().unwrap_or("error");
    let problem = json
        .then(|| serde_json::from_slice::<serde_json::Value>(body).ok())
        .flatten()
        .filter(|v| v.is_object());
    match problem {
        Some(p) => {
            let text = |key: &str| p.get(key).and_then(scalar_text);
            let title = text("title").unwrap_or_else(|| format!("{} {reason}", status.as_u16()));
            let detail = text("detail");
            let errors = p
                .get("errors")
                .and_then(|e| e.as_array())
                .map(|errors| {
                    errors
                        .iter()
                        .map(|e| FieldError {
                            path: e.get("path").and_then(scalar_text).unwrap_or_default(),
                            message: e
                                .get("message")
                                .and_then(scalar_text)
                                .unwrap_or_else(|| e.to_string()),
                            code: e.get("code").and_then(scalar_text),
                        })
                        .collect()
                })
                .unwrap_or_default();
            ClientError::Http {
                status: status.as_u16(),
                title,
                detail,
                errors,
            }
        }
        None => {
            let text = String::from_utf8_lossy(body);
            let first = text.lines().map(str::trim).find(|l| !l.is_empty());
            ClientError::Http {
                status: status.as_u16(),
                title: format!("{} {reason}", status.as_u16()),
                detail: Some(match first {
                    Some(line) => format!("{} answered: {}", display_url(url), cut(line, 200)),
                    None => format!("{} answered with no explanation", display_url(url)),
                }),
                errors: Vec::new(),
            }
        }
    }
}

/// A string, number or boolean as text; `None` for null, arrays, objects.
fn scalar_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// At most `n` characters of `text`, with "..." when cut.
pub fn cut(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// The whole body, refusing more than `cap` bytes.
async fn read_body(mut response: Response, url: &Url, cap: usize) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(url, &e))? {
        if body.len() + chunk.len() > cap {
            return Err(ClientError::Server(format!(
                "the answer from {} is larger than {} MiB; is that a Kiln server?",
                display_url(url),
                cap >> 20
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body as a JSON document.
pub async fn read_json(response: Response, url: &Url) -> Result<serde_json::Value, ClientError> {
    let body = read_body(response, url, MAX_BODY).await?;
    serde_json::from_slice(&body).map_err(|e| {
        ClientError::Server(format!(
            "the answer from {} is not JSON ({e}); is that a Kiln server?",
            display_url(url)
        ))
    })
}

/// A document of the API as the type this client reads it into.
pub fn decode<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    url: &Url,
) -> Result<T, ClientError> {
    serde_json::from_value(value).map_err(|e| {
        ClientError::Server(format!(
            "the answer from {} is not what this kiln expects ({e}); \
             are the server and this client the same version?",
            display_url(url)
        ))
    })
}

/// A job id as the server sends it: a string, or a number.
pub fn job_id(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A job id as given on the command line.
pub fn check_id(id: &str) -> Result<(), ClientError> {
    if id.is_empty() || id.chars().any(char::is_control) {
        return Err(ClientError::Usage(format!(
            "{id:?} is not a job id (e.g. 12, or 12.1 for a sub-job)"
        )));
    }
    Ok(())
}

pub fn finish_status(s: &str) -> Option<FinishStatus> {
    Some(match s {
        "succeeded" => FinishStatus::Succeeded,
        "failed" => FinishStatus::Failed,
        "unsatisfactory" => FinishStatus::Unsatisfactory,
        "interrupted" => FinishStatus::Interrupted,
        _ => return None,
    })
}

pub fn job_state(s: &str) -> Option<JobState> {
    Some(match s {
        "pending" => JobState::Pending,
        "queued" => JobState::Queued,
        "running" => JobState::Running,
        "finished" => JobState::Finished,
        "failed" => JobState::Failed,
        "interrupted" => JobState::Interrupted,
        "unsatisfactory" => JobState::Unsatisfactory,
        _ => return None,
    })
}

/// Unix seconds as `2025-03-04 05:06:07 UTC`.
pub fn utc(t: f64) -> String {
    if !t.is_finite() || !(0.0..253_402_300_800.0).contains(&t) {
        return "?".into();
    }
    let secs = t as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds as `1.234 s`, `2m05s`, `3h07m`.
pub fn duration(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "-".into();
    }
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s as u64) % 60)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, (s as u64) % 3600 / 60)
    }
}

/// Now, in unix seconds.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://127.0.0.1:7878/jobs").unwrap()
    }

    #[test]
    fn a_problem_document_is_printed_as_title_detail_and_field_errors() {
        let body = br#"{"type": "about:blank", "title": "Invalid parameters",
            "status": 422, "detail": "2 parameters are wrong",
            "errors": [{"path": "inputData.HKLIN", "message": "no such file", "code": 201},
                       {"path": "controlParameters.NCYC", "message": "not an integer\u001b[2J", "code": "E7"},
                       {"message": "no path"}]}"#;
        let e = http_error(StatusCode::UNPROCESSABLE_ENTITY, true, body, &url());
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.lines(),
            [
                "kiln: Invalid parameters: 2 parameters are wrong",
                "  inputData.HKLIN: no such file (code 201)",
                "  controlParameters.NCYC: not an integer [2J (code E7)",
                "  : no path",
            ]
        );
    }

    #[test]
    fn a_5xx_answer_exits_1_and_one_that_is_no_problem_document_says_what_came() {
        let e = http_error(
            StatusCode::BAD_GATEWAY,
            false,
            b"\n<html>bad gateway</html>\n",
            &url(),
        );
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.lines(),
            [
                "kiln: 502 Bad Gateway: http://127.0.0.1:7878/jobs answered: <html>bad gateway</html>"
            ]
        );
        // JSON that is not an object, and a problem without a title.
        let e = http_error(StatusCode::NOT_FOUND, true, b"[1]", &url());
        assert_eq!(e.exit_code(), 2);
        assert!(e.lines()[0].starts_with("kiln: 404 Not Found: "), "{e}");
        let e = http_error(
            StatusCode::NOT_FOUND,
            true,
            br#"{"detail": "no job 9"}"#,
            &url(),
        );
        assert_eq!(e.lines(), ["kiln: 404 Not Found: no job 9"]);
        let e = http_error(StatusCode::CONFLICT, true, br#"{"title": "Busy"}"#, &url());
        assert_eq!(e.lines(), ["kiln: Busy"]);
    }

    #[test]
    fn detail_lines_that_repeat_a_field_error_are_printed_once() {
        let body = br#"{"title": "Unprocessable Entity", "status": 422,
            "detail": "the parameters are not valid; nothing was run:\n  inputData.HKLIN: no file (code 101)\nsee the task's def.xml",
            "errors": [{"path": "inputData.HKLIN", "rule": "exists", "code": 101, "message": "no file"}]}"#;
        let e = http_error(StatusCode::UNPROCESSABLE_ENTITY, true, body, &url());
        assert_eq!(
            e.lines(),
            [
                "kiln: Unprocessable Entity: the parameters are not valid; nothing was run:\n\
                 see the task's def.xml",
                "  inputData.HKLIN: no file (code 101)",
            ]
        );
    }

    #[test]
    fn an_unreachable_server_is_named_with_the_advice_to_start_it() {
        let e = ClientError::Unreachable {
            url: "http://127.0.0.1:9/jobs".into(),
            cause: "Connection refused (os error 111)".into(),
        };
        assert_eq!(e.exit_code(), 1);
        let line = &e.lines()[0];
        assert!(line.contains("http://127.0.0.1:9/jobs"), "{line}");
        assert!(line.contains("Connection refused"), "{line}");
        assert!(line.contains("`kiln serve` must be running"), "{line}");
    }

    #[test]
    fn server_urls_are_http_and_endpoints_escape_each_segment() {
        let c = Client::with("http://127.0.0.1:7878", None).unwrap();
        assert_eq!(
            c.endpoint(&["jobs", "12.1", "events"]).as_str(),
            "http://127.0.0.1:7878/jobs/12.1/events"
        );
        assert_eq!(
            c.endpoint(&["jobs", "../x?y"]).as_str(),
            "http://127.0.0.1:7878/jobs/..%2Fx%3Fy"
        );
        let c = Client::with("http://example.org:80/kiln/", None).unwrap();
        assert_eq!(
            c.endpoint(&["jobs"]).as_str(),
            "http://example.org/kiln/jobs"
        );
        for bad in [
            "https://h/",
            "ftp://h/",
            "127.0.0.1:7878",
            "nonsense",
            "http://h/?a=1",
        ] {
            let e = Client::with(bad, None)
                .err()
                .unwrap_or_else(|| panic!("{bad}"));
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
        assert!(Client::with("http://h/", Some("bad\ntoken")).is_err());
        let u = Url::parse("http://me:secret@h:1/").unwrap();
        assert_eq!(display_url(&u), "http://me@h:1/");
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400.5), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_709_251_199.0), "2024-02-29 23:59:59 UTC");
        assert_eq!(utc(f64::NAN), "?");
        assert_eq!(utc(-1.0), "?");
        assert_eq!(duration(1.25), "1.2 s");
        assert_eq!(duration(125.0), "2m05s");
        assert_eq!(duration(3.0 * 3600.0 + 420.0), "3h07m");
    }
}
