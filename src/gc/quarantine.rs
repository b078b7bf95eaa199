//! The quarantine of an online collection: where a blob's data waits, out of the registry's
//! sight, until the collection is sure no manifest pushed meanwhile names it. Beside the
//! registry's tree (`<root>/regsweep-quarantine/sha256/<2>/<hex>`), so that a
//! filesystem move is one atomic rename; on S3 a copy, then the delete of the original.
//! Whatever sits in it is a blob that may be put back: the quarantine is its own record.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use rayon::prelude::*;

use super::sweep::Candidate;
use crate::digest::Digest;
use crate::s3::{S3Error, S3Store};
use crate::storage::fs_blobs::{blob_dir_rel, blobs_dir};

/// The quarantine's name beside `docker/` in the storage root (or bucket prefix).
pub const DIR_NAME: &str = "regsweep-quarantine";

/// A blob that could not be moved, with why.
pub type Failure = (Digest, String);

/// A quarantine on a filesystem or in a bucket.
pub enum Quarantine<'a> {
    /// `<root>/regsweep-quarantine`, on the filesystem of `<root>/docker`.
    Fs {
        /// The storage root (REGISTRY_DIR).
        root: PathBuf,
        /// The quarantine directory.
        dir: PathBuf,
    },
    /// `<rootdirectory>/regsweep-quarantine/` in the registry's bucket.
    S3 {
        /// The bucket.
        store: Arc<S3Store>,
        /// The runtime its requests run on.
        rt: &'a tokio::runtime::Runtime,
        /// The key prefix of the quarantine, ending in `/`.
        prefix: String,
    },
}

