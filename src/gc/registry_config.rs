//! The registry's own configuration file, read for the one thing a collection must know
//! about it: which blob descriptor cache the registry keeps, and where (Redis).

use super::error::GcError;
use std::path::Path;

use serde::Deserialize;

/// The registry's blob descriptor cache (`storage.cache.blobdescriptor`), which answers
/// "blob B exists" without looking at storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobCache {
    /// No cache: every answer comes from storage.
    None,
    /// In the registry's memory: nothing outside the process can clear it.
    InMemory,
    /// In Redis, whose entries never expire.
    Redis(RedisTarget),
    /// A cache type regsweep does not know (the named value).
    Unknown(String),
}

/// Where the registry's Redis is, as its configuration says.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// `host:port`.
    pub addr: String,
    /// Database number.
    pub db: i64,
    /// ACL user name, if any.
    pub username: Option<String>,
    /// Password, if any (never printed).
    pub password: Option<String>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("addr", &self.addr)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl RedisTarget {
    /// `redis://host:port/db`, for messages (no credentials).
    pub fn shown(&self) -> String {
        format!("redis://{}/{}", self.addr, self.db)
    }
}

/// The parts of the registry's YAML regsweep reads (2.8: `redis.addr`; 3.x: `redis.addrs`).
#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    storage: Option<Storage>,
    #[serde(default)]
    redis: Option<Redis>,
}

#[derive(Debug, Default, Deserialize)]
struct Storage {
    #[serde(default)]
    cache: Option<Cache>,
}

#[derive(Debug, Default, Deserialize)]
struct Cache {
    #[serde(default)]
    blobdescriptor: Option<String>,
    /// The older name of the same setting, read when `blobdescriptor` is absent.
    #[serde(default)]
    layerinfo: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Redis {
    #[serde(default)]
    addr: Option<String>,
    #[serde(default)]
    addrs: Option<Vec<String>>,
    #[serde(default)]
    db: Option<i64>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    tls: Option<serde_norway::Value>,
    #[serde(default)]
    mastername: Option<String>,
}

/// Reads the registry's configuration file at `path`, with the registry's environment
/// overrides present in regsweep's own environment (`REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR`,
/// `REGISTRY_REDIS_ADDR`, `REGISTRY_REDIS_DB`, `REGISTRY_REDIS_PASSWORD`), which the
/// registry applies over its file. `Err` names the file and what is wrong with it.
pub fn read(path: &Path) -> Result<BlobCache, GcError> {
    let wrong = |e: String| {
        GcError::RegistryConfig(format!("registry configuration {}: {e}", path.display()))
    };
    let text = std::fs::read_to_string(path).map_err(|e| wrong(e.to_string()))?;
    parse(&text, &|k| std::env::var(k).ok()).map_err(wrong)
}

/// [`read`] on the file's text, with `env` for the overrides.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<BlobCache, String> {
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_norway::from_str(text).map_err(|e| format!("not the registry's YAML: {e}"))?
    };
    let cache = file.storage.and_then(|s| s.cache);
    let kind = env("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR")
        .or_else(|| cache.as_ref().and_then(|c| c.blobdescriptor.clone()))
        .or_else(|| cache.and_then(|c| c.layerinfo))
        .unwrap_or_default();
    match kind.as_str() {
        "" => Ok(BlobCache::None),
        "inmemory" => Ok(BlobCache::InMemory),
        "redis" => redis_target(file.redis.unwrap_or_default(), env).map(BlobCache::Redis),
        other => Ok(BlobCache::Unknown(other.to_owned())),
    }
}

