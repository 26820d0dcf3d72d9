//! The job service under load on this machine, in one run: `kiln serve`
//! (the library, in this process, on a loopback port, its database synced
//! as in production) against HTTP clients on the same runtime.
//!
//! - Submit throughput: N JSON submits of the probe task from C clients at
//!   once; each `202` comes after its submission is committed (synced).
//! - Status latency: `GET /jobs/{id}` of random submitted jobs from a
//!   bounded number of clients, p50 and p99.
//! - SSE fan-out: a job reporting progress 100 times a second, run alone
//!   and with 1,000 clients following its event stream from before it
//!   starts; the ratio of its run times, and how many clients saw every
//!   event once and in order. The same for a burst of progress reports as
//!   fast as a plugin can make them, where clients that fall behind are
//!   dropped and catch up from the journal by reconnecting.

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct ServiceBench {
    pub submits: usize,
    pub submit_clients: usize,
    pub submits_per_s: f64,
    pub submit_p50_ms: f64,
    pub submit_p99_ms: f64,
    pub status_requests: usize,
    pub status_clients: usize,
    pub status_p50_ms: f64,
    pub status_p99_ms: f64,
    pub fanout_subscribers: usize,
    pub paced: FanOut,
    pub burst: FanOut,
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let i = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[i]
}

struct Running {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), kiln_serve::ServeError>>,
}

async fn start(probe: &Path, dir: &Path) -> Result<Running> {
    let config = kiln_serve::ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        jobs_dir: dir.join("jobs"),
        db: None,
        tokens: None,
        grants: None,
        registry: kiln_host::Registry::default(),
        plugins: vec![probe.to_path_buf()],
        // One job at a time: the submit benchmark measures accepting and
        // committing, not running, and the fan-out job runs alone.
        max_running_jobs: 1,
        max_processes: 4,
        require_confinement: false,
        shutdown: kiln_serve::ShutdownMode::Cancel,
        pool_instances: 1100,
    };
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(kiln_serve::serve(
        config,
        move |addr| {
            let _ = addr_tx.send(addr);
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let addr = match addr_rx.await {
        Ok(a) => a,
        Err(_) => bail!("the service did not start: {:?}", done.await),
    };
    Ok(Running {
        url: format!("http://{addr}"),
        stop: Some(stop),
        done,
    })
}

async fn submit(client: &reqwest::Client, url: &str, mode: &str, priority: i32) -> Result<String> {
    let r = client
        .post(format!("{url}/jobs"))
        .json(&serde_json::json!({"task": "probe", "params": {"MODE": mode}, "priority": priority}))
        .send()
        .await?;
    ensure!(
        r.status() == 202,
        "submit answered {}: {}",
        r.status(),
        r.text().await?
    );
    let v: serde_json::Value = r.json().await?;
    Ok(v["job_id"].as_str().context("no job_id")?.to_string())
}

async fn job(client: &reqwest::Client, url: &str, id: &str) -> Result<serde_json::Value> {
    Ok(client
        .get(format!("{url}/jobs/{id}"))
        .send()
        .await?
        .json()
        .await?)
}

/// Wait for job `id` to end; its run time from its record.
async fn run_time(client: &reqwest::Client, url: &str, id: &str) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let v = job(client, url, id).await?;
        if v["ended_at"].is_number() {
            ensure!(v["status"] == "succeeded", "job {id}: {v}");
            return Ok(v["ended_at"].as_f64().unwrap() - v["started_at"].as_f64().unwrap_or(0.0));
        }
        ensure!(Instant::now() < deadline, "job {id} did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Follow job `id`'s events to its `finished`, reconnecting with
/// `Last-Event-ID` whenever the service drops this client for falling
/// behind; the events received (each once, in order) and the reconnections.
async fn follow(client: reqwest::Client, url: String, id: String) -> Option<(usize, usize)> {
    let mut last: i64 = 0;
    let mut events = 0;
    for reconnects in 0..1000 {
        let r = client
            .get(format!("{url}/jobs/{id}/events"))
            .header("Last-Event-ID", last.to_string())
            .send()
            .await
            .ok()?;
        let mut stream = r.bytes_stream();
        let mut tail = Vec::new();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            tail.extend_from_slice(&chunk);
            while let Some(i) = tail.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = tail.drain(..i + 2).collect();
                let text = String::from_utf8_lossy(&block);
                let Some(seq) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("id: "))
                    .and_then(|s| s.parse::<i64>().ok())
                else {
                    continue;
                };
                if seq != last + 1 {
                    return None;
                }
                last = seq;
                events += 1;
                if text.contains("event: finished") {
                    return Some((events, reconnects));
                }
            }
        }
    }
    None
}

pub struct FanOut {
    pub alone_s: f64,
    pub with_s: f64,
    pub events: usize,
    /// Followers that received every event, each once, in order.
    pub complete: usize,
    /// Times followers were dropped and reconnected.
    pub reconnects: usize,
}

