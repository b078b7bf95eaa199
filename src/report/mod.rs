//! Reports: the original tool's text summary, a JSON document of every decision, and the
//! progress shown while scanning and deleting, and a run's Prometheus metrics. Output
//! only: nothing here reads storage.

pub mod json;
pub mod metrics;
pub mod progress;
pub mod status;
pub mod text;

use chrono::{DateTime, Utc};

/// `YYYY-MM-DD HH:MM:SS` as the original prints `created=`.
pub fn format_time(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0).map_or_else(
        || "?".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// RFC 3339 for JSON.
pub fn rfc3339(secs: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}