fn redis_target(r: Redis, env: &dyn Fn(&str) -> Option<String>) -> Result<RedisTarget, String> {
    if r.mastername.as_deref().is_some_and(|m| !m.is_empty()) {
        return Err("redis.mastername: a Redis Sentinel setup is not supported".into());
    }
    if r.tls.as_ref().is_some_and(tls_on) {
        return Err("redis.tls: Redis over TLS is not supported".into());
    }
    let addrs: Vec<String> = match (env("REGISTRY_REDIS_ADDR").or(r.addr), r.addrs) {
        (Some(a), _) if !a.is_empty() => vec![a],
        (_, Some(list)) => list,
        _ => Vec::new(),
    };
    let addr = match addrs.as_slice() {
        [one] => one.clone(),
        [] => return Err("storage.cache.blobdescriptor is redis but redis.addr is not set".into()),
        _ => {
            return Err(format!(
                "redis.addrs names {} servers (a cluster): only a single Redis is supported",
                addrs.len()
            ));
        }
    };
    let db = match env("REGISTRY_REDIS_DB") {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("REGISTRY_REDIS_DB={v:?} is not a number"))?,
        None => r.db.unwrap_or(0),
    };
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(RedisTarget {
        addr,
        db,
        username: nonempty(r.username),
        password: nonempty(env("REGISTRY_REDIS_PASSWORD").or(r.password)),
    })
}

/// Whether a `redis.tls` section turns TLS on (2.8: `enabled: true`; 3.x: any certificate).
fn tls_on(v: &serde_norway::Value) -> bool {
    match v {
        serde_norway::Value::Mapping(m) => m.iter().any(|(k, v)| match (k.as_str(), v) {
            (Some("enabled"), serde_norway::Value::Bool(b)) => *b,
            (Some("enabled"), _) => false,
            (_, serde_norway::Value::Null) => false,
            (_, serde_norway::Value::String(s)) => !s.is_empty(),
            (_, serde_norway::Value::Sequence(s)) => !s.is_empty(),
            _ => true,
        }),
        serde_norway::Value::Null => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_cache_is_read_as_the_registry_reads_it() {
        let debian = "version: 0.1\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: /var/lib/docker-registry\n";
        assert_eq!(parse(debian, &no_env), Ok(BlobCache::InMemory));
        assert_eq!(
            parse("storage: {filesystem: {rootdirectory: /x}}", &no_env),
            Ok(BlobCache::None)
        );
        assert_eq!(
            parse("storage: {cache: {layerinfo: inmemory}}", &no_env),
            Ok(BlobCache::InMemory)
        );
        assert_eq!(
            parse("storage: {cache: {blobdescriptor: memcached}}", &no_env),
            Ok(BlobCache::Unknown("memcached".into()))
        );
        let redis = "storage: {cache: {blobdescriptor: redis}}\nredis: {addr: 127.0.0.1:6390, db: 3, password: pw}\n";
        let Ok(BlobCache::Redis(t)) = parse(redis, &no_env) else {
            panic!("redis");
        };
        assert_eq!((t.addr.as_str(), t.db), ("127.0.0.1:6390", 3));
        assert_eq!(t.password.as_deref(), Some("pw"));
        assert!(!format!("{t:?}").contains("pw"));
        let v3 = "storage: {cache: {blobdescriptor: redis}}\nredis: {addrs: [127.0.0.1:6391]}\n";
        assert!(
            matches!(parse(v3, &no_env), Ok(BlobCache::Redis(t)) if t.addr == "127.0.0.1:6391")
        );
        // The registry's environment overrides win over its file.
        let env = |k: &str| match k {
            "REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR" => Some("redis".to_owned()),
            "REGISTRY_REDIS_ADDR" => Some("127.0.0.1:7000".to_owned()),
            _ => None,
        };
        assert!(
            matches!(parse(debian, &env), Ok(BlobCache::Redis(t)) if t.addr == "127.0.0.1:7000")
        );
        for bad in [
            "storage: {cache: {blobdescriptor: redis}}",
            "storage: {cache: {blobdescriptor: redis}}\nredis: {addrs: [a:1, b:2]}",
            "storage: {cache: {blobdescriptor: redis}}\nredis: {addr: a:1, tls: {enabled: true}}",
            "storage: [not, a, map]",
        ] {
            assert!(parse(bad, &no_env).is_err(), "{bad}");
        }
    }
}