/// How many events job `id` has, read whole from the journal.
async fn events_in(client: &reqwest::Client, url: &str, id: &str) -> Result<usize> {
    let text = client
        .get(format!("{url}/jobs/{id}/events"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text.lines().filter(|l| l.starts_with("id: ")).count())
}

/// Run job `mode` alone, then with `subscribers` clients following it
/// from before it starts; its run times, and the followers' outcomes.
async fn fan_out(
    client: &reqwest::Client,
    url: &str,
    mode: &str,
    subscribers: usize,
) -> Result<FanOut> {
    let alone = submit(client, url, mode, 0).await?;
    let alone_s = run_time(client, url, &alone).await?;
    let blocker = submit(client, url, "sleep 600000", 100).await?;
    let followed = submit(client, url, mode, 0).await?;
    let mut followers = Vec::new();
    for _ in 0..subscribers {
        // A client each, as a thousand browsers would be.
        let c = reqwest::Client::builder().build()?;
        followers.push(tokio::spawn(follow(c, url.to_string(), followed.clone())));
    }
    // Every follower connected before the job starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    client
        .post(format!("{url}/jobs/{blocker}/stop"))
        .send()
        .await?;
    let with_s = run_time(client, url, &followed).await?;
    let events = events_in(client, url, &followed).await?;
    let (mut complete, mut reconnects) = (0, 0);
    for f in followers {
        if let Some((n, r)) = f.await? {
            if n == events {
                complete += 1;
            }
            reconnects += r;
        }
    }
    Ok(FanOut {
        alone_s,
        with_s,
        events,
        complete,
        reconnects,
    })
}

pub async fn measure(probe: &Path, scratch: &Path, quick: bool) -> Result<ServiceBench> {
    let dir = scratch.join("service");
    std::fs::create_dir_all(&dir)?;
    let server = start(probe, &dir).await?;
    let url = server.url.clone();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2048)
        .timeout(Duration::from_secs(600))
        .build()?;
    // Warm: the probe compiled and described once.
    let first = submit(&client, &url, "ok", 0).await?;
    run_time(&client, &url, &first).await?;

    // A job that holds the one running slot, so that what is submitted
    // next waits in the queue.
    let blocker = submit(&client, &url, "sleep 600000", 100).await?;

    let submits = if quick { 300 } else { 3000 };
    let submit_clients = 32;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..submit_clients {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < submits {
                let t = Instant::now();
                let id = submit(&client, &url, "ok", 0).await?;
                mine.push((id, t.elapsed().as_secs_f64() * 1e3));
            }
            Ok::<_, anyhow::Error>(mine)
        }));
    }
    let mut ids = Vec::new();
    let mut submit_ms = Vec::new();
    for t in tasks {
        for (id, ms) in t.await?? {
            ids.push(id);
            submit_ms.push(ms);
        }
    }
    let submit_elapsed = started.elapsed().as_secs_f64();

    let status_requests = if quick { 1000 } else { 20_000 };
    let status_clients = 8;
    let ids = Arc::new(ids);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for k in 0..status_clients {
        let (client, url, next, ids) = (client.clone(), url.clone(), next.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut i = k * 7919;
            while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < status_requests {
                i = (i * 31 + 17) % ids.len();
                let t = Instant::now();
                let r = client.get(format!("{url}/jobs/{}", ids[i])).send().await?;
                ensure!(r.status() == 200, "status answered {}", r.status());
                r.bytes().await?;
                mine.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<_, anyhow::Error>(mine)
        }));
    }
    let mut status_ms = Vec::new();
    for t in tasks {
        status_ms.extend(t.await??);
    }

    // The queued jobs run out (each succeeds at once) once the blocker
    // is stopped.
    client
        .post(format!("{url}/jobs/{blocker}/stop"))
        .send()
        .await?;
    run_time(&client, &url, ids.last().unwrap()).await?;

    let fanout_subscribers = 1000;
    // A job reporting progress 100 times a second for two seconds, and a
    // burst of progress reports as fast as the plugin can make them.
    let paced = fan_out(&client, &url, "ticks 200 10", fanout_subscribers).await?;
    let burst_events = if quick { 2000 } else { 20_000 };
    let burst = fan_out(
        &client,
        &url,
        &format!("signals {burst_events}"),
        fanout_subscribers,
    )
    .await?;

    if let Some(stop) = server.stop {
        let _ = stop.send(());
    }
    let _ = server.done.await;
    Ok(ServiceBench {
        submits,
        submit_clients,
        submits_per_s: submits as f64 / submit_elapsed,
        submit_p50_ms: percentile(&mut submit_ms, 0.5),
        submit_p99_ms: percentile(&mut submit_ms, 0.99),
        status_requests,
        status_clients,
        status_p50_ms: percentile(&mut status_ms, 0.5),
        status_p99_ms: percentile(&mut status_ms, 0.99),
        fanout_subscribers,
        paced,
        burst,
    })
}
