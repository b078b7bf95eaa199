//! Credentials and the registry's `WWW-Authenticate` challenges (where credentials come
//! from is the config stage's `credentials`). It holds secrets: it never prints them, and
//! it sends nothing itself (the client does).

use std::fmt;

use secrecy::SecretString;

use crate::outcome::Refusal;

/// A user name and password, and where they came from (for error messages; never the secret).
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password or identity token, wiped when dropped.
    pub password: SecretString,
    /// Where they came from: `REGISTRY_AUTH`, `--password-stdin`, a config.json path.
    pub source: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, source: {:?}, password: <redacted> }}",
            self.user, self.source
        )
    }
}

impl Credentials {
    /// `user:password`, split at the first `:` only (passwords may contain `:`).
    pub fn from_pair(pair: &str, source: &str) -> Result<Credentials, String> {
        let (user, password) = pair
            .split_once(':')
            .ok_or_else(|| format!("{source} must be user:password (no ':' found)"))?;
        Ok(Credentials {
            user: user.to_owned(),
            password: SecretString::from(password),
            source: source.to_owned(),
        })
    }

    /// Describes the credentials for an error message: user and source, never the password.
    pub fn describe(&self) -> String {
        format!("user {:?} from {}", self.user, self.source)
    }
}

/// An authentication challenge from `WWW-Authenticate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP basic.
    Basic,
    /// Token auth: fetch a bearer token from `realm`.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter.
        service: Option<String>,
    },
}

/// The challenges of one `WWW-Authenticate` value as (lowercase scheme, params with
/// lowercase names); a syntax error ends the list (what came before it is kept).
fn challenges(header: &str) -> Vec<(String, Vec<(String, String)>)> {
    http_auth::ChallengeParser::new(header)
        .map_while(Result::ok)
        .map(|c| {
            let params = c
                .params
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_unescaped()))
                .collect();
            (c.scheme.to_ascii_lowercase(), params)
        })
        .collect()
}

/// The value of parameter `name` (lowercase) among `params`.
fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// Parses a `WWW-Authenticate` header value: its Bearer challenge (with a realm) if it has
/// one, else Basic if it has that.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let all = challenges(header);
    let bearer = all.iter().find_map(|(scheme, params)| {
        let realm = param(params, "realm").filter(|_| scheme == "bearer")?;
        Some(Challenge::Bearer {
            realm,
            service: param(params, "service"),
        })
    });
    bearer.or_else(|| {
        all.iter()
            .any(|(scheme, _)| scheme == "basic")
            .then_some(Challenge::Basic)
    })
}

/// Why the Bearer challenge of a 401/403 says the token was refused; `None` when no
/// challenge carries an `error`.
pub fn parse_refusal(header: &str) -> Option<Refusal> {
    challenges(header)
        .into_iter()
        .filter(|(scheme, _)| scheme == "bearer")
        .find_map(|(_, params)| {
            let error = param(&params, "error")?;
            Some(match error.as_str() {
                "insufficient_scope" => Refusal::InsufficientScope {
                    scope: param(&params, "scope"),
                },
                "invalid_token" => Refusal::InvalidToken {
                    description: param(&params, "error_description"),
                },
                _ => Refusal::Other { error },
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn password_may_contain_colons() {
        let c = Credentials::from_pair("alice:pa:ss:word", "REGISTRY_AUTH").expect("pair");
        assert_eq!(
            (c.user.as_str(), c.password.expose_secret()),
            ("alice", "pa:ss:word")
        );
        assert!(Credentials::from_pair("nocolon", "REGISTRY_AUTH").is_err());
        assert!(!format!("{c:?}").contains("pa:ss"));
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="reg, x",scope="repository:a:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg, x".into())
            })
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn challenges_with_several_schemes_and_escapes() {
        // Two challenges in one value; the Bearer one wins over Basic.
        assert_eq!(
            parse_challenge(r#"Basic realm="r", Bearer realm="https://a/t\"x",service=reg"#),
            Some(Challenge::Bearer {
                realm: "https://a/t\"x".into(),
                service: Some("reg".into())
            })
        );
        // Scheme and parameter names are case-insensitive.
        assert_eq!(
            parse_challenge(r#"BEARER REALM="https://a/t""#),
            Some(Challenge::Bearer {
                realm: "https://a/t".into(),
                service: None
            })
        );
        // A Bearer challenge without a realm is no token challenge; garbage is none.
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
        assert_eq!(parse_challenge(""), None);
        assert_eq!(parse_challenge("\"unterminated"), None);
    }

    #[test]
    fn refusals_from_the_registry_challenge() {
        // What distribution 2.8 sends for a token without `delete`.
        let scope = r#"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:team/app:delete",error="insufficient_scope""#;
        let r = parse_refusal(scope).expect("a refusal");
        assert_eq!(r.code(), "insufficient_scope");
        assert_eq!(r.actions_on("team/app"), vec!["delete".to_owned()]);
        assert!(r.actions_on("team/other").is_empty());
        // Several scopes, several actions.
        let r = parse_refusal(
            r#"Bearer realm="x",scope="repository:a:pull,delete repository:b:pull",error="insufficient_scope""#,
        )
        .expect("a refusal");
        assert_eq!(
            r.actions_on("a"),
            vec!["pull".to_owned(), "delete".to_owned()]
        );
        assert_eq!(
            parse_refusal(r#"Bearer realm="x",error="invalid_token",error_description="expired""#),
            Some(Refusal::InvalidToken {
                description: Some("expired".into())
            })
        );
        assert_eq!(
            parse_refusal(r#"Bearer realm="x",error="invalid_request""#),
            Some(Refusal::Other {
                error: "invalid_request".into()
            })
        );
        // No error: the token was missing, not refused; Basic challenges carry none.
        assert_eq!(parse_refusal(r#"Bearer realm="x",service="y""#), None);
        assert_eq!(
            parse_refusal(r#"Basic realm="x",error="invalid_token""#),
            None
        );
        assert_eq!(parse_refusal("Bearer realm=\"x\",error=\"invalid"), None);
    }
}
