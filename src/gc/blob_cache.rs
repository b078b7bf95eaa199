//! Makes the registry's Redis blob descriptor cache forget blobs regsweep removed (or put
//! in quarantine), so that the registry stops answering "exists" for them: without this a
//! push skips a layer the cache still claims, and the image it makes cannot be pulled
//! (distribution #1803, #2945, #4269). Keys as distribution 2.8 and 3.x write them
//! (`registry/storage/cache/redis/redis.go`).

use super::error::GcError;
use std::collections::HashSet;
use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use super::registry_config::RedisTarget;
use crate::digest::Digest;

/// Keys removed a request.
const CHUNK: usize = 1000;

/// What [`forget`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// `blobs::<digest>` hashes (the global descriptors, other algorithms' included).
    pub descriptors: u64,
    /// Members removed from the `repository::<name>::blobs` sets.
    pub memberships: u64,
    /// `repository::<name>::blobs::<digest>` hashes.
    pub repository_descriptors: u64,
}

/// Connects to the registry's Redis.
fn connect(t: &RedisTarget) -> Result<redis::Connection, GcError> {
    let fail = |e: redis::RedisError| {
        GcError::Cache(format!("the registry's Redis at {}: {e}", t.shown()))
    };
    let (host, port) = t
        .addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            GcError::RegistryConfig(format!("redis.addr {:?} is not host:port", t.addr))
        })?;
    let mut settings = RedisConnectionInfo::default().set_db(t.db);
    if let Some(u) = &t.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &t.password {
        settings = settings.set_password(p);
    }
    let info = ConnectionAddr::Tcp(host.to_owned(), port)
        .into_connection_info()
        .map_err(fail)?
        .set_redis_settings(settings);
    let client = redis::Client::open(info).map_err(fail)?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(10))
        .map_err(fail)?;
    con.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(fail)?;
    Ok(con)
}

/// Checks that the registry's Redis answers (before anything is removed from storage).
pub fn check(t: &RedisTarget) -> Result<(), GcError> {
    let mut con = connect(t)?;
    redis::cmd("PING")
        .query::<String>(&mut con)
        .map(|_| ())
        .map_err(|e| GcError::Cache(format!("the registry's Redis at {}: {e}", t.shown())))
}

/// Removes every cache entry of `digests`: the global descriptor `blobs::<d>`, each
/// `repository::<name>::blobs::<d>` and each set membership of `d`, and any descriptor of
/// another algorithm's digest (`blobs::sha512:…`) that stands for one of them.
pub fn forget(t: &RedisTarget, digests: &[Digest]) -> Result<Forgotten, GcError> {
    if digests.is_empty() {
        return Ok(Forgotten::default());
    }
    let fail = |e: redis::RedisError| {
        GcError::Cache(format!("the registry's Redis at {}: {e}", t.shown()))
    };
    let mut con = connect(t)?;
    let names: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
    let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut out = Forgotten::default();
    for chunk in names.chunks(CHUNK) {
        let keys: Vec<String> = chunk.iter().map(|d| format!("blobs::{d}")).collect();
        out.descriptors += redis::cmd("DEL")
            .arg(&keys)
            .query::<u64>(&mut con)
            .map_err(fail)?;
    }
    // Descriptors under another algorithm's digest whose `digest` field is one of ours.
    for pattern in ["blobs::sha384:*", "blobs::sha512:*"] {
        for key in scan(&mut con, pattern).map_err(fail)? {
            let canonical: Option<String> = redis::cmd("HGET")
                .arg(&key)
                .arg("digest")
                .query(&mut con)
                .map_err(fail)?;
            if canonical.is_some_and(|c| wanted.contains(c.as_str())) {
                out.descriptors += redis::cmd("DEL")
                    .arg(&key)
                    .query::<u64>(&mut con)
                    .map_err(fail)?;
            }
        }
    }
    // Per repository: the set of its blobs, and a hash per blob.
    let mut doomed: Vec<String> = Vec::new();
    for key in scan(&mut con, "repository::*").map_err(fail)? {
        match repository_key(&key) {
            Some(RepoKey::Set) => {
                for chunk in names.chunks(CHUNK) {
                    out.memberships += redis::cmd("SREM")
                        .arg(&key)
                        .arg(chunk)
                        .query::<u64>(&mut con)
                        .map_err(fail)?;
                }
            }
            Some(RepoKey::Descriptor(d)) if wanted.contains(d) => doomed.push(key.clone()),
            _ => {}
        }
    }
    for chunk in doomed.chunks(CHUNK) {
        out.repository_descriptors += redis::cmd("DEL")
            .arg(chunk)
            .query::<u64>(&mut con)
            .map_err(fail)?;
    }
    Ok(out)
}

/// Every key matching `pattern` (SCAN: the server is never blocked for long).
fn scan(con: &mut redis::Connection, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(CHUNK)
            .query(con)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// A key under `repository::`: a repository's set of blobs, or its hash for one blob.
#[derive(Debug, PartialEq, Eq)]
enum RepoKey<'a> {
    Set,
    Descriptor(&'a str),
}

/// Reads `repository::<name>::blobs` or `repository::<name>::blobs::<digest>`; a name
/// holds no `:` (the registry's name grammar), a digest one.
fn repository_key(key: &str) -> Option<RepoKey<'_>> {
    let rest = key.strip_prefix("repository::")?;
    let (_, tail) = rest.split_once("::blobs")?;
    match tail {
        "" => Some(RepoKey::Set),
        t => t.strip_prefix("::").map(RepoKey::Descriptor),
    }
}

#[cfg(test)]
mod tests {
    use super::{RepoKey, repository_key};

    #[test]
    fn repository_keys_are_told_apart() {
        assert_eq!(repository_key("repository::a/b::blobs"), Some(RepoKey::Set));
        assert_eq!(
            repository_key("repository::a/b::blobs::sha256:ab"),
            Some(RepoKey::Descriptor("sha256:ab"))
        );
        assert_eq!(repository_key("repository::a::tags"), None);
        assert_eq!(repository_key("blobs::sha256:ab"), None);
    }
}
