//! Writes a registry's storage keys straight into an S3 bucket (for listing tests and
//! benchmarks at a scale the registry itself would take hours to push).

use anyhow::{Context, Result};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde_json::json;

use regsweep::digest::Digest;
use regsweep::s3::base_prefix;

/// What to write.
#[derive(Clone, Debug)]
pub struct Fill {
    /// Repositories (`fill/r00000`, ...).
    pub repos: usize,
    /// Manifest revisions per repository.
    pub revisions: usize,
    /// Tags per repository (each on its own revision, with one index entry).
    pub tags: usize,
    /// Every this many tags, one tag whose current link names a digest the listing
    /// cannot match (no revision, no index entry): it needs a GET. 0 for none.
    pub unmatched_every: usize,
    /// Write manifest blobs too (needed to plan; a listing benchmark can do without).
    pub blobs: bool,
}

/// A client for a local S3 server (any credentials, path style).
pub async fn client(endpoint: &str) -> Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "testkit"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

/// Writes the keys; returns how many keys and how many tags were written.
pub async fn fill(endpoint: &str, bucket: &str, root: &str, f: &Fill) -> Result<(usize, usize)> {
    let c = client(endpoint).await;
    let base = base_prefix(root);
    let mut puts: Vec<(String, Vec<u8>)> = Vec::new();
    let mut tags = 0;
    for r in 0..f.repos {
        let repo = format!("{base}repositories/fill/r{r:05}/_manifests/");
        for i in 0..f.revisions {
            let body = serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                           "digest": Digest::of(b"{}").to_string()},
                "layers": [], "annotations": {"r": r.to_string(), "i": i.to_string()}}))?;
            let d = Digest::of(&body);
            let hex = d.hex();
            if f.blobs {
                puts.push((format!("{base}blobs/sha256/{}/{hex}/data", &hex[..2]), body));
            }
            puts.push((
                format!("{repo}revisions/sha256/{hex}/link"),
                d.to_string().into_bytes(),
            ));
            if i < f.tags {
                tags += 1;
                let tag = format!("v{i}");
                let target = if f.unmatched_every > 0 && tags % f.unmatched_every == 0 {
                    // A manifest that exists as a blob but was never linked here.
                    let other = serde_json::to_vec(&json!({"schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [],
                        "annotations": {"unlinked": format!("{r} {i}")}}))?;
                    let od = Digest::of(&other);
                    puts.push((
                        format!("{base}blobs/sha256/{}/{}/data", &od.hex()[..2], od.hex()),
                        other,
                    ));
                    od
                } else {
                    d
                };
                puts.push((
                    format!("{repo}tags/{tag}/current/link"),
                    target.to_string().into_bytes(),
                ));
                puts.push((
                    format!("{repo}tags/{tag}/index/sha256/{hex}/link"),
                    d.to_string().into_bytes(),
                ));
            }
        }
    }
    puts.push((
        format!("{base}blobs/sha256/44/{}/data", Digest::of(b"{}").hex()),
        b"{}".to_vec(),
    ));
    Ok((put_all(&c, bucket, puts).await?, tags))
}

/// PUTs every (key, body), 32 at once; gives how many.
async fn put_all(c: &Client, bucket: &str, puts: Vec<(String, Vec<u8>)>) -> Result<usize> {
    let n = puts.len();
    stream::iter(puts.into_iter().map(|(key, body)| {
        let c = c.clone();
        async move {
            c.put_object()
                .bucket(bucket)
                .key(&key)
                .body(ByteStream::from(body))
                .send()
                .await
                .with_context(|| format!("PUT {key}"))
        }
    }))
    .buffer_unordered(32)
    .try_collect::<Vec<_>>()
    .await?;
    Ok(n)
}

/// Uploads every file under `dir` to the bucket, its path relative to `dir` under `root`
/// (a filesystem registry's tree becomes the same registry on S3); gives the count.
pub async fn put_dir(
    endpoint: &str,
    bucket: &str,
    root: &str,
    dir: &std::path::Path,
) -> Result<usize> {
    let c = client(endpoint).await;
    let base = match root.trim_matches('/') {
        "" => String::new(),
        r => format!("{r}/"),
    };
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("{}", d.display()))? {
            let e = e?;
            if e.file_type()?.is_dir() {
                todo.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    let mut puts = Vec::with_capacity(files.len());
    for path in files {
        let rel = path
            .strip_prefix(dir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let body = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        puts.push((format!("{base}{rel}"), body));
    }
    put_all(&c, bucket, puts).await
}
