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

#[cfg(test)]
mod tests {
    use super::Secret;

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