impl<'a> Quarantine<'a> {
    /// The quarantine of a filesystem registry rooted at `root`.
    pub fn fs(root: &Path) -> Quarantine<'a> {
        Quarantine::Fs {
            root: root.to_owned(),
            dir: root.join(DIR_NAME),
        }
    }

    /// The quarantine in the registry's bucket, beside its `docker/` prefix.
    pub fn s3(store: Arc<S3Store>, rt: &'a tokio::runtime::Runtime) -> Quarantine<'a> {
        let root = store
            .base
            .strip_suffix("docker/registry/v2/")
            .unwrap_or(&store.base);
        let prefix = format!("{root}{DIR_NAME}/");
        Quarantine::S3 { store, rt, prefix }
    }

    /// Where it is, for messages.
    pub fn shown(&self) -> String {
        match self {
            Quarantine::Fs { dir, .. } => dir.display().to_string(),
            Quarantine::S3 { store, prefix, .. } => format!("s3://{}/{prefix}", store.bucket),
        }
    }

    /// On a filesystem: takes the quarantine's lock (`.lock` in it, released when the
    /// process ends, however it ends), so that two collections never share it. `Err` when
    /// another collection holds it. On S3: nothing (one collection at a time is the
    /// operator's to ensure).
    /// With `create` false (an offline collection), a quarantine that does not exist is
    /// not made: there is nothing to guard.
    pub fn lock(&self, create: bool) -> Result<Option<fs::File>, String> {
        let Quarantine::Fs { dir, .. } = self else {
            return Ok(None);
        };
        if !create && !dir.is_dir() {
            return Ok(None);
        }
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) => Err(format!(
                "{}: another regsweep gc is using the quarantine; run one collection at a time",
                path.display()
            )),
            Err(fs::TryLockError::Error(e)) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// The blobs sitting in quarantine. `Err` when it cannot be listed, or holds a `data`
    /// that no digest names (it is then left for a person to look at).
    pub fn held(&self) -> Result<Vec<Digest>, String> {
        let mut out = match self {
            Quarantine::Fs { dir, .. } => held_fs(dir)?,
            Quarantine::S3 { store, rt, prefix } => {
                let (objects, _) = rt
                    .block_on(store.list_all(prefix, None))
                    .map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                for o in objects {
                    let key = o.key().unwrap_or("");
                    let rel = key.strip_prefix(prefix.as_str()).unwrap_or(key);
                    match held_key(rel) {
                        Some(d) => out.push(d),
                        None if rel.starts_with("sha256/") => {
                            return Err(format!(
                                "s3://{}/{key}: in quarantine where no digest puts it",
                                store.bucket
                            ));
                        }
                        None => {}
                    }
                }
                out
            }
        };
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Moves each candidate's data into quarantine; gives the blobs that could not be
    /// moved (they stay where they were, untouched) and the blobs that were already gone.
    pub fn put(&self, candidates: &[Candidate]) -> (Vec<Failure>, Vec<Digest>) {
        let results: Vec<(Digest, Result<bool, String>)> = match self {
            Quarantine::Fs { root, dir } => candidates
                .par_iter()
                .map(|c| {
                    (
                        c.digest,
                        move_fs(&live(root, &c.digest), &held_path(dir, &c.digest)),
                    )
                })
                .collect(),
            Quarantine::S3 { store, rt, prefix } => rt.block_on(put_s3(store, prefix, candidates)),
        };
        split(results)
    }

    /// Puts each blob back where the registry looks for it, once its bytes are checked
    /// against its digest (a quarantined file that does not hold them stays where it is,
    /// reported); a blob a fresh upload already put back keeps that copy, never replaced,
    /// and the quarantined one goes. Gives the blobs that could not be put back.
    pub fn restore(&self, digests: &[Digest]) -> Vec<Failure> {
        let results: Vec<(Digest, Result<bool, String>)> = match self {
            Quarantine::Fs { root, dir } => digests
                .par_iter()
                .map(|d| (*d, restore_fs(d, &held_path(dir, d), &live(root, d))))
                .collect(),
            Quarantine::S3 { store, rt, prefix } => rt.block_on(
                stream::iter(digests.iter().map(|d| async move {
                    let (held, live) = (held_key_of(prefix, d), live_key(store, d));
                    (*d, restore_s3(store, d, &held, &live).await)
                }))
                .buffer_unordered(store.concurrency.max(1))
                .collect(),
            ),
        };
        let (failed, _) = split(results);
        if let Quarantine::Fs { dir, .. } = self {
            tidy(dir, digests);
        }
        failed
    }

    /// Deletes the quarantined copies of `digests` for good, with what else lay under each
    /// blob's key on S3 (`extra`). Gives the blobs that could not be deleted, with why: on
    /// a filesystem, one no longer in quarantine (put back by someone else) is one of them.
    pub fn purge(&self, digests: &[Digest], extra: &[(Digest, String)]) -> Vec<Failure> {
        match self {
            Quarantine::Fs { dir, .. } => {
                let failed = digests
                    .par_iter()
                    .filter_map(|d| {
                        let p = held_path(dir, d);
                        match fs::remove_file(&p) {
                            Ok(()) => None,
                            Err(e) if e.kind() == io::ErrorKind::NotFound => Some((
                                *d,
                                format!(
                                    "{}: no longer in quarantine (put back by another run?)",
                                    p.display()
                                ),
                            )),
                            Err(e) => Some((*d, format!("{}: {e}", p.display()))),
                        }
                    })
                    .collect();
                tidy(dir, digests);
                failed
            }
            Quarantine::S3 { store, rt, prefix } => {
                let mut keys: Vec<(Digest, String)> = digests
                    .iter()
                    .map(|d| (*d, held_key_of(prefix, d)))
                    .collect();
                keys.extend(extra.iter().cloned());
                rt.block_on(store.delete_owned(&keys)).into_iter().collect()
            }
        }
    }
}

/// Where the registry keeps a blob's data on a filesystem.
fn live(root: &Path, d: &Digest) -> PathBuf {
    blobs_dir(root).join(blob_dir_rel(d)).join("data")
}

/// Where the quarantine keeps it.
fn held_path(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("sha256").join(blob_dir_rel(d))
}

fn live_key(store: &S3Store, d: &Digest) -> String {
    format!("{}blobs/sha256/{}/data", store.base, blob_dir_rel(d))
}

fn held_key_of(prefix: &str, d: &Digest) -> String {
    format!("{prefix}sha256/{}", blob_dir_rel(d))
}

/// The digest of a quarantine key `sha256/<2>/<hex>` (relative to the quarantine): one
/// file a blob, no directory of its own (one system call less each way).
fn held_key(rel: &str) -> Option<Digest> {
    let mut parts = rel.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("sha256"), Some(p), Some(hex), None) if hex.starts_with(p) && p.len() == 2 => {
            Digest::from_hex(hex)
        }
        _ => None,
    }
}

