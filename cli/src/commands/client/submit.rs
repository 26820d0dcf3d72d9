//! `kiln submit TASK`: POST a job to the server; print its id (or the
//! server's answer with `--json`), and with `--watch` follow it to its end
//! as `kiln watch` does.
//!
//! With `--file NAME=PATH` the request is multipart/form-data: a part
//! `request` with the JSON body and one part per file, named by the
//! parameter, with the file's name. Every invocation sends a fresh
//! `Idempotency-Key`, and a request that got no answer at all is sent once
//! more with the same key, so it makes one job at most.

use super::super::ProgressView;
use super::super::run::parse_params;
use super::watch::follow_and_report;
use super::{
    Client, ClientError, Outcome, ServerArgs, display_url, job_id, read_json, unreachable,
};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, Url};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct SubmitArgs {
    /// The task's name, as the server's catalog knows it (e.g.
    /// demo_copycell).
    pub task: String,
    /// A parameter: a dotted path (inputData.HKLIN) or a bare item name.
    /// A path is one on the server's machine.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// A file of this machine to send as parameter NAME (the server keeps
    /// it with the job).
    #[arg(long = "file", value_name = "NAME=PATH")]
    pub files: Vec<String>,
    /// A grants profile the server knows; default: what the task requests.
    #[arg(long, value_name = "PROFILE")]
    pub grants: Option<String>,
    /// Larger runs first when jobs wait.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub priority: Option<i64>,
    /// Follow the job to its end, as `kiln watch`, and exit with its status.
    #[arg(long)]
    pub watch: bool,
    /// Print the server's answer (JSON, one line) instead of the id; with
    /// --watch, the job's final JSON document on a second line.
    #[arg(long)]
    pub json: bool,
    /// How --watch shows the job (on stderr).
    #[arg(long, value_enum, default_value_t = ProgressView::Auto)]
    pub progress: ProgressView,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn submit(args: SubmitArgs) -> anyhow::Result<u8> {
    super::finish(send(args).await)
}

/// The checked request: its JSON body and the files to send with it.
#[derive(Debug)]
pub struct Request {
    pub body: serde_json::Value,
    pub files: Vec<(String, PathBuf)>,
}

/// The request the command line describes, or why it is wrong.
pub fn request(args: &SubmitArgs) -> Result<Request, ClientError> {
    if args.task.is_empty() {
        return Err(ClientError::Usage("the task's name is empty".into()));
    }
    let params = parse_params(&args.params).map_err(|e| ClientError::Usage(e.to_string()))?;
    let files = args
        .files
        .iter()
        .map(|f| match f.split_once('=') {
            Some((name, path)) if !name.is_empty() && !path.is_empty() => {
                Ok((name.to_string(), PathBuf::from(path)))
            }
            _ => Err(ClientError::Usage(format!(
                "--file {f:?}: expected NAME=PATH, e.g. --file HKLIN=data.mtz"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = BTreeSet::new();
    for name in params
        .iter()
        .map(|p| &p.0)
        .chain(files.iter().map(|f| &f.0))
    {
        if name == "request" && files.iter().any(|f| &f.0 == name) {
            return Err(ClientError::Usage(
                "--file request=...: `request` is the name of the request's own part".into(),
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(ClientError::Usage(format!(
                "parameter {name} is given more than once (by --param or --file)"
            )));
        }
    }
    for (name, path) in &files {
        let meta = std::fs::metadata(path)
            .map_err(|e| ClientError::Usage(format!("--file {name}={}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(ClientError::Usage(format!(
                "--file {name}={}: not a regular file",
                path.display()
            )));
        }
        if path.file_name().is_none() {
            return Err(ClientError::Usage(format!(
                "--file {name}={}: names no file",
                path.display()
            )));
        }
    }
    let mut body = serde_json::json!({
        "task": args.task,
        "params": params
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::from(v)))
            .collect::<serde_json::Map<_, _>>(),
    });
    if let Some(g) = &args.grants {
        body["grants"] = g.clone().into();
    }
    if let Some(p) = args.priority {
        body["priority"] = p.into();
    }
    Ok(Request { body, files })
}

impl Request {
    /// The multipart form (built anew for each try: its files are read as
    /// it is sent).
    pub async fn form(&self) -> Result<Form, ClientError> {
        let json = self.body.to_string();
        let mut form = Form::new().part(
            "request",
            Part::text(json)
                .mime_str("application/json")
                .map_err(|e| ClientError::Server(e.to_string()))?,
        );
        for (name, path) in &self.files {
            let file_name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let part = Part::file(path)
                .await
                .map_err(|e| ClientError::Usage(format!("--file {name}={}: {e}", path.display())))?
                .file_name(file_name)
                .mime_str("application/octet-stream")
                .map_err(|e| ClientError::Server(e.to_string()))?;
            form = form.part(name.clone(), part);
        }
        Ok(form)
    }
}

/// A new idempotency key: 128 random bits, in hex.
pub fn idempotency_key() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        // No /dev/urandom: the time and the process are unique enough for
        // telling one invocation's retry from another invocation.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = (t ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn send(args: SubmitArgs) -> Outcome {
    let request = request(&args)?;
    let client = Client::new(&args.server)?;
    let url = client.endpoint(&["jobs"]);
    let key = idempotency_key();
    let answer = post(&client, &url, &request, &key).await?;
    let id = job_id(answer.get("job_id")).ok_or_else(|| {
        ClientError::Server(format!(
            "{} accepted the job but gave no job_id: {}",
            display_url(&url),
            super::cut(&answer.to_string(), 200)
        ))
    })?;
    super::check_id(&id).map_err(|_| {
        ClientError::Server(format!(
            "{} gave the job an id this kiln cannot use: {id:?}",
            display_url(&url)
        ))
    })?;
    if args.json {
        println!("{answer}");
    } else {
        println!("{id}");
    }
    if !args.watch {
        return Ok(0);
    }
    follow_and_report(&client, &id, args.progress, args.json).await
}

/// POST the job; once more, with the same key, when the first try got no
/// answer.
async fn post(
    client: &Client,
    url: &Url,
    request: &Request,
    key: &str,
) -> Result<serde_json::Value, ClientError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let rb = client
            .request(Method::POST, url)
            .header("Idempotency-Key", key);
        let rb = if request.files.is_empty() {
            rb.json(&request.body)
        } else {
            rb.multipart(request.form().await?)
        };
        match rb.send().await {
            Ok(response) => {
                let response = super::check(response, url).await?;
                return read_json(response, url).await;
            }
            Err(e) if tries == 1 && (e.is_connect() || e.is_timeout() || e.is_request()) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(unreachable(url, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        submit: SubmitArgs,
    }

    fn args(a: &[&str]) -> SubmitArgs {
        Cli::try_parse_from(std::iter::once("submit").chain(a.iter().copied()))
            .unwrap()
            .submit
    }

    #[test]
    fn the_body_has_the_task_params_grants_and_priority() {
        let r = request(&args(&[
            "demo_copycell",
            "--param",
            "HKLIN=/d/a=b.mtz",
            "--param",
            "NCYC=5",
            "--grants",
            "lab",
            "--priority",
            "-3",
        ]))
        .unwrap();
        assert_eq!(
            r.body,
            serde_json::json!({"task": "demo_copycell",
                "params": {"HKLIN": "/d/a=b.mtz", "NCYC": "5"},
                "grants": "lab", "priority": -3})
        );
        assert!(r.files.is_empty());
        let r = request(&args(&["t"])).unwrap();
        assert_eq!(r.body, serde_json::json!({"task": "t", "params": {}}));
    }

    #[test]
    fn bad_params_and_files_are_usage_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("x.pdb");
        std::fs::write(&f, "x").unwrap();
        let file = format!("XYZIN={}", f.display());
        let dir = format!("XYZIN={}", tmp.path().display());
        let missing = format!("XYZIN={}", tmp.path().join("nope").display());
        for bad in [
            vec!["t", "--param", "HKLIN"],
            vec!["t", "--file", "XYZIN"],
            vec!["t", "--file", "=x"],
            vec!["t", "--file", &missing],
            vec!["t", "--file", &dir],
            vec!["t", "--file", &file, "--param", "XYZIN=y"],
            vec!["t", "--file", &file, "--file", &file],
            vec!["t", "--param", "A=1", "--param", "A=2"],
        ] {
            let e = request(&args(&bad)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
        let r = request(&args(&["t", "--file", &file])).unwrap();
        assert_eq!(r.files, vec![("XYZIN".to_string(), f)]);
    }

    #[test]
    fn each_key_is_new() {
        let (a, b) = (idempotency_key(), idempotency_key());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
