//! clap value parsers for regsweep's flags: each turns one value into its type, or into a
//! [`BadValue`] naming the variable and the value, which the usage error shows as it is.

use std::time::Duration;

use secrecy::SecretString;

use crate::secret::redact_userinfo;
use crate::values::{parse_duration, parse_duration_secs};

/// A value that is not what its flag takes; the message names the variable and the value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadValue(pub String);

/// A value that an empty string leaves unset: `OLDER_THAN=` is the same as no OLDER_THAN
/// (container setups often pass every variable, empty where unused).
#[derive(Clone, Debug)]
pub struct Blankable<T>(pub Option<T>);

/// The value of an optional flag that an empty string leaves unset.
pub fn given<T: Clone>(v: &Option<Blankable<T>>) -> Option<T> {
    v.as_ref().and_then(|b| b.0.clone())
}

/// A URL as given (trimmed), checked, with its parsed form; regsweep keeps the text too
/// (the registry's base URL is cut from it by `resolve`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    given: String,
    parsed: reqwest::Url,
}

impl HttpUrl {
    /// The URL as given, trimmed.
    pub fn as_str(&self) -> &str {
        &self.given
    }

    /// The URL, parsed.
    pub fn url(&self) -> &reqwest::Url {
        &self.parsed
    }
}

/// A whole number above 0, for `name`.
pub fn positive(
    name: &'static str,
) -> impl Fn(&str) -> Result<usize, BadValue> + Clone + Send + Sync + 'static {
    move |v| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| BadValue(format!("{name} {v:?} is not a whole number above 0")))
    }
}

/// A whole number, 0 included, for `name`.
pub fn whole(
    name: &'static str,
) -> impl Fn(&str) -> Result<usize, BadValue> + Clone + Send + Sync + 'static {
    move |v| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| BadValue(format!("{name} {v:?} is not a non-negative whole number")))
    }
}

/// `SCAN_THREADS`: 0 for the default, at most 4096 (more is no faster, and the async
/// runtime would fail to start that many threads).
pub fn threads(v: &str) -> Result<usize, BadValue> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= 4096)
        .ok_or_else(|| {
            BadValue(format!(
                "SCAN_THREADS {v:?} is not a whole number up to 4096"
            ))
        })
}

/// `RATE`: requests per second, 0 for no limit.
pub fn rate(v: &str) -> Result<u32, BadValue> {
    v.trim().parse::<u32>().map_err(|_| {
        BadValue(format!(
            "RATE {v:?} is not a whole number of requests per second"
        ))
    })
}

/// A duration (`0`, `30s`, `10m`, `2d`) for `name`.
pub fn duration(
    name: &'static str,
) -> impl Fn(&str) -> Result<Duration, BadValue> + Clone + Send + Sync + 'static {
    move |v| parse_duration(name, v).map_err(BadValue)
}

/// A duration above 0 for `name`; `why` says what needs the time.
pub fn nonzero_duration(
    name: &'static str,
    why: &'static str,
) -> impl Fn(&str) -> Result<Duration, BadValue> + Clone + Send + Sync + 'static {
    move |v| {
        let d = parse_duration(name, v).map_err(BadValue)?;
        if d.is_zero() {
            return Err(BadValue(format!(
                "{name} {v:?}: {why}; give a duration above 0 like 30s"
            )));
        }
        Ok(d)
    }
}

/// A duration in whole seconds for `name`.
pub fn duration_secs(
    name: &'static str,
) -> impl Fn(&str) -> Result<i64, BadValue> + Clone + Send + Sync + 'static {
    move |v| parse_duration_secs(name, v).map_err(BadValue)
}

/// A duration in whole seconds for `name`, or unset when empty.
pub fn blank_or_secs(
    name: &'static str,
) -> impl Fn(&str) -> Result<Blankable<i64>, BadValue> + Clone + Send + Sync + 'static {
    move |v| {
        if v.trim().is_empty() {
            return Ok(Blankable(None));
        }
        parse_duration_secs(name, v)
            .map(|s| Blankable(Some(s)))
            .map_err(BadValue)
    }
}

/// A secret (a password, a secret key), kept out of every `Debug` and wiped when dropped.
pub fn secret(v: &str) -> Result<SecretString, BadValue> {
    Ok(SecretString::from(v))
}

/// `REGISTRY_URL`: http or https, no credentials in it (they would show in every message
/// and log).
pub fn registry_url(url: &str) -> Result<HttpUrl, BadValue> {
    http_url(
        "REGISTRY_URL",
        url,
        "; give them as REGISTRY_AUTH=user:password or --username with --password-stdin",
    )
}

/// `PUSHGATEWAY_URL`: http or https without credentials, or unset when empty.
pub fn pushgateway_url(url: &str) -> Result<Blankable<HttpUrl>, BadValue> {
    if url.trim().is_empty() {
        return Ok(Blankable(None));
    }
    http_url("PUSHGATEWAY_URL", url, "").map(|u| Blankable(Some(u)))
}

/// `S3_ENDPOINT`: a URL.
pub fn s3_endpoint(e: &str) -> Result<HttpUrl, BadValue> {
    reqwest::Url::parse(e)
        .map(|parsed| HttpUrl {
            given: e.to_owned(),
            parsed,
        })
        .map_err(|err| BadValue(format!("S3_ENDPOINT {e:?} is not a URL: {err}")))
}

/// An http(s) URL for `name` without credentials; `hint` follows the credentials error.
fn http_url(name: &str, url: &str, hint: &str) -> Result<HttpUrl, BadValue> {
    let shown = redact_userinfo(url);
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| BadValue(format!("{name} {shown:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(BadValue(format!(
            "{name} {shown:?}: the scheme must be http or https, not {}",
            parsed.scheme()
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(BadValue(format!(
            "{name} {shown:?} carries credentials: they would show in messages and logs{hint}"
        )));
    }
    Ok(HttpUrl {
        given: url.trim().to_owned(),
        parsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        let e = whole("HASH_TAG_KEEP")("-1").unwrap_err().to_string();
        assert_eq!(
            e,
            r#"HASH_TAG_KEEP "-1" is not a non-negative whole number"#
        );
        let e = positive("CONCURRENCY")("0").unwrap_err().to_string();
        assert_eq!(e, r#"CONCURRENCY "0" is not a whole number above 0"#);
        let e = registry_url("http://u:p@h:5000").unwrap_err().to_string();
        assert!(
            e.starts_with("REGISTRY_URL \"http://***@h:5000\" carries"),
            "{e}"
        );
        assert!(!e.contains("u:p"), "{e}");
        let e = nonzero_duration("REQUEST_TIMEOUT", "a request needs some time")("0");
        assert!(e.unwrap_err().to_string().contains("above 0"));
    }

    #[test]
    fn empty_optional_values_are_unset() {
        assert!(blank_or_secs("OLDER_THAN")(" ").unwrap().0.is_none());
        assert_eq!(blank_or_secs("OLDER_THAN")("2m").unwrap().0, Some(120));
        assert!(pushgateway_url("").unwrap().0.is_none());
        assert!(duration_secs("MIN_AGE")("").is_err());
    }
}