/// Renames `from` to `to`, making `to`'s directory when it is missing. `Ok(false)`:
/// `from` was not there. One system call where the directory exists.
fn move_fs(from: &Path, to: &Path) -> Result<bool, String> {
    let fail = |e: io::Error| format!("moving {} to {}: {e}", from.display(), to.display());
    match fs::rename(from, to) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(fail(e)),
        Err(_) => {}
    }
    // Not found: `from` is gone, or `to`'s directory is not there yet.
    match fs::symlink_metadata(from) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(fail(e)),
    }
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(fail)?;
    }
    match fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(fail(e)),
    }
}

/// Puts the quarantined `held` of blob `d` back at `live`: dropped when `live` is there
/// already (a fresh upload, checked by the registry), else renamed back once its bytes
/// hash to `d`.
fn restore_fs(d: &Digest, held: &Path, live: &Path) -> Result<bool, String> {
    match fs::symlink_metadata(live) {
        Ok(_) => {
            return match fs::remove_file(held) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(format!("{}: {e}", held.display())),
            };
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", live.display())),
    }
    let file = match fs::File::open(held) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("{}: {e}", held.display())),
    };
    let actual = Digest::of_reader(io::BufReader::new(file))
        .map_err(|e| format!("{}: {e}", held.display()))?;
    if actual != *d {
        return Err(format!(
            "{}: holds the bytes of {actual}, not of {d}: left in quarantine",
            held.display()
        ));
    }
    move_fs(held, live)
}

/// [`restore_fs`] on S3: dropped when the live key exists, else its bytes are read and
/// checked, then copied back and the quarantined key deleted.
async fn restore_s3(store: &S3Store, d: &Digest, held: &str, live: &str) -> Result<bool, String> {
    let exists = match store.head(live).await {
        Ok(e) => e,
        Err(e) => return Err(e.to_string()),
    };
    if exists {
        return match store
            .delete_keys(&[held.to_owned()])
            .await
            .into_iter()
            .next()
        {
            None => Ok(true),
            Some((key, why)) => Err(format!("s3://{}/{key}: {why}", store.bucket)),
        };
    }
    let body = match store.get(held, crate::s3::GetKind::Blob).await {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.to_string()),
    };
    let actual = Digest::of(&body);
    if actual != *d {
        return Err(format!(
            "s3://{}/{held}: holds the bytes of {actual}, not of {d}: left in quarantine",
            store.bucket
        ));
    }
    move_s3(store, held, live).await
}

/// Copies each candidate's data key into the quarantine (several at once), then deletes
/// the originals copied, 1000 keys a request: at a real S3's latency, half the requests
/// of a copy and a delete each. A crash in between leaves a blob in both places, which a
/// restore resolves by keeping the original.
async fn put_s3(
    store: &S3Store,
    prefix: &str,
    candidates: &[Candidate],
) -> Vec<(Digest, Result<bool, String>)> {
    let copies: Vec<(Digest, Result<bool, String>)> =
        stream::iter(candidates.iter().map(|c| async move {
            let (from, to) = (live_key(store, &c.digest), held_key_of(prefix, &c.digest));
            let copied = match store.copy(&from, &to).await {
                Ok(()) => Ok(true),
                Err(S3Error::NotFound(_)) => Ok(false),
                Err(e) => Err(e.to_string()),
            };
            (c.digest, copied)
        }))
        .buffer_unordered(store.concurrency.max(1))
        .collect()
        .await;
    let originals: Vec<(Digest, String)> = copies
        .iter()
        .filter(|(_, r)| matches!(r, Ok(true)))
        .map(|(d, _)| (*d, live_key(store, d)))
        .collect();
    let undeleted = store.delete_owned(&originals).await;
    copies
        .into_iter()
        .map(|(d, r)| match undeleted.get(&d) {
            Some(why) => (d, Err(why.clone())),
            None => (d, r),
        })
        .collect()
}

