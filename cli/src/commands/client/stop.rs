//! `kiln stop ID`: ask the server to stop a job (and its sub-jobs).

use super::super::tree_view::printable;
use super::{Client, Outcome, ServerArgs, check_id, read_json};
use reqwest::Method;

#[derive(clap::Args, Clone, Debug)]
pub struct StopArgs {
    /// The job's id.
    pub id: String,
    /// Print the server's JSON answer.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn stop(args: StopArgs) -> anyhow::Result<u8> {
    super::finish(request_stop(args).await)
}

async fn request_stop(args: StopArgs) -> Outcome {
    check_id(&args.id)?;
    let client = Client::new(&args.server)?;
    let url = client.endpoint(&["jobs", &args.id, "stop"]);
    let response = client
        .send(client.request(Method::POST, &url), &url)
        .await?;
    let answer = read_json(response, &url).await?;
    if args.json {
        println!("{answer}");
        return Ok(0);
    }
    let state = answer.get("state").and_then(|s| s.as_str());
    match state {
        Some(state) => println!(
            "job {}: stop requested (state: {})",
            printable(&args.id),
            printable(state)
        ),
        None => println!("job {}: stop requested", printable(&args.id)),
    }
    Ok(0)
}
