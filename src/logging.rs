//! Logs on stderr: warnings, errors, notes, progress lines and tracing's debug events, as
//! plain lines or (`LOG_FORMAT=json`) one JSON object per line; colour only on a terminal
//! without `NO_COLOR`. The report itself goes to stdout and never through here.

use std::fmt::{self, Display};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU8, Ordering};

use clap::ValueEnum;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How stderr logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Plain lines (`warning: ...`, `regsweep: error: ...`), as before.
    Text,
    /// One JSON object per line: `time`, `level`, `message`, `fields`.
    Json,
}

/// The format in force: 0 text, 1 JSON.
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Sets the format in force (before the command line is read: from `LOG_FORMAT` alone).
pub fn set_format(format: LogFormat) {
    FORMAT.store(u8::from(format == LogFormat::Json), Ordering::Relaxed);
}

/// Whether logs are JSON lines.
pub fn is_json() -> bool {
    FORMAT.load(Ordering::Relaxed) == 1
}

/// The format `LOG_FORMAT` asks for, for messages written before the command line is read.
pub fn format_from_env() -> LogFormat {
    match std::env::var("LOG_FORMAT") {
        Ok(v) if v.trim().eq_ignore_ascii_case("json") => LogFormat::Json,
        _ => LogFormat::Text,
    }
}

/// Colour (ANSI escape codes) only when stderr is a terminal and `NO_COLOR` is unset or
/// empty (no-color.org).
pub fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs tracing's subscriber in `format` with `filter`; sets the format in force.
pub fn init(format: LogFormat, filter: EnvFilter) {
    set_format(format);
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour()).try_init(),
        LogFormat::Json => builder.with_ansi(false).event_format(JsonLines).try_init(),
    };
}

/// The filter of tracing's events: regsweep's own, ever. HTTP and AWS libraries' debug
/// output can carry headers (credentials, tokens), so `REGSWEEP_LOG` sets regsweep's level
/// only; `verbose` (`-v`) is `debug`, and with both the more verbose level wins.
pub fn filter(verbose: bool) -> EnvFilter {
    use tracing_subscriber::filter::LevelFilter;
    let from_env = std::env::var("REGSWEEP_LOG").ok().and_then(|v| {
        let v = v.trim().to_ascii_lowercase();
        let level = v.strip_prefix("regsweep=").unwrap_or(&v);
        let parsed = level.parse::<LevelFilter>().ok();
        if parsed.is_none() {
            warn(format_args!(
                "REGSWEEP_LOG={v:?}: give a level (error, warn, info, debug, trace); \
                 other crates' logs are never enabled"
            ));
        }
        parsed
    });
    let level = match (verbose.then_some(LevelFilter::DEBUG), from_env) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    match level {
        Some(l) => EnvFilter::new(format!("warn,regsweep={l}")),
        None => EnvFilter::new("warn"),
    }
}

/// A warning: `warning: {msg}`.
pub fn warn(msg: impl Display) {
    emit(Level::WARN, "warning: ", &msg, None);
}

/// An error: `regsweep: error: {msg}`.
pub fn error(msg: impl Display) {
    emit(Level::ERROR, "regsweep: error: ", &msg, None);
}

/// Something that could not be done (a blob, an upload): `regsweep: failed: {msg}`.
pub fn failed(msg: impl Display) {
    emit(Level::ERROR, "regsweep: failed: ", &msg, Some("failed"));
}

/// A note on what the run does: `regsweep: {msg}`.
pub fn note(msg: impl Display) {
    emit(Level::WARN, "regsweep: ", &msg, Some("note"));
}

/// A progress line: `regsweep: progress: {msg}`.
pub fn progress(msg: impl Display) {
    emit(Level::INFO, "regsweep: progress: ", &msg, Some("progress"));
}

/// A line of `kind` (`failed`, `refused`, `interrupted`, `note`...) that reads
/// `{prefix}{msg}` as text.
pub fn line(level: Level, kind: &str, prefix: &str, msg: impl Display) {
    emit(level, prefix, &msg, Some(kind));
}

/// Writes one log line to stderr in the format in force.
fn emit(level: Level, prefix: &str, msg: &dyn Display, kind: Option<&str>) {
    let text = if is_json() {
        let mut fields = Map::new();
        if let Some(k) = kind {
            fields.insert("kind".into(), Value::from(k));
        }
        json_line(level, &msg.to_string(), fields)
    } else {
        format!("{prefix}{msg}")
    };
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// One JSON log line (without its newline).
pub fn json_line(level: Level, message: &str, fields: Map<String, Value>) -> String {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    serde_json::json!({
        "time": time,
        "level": level.as_str(),
        "message": message,
        "fields": fields,
    })
    .to_string()
}

/// tracing's events as [`json_line`]s.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        fields
            .map
            .insert("target".into(), Value::from(meta.target()));
        let line = json_line(*meta.level(), &fields.message, fields.map);
        writeln!(writer, "{line}")
    }
}

/// An event's message and other fields.
#[derive(Default)]
struct Fields {
    message: String,
    map: Map<String, Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
        } else {
            self.map.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
}
