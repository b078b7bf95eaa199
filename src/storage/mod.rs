//! Storage access behind one trait, [`Storage`]: the scan's listing of repositories, link
//! and blob reads streamed as one record per repository in batches, and the removal of
//! links that offline deletes (`--delete-via storage`) use. It reports what storage holds
//! and removes what it is told; it decides no verdict.

pub mod fs;
pub mod fs_at;
pub mod fs_blobs;
pub mod link;
pub mod s3;
pub mod s3_blobs;

use std::io;

use crossbeam_channel::Sender;
use globset::GlobSet;
use rayon::prelude::*;

use crate::digest::Digest;
use crate::record::{Problem, RepoRecord, TagLink};

/// Anything that can hand out a blob's bytes by digest (filesystem, S3).
pub trait BlobSource: Sync {
    /// The blob's bytes (a fast read: the caller checks them against the digest).
    fn read_blob(&self, digest: &Digest) -> io::Result<Vec<u8>>;
    /// The blob's bytes read again with every check, after [`BlobSource::read_blob`]'s
    /// bytes did not match the digest.
    fn reread(&self, digest: &Digest) -> io::Result<Vec<u8>> {
        self.read_blob(digest)
    }
    /// Where the blob lives, for error messages.
    fn locate(&self, digest: &Digest) -> String;
    /// Many blobs at once, in order; in parallel where that pays.
    fn read_many(&self, digests: &[Digest]) -> Vec<io::Result<Vec<u8>>> {
        if digests.len() > 64 {
            digests.par_iter().map(|d| self.read_blob(d)).collect()
        } else {
            digests.iter().map(|d| self.read_blob(d)).collect()
        }
    }
}

