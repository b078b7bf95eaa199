//! Where the registry credentials come from: REGISTRY_AUTH, then --username with
//! --password-stdin or --password-file, then docker's config.json (what `docker login`
//! wrote). Reading them is part of resolving the configuration; the client only sends them.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::args::Args;
use crate::delete::auth::Credentials;

/// Finds the credentials for the registry at `url`: REGISTRY_AUTH, then --username with a
/// password, then docker config.json.
pub fn credentials(a: &Args, url: &str) -> Result<Option<Credentials>, String> {
    if let Some(pair) = &a.registry_auth {
        return Credentials::from_pair(pair.expose_secret(), "REGISTRY_AUTH").map(Some);
    }
    match (&a.username, password(a)?) {
        (Some(user), Some((password, source))) => {
            return Ok(Some(Credentials {
                user: user.clone(),
                password,
                source,
            }));
        }
        (None, Some((_, source))) => {
            return Err(format!("{source} needs --username (REGISTRY_USERNAME)"));
        }
        (Some(_), None) => {
            return Err("--username needs --password-stdin or --password-file".to_owned());
        }
        (None, None) => {}
    }
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            })
        })
        .unwrap_or_default();
    match docker_config_path(a.docker_config.as_deref()) {
        Some(path) => from_docker_config(&path, &host),
        None => Ok(None),
    }
}

/// The password of --password-stdin (one line) or --password-file (its first line), with
/// where it came from.
fn password(a: &Args) -> Result<Option<(SecretString, String)>, String> {
    if a.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("--password-stdin: cannot read standard input: {e}"))?;
        let password = SecretString::from(line.trim_end_matches(['\n', '\r']));
        return Ok(Some((password, "--password-stdin".to_owned())));
    }
    if let Some(f) = &a.password_file {
        let body = SecretString::from(
            std::fs::read_to_string(f)
                .map_err(|e| format!("--password-file {}: {e}", f.display()))?,
        );
        let first = SecretString::from(body.expose_secret().lines().next().unwrap_or(""));
        return Ok(Some((first, format!("--password-file {}", f.display()))));
    }
    Ok(None)
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
fn docker_config_path(docker_config_dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = docker_config_dir {
        return Some(d.join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Looks up `host` (host[:port]) in a docker config.json's `auths`; `Ok(None)` if absent.
fn from_docker_config(path: &Path, host: &str) -> Result<Option<Credentials>, String> {
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
                password: SecretString::from(p.as_str()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            (c.user.as_str(), c.password.expose_secret()),
            ("bob", "s3:cret")
        );
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
