//! GC sweep on a filesystem registry: lists `blobs/sha256/<2 hex>/` in parallel and removes
//! each unmarked blob old enough, as the registry's collector does (the blob's directory,
//! data and all). It touches nothing else: no repository file, no `_uploads`.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::mark::MarkSet;
use crate::digest::Digest;
use crate::storage::fs_blobs::blob_dir_rel;
pub use crate::storage::fs_blobs::blobs_dir;

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
/// A blob whose age cannot be told is kept and reported as an error. So is any `data` file
/// whose path does not match its digest (see [`misplaced`]): nothing may be deleted then.
/// Counts the blobs it lists into `listed`.
pub fn list(
    root: &Path,
    marked: &MarkSet,
    now: i64,
    min_age_secs: i64,
    listed: &AtomicU64,
) -> Result<Listed, String> {
    let dir = blobs_dir(root);
    if let Some(parent) = dir.parent() {
        for name in entries_of(parent)?.unwrap_or_default() {
            if name != "sha256" {
                misplaced(&parent.join(name))?;
            }
        }
    }
    let Some(entries) = entries(&dir)? else {
        return Ok(Listed::default());
    };
    let mut prefixes: Vec<PathBuf> = Vec::with_capacity(entries.len());
    for name in entries {
        let path = dir.join(&name);
        if name.to_str().is_some_and(is_prefix) {
            prefixes.push(path);
        } else {
            misplaced(&path)?;
        }
    }
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

/// `blobs/sha256`'s prefix directories are named by two lowercase hex digits.
fn is_prefix(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The names of a directory's entries; `None` when it is not there.
fn entries(dir: &Path) -> Result<Option<Vec<OsString>>, String> {
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map(Some)
            .map_err(|e| format!("cannot list {}: {e}", dir.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot list {}: {e}", dir.display())),
    }
}

/// [`entries`], for a directory that may also be a file (then it has none).
fn entries_of(dir: &Path) -> Result<Option<Vec<OsString>>, String> {
    match fs::symlink_metadata(dir) {
        Ok(m) if !m.is_dir() => Ok(None),
        _ => entries(dir),
    }
}

/// `Err` naming the first `data` file at or below `path`, which is no place for a blob
/// (not `blobs/sha256/<2 hex>/<64 lowercase hex>/data` with the hex starting with the 2):
/// the registry's collector (2.8 `blobStore.Enumerate` walks all of `blobs/`, and
/// `digestFromPath` in `paths.go` makes a digest of every `.../data` path) stops its sweep
/// with an error on such a path, or takes it for another algorithm's blob. regsweep never
/// deletes on a path it cannot account for. Directories are entered, symlinks never
/// followed; only odd entries come here, so the common path costs nothing.
fn misplaced(path: &Path) -> Result<(), String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if !meta.is_dir() {
        return if path.file_name().is_some_and(|n| n == "data") {
            Err(format!(
                "{}: a blob's data where no digest puts it (blobs live at \
                 blobs/sha256/<first 2 hex>/<64 lowercase hex>/data)",
                path.display()
            ))
        } else {
            Ok(())
        };
    }
    for name in entries(path)?.unwrap_or_default() {
        misplaced(&path.join(name))?;
    }
    Ok(())
}

fn list_prefix(
    dir: &Path,
    marked: &MarkSet,
    now: i64,
    min_age_secs: i64,
) -> Result<Listed, String> {
    let mut out = Listed::default();
    let prefix = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .as_bytes();
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = entry.file_name();
        let digest = match name.to_str().and_then(Digest::from_hex) {
            Some(d) if name.as_bytes().starts_with(prefix) => d,
            // Anything else is left alone, as the registry's collector leaves it, unless
            // it holds a blob's data (a misplaced or misnamed blob directory, a `data`
            // file here): then it stops the collection.
            _ => {
                misplaced(&entry.path())?;
                continue;
            }
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
        let committed = commit_time(&entry.path(), &meta, now, min_age_secs)
            .map_err(|why| format!("{}: {why}", data.display()))?;
        let blob = Candidate {
            digest,
            size: meta.len(),
            keys: Vec::new(),
        };
        out.admit(blob, committed, now, min_age_secs);
    }
    Ok(out)
}

/// When a blob was committed (unix seconds), from its `data`'s metadata: the registry
/// writes an upload under `_uploads/` and commits it with a rename into
/// `blobs/sha256/<2>/<hex>/data`, which keeps the data's modification time (its last byte
/// written, maybe hours before) and sets its change time and its directory's modification
/// time (the rename adds the entry) to the commit. The grace period runs from the commit.
///
/// The modification time alone decides when it is within the grace period (young either
/// way) or the change time is not (no rename, `chmod` or `touch` within it: the common
/// case, no system call more). When the change time is within the grace period but the
/// modification time is not, one more `stat` reads the blob directory's modification time,
/// the commit's own clock: recent after a commit (the blob is young); old after a `chmod`,
/// `chown` or `cp -a` restore, or where the tree was aged on purpose with `touch -d`, which
/// sets the change time to now (nothing can set it back) and the directory's time too.
/// The change time alone would keep every blob so touched for MIN_AGE, and make a tree
/// impossible to age for a test.
fn commit_time(
    blob_dir: &Path,
    data: &fs::Metadata,
    now: i64,
    min_age_secs: i64,
) -> Result<i64, String> {
    let young = |t: i64| now.saturating_sub(t) < min_age_secs;
    let modified = data.mtime();
    if modified < 0 {
        return Err("modification time before 1970: its age is unknown".into());
    }
    if young(modified) || !young(data.ctime()) {
        return Ok(modified);
    }
    let dir = fs::symlink_metadata(blob_dir).map_err(|e| {
        format!("changed since it was written, and its directory's time is unreadable ({e})")
    })?;
    Ok(modified.max(dir.mtime()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(root: &Path, prefix: &str, hex: &str) -> PathBuf {
        let dir = blobs_dir(root).join(prefix).join(hex);
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("data"), b"x").expect("write");
        dir.join("data")
    }

    fn listing(root: &Path) -> Result<Listed, String> {
        list(root, &MarkSet::default(), i64::MAX, 0, &AtomicU64::new(0))
    }

    #[test]
    fn a_data_file_where_no_digest_puts_it_stops_the_listing_naming_it() {
        let d = Digest::of(b"blob");
        let hex = d.hex();
        let other = if hex.starts_with("00") { "01" } else { "00" };
        let cases: Vec<(&str, String, &str)> = vec![
            (other, hex.clone(), "data"),
            (&hex[..2], hex.to_uppercase(), "data"),
            (&hex[..2], "xyz".to_owned(), "data"),
            ("zz", hex.clone(), "data"),
            ("zz", "deeper/still".to_owned(), "data"),
        ];
        for (prefix, name, file) in cases {
            let root = tempfile::tempdir().expect("tempdir");
            blob(root.path(), &hex[..2], &hex);
            let dir = blobs_dir(root.path()).join(prefix).join(&name);
            fs::create_dir_all(&dir).expect("mkdir");
            fs::write(dir.join(file), b"x").expect("write");
            let e = listing(root.path()).expect_err("misplaced");
            assert!(
                e.contains(&dir.join(file).display().to_string()),
                "{prefix}/{name}: {e}"
            );
        }
        // Another algorithm's directory, and a `data` file right under a prefix.
        for rel in [
            format!("sha512/ab/{hex}{hex}/data"),
            "sha256/ab/data".into(),
        ] {
            let root = tempfile::tempdir().expect("tempdir");
            blob(root.path(), &hex[..2], &hex);
            let path = root.path().join("docker/registry/v2/blobs").join(rel);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, b"x").expect("write");
            let e = listing(root.path()).expect_err("misplaced");
            assert!(e.contains(&path.display().to_string()), "{e}");
        }
        // Odd entries without data are left alone, as the registry's collector leaves them.
        let root = tempfile::tempdir().expect("tempdir");
        blob(root.path(), &hex[..2], &hex);
        for junk in ["zz/notes", &format!("{}/junk/readme", &hex[..2])] {
            let path = blobs_dir(root.path()).join(junk);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, b"x").expect("write");
        }
        let listed = listing(root.path()).expect("listed");
        assert_eq!(listed.candidates.len(), 1);
        assert_eq!(listed.candidates[0].digest, d);
    }
}
