//! Parsers for the values a user gives (flags, environment, the policy file): regexes,
//! repository globs, durations. Each error is one line naming the setting; nothing here
//! reads files or the environment.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::Regex;

/// Default `HASH_TAG_PATTERN` (docs/POLICY.md, rule 3): 7 to 12 lowercase hex digits, a
/// short commit hash.
pub const DEFAULT_HASH_TAG_PATTERN: &str = "^[0-9a-f]{7,12}$";

/// Compiles a regex given as `what`; the error is one line naming it.
pub fn regex(what: &str, s: &str) -> Result<Regex, String> {
    Regex::new(s).map_err(|e| {
        let text = e.to_string();
        let folded: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        format!("{what} {s:?} is not a valid regex: {}", folded.join(" "))
    })
}

/// Repository globs given as `what`: `*` stays within one path segment, `**` crosses them.
pub fn repo_globs(what: &str, patterns: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for g in patterns {
        b.add(
            GlobBuilder::new(g)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("{what} {g:?} is not a valid glob: {e}"))?,
        );
    }
    b.build().map_err(|e| format!("{what}: {e}"))
}

/// A hash-tag pattern: a valid regex, and not empty (an empty pattern matches every tag,
/// `latest` and `v1.0` too, and would expire them all beyond the newest N).
pub fn hash_tag_regex(what: &str, s: &str) -> Result<Regex, String> {
    if s.trim().is_empty() {
        return Err(format!(
            "{what} is empty: an empty pattern matches every tag (latest, v1.0) and would delete \
             all but the newest images; leave it unset for the default {DEFAULT_HASH_TAG_PATTERN:?}"
        ));
    }
    regex(what, s)
}

/// Splits a comma-separated list of globs at the commas outside `{...}` alternations.
pub fn split_globs(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(s[start..i].to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].to_owned());
    out.into_iter()
        .map(|g| g.trim().to_owned())
        .filter(|g| !g.is_empty())
        .collect()
}

/// Parses a grace period: `0`, or a humantime duration such as `30m`, `1h`, `2d`.
pub fn parse_min_age(s: &str) -> Result<i64, String> {
    parse_duration_secs("MIN_AGE", s)
}

/// Parses a duration for `what`: `0`, or a number with a unit (`500ms`, `30s`, `30m`,
/// `1h`, `2d`). A bare number other than 0 is refused (seconds? minutes?), and so is `M`,
/// which means a month where `m` means a minute.
pub fn parse_duration(what: &str, s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
        return match s.parse::<u64>() {
            Ok(0) => Ok(std::time::Duration::ZERO),
            _ => Err(format!(
                "{what} {s:?} has no unit: write {s}s, {s}m, {s}h or {s}d"
            )),
        };
    }
    if s.contains('M') {
        return Err(format!(
            "{what} {s:?}: M means a month here (and m a minute): write it out, as 30d, 1month or 1m"
        ));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{what} {s:?} is not a duration like 0, 30m, 1h or 2d: {e}"))
}

/// [`parse_duration`] in whole seconds.
pub fn parse_duration_secs(what: &str, s: &str) -> Result<i64, String> {
    parse_duration(what, s).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