/// Copies `from` to `to`, then deletes `from`. `Ok(false)`: `from` was not there. A crash
/// between the two leaves both, never neither.
async fn move_s3(store: &S3Store, from: &str, to: &str) -> Result<bool, String> {
    if let Err(e) = store.copy(from, to).await {
        return match e {
            S3Error::NotFound(_) => Ok(false),
            e => Err(e.to_string()),
        };
    }
    match store
        .delete_keys(&[from.to_owned()])
        .await
        .into_iter()
        .next()
    {
        None => Ok(true),
        Some((key, why)) => Err(format!("s3://{}/{key}: {why}", store.bucket)),
    }
}

/// Failures, and the digests that were not there.
fn split(results: Vec<(Digest, Result<bool, String>)>) -> (Vec<Failure>, Vec<Digest>) {
    let mut failed = Vec::new();
    let mut absent = Vec::new();
    for (d, r) in results {
        match r {
            Ok(true) => {}
            Ok(false) => absent.push(d),
            Err(e) => failed.push((d, e)),
        }
    }
    failed.sort();
    absent.sort_unstable();
    (failed, absent)
}

/// Removes the quarantine's prefix directories the moves left empty (best effort, one
/// attempt a prefix).
fn tidy(dir: &Path, digests: &[Digest]) {
    let prefixes: std::collections::BTreeSet<String> =
        digests.iter().map(|d| d.hex()[..2].to_owned()).collect();
    for p in prefixes {
        let _ = fs::remove_dir(dir.join("sha256").join(p));
    }
}

/// The blobs a filesystem quarantine holds.
fn held_fs(dir: &Path) -> Result<Vec<Digest>, String> {
    let top = dir.join("sha256");
    let rd = match fs::read_dir(&top) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", top.display())),
    };
    let mut out = Vec::new();
    for prefix in rd {
        let prefix = prefix
            .map_err(|e| format!("{}: {e}", top.display()))?
            .path();
        let inner = fs::read_dir(&prefix).map_err(|e| format!("{}: {e}", prefix.display()))?;
        for blob in inner {
            let blob = blob
                .map_err(|e| format!("{}: {e}", prefix.display()))?
                .path();
            let rel = blob
                .strip_prefix(dir)
                .unwrap_or(&blob)
                .to_string_lossy()
                .into_owned();
            match held_key(&rel).filter(|_| blob.is_file()) {
                Some(d) => out.push(d),
                None => {
                    return Err(format!(
                        "{}: in quarantine where no digest puts it",
                        blob.display()
                    ));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_goes_into_quarantine_and_back_by_rename() {
        let root = tempfile::tempdir().expect("tempdir");
        let d = Digest::of(b"layer");
        let data = live(root.path(), &d);
        fs::create_dir_all(data.parent().expect("parent")).expect("mkdir");
        fs::write(&data, b"layer").expect("write");
        let q = Quarantine::fs(root.path());
        let c = Candidate {
            digest: d,
            size: 5,
            keys: Vec::new(),
        };
        let (failed, absent) = q.put(std::slice::from_ref(&c));
        assert!(
            failed.is_empty() && absent.is_empty(),
            "{failed:?} {absent:?}"
        );
        assert!(!data.exists());
        assert_eq!(q.held(), Ok(vec![d]));
        assert!(q.restore(&[d]).is_empty());
        assert_eq!(fs::read(&data).expect("back"), b"layer");
        assert_eq!(q.held(), Ok(vec![]));
        // Again, then purged: gone for good.
        q.put(std::slice::from_ref(&c));
        assert!(q.purge(&[d], &[]).is_empty());
        assert_eq!(q.held(), Ok(vec![]));
        assert!(!data.exists());
        // A blob already gone is reported as such, not as a failure.
        let (failed, absent) = q.put(&[c]);
        assert!(failed.is_empty());
        assert_eq!(absent, vec![d]);
    }

    #[test]
    fn only_a_digest_path_is_a_quarantined_blob() {
        let d = Digest::of(b"x");
        let hex = d.hex();
        assert_eq!(held_key(&format!("sha256/{}/{hex}", &hex[..2])), Some(d));
        assert_eq!(held_key(&format!("sha256/zz/{hex}")), None);
        assert_eq!(held_key(&format!("sha256/{}/{hex}/data", &hex[..2])), None);
        assert_eq!(held_key(".lock"), None);
    }
}