/// A registry's storage: one trait, two implementations (filesystem, S3).
pub trait Storage: Send + Sync {
    /// Lists every repository `filter` admits, sending records in batches to `out`.
    fn list(&self, filter: &RepoFilter, out: &Sender<Batch>) -> ScanStats;
    /// Reads one repository now (for re-verification before deleting).
    fn read_repo(&self, name: &str) -> RepoRecord;
    /// Reads one repository's tags now, with any problems met.
    fn read_tags(&self, name: &str) -> (Vec<TagLink>, Vec<Problem>);
    /// Manifest and config bodies.
    fn blobs(&self) -> &dyn BlobSource;
    /// `local` or `S3`, as the original's "Running against … storage" line says.
    fn kind(&self) -> &'static str;
    /// Removes manifests of a repository directly in storage, as the registry's own delete
    /// does (docs/POLICY.md): every tag directory whose current link points at one of
    /// them, then its revision link. Only for a stopped or read-only registry. Each digest
    /// gets `Ok(true)` removed, `Ok(false)` already gone, or the error.
    fn remove_manifests(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Vec<(Digest, Result<bool, RemoveError>)>;
    /// The body of the file at `rel` inside repository `repo` (`_layers/sha512/<hex>/link`),
    /// or `None` where there is none: how a digest of another algorithm is resolved.
    fn read_repo_file(&self, repo: &str, rel: &str) -> io::Result<Option<Vec<u8>>>;
    /// Request accounting (S3 only).
    fn requests(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Why [`Storage::remove_manifests`] did not remove a manifest; the text names the
/// repository, path or key.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RemoveError {
    /// The repository's links could not be read first, so nothing in it was removed.
    #[error("{0}")]
    RepositoryUnread(String),
    /// A tag directory, link file or key could not be removed.
    #[error("{0}")]
    Remove(String),
}

/// A batch of repository records: what crosses the lister → planner channel.
pub type Batch = Vec<RepoRecord>;

/// Most repository records in one batch to the planners: many small repositories cost
/// one channel send (and one planner wake-up) per 32, and a batch stays small enough that
/// every planner thread gets work early. Chosen, not tuned: no other value was measured.
const PLANNER_BATCH_REPOS: usize = 32;
/// Links (revisions and tags) after which a batch goes to the planners before it is full:
/// one big repository is planned while the next is read (20 repositories of 5,000
/// revisions went as one batch to one planner; sent this way, a warm 100k dry run went
/// from 1.4 s to 1.1 s).
const PLANNER_BATCH_LINKS: usize = 1024;

/// Gathers records into batches for the planners: [`PLANNER_BATCH_REPOS`] repositories or
/// [`PLANNER_BATCH_LINKS`] links, whichever comes first.
#[derive(Default)]
pub struct Batcher {
    batch: Batch,
    links: usize,
}

impl Batcher {
    /// Adds a record; gives back a batch that is ready to send.
    pub fn push(&mut self, rec: RepoRecord) -> Option<Batch> {
        self.links += rec.revisions.len() + rec.tags.len();
        self.batch.push(rec);
        if self.links >= PLANNER_BATCH_LINKS || self.batch.len() >= PLANNER_BATCH_REPOS {
            self.links = 0;
            return Some(std::mem::take(&mut self.batch));
        }
        None
    }

    /// What is left to send, if anything.
    pub fn finish(self) -> Option<Batch> {
        (!self.batch.is_empty()).then_some(self.batch)
    }
}

/// Which repositories a run covers: `REPO_FILTER` (exact) and `--repo` globs.
#[derive(Clone, Debug, Default)]
pub struct RepoFilter {
    /// Exact repository name (`REPO_FILTER`).
    pub exact: Option<String>,
    /// Glob patterns (`--repo`); a repository must match one of them.
    pub globs: Option<GlobSet>,
    /// `--shard K/N`: only repositories whose name hashes to shard K of N.
    pub shard: Option<Shard>,
    /// Only these repositories (the ones a plan file names).
    pub names: Option<std::collections::BTreeSet<String>>,
}

impl RepoFilter {
    /// True when the repository `name` is part of this run.
    pub fn matches(&self, name: &str) -> bool {
        self.exact.as_deref().is_none_or(|e| e == name)
            && self.globs.as_ref().is_none_or(|g| g.is_match(name))
            && self.shard.is_none_or(|s| s.owns(name))
            && self.names.as_ref().is_none_or(|n| n.contains(name))
    }
}

/// One of N disjoint parts of the registry, by a stable hash of the repository name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This part, `0..count`.
    pub index: u32,
    /// How many parts.
    pub count: u32,
}

impl Shard {
    /// Parses `K/N` with `0 <= K < N`.
    pub fn parse(s: &str) -> Result<Shard, ShardError> {
        let bad = || ShardError(s.to_owned());
        let (k, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index = k.trim().parse::<u32>().map_err(|_| bad())?;
        let count = n.trim().parse::<u32>().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether repository `name` belongs to this shard: the first 8 bytes of the SHA-256
    /// of its name, modulo N (stable across versions, machines and runs).
    pub fn owns(&self, name: &str) -> bool {
        let h = Digest::of(name.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&h.0[..8]);
        u64::from_be_bytes(first) % u64::from(self.count) == u64::from(self.index)
    }
}

/// A `--shard` value that is not `K/N` with `0 <= K < N`.
#[derive(Clone, Debug, thiserror::Error)]
#[error("--shard {0:?} is not K/N with 0 <= K < N (e.g. 0/4)")]
pub struct ShardError(String);

/// What a listing pass counted and which problems it met outside any repository.
#[derive(Clone, Debug, Default)]
pub struct ScanStats {
    /// Repositories listed (after filtering).
    pub repositories: usize,
    /// Problems outside any single repository (unreadable directories, odd names).
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Revision;

    fn record(revisions: usize) -> RepoRecord {
        let rev = Revision {
            digest: Digest::of(b"r"),
            linked_at: 0,
        };
        RepoRecord {
            revisions: vec![rev; revisions],
            ..RepoRecord::default()
        }
    }

    #[test]
    fn batches_close_at_32_repositories_or_1024_links() {
        let mut b = Batcher::default();
        let sizes: Vec<usize> = (0..40)
            .filter_map(|_| b.push(record(1)))
            .map(|batch| batch.len())
            .collect();
        assert_eq!(sizes, [PLANNER_BATCH_REPOS]);
        assert_eq!(b.finish().map(|b| b.len()), Some(40 - PLANNER_BATCH_REPOS));

        let mut b = Batcher::default();
        assert!(b.push(record(1000)).is_none());
        assert_eq!(b.push(record(24)).map(|b| b.len()), Some(2));
        assert_eq!(b.push(record(5000)).map(|b| b.len()), Some(1));
        assert!(b.finish().is_none());
    }
}
