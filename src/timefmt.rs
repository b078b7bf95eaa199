//! Time formatting shared by every stage that shows a time (plan reasons, evidence
//! warnings, reports): unix seconds to text. Pure; imports nothing of the crate.

use chrono::{DateTime, Utc};

/// `YYYY-MM-DD HH:MM:SS` as the original prints `created=`.
pub fn format_time(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0).map_or_else(
        || "?".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// RFC 3339 (UTC, whole seconds), as the JSON report and messages give times; `None` for a
/// time chrono cannot represent.
pub fn rfc3339(secs: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}
