//! GC sweep on S3: lists `blobs/sha256/<2 hex>/` (the 256 prefixes, several at once), and
//! removes each unmarked blob old enough with DeleteObjects (1000 keys a request): every key
//! under its `<hex>/`, as the registry's S3 driver deletes a blob. Nothing else is touched.

use std::collections::BTreeMap;

use futures_util::stream::{self, StreamExt};

use super::mark::MarkSet;
use super::sweep::{Candidate, Listed};
use crate::digest::Digest;
use crate::s3::S3Store;

/// The listing: what to delete, and every key of each candidate.
pub struct S3Listed {
    /// Counts and candidates, as on a filesystem.
    pub listed: Listed,
    /// Each candidate's keys (its `data`, and anything else under its directory).
    pub keys: Vec<String>,
}

/// One blob's keys, and its data key's size and time.
#[derive(Default)]
struct BlobKeys {
    keys: Vec<String>,
    data: Option<(u64, i64)>,
}

/// Lists the blobs no manifest references and older than `min_age_secs` at `now`. A key
/// without `LastModified` is an error: its age is unknown.
pub async fn list(
    store: &S3Store,
    marked: &MarkSet,
    now: i64,
    min_age_secs: i64,
) -> Result<S3Listed, String> {
    let top = format!("{}blobs/sha256/", store.base);
    let prefixes: Vec<String> = (0..=255u8).map(|b| format!("{top}{b:02x}/")).collect();
    let pages: Vec<_> = stream::iter(prefixes.iter().map(|p| store.list_all(p, None)))
        .buffer_unordered(store.concurrency.clamp(1, 32))
        .collect()
        .await;
    // Per blob: its keys, and the data key's size and time.
    let mut blobs: BTreeMap<Digest, BlobKeys> = BTreeMap::new();
    for page in pages {
        let (objects, _) = page?;
        for o in objects {
            let Some(key) = o.key() else { continue };
            let rest = key.strip_prefix(&top).unwrap_or(key);
            let mut parts = rest.split('/');
            let (Some(_), Some(hex), Some(file)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(digest) = Digest::from_hex(hex) else {
                continue;
            };
            let entry = blobs.entry(digest).or_default();
            entry.keys.push(key.to_owned());
            if file == "data" {
                let at = o.last_modified().map(|t| t.secs()).ok_or_else(|| {
                    format!(
                        "s3://{}/{key}: no LastModified: its age is unknown",
                        store.bucket
                    )
                })?;
                entry.data = Some((u64::try_from(o.size().unwrap_or(0)).unwrap_or(0), at));
            }
        }
    }
    let mut out = S3Listed {
        listed: Listed::default(),
        keys: Vec::new(),
    };
    for (digest, BlobKeys { keys, data }) in blobs {
        let Some((size, at)) = data else { continue }; // no data: no blob
        if marked.contains(&digest) {
            out.listed.marked += 1;
        } else if now.saturating_sub(at) < min_age_secs {
            out.listed.young += 1;
        } else {
            out.listed.candidates.push(Candidate { digest, size });
            out.keys.extend(keys);
        }
    }
    Ok(out)
}

/// Deletes the keys; gives the failures (key and why).
pub async fn remove(store: &S3Store, keys: &[String]) -> Vec<(String, String)> {
    store.delete_keys(keys).await
}
