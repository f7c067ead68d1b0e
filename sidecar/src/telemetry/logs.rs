//! Logs: ECS JSON (one object per line, the ecs-logging format Filebeat and Elastic Agent parse
//! as is) or human-readable text, chosen by `VIGIL_LOG_FORMAT` (`ecs`, the default, or `text`);
//! the level filter comes from `VIGIL_LOG` (`info` by default; `vigil=debug,info` …).
//!
//! Written here rather than taken from a crate: the two ECS formatters for `tracing` on
//! crates.io are young single-maintainer crates with little use, and the format is small.
//!
//! An ECS line holds `@timestamp`, `log.level`, `message`, `ecs.version`, `service.name`,
//! `service.version`, `log.logger` (the module), the event's own fields, and the fields of the
//! spans it happened in (innermost wins) with `span.name` naming the innermost span.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The ECS version the lines follow (the one ecs-logging libraries write).
pub const ECS_VERSION: &str = "1.6.0";
pub const SERVICE_NAME: &str = "vigil";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Ecs,
    Text,
}

impl LogFormat {
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "ecs" | "json" => Ok(LogFormat::Ecs),
            "text" => Ok(LogFormat::Text),
            other => Err(format!("VIGIL_LOG_FORMAT [{other}] must be ecs or text")),
        }
    }
}

/// Formats events as ECS JSON lines.
#[derive(Debug, Clone, Default)]
pub struct EcsFormat;

impl<S, N> FormatEvent<S, N> for EcsFormat
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
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "@timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert(
            "log.level".into(),
            meta.level().as_str().to_ascii_lowercase().into(),
        );
        line.insert("message".into(), Value::String(String::new()));
        line.insert("ecs.version".into(), ECS_VERSION.into());
        line.insert("service.name".into(), SERVICE_NAME.into());
        line.insert("service.version".into(), env!("CARGO_PKG_VERSION").into());
        line.insert("log.logger".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(map)) =
                        serde_json::from_str::<Value>(fields.fields.as_str())
                    {
                        line.extend(map);
                    }
                }
                innermost = Some(span.name());
            }
            if let Some(name) = innermost {
                line.insert("span.name".into(), name.into());
            }
        }
        let mut visitor = Fields(&mut line);
        event.record(&mut visitor);
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Writes an event's fields into the line; `message` replaces the empty placeholder.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        // Reserved keys stay as the formatter wrote them.
        if matches!(
            name,
            "@timestamp" | "log.level" | "ecs.version" | "service.name" | "log.logger"
        ) {
            self.0.insert(format!("fields.{name}"), value);
        } else {
            self.0.insert(name.to_string(), value);
        }
    }
}

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(
            field,
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

/// Installs the process-wide subscriber writing to stderr, from `VIGIL_LOG_FORMAT` and `VIGIL_LOG`.
pub fn init_from_env() -> Result<(), String> {
    let format = LogFormat::parse(&std::env::var("VIGIL_LOG_FORMAT").unwrap_or_default())?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Ecs => builder
            .fmt_fields(JsonFields::new())
            .event_format(EcsFormat)
            .init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_ecs_json_with_event_and_span_fields() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .fmt_fields(JsonFields::new())
            .event_format(EcsFormat)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("bulk", index = "logs-x", items = 3u64);
            let _g = span.enter();
            tracing::warn!(model = "url-phishing", score = 0.5, "scored \"quoted\"");
            tracing::debug!(log.level = "spoof", "reserved key kept apart");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0];
        for key in [
            "@timestamp",
            "log.level",
            "message",
            "ecs.version",
            "service.name",
        ] {
            assert!(first.get(key).is_some(), "{key} missing: {first}");
        }
        assert_eq!(first["log.level"], "warn");
        assert_eq!(first["message"], "scored \"quoted\"");
        assert_eq!(first["ecs.version"], ECS_VERSION);
        assert_eq!(first["service.name"], "vigil");
        assert_eq!(first["model"], "url-phishing");
        assert_eq!(first["score"], 0.5);
        assert_eq!(first["index"], "logs-x");
        assert_eq!(first["items"], 3);
        assert_eq!(first["span.name"], "bulk");
        chrono::DateTime::parse_from_rfc3339(first["@timestamp"].as_str().unwrap()).unwrap();
        assert_eq!(lines[1]["log.level"], "debug");
        assert_eq!(lines[1]["fields.log.level"], "spoof");
    }

    #[test]
    fn format_names_are_checked() {
        assert_eq!(LogFormat::parse("ECS").unwrap(), LogFormat::Ecs);
        assert_eq!(LogFormat::parse("").unwrap(), LogFormat::Ecs);
        assert_eq!(LogFormat::parse("text").unwrap(), LogFormat::Text);
        assert!(LogFormat::parse("xml").unwrap_err().contains("xml"));
    }
}
