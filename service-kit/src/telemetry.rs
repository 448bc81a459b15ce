//! Logs, traces and W3C trace-context propagation.
//!
//! Logs are JSON lines carrying the `trace_id` of the request or event being handled (see
//! [`json_log`]). A tracer provider is always installed, so trace ids exist and propagate (HTTP
//! in, reqwest out, NATS headers both ways) even when nothing is exported; spans are exported over
//! OTLP/gRPC only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Sampling follows the standard
//! `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` variables (parent-based, always on by default).

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::settings::{LogFormat, LogSettings};

mod json_log;

/// Flushes buffered spans when the service stops.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl TelemetryGuard {
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

/// Installs the global subscriber and tracer. Call once, inside the Tokio runtime (the OTLP
/// exporter spawns its connection there).
pub fn init(service: &'static str, log: &LogSettings) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service);
    }
    let mut provider = SdkTracerProvider::builder().with_resource(resource.build());
    if let Ok(endpoint) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| {
                anyhow::anyhow!("invalid configuration: OTEL_EXPORTER_OTLP_ENDPOINT: {e}")
            })?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    let tracer = provider.tracer(service);

    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) => EnvFilter::try_new(directives),
        // sqlx logs every statement at INFO otherwise.
        Err(_) => EnvFilter::try_new(format!(
            "{},sqlx=warn,sea_orm=warn,h2=warn,tower=warn",
            log.level
        )),
    }
    .map_err(|e| anyhow::anyhow!("invalid configuration: log.level: {e}"))?;

    let fmt = match log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(json_log::TraceIdField)
            .event_format(json_log::JsonLine)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_filter(filter)
            .boxed(),
    };
    // Spans are traced whatever the log level: a quiet log must not break trace propagation.
    // Without the layer's extras: a request's span would otherwise also carry its busy and idle
    // times (a clock read and a lock on every poll of the request's future), the thread and the
    // source line, attributes no OpenTelemetry convention names and Jaeger shows as noise.
    // Nor does entering a span make its context OpenTelemetry's current one: spans find their
    // parent in tracing's own tree and `current_context_headers` asks the span, so nothing here
    // reads `opentelemetry::Context::current()`, and the attach and detach on every poll of a
    // request's future were 2 % of user-service's samples on PostgreSQL reads by id
    // (callgrind: 160,363 → 153,710 instructions a read on PostgreSQL, 88,363 → 87,687 on
    // SQLite, medians of 3 rounds of 2,000).
    let traces = tracing_opentelemetry::layer()
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_threads(false)
        .with_location(false)
        .with_tracer(tracer)
        .with_filter(EnvFilter::new(
            "info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn,hyper=warn",
        ))
        .boxed();
    tracing_subscriber::registry()
        .with(vec![fmt, traces])
        .try_init()
        .map_err(|e| anyhow::anyhow!("telemetry already initialised: {e}"))?;
    Ok(TelemetryGuard { provider })
}

/// The current span's trace context as W3C headers (`traceparent`, `tracestate`).
pub fn current_context_headers() -> HashMap<String, String> {
    let mut headers = HashMap::new();
    TraceContextPropagator::new().inject_context(&Span::current().context(), &mut headers);
    headers
}

/// The headers W3C trace context reads, as lower-case names.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Makes `span` a child of the remote context in `headers` (a `traceparent` header), and
/// records its trace id for the logs.
pub fn continue_trace<'a>(span: &Span, headers: impl IntoIterator<Item = (&'a str, &'a str)>) {
    // Only the two headers W3C trace context reads: a request's other headers are not copied,
    // and a request without a `traceparent` (most, outside a mesh) allocates nothing here.
    let mut carrier = TraceHeaders::default();
    for (key, value) in headers {
        if key.eq_ignore_ascii_case("traceparent") {
            carrier.traceparent = Some(value);
        } else if key.eq_ignore_ascii_case("tracestate") {
            carrier.tracestate = Some(value);
        }
    }
    if carrier.traceparent.is_some() {
        let parent = TraceContextPropagator::new().extract(&carrier);
        if parent.span().span_context().is_valid() {
            // Fails only when no OpenTelemetry layer is installed (unit tests): nothing to link.
            let _ = span.set_parent(parent);
        }
    }
    record_trace_id(span);
}

/// The W3C trace-context headers of an incoming request or message, borrowed.
#[derive(Default)]
struct TraceHeaders<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl opentelemetry::propagation::Extractor for TraceHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.traceparent,
            "tracestate" => self.tracestate,
            _ => None,
        }
    }
    fn keys(&self) -> Vec<&str> {
        let present = [
            ("traceparent", self.traceparent),
            ("tracestate", self.tracestate),
        ];
        present
            .into_iter()
            .filter_map(|(key, value)| value.map(|_| key))
            .collect()
    }
}

/// Puts the span's trace id into its `trace_id` field so log lines can be joined to traces.
pub fn record_trace_id(span: &Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
    }
}

/// The trace id of the current span, if any (hex), for tests and error logs.
pub fn current_trace_id() -> Option<String> {
    let context = Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Adds the current trace context to an outgoing reqwest call.
pub fn inject_into_reqwest(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    current_context_headers()
        .into_iter()
        .fold(request, |request, (k, v)| request.header(k, v))
}
