//! Credentials (REGISTRY_AUTH, --username/--password-stdin, docker config.json) and the
//! registry's `WWW-Authenticate` challenges. It holds secrets: it never prints them, and
//! it sends nothing itself (the client does).

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// A user name and password, and where they came from (for error messages; never the secret).
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password or identity token.
    pub password: String,
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
            password: password.to_owned(),
            source: source.to_owned(),
        })
    }

    /// Describes the credentials for an error message: user and source, never the password.
    pub fn describe(&self) -> String {
        format!("user {:?} from {}", self.user, self.source)
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::HashMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The docker config.json to read: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path(docker_config_dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = docker_config_dir {
        return Some(d.join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Looks up `host` (host[:port]) in a docker config.json's `auths`; `Ok(None)` if absent.
pub fn from_docker_config(path: &Path, host: &str) -> Result<Option<Credentials>, String> {
    let body = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read docker config {}: {e}", path.display())),
    };
    let cfg: DockerConfig = serde_json::from_slice(&body)
        .map_err(|e| format!("docker config {} is not valid JSON: {e}", path.display()))?;
    let source = format!("docker config {}", path.display());
    for (key, entry) in &cfg.auths {
        if registry_host(key) != host {
            continue;
        }
        if let Some(auth) = &entry.auth {
            let decoded = STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    format!("{source}: auths.{key}.auth is not base64 of user:password")
                })?;
            return Credentials::from_pair(&decoded, &source).map(Some);
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials {
                user: u.clone(),
                password: p.clone(),
                source,
            }));
        }
    }
    Ok(None)
}

/// `host[:port]` of a config.json key, which may be a bare host or a URL.
fn registry_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
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

/// Parses a `WWW-Authenticate` header value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    for (k, v) in params(rest) {
        match k.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(v),
            "service" => service = Some(v),
            _ => {}
        }
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
    })
}

/// `k="v",k2="v,2"` → pairs, honouring quotes.
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_owned(), val.trim().to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_may_contain_colons() {
        let c = Credentials::from_pair("alice:pa:ss:word", "REGISTRY_AUTH").expect("pair");
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
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
    fn docker_config_lookup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        let auth = STANDARD.encode("bob:s3:cret");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"https://127.0.0.1:5000/v1/":{{"auth":"{auth}"}}}}}}"#),
        )
        .expect("write");
        let c = from_docker_config(&path, "127.0.0.1:5000")
            .expect("read")
            .expect("found");
        assert_eq!((c.user.as_str(), c.password.as_str()), ("bob", "s3:cret"));
        assert!(
            from_docker_config(&path, "127.0.0.1:5001")
                .expect("read")
                .is_none()
        );
        assert!(
            from_docker_config(&dir.path().join("missing.json"), "x")
                .expect("absent is fine")
                .is_none()
        );
    }
}
