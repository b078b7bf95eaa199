//! A secret string (a password, a secret key): usable, but never shown by `Debug`.
//!
//! Anything holding `SECRET_KEY`, `REGISTRY_AUTH` or a password keeps it in a [`Secret`] so
//! that no debug log or panic message can print it.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

/// A string whose `Debug` says `<redacted>`; [`Secret::expose`] hands out the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for Secret {
    type Err = Infallible;
    fn from_str(s: &str) -> Result<Secret, Infallible> {
        Ok(Secret(s.to_owned()))
    }
}

/// `url` with any `user:password@` replaced by `***@`, for messages (it works on text that
/// is not a valid URL too).
pub fn redact_userinfo(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..start], &url[start + at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Secret, redact_userinfo};

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            redact_userinfo("http://u:p@w@host:5000/v2/"),
            "http://***@host:5000/v2/"
        );
        assert_eq!(redact_userinfo("https://host/a@b"), "https://host/a@b");
        assert_eq!(redact_userinfo("not a url"), "not a url");
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(
            format!("{:?}", Some((String::from("k"), s.clone()))),
            "Some((\"k\", <redacted>))"
        );
        assert_eq!(s.expose(), "hunter2");
    }
}
