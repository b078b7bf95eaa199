//! GC sweep on a filesystem registry: lists `blobs/sha256/<2 hex>/` in parallel and removes
//! each unmarked blob old enough, as the registry's collector does (the blob's directory,
//! data and all). It touches nothing else: no repository file, no `_uploads`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use rayon::prelude::*;

use super::mark::MarkSet;
use crate::digest::Digest;
use crate::scan::fs_blobs::blob_dir_rel;
pub use crate::scan::fs_blobs::blobs_dir;

/// A blob the sweep would remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The blob.
    pub digest: Digest,
    /// Its data's size in bytes.
    pub size: u64,
    /// Its keys, on S3 (its `data` and anything else under its directory); empty on a
    /// filesystem, where the directory goes whole.
    pub keys: Vec<String>,
}

/// What the listing found besides the candidates.
#[derive(Debug, Default)]
pub struct Listed {
    /// Unmarked blobs old enough to go, by digest.
    pub candidates: Vec<Candidate>,
    /// Blobs some manifest references.
    pub marked: usize,
    /// Unmarked blobs younger than the minimum age (an upload whose manifest may follow).
    pub young: usize,
}

impl Listed {
    /// Blobs listed: candidates, marked and young.
    pub fn seen(&self) -> usize {
        self.candidates.len() + self.marked + self.young
    }

    /// Takes in an unmarked blob last modified at `modified`: young, or a candidate.
    pub fn admit(&mut self, blob: Candidate, modified: i64, now: i64, min_age_secs: i64) {
        if now.saturating_sub(modified) < min_age_secs {
            self.young += 1;
        } else {
            self.candidates.push(blob);
        }
    }
}

fn blob_dir(root: &Path, d: &Digest) -> PathBuf {
    blobs_dir(root).join(blob_dir_rel(d))
}

/// Lists the blobs no manifest references and that are older than `min_age_secs` at `now`.
/// A blob whose age cannot be told is kept and reported as an error.
/// Counts the blobs it lists into `listed`.
pub fn list(
    root: &Path,
    marked: &MarkSet,
    now: i64,
    min_age_secs: i64,
    listed: &AtomicU64,
) -> Result<Listed, String> {
    let dir = blobs_dir(root);
    let prefixes: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    let parts: Vec<Result<Listed, String>> = prefixes
        .par_iter()
        .map(|p| {
            let part = list_prefix(p, marked, now, min_age_secs);
            if let Ok(part) = &part {
                listed.fetch_add(part.seen() as u64, Ordering::Relaxed);
            }
            part
        })
        .collect();
    let mut out = Listed::default();
    for part in parts {
        let part = part?;
        out.candidates.extend(part.candidates);
        out.marked += part.marked;
        out.young += part.young;
    }
    out.candidates.sort_by_key(|c| c.digest);
    Ok(out)
}

fn list_prefix(
    dir: &Path,
    marked: &MarkSet,
    now: i64,
    min_age_secs: i64,
) -> Result<Listed, String> {
    let mut out = Listed::default();
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = entry.file_name();
        // What is not a sha256 blob directory the registry's collector leaves too.
        let Some(digest) = name.to_str().and_then(Digest::from_hex) else {
            continue;
        };
        if marked.contains(&digest) {
            out.marked += 1;
            continue;
        }
        let data = entry.path().join("data");
        let meta = match fs::symlink_metadata(&data) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // no blob here
            Err(e) => return Err(format!("{}: {e}", data.display())),
        };
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            .ok_or_else(|| format!("{}: its modification time is unknown", data.display()))?;
        let blob = Candidate {
            digest,
            size: meta.len(),
            keys: Vec::new(),
        };
        out.admit(blob, modified, now, min_age_secs);
    }
    Ok(out)
}

/// Removes each candidate's blob directory; gives the failures (digest and why).
pub fn remove(root: &Path, candidates: &[Candidate]) -> Vec<(Digest, String)> {
    candidates
        .par_iter()
        .filter_map(|c| {
            let dir = blob_dir(root, &c.digest);
            remove_blob_dir(&dir)
                .err()
                .map(|e| (c.digest, format!("{}: {e}", dir.display())))
        })
        .collect()
}

/// Removes a blob's directory: its `data` and the directory (two system calls), or, when
/// it holds anything else, all of it. Already gone is fine.
fn remove_blob_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_file(dir.join("data")) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => return remove_all(dir),
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => remove_all(dir),
    }
}

fn remove_all(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}
