//! The service's metrics, in Prometheus' text format (`GET /metrics`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Counters and gauges the service keeps as it goes; the rest are read at
/// each scrape (see `routes::health`).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub submits: Counter,
    pub events: Counter,
    pub events_lost: Counter,
    pub subscribers_dropped: Counter,
    pub running: Gauge,
    pub queued: Gauge,
    pub durations: Histogram,
    pub queue_wait: Histogram,
    /// The event loop's lag, microseconds (see `watch_event_loop`).
    pub loop_lag_us: Gauge<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kiln");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            submits: Counter::default(),
            events: Counter::default(),
            events_lost: Counter::default(),
            subscribers_dropped: Counter::default(),
            running: Gauge::default(),
            queued: Gauge::default(),
            durations: Histogram::new(exponential_buckets(0.01, 4.0, 12)),
            queue_wait: Histogram::new(exponential_buckets(0.0001, 4.0, 12)),
            loop_lag_us: Gauge::default(),
        };
        registry.register("submits", "Jobs accepted and committed", m.submits.clone());
        registry.register("events", "Job events recorded", m.events.clone());
        registry.register(
            "events_lost",
            "Job events the recorder could not record",
            m.events_lost.clone(),
        );
        registry.register(
            "event_subscribers_dropped",
            "Event-stream clients dropped for falling behind",
            m.subscribers_dropped.clone(),
        );
        registry.register("jobs_running", "Top-level jobs running", m.running.clone());
        registry.register(
            "jobs_queued",
            "Top-level jobs waiting in the queue",
            m.queued.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Top-level jobs' run times, start to end",
            m.durations.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Time from submit to start",
            m.queue_wait.clone(),
        );
        registry.register(
            "event_loop_lag_microseconds",
            "How late a timer on the service's tokio runtime fired, last sample",
            m.loop_lag_us.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            ..m
        }
    }
}

impl Metrics {
    /// The registered metrics as text, then `extra` (metrics read at the
    /// scrape, already in the text format).
    pub fn render(&self, extra: &str) -> String {
        let mut text = String::new();
        let _ = encode(&mut text, &self.registry);
        // `encode` ends with `# EOF`, which must stay last.
        let body = text
            .trim_end()
            .strip_suffix("# EOF")
            .unwrap_or(&text)
            .to_string();
        format!("{body}{extra}# EOF\n")
    }
}

/// Sample how late a 100 ms timer fires on the runtime: a busy or blocked
/// event loop shows here before anywhere else.
pub async fn watch_event_loop(metrics: Metrics) {
    let period = std::time::Duration::from_millis(100);
    loop {
        let before = tokio::time::Instant::now();
        tokio::time::sleep(period).await;
        let late = before.elapsed().saturating_sub(period);
        metrics.loop_lag_us.set(late.as_micros() as u64);
    }
}
