//! Log output of `rampart-server` and `rampart-agent`.
//!
//! `text` is for people at a terminal. `json` is for log collectors: one
//! JSON object per line, with every field at the top level so a query
//! never depends on how deep a span nested it:
//!
//! ```json
//! {"timestamp":"2026-12-02T01:02:03.456789Z","level":"INFO","target":"rampart_server::device::api",
//!  "request_id":"5f0c…","method":"POST","path":"/device/v1/enroll",
//!  "event":"device.enrolled","tenant":"…","device":"web-01","message":"device enrolled"}
//! ```
//!
//! Stable names: `timestamp`, `level`, `target`, `message`, `event` (what
//! happened, a dotted code), `tenant`, `device`, `request_id`, `error`.
//! Fields of the spans an event happens in come first, outermost span
//! first; the event's own fields win over a span's of the same name.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// For people: one line per event, colours on a terminal.
    #[default]
    Text,
    /// For programs: one JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?}; expected text or json"
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Sends the process's log events to standard error in `format`, filtered
/// by `filter`.
pub fn init(format: LogFormat, filter: EnvFilter, ansi: bool) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .init(),
    }
}

/// Formats an event as one flat JSON object (see the module's docs).
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let line = Value::Object(flatten(ctx, event)).to_string();
        writeln!(writer, "{line}")
    }
}

fn flatten<S, N>(ctx: &FmtContext<'_, S, N>, event: &Event<'_>) -> Map<String, Value>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let mut line = Map::new();
    let mut timestamp = String::new();
    if SystemTime
        .format_time(&mut Writer::new(&mut timestamp))
        .is_ok()
    {
        line.insert("timestamp".into(), Value::String(timestamp));
    }
    let meta = event.metadata();
    line.insert("level".into(), Value::String(meta.level().to_string()));
    line.insert("target".into(), Value::String(meta.target().to_string()));
    if let Some(scope) = ctx.event_scope() {
        for span in scope.from_root() {
            let extensions = span.extensions();
            // With `JsonFields`, a span's recorded fields are kept as the
            // text of one JSON object.
            let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                continue;
            };
            if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                line.extend(fields);
            }
        }
    }
    event.record(&mut Fields(&mut line));
    line
}

/// Collects an event's fields into a JSON object, keeping numbers and
/// booleans as such.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    fn lines(captured: &Captured) -> Vec<Value> {
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn every_field_of_the_event_and_its_spans_is_at_the_top_level() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!(
                "request",
                request_id = "r-1",
                tenant = tracing::field::Empty
            );
            let _in = request.enter();
            request.record("tenant", "t-1");
            let inner = tracing::info_span!("enroll", device = "web-01", tenant = "t-2");
            let _inner = inner.enter();
            tracing::warn!(
                event = "device.enrolled",
                count = 3_u64,
                ok = true,
                "enrolled"
            );
        });
        let got = lines(&captured);
        assert_eq!(got.len(), 1, "{got:?}");
        let line = &got[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "enrolled");
        assert_eq!(line["event"], "device.enrolled");
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["device"], "web-01");
        assert_eq!(line["tenant"], "t-2", "the inner span wins");
        assert_eq!(line["count"], 3);
        assert_eq!(line["ok"], true);
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(line["target"].as_str().unwrap().starts_with("rampart_log"));
    }

    #[test]
    fn formats_are_named_text_and_json() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        let e = "xml".parse::<LogFormat>().unwrap_err();
        assert!(e.contains("expected text or json"), "{e}");
        assert_eq!(LogFormat::Json.to_string(), "json");
    }
}
