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
/// without `LastModified` is an error: its age is unknown. So is a `data` key whose path
/// does not match its digest (see [`classify`]): nothing may be deleted then. Counts the
/// keys it lists into `listed`.
///
/// A blob's age is its data key's `LastModified`, which is its commit: the registry's S3
/// driver (2.8 `s3-aws/s3.go`) writes an upload under `_uploads/<id>/data` and commits it
/// with `Move`, which is a copy to `blobs/sha256/<2>/<hex>/data` (one `CopyObject` up to
/// the driver's `multipartcopythresholdsize`, 32 MiB by default, else a multipart copy,
/// whose object is as new as the copy's start) and then a delete of the upload. So the
/// key's `LastModified` is the commit time, however long ago the upload's bytes were
/// written; unlike a filesystem's rename, the copy keeps nothing of the upload's time.
pub async fn list(
    store: &S3Store,
    marked: &MarkSet,
    now: i64,
    min_age_secs: i64,
    listed: &AtomicU64,
) -> Result<Listed, String> {
    let all = format!("{}blobs/", store.base);
    let top = format!("{all}sha256/");
    let first_prefix = format!("{top}00/");
    let count = |page: crate::s3::Listing| {
        if let Ok((objects, _)) = &page {
            listed.fetch_add(objects.len() as u64, Ordering::Relaxed);
        }
        page
    };
    // The first of the 256 prefixes tells the size of the rest: a small blob store is
    // listed as one stream after it (a few pages), a large one per prefix, several at once
    // (each LIST costs a round trip; a server that scans its keys per LIST costs more).
    let first = count(store.list_all(&first_prefix, None).await);
    let estimate = first.as_ref().map_or(usize::MAX, |(o, _)| o.len() * 256);
    let mut pages = vec![first];
    if estimate <= SEQUENTIAL_KEYS {
        // All of `blobs/`, the other algorithms' directories and odd keys included (they
        // are checked below); the keys of `00/` again, left out.
        let rest = store.list_all(&all, None).await.map(|(mut objects, p)| {
            objects.retain(|o| !o.key().unwrap_or("").starts_with(&first_prefix));
            (objects, p)
        });
        pages.push(count(rest));
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
        pages.extend(odd_entries(store, &all, &top).await);
    }
    // Per blob: its keys, and the data key's size and time.
    let mut blobs: BTreeMap<Digest, BlobKeys> = BTreeMap::new();
    let mut misplaced: Vec<String> = Vec::new();
    for page in pages {
        let (objects, _) = page.map_err(|e| e.to_string())?;
        for o in objects {
            let Some(key) = o.key() else { continue };
            let (digest, is_data) = match classify(key.strip_prefix(&all).unwrap_or(key)) {
                BlobKey::Data(d) => (d, true),
                BlobKey::Part(d) => (d, false),
                BlobKey::Misplaced => {
                    misplaced.push(key.to_owned());
                    continue;
                }
                BlobKey::Other => continue,
            };
            let entry = blobs.entry(digest).or_default();
            entry.keys.push(key.to_owned());
            if is_data {
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
    if let Some(first) = misplaced.first() {
        let more = match misplaced.len() {
            1 => String::new(),
            n => format!(" (and {} more such keys)", n - 1),
        };
        return Err(format!(
            "s3://{}/{first}: a blob's data where no digest puts it (blobs live at \
             blobs/sha256/<first 2 hex>/<64 lowercase hex>/data){more}",
            store.bucket
        ));
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

/// What a key under `blobs/` is to the sweep.
#[derive(Debug, PartialEq, Eq)]
enum BlobKey {
    /// `sha256/<2>/<hex>/data`, the hex 64 lowercase digits starting with the 2.
    Data(Digest),
    /// Another key under such a blob's `<2>/<hex>`: it goes with the blob, as the
    /// registry's driver deletes a blob (every key under its path).
    Part(Digest),
    /// A `data` key anywhere else: the registry's collector (2.8 `blobStore.Enumerate`
    /// walks all of `blobs/`; `digestFromPath` in `paths.go` makes a digest of every
    /// `.../data` path) stops on it with an error (an algorithm named `00`, a hex of the
    /// wrong length or case), or takes it for another algorithm's blob. regsweep stops.
    Misplaced,
    /// Anything else, left alone as the registry's collector leaves it.
    Other,
}

/// Classifies `rel`, a key with `<root>blobs/` taken off. No allocation.
fn classify(rel: &str) -> BlobKey {
    if let Some(rest) = rel.strip_prefix("sha256/") {
        let mut parts = rest.splitn(3, '/');
        if let (Some(p), Some(hex)) = (parts.next(), parts.next())
            && let Some(d) = Digest::from_hex(hex)
            && p.len() == 2
            && hex.starts_with(p)
        {
            match parts.next() {
                Some("data") => return BlobKey::Data(d),
                Some(tail) if tail.rsplit('/').next() != Some("data") => {
                    return BlobKey::Part(d);
                }
                None => return BlobKey::Part(d),
                Some(_) => {}
            }
        }
    }
    if rel.rsplit('/').next() == Some("data") {
        BlobKey::Misplaced
    } else {
        BlobKey::Other
    }
}

fn is_algorithm(name: &str) -> bool {
    name == "sha256"
}

fn is_prefix(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The keys of whatever lies beside the 256 prefixes (for a blob store listed by them):
/// `blobs/` and `blobs/sha256/` listed with the delimiter `/` (two LISTs), then, rarely,
/// each odd directory in full, for [`classify`] to judge.
async fn odd_entries(store: &S3Store, all: &str, top: &str) -> Vec<crate::s3::Listing> {
    let mut out = Vec::new();
    for (dir, usual) in [(all, is_algorithm as fn(&str) -> bool), (top, is_prefix)] {
        let (objects, prefixes) = match store.list_all(dir, Some("/")).await {
            Ok(listing) => listing,
            Err(e) => {
                out.push(Err(e));
                continue;
            }
        };
        out.push(Ok((objects, Vec::new())));
        for p in prefixes {
            if !usual(p.strip_prefix(dir).unwrap_or(&p).trim_end_matches('/')) {
                out.push(store.list_all(&p, None).await);
            }
        }
    }
    out
}

/// Deletes the candidates' keys; gives the blobs whose deletion failed, once each, with why.
pub async fn remove(store: &S3Store, candidates: &[Candidate]) -> Vec<(Digest, String)> {
    let keys: Vec<(Digest, String)> = candidates
        .iter()
        .flat_map(|c| c.keys.iter().map(|k| (c.digest, k.clone())))
        .collect();
    store.delete_owned(&keys).await.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::{BlobKey, classify};
    use crate::digest::Digest;

    #[test]
    fn a_data_key_is_a_blob_only_where_its_digest_puts_it() {
        let d = Digest::of(b"blob");
        let hex = d.hex();
        let p = &hex[..2];
        let other = if p == "00" { "01" } else { "00" };
        assert_eq!(
            classify(&format!("sha256/{p}/{hex}/data")),
            BlobKey::Data(d)
        );
        for part in [
            format!("sha256/{p}/{hex}/data/x"),
            format!("sha256/{p}/{hex}/notes"),
            format!("sha256/{p}/{hex}/"),
            format!("sha256/{p}/{hex}"),
        ] {
            assert_eq!(classify(&part), BlobKey::Part(d), "{part}");
        }
        for bad in [
            format!("sha256/{other}/{hex}/data"),
            format!("sha256/{p}/{}/data", hex.to_uppercase()),
            format!("sha256/{p}/{}/data", &hex[..63]),
            format!("sha256/{p}/{hex}/x/data"),
            format!("sha256/{p}/data"),
            "sha256/data".to_owned(),
            format!("sha256/{}/{hex}/data", p.to_uppercase()),
            format!("sha512/{p}/{hex}{hex}/data"),
            "data".to_owned(),
        ] {
            assert_eq!(classify(&bad), BlobKey::Misplaced, "{bad}");
        }
        for other in [
            format!("sha256/{p}/junk"),
            format!("sha256/{other}/{hex}/notes"),
            "sha512/README".to_owned(),
        ] {
            assert_eq!(classify(&other), BlobKey::Other, "{other}");
        }
    }
}
