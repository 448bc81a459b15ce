//! Prometheus metrics: the HTTP RED metrics every service exports, process metrics, and the
//! `/metrics` endpoint. Services register their domain metrics into the same [`Registry`].

use actix_web::{HttpResponse, web};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Buckets from 100 µs to 10 s: most handlers finish well under a millisecond, so the low end
/// must resolve them, while timeouts still land in a bucket.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    method: String,
    route: String,
}

/// `http_requests_total{method,route,status}` and `http_request_duration_seconds{method,route}`.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<DurationLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            metrics.duration.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        metrics
    }

    /// Counts one answered request under its route template (never the raw path, so ids do not
    /// explode the label space).
    pub(crate) fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.into(),
                route: route.into(),
                status,
            })
            .inc();
        self.duration
            .get_or_create(&DurationLabels {
                method: method.into(),
                route: route.into(),
            })
            .observe(seconds);
    }
}

/// Requests being handled right now, across the process (the outbox relay waits for them to
/// finish before it stops).
static IN_FLIGHT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

pub fn requests_in_flight() -> i64 {
    IN_FLIGHT.load(std::sync::atomic::Ordering::SeqCst)
}

/// Decrements the in-flight count however the request ends (even if its future is dropped).
pub(crate) struct InFlight;

impl InFlight {
    pub(crate) fn enter() -> Self {
        IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub async fn metrics_endpoint(registry: web::Data<Arc<Registry>>) -> HttpResponse {
    let mut body = String::with_capacity(16 * 1024);
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(body),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

/// `process_*` metrics read from `/proc/self` at scrape time (Linux; absent elsewhere).
#[derive(Debug, Default)]
struct ProcessCollector;

impl ProcessCollector {
    fn read() -> Option<(f64, f64, f64, f64)> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which may itself contain spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = 100.0; // USER_HZ is 100 on every Linux this runs on
        let cpu =
            (fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / ticks;
        let start_ticks: f64 = fields.get(19)?.parse().ok()?;
        let rss_pages: f64 = fields.get(21)?.parse().ok()?;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
        let fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
        Some((rss_pages * 4096.0, cpu, boot + start_ticks / ticks, fds))
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((rss, cpu, start, fds)) = Self::read() else {
            return Ok(());
        };
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory in bytes",
                rss,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the epoch",
                start,
            ),
            ("process_open_fds", "Open file descriptors", fds),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counter = ConstCounter::new(cpu);
        counter.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time in seconds",
            None,
            counter.metric_type(),
        )?)?;
        Ok(())
    }
}
