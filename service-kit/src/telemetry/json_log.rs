//! The JSON log line: one object per event with `timestamp`, `level`, `target`, the trace id
//! of the request or message being handled (`trace_id`, top level, so log pipelines can link
//! it to the trace), the innermost span's name (`span`), then the event's own fields.
//!
//! Span fields other than `trace_id` are not kept for the logs: tracing-subscriber's JSON
//! layer formats every field of every span as JSON when the span opens and parses and writes
//! it again on every `record`, whether or not a line is ever logged — ~10 % of a simple read
//! in the benchmark's profile. Here a span costs nothing unless it carries a trace id.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Keeps a span's `trace_id` field (its value, as text) and nothing else.
pub struct TraceIdField;

impl<'w> FormatFields<'w> for TraceIdField {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = TraceIdVisitor {
            writer: &mut writer,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        self.format_fields(current.as_writer(), fields)
    }
}

struct TraceIdVisitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Visit for TraceIdVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "trace_id" {
            self.result = self.writer.write_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "trace_id" {
            self.result = write!(self.writer, "{value:?}");
        }
    }
}

/// Writes events as JSON lines (see the module documentation).
pub struct JsonLine;

impl<S> FormatEvent<S, TraceIdField> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, TraceIdField>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":");
        push_json(
            &mut line,
            &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        );
        line.push_str(",\"level\":");
        push_json(&mut line, meta.level().as_str());
        line.push_str(",\"target\":");
        push_json(&mut line, meta.target());
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = true;
            for span in scope {
                if innermost {
                    line.push_str(",\"span\":");
                    push_json(&mut line, span.name());
                    innermost = false;
                }
                let extensions = span.extensions();
                if let Some(id) = extensions
                    .get::<FormattedFields<TraceIdField>>()
                    .filter(|f| !f.fields.is_empty())
                {
                    line.push_str(",\"trace_id\":");
                    push_json(&mut line, &id.fields);
                    break;
                }
            }
        }
        event.record(&mut EventFields { line: &mut line });
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// Appends `,"name":value` for each field of an event.
struct EventFields<'a> {
    line: &'a mut String,
}

impl EventFields<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(',');
        push_json(self.line, field.name());
        self.line.push(':');
    }
}

impl Visit for EventFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json(self.line, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        match serde_json::Number::from_f64(value) {
            Some(number) => {
                let _ = write!(self.line, "{number}");
            }
            None => push_json(self.line, &value.to_string()),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.key(field);
        push_json(self.line, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        push_json(self.line, &format!("{value:?}"));
    }
}

fn push_json(line: &mut String, text: &str) {
    match serde_json::to_string(text) {
        Ok(quoted) => line.push_str(&quoted),
        Err(_) => line.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(TraceIdField)
                .event_format(JsonLine)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn a_line_carries_the_trace_id_of_the_nearest_span_that_has_one_and_the_fields() {
        let logged = lines(|| {
            let root =
                tracing::info_span!("request", trace_id = tracing::field::Empty, method = "GET");
            root.record("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736");
            let _root = root.enter();
            let inner = tracing::info_span!("lookup", user = 7);
            let _inner = inner.enter();
            tracing::warn!(
                attempts = 3u64,
                ok = false,
                ratio = 0.5,
                who = %"a \"quoted\" name\n",
                "user lookup failed"
            );
        });
        assert_eq!(logged.len(), 1);
        let line = &logged[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(line["span"], "lookup");
        assert_eq!(line["message"], "user lookup failed");
        assert_eq!(line["attempts"], 3);
        assert_eq!(line["ok"], false);
        assert_eq!(line["ratio"], 0.5);
        assert_eq!(line["who"], "a \"quoted\" name\n");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(line.get("method").is_none(), "span fields are not logged");
    }

    #[test]
    fn a_line_outside_any_span_has_no_trace_id() {
        let logged = lines(|| tracing::info!(port = 3001u64, "listening"));
        assert_eq!(logged[0]["message"], "listening");
        assert_eq!(logged[0]["port"], 3001);
        assert!(logged[0].get("trace_id").is_none());
        assert!(logged[0].get("span").is_none());
    }
}
