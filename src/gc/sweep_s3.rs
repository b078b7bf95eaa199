//! GC sweep on S3: lists `blobs/sha256/<2 hex>/` (the 256 prefixes, several at once), and
//! removes each unmarked blob old enough with DeleteObjects (1000 keys a request): every key
//! under its `<hex>/`, as the registry's S3 driver deletes a blob. Nothing else is touched.

use std::collections::BTreeMap;

use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::stream::{self, StreamExt};

use super::mark::MarkSet;
use super::sweep::{Candidate, Listed};
use crate::digest::Digest;
use crate::s3::S3Store;

/// Up to this many blob keys (estimated from the first prefix) are listed as one stream.
const SEQUENTIAL_KEYS: usize = 16_000;

/// One blob's keys, and its data key's size and time.
#[derive(Default)]
struct BlobKeys {
    keys: Vec<String>,
    data: Option<(u64, i64)>,
}

/// Lists the blobs no manifest references and older than `min_age_secs` at `now`. A key
/// without `LastModified` is an error: its age is unknown. Counts the keys it lists into
/// `listed`.
pub async fn list(
    store: &S3Store,
    marked: &MarkSet,
    now: i64,
    min_age_secs: i64,
    listed: &AtomicU64,
) -> Result<Listed, String> {
    let top = format!("{}blobs/sha256/", store.base);
    let count = |page: crate::s3::Listing| {
        if let Ok((objects, _)) = &page {
            listed.fetch_add(objects.len() as u64, Ordering::Relaxed);
        }
        page
    };
    // The first of the 256 prefixes tells the size of the rest: a small blob store is
    // listed as one stream after it (a few pages), a large one per prefix, several at once
    // (each LIST costs a round trip; a server that scans its keys per LIST costs more).
    let first = count(store.list_all(&format!("{top}00/"), None).await);
    let estimate = first.as_ref().map_or(usize::MAX, |(o, _)| o.len() * 256);
    let mut pages = vec![first];
    if estimate <= SEQUENTIAL_KEYS {
        let after = format!("{top}00/~");
        pages.push(count(store.list_all_after(&top, None, Some(&after)).await));
    } else {
        let prefixes: Vec<String> = (1..=255u8).map(|b| format!("{top}{b:02x}/")).collect();
        let rest: Vec<_> = stream::iter(
            prefixes
                .iter()
                .map(|p| async move { count(store.list_all(p, None).await) }),
        )
        .buffer_unordered(store.concurrency.clamp(1, 32))
        .collect()
        .await;
        pages.extend(rest);
    }
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
    let mut out = Listed::default();
    for (digest, BlobKeys { keys, data }) in blobs {
        let Some((size, at)) = data else { continue }; // no data: no blob
        if marked.contains(&digest) {
            out.marked += 1;
        } else {
            out.admit(Candidate { digest, size, keys }, at, now, min_age_secs);
        }
    }
    Ok(out)
}

/// Deletes the candidates' keys; gives the blobs whose deletion failed, once each, with why.
pub async fn remove(store: &S3Store, candidates: &[Candidate]) -> Vec<(Digest, String)> {
    let keys: Vec<(Digest, String)> = candidates
        .iter()
        .flat_map(|c| c.keys.iter().map(|k| (c.digest, k.clone())))
        .collect();
    store.delete_owned(&keys).await.into_iter().collect()
}
