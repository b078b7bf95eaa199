//! S3 lister: delimiter listings discover repositories, one paginated listing per
//! repository's `_manifests/` reads its links, and ETags resolve tag links without GETs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Sender;
use futures_util::stream::{self, StreamExt};
use md5::{Digest as _, Md5};
use tokio::runtime::Handle;

use super::BlobSource;
use super::link::parse_link;
use super::s3_blobs::S3Blobs;
use super::{Batch, Batcher, RepoFilter, RepoRecord, Revision, ScanStats, Storage, TagLink};
use crate::digest::{Digest, DigestMap, DigestSet};
use crate::s3::{GetKind, Listing, S3Store};

/// A registry in an S3 bucket.
pub struct S3Storage {
    store: Arc<S3Store>,
    blobs: S3Blobs,
    handle: Handle,
    /// Revision links listed so far (scan progress).
    links: Arc<AtomicU64>,
}

impl S3Storage {
    /// Storage over a connected bucket; requests run on `handle`'s runtime.
    pub fn new(store: Arc<S3Store>, handle: Handle) -> S3Storage {
        S3Storage {
            blobs: S3Blobs::new(store.clone(), handle.clone()),
            store,
            handle,
            links: Arc::default(),
        }
    }

    /// Counts every revision link listed into `links` (scan progress).
    pub fn with_progress(mut self, links: Arc<AtomicU64>) -> S3Storage {
        self.links = links;
        self
    }

    fn repositories(&self) -> String {
        format!("{}repositories/", self.store.base)
    }

    /// Every repository name `filter` admits, from one listing of `repositories/` rolled
    /// up at `/_`: a repository's keys all start `<name>/_` (`_layers`, `_manifests`,
    /// `_uploads`) and a name never holds `/_` (each of its components starts with a letter
    /// or a digit), so each repository at any depth is one common prefix, 1000 to a LIST
    /// (where a walk level by level costs a LIST per repository and per namespace).
    /// A candidate without `_manifests/` keys is dropped when its listing comes back empty.
    /// A server that refuses the delimiter, or ignores it, is walked level by level.
    async fn discover(&self, filter: &RepoFilter, warnings: &mut Vec<String>) -> Vec<String> {
        let top = self.repositories();
        let prefixes = match self.store.list_all(&top, Some("/_")).await {
            // Keys but no common prefix: the delimiter was ignored.
            Ok((objects, p)) if p.is_empty() && !objects.is_empty() => {
                return self.discover_walk(filter, warnings).await;
            }
            Ok((_, p)) => p,
            Err(e) => {
                tracing::debug!("listing rolled up at \"/_\" refused ({e}); walking instead");
                return self.discover_walk(filter, warnings).await;
            }
        };
        let mut repos: Vec<String> = prefixes
            .iter()
            .filter_map(|p| p.strip_prefix(&top)?.strip_suffix("/_"))
            .filter(|name| !name.is_empty() && filter.matches(name))
            .map(str::to_owned)
            .collect();
        repos.sort();
        repos.dedup();
        repos
    }

    /// Walks the directory tree above `_manifests` with delimiter listings, level by level:
    /// a LIST per namespace and per repository, for servers that refuse a delimiter other
    /// than `/` (MinIO does) or ignore it.
    async fn discover_walk(&self, filter: &RepoFilter, warnings: &mut Vec<String>) -> Vec<String> {
        let top = self.repositories();
        let mut repos = Vec::new();
        let mut level = vec![String::new()];
        while !level.is_empty() {
            let pages: Vec<(String, Listing)> = stream::iter(level.drain(..).map(|dir| async {
                let r = self.store.list_all(&format!("{top}{dir}"), Some("/")).await;
                (dir, r)
            }))
            .buffer_unordered(self.store.concurrency)
            .collect()
            .await;
            for (dir, page) in pages {
                let prefixes = match page {
                    Ok((_, p)) => p,
                    Err(e) => {
                        warnings.push(e);
                        continue;
                    }
                };
                for p in prefixes {
                    let child = p.strip_prefix(&top).unwrap_or(&p).to_owned();
                    let leaf = child.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                    match leaf {
                        "_manifests" => {
                            let name = dir.trim_end_matches('/');
                            if !name.is_empty() && filter.matches(name) {
                                repos.push(name.to_owned());
                            }
                        }
                        "_layers" | "_uploads" => {}
                        _ => level.push(child),
                    }
                }
            }
        }
        repos.sort();
        repos
    }

    /// See [`Storage::remove_manifests`]: one listing of `_manifests/` (the same that reads
    /// the links), then DeleteObjects in batches of 1000 for the doomed tags' keys, then for
    /// the revision links.
    async fn remove_async(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Vec<(Digest, Result<bool, String>)> {
        let (rec, keys) = self.read_repo_keys(repo).await;
        if let Some(p) = rec.problems.first() {
            let why = format!("cannot read {repo}: {p}");
            return digests.iter().map(|d| (*d, Err(why.clone()))).collect();
        }
        let prefix = format!("{}{repo}/_manifests/", self.repositories());
        let doomed: DigestSet = digests.iter().copied().collect();
        let mut tag_keys: Vec<(Digest, String)> = Vec::new();
        for t in rec.tags.iter().filter(|t| doomed.contains(&t.digest)) {
            let dir = format!("{prefix}tags/{}/", t.name);
            tag_keys.extend(
                keys.iter()
                    .filter(|k| k.starts_with(&dir))
                    .map(|k| (t.digest, k.clone())),
            );
        }
        let mut errors: DigestMap<String> = DigestMap::default();
        self.delete_owned(&tag_keys, &mut errors).await;
        let present: DigestSet = rec.revisions.iter().map(|r| r.digest).collect();
        // The revision link and, as the registry's delete does, `_layers/sha256/<hex>/link`
        // (deleting a key that is not there is no error on S3).
        let layers = format!("{}{repo}/_layers/sha256/", self.repositories());
        let links: Vec<(Digest, String)> = digests
            .iter()
            .filter(|d| !errors.contains_key(d) && present.contains(d))
            .flat_map(|d| {
                [
                    (*d, format!("{prefix}revisions/sha256/{}/link", d.hex())),
                    (*d, format!("{layers}{}/link", d.hex())),
                ]
            })
            .collect();
        self.delete_owned(&links, &mut errors).await;
        digests
            .iter()
            .map(|d| match errors.get(d) {
                Some(e) => (*d, Err(e.clone())),
                None => (*d, Ok(present.contains(d))),
            })
            .collect()
    }

    /// Deletes the keys, each owned by a digest; a failure is recorded against its digest.
    async fn delete_owned(&self, keys: &[(Digest, String)], errors: &mut DigestMap<String>) {
        for (d, why) in self.store.delete_owned(keys).await {
            errors.entry(d).or_insert(why);
        }
    }

    /// Lists one repository's `_manifests/` and resolves its links (GETs only where needed).
    async fn read_repo_async(&self, name: &str) -> RepoRecord {
        self.read_repo_keys(name).await.0
    }

    /// [`Self::read_repo_async`], also giving every key under `_manifests/` it listed.
    async fn read_repo_keys(&self, name: &str) -> (RepoRecord, Vec<String>) {
        let mut rec = RepoRecord {
            name: Arc::from(name),
            ..RepoRecord::default()
        };
        let prefix = format!("{}{name}/_manifests/", self.repositories());
        let objects = match self.store.list_all(&prefix, None).await {
            Ok((o, _)) => o,
            Err(e) => {
                rec.problems.push(e);
                return (rec, Vec::new());
            }
        };
        let etag = |o: &aws_sdk_s3::types::Object| {
            o.e_tag()
                .unwrap_or("")
                .trim_matches('"')
                .to_ascii_lowercase()
        };
        // No time means no grace period: such a link fails the repository closed.
        let mut untimed: Vec<String> = Vec::new();
        let mut time = |o: &aws_sdk_s3::types::Object| match o.last_modified() {
            Some(t) => t.secs(),
            None => {
                untimed.push(o.key().unwrap_or("?").to_owned());
                i64::MAX
            }
        };
        let mut known: Vec<Digest> = Vec::new();
        let mut revisions = Vec::new();
        let mut currents: BTreeMap<String, (String, i64, String)> = BTreeMap::new();
        let mut tag_dirs: BTreeMap<String, ()> = BTreeMap::new();
        for o in &objects {
            let Some(key) = o.key() else { continue };
            let rel = key.strip_prefix(&prefix).unwrap_or(key);
            let parts: Vec<&str> = rel.split('/').collect();
            match parts.as_slice() {
                ["revisions", "sha256", hex, "link"] => match Digest::from_hex(hex) {
                    Some(d) => {
                        self.links.fetch_add(1, Ordering::Relaxed);
                        known.push(d);
                        revisions.push((d, time(o), etag(o), key.to_owned()));
                    }
                    None => rec.problems.push(format!(
                        "s3://{}/{key}: not a sha256 revision",
                        self.store.bucket
                    )),
                },
                ["tags", tag, "current", "link"] => {
                    tag_dirs.insert((*tag).to_owned(), ());
                    currents.insert((*tag).to_owned(), (etag(o), time(o), key.to_owned()));
                }
                ["tags", tag, "index", "sha256", hex, "link"] => {
                    tag_dirs.insert((*tag).to_owned(), ());
                    known.extend(Digest::from_hex(hex));
                }
                _ => {}
            }
        }
        for key in untimed {
            rec.problems.push(format!(
                "s3://{}/{key}: the listing gives no LastModified, so the link's age is unknown",
                self.store.bucket
            ));
        }
        // Each known digest's md5 once: revisions are among them.
        let by_md5: HashMap<String, Digest> = known.iter().map(|d| (md5_hex(d), *d)).collect();
        for (d, at, tag, key) in revisions {
            if by_md5.get(&tag) == Some(&d) {
                rec.revisions.push(Revision {
                    digest: d,
                    linked_at: at,
                });
                continue;
            }
            // The ETag does not vouch for the body: read it.
            match self.store.get(&key, GetKind::Link).await {
                Ok(body) if parse_link(&body) == Some(d) => rec.revisions.push(Revision {
                    digest: d,
                    linked_at: at,
                }),
                Ok(_) => rec.problems.push(format!(
                    "s3://{}/{key}: malformed link (want exactly {d})",
                    self.store.bucket
                )),
                Err(e) => rec.problems.push(e.to_string()),
            }
        }
        for tag in tag_dirs.keys() {
            let Some((tag_etag, at, key)) = currents.get(tag) else {
                rec.problems.push(format!(
                    "s3://{}/{prefix}tags/{tag}/current/link: missing",
                    self.store.bucket
                ));
                continue;
            };
            let digest = match by_md5.get(tag_etag) {
                Some(d) => Some(*d),
                None => match self.store.get(key, GetKind::Link).await {
                    Ok(body) => parse_link(&body),
                    Err(e) => {
                        rec.problems.push(e.to_string());
                        continue;
                    }
                },
            };
            match digest {
                Some(digest) => rec.tags.push(TagLink {
                    name: tag.clone(),
                    digest,
                    linked_at: *at,
                }),
                None => rec.problems.push(format!(
                    "s3://{}/{key}: malformed link (want exactly sha256:<64 lowercase hex>)",
                    self.store.bucket
                )),
            }
        }
        let keys = objects
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        (rec, keys)
    }
}

/// Hex md5 of a link body `sha256:<hex>`: the ETag S3 gives a single-part upload of it.
fn md5_hex(d: &Digest) -> String {
    let mut body = [0u8; 71];
    body[..7].copy_from_slice(b"sha256:");
    body[7..].copy_from_slice(d.hex_buf().as_str().as_bytes());
    hex::encode(Md5::digest(body))
}

impl Storage for S3Storage {
    fn list(&self, filter: &RepoFilter, out: &Sender<Batch>) -> ScanStats {
        let mut warnings = Vec::new();
        let repos = self.handle.block_on(self.discover(filter, &mut warnings));
        let mut count = 0;
        self.handle.block_on(async {
            let mut records = stream::iter(repos.iter().map(|r| self.read_repo_keys(r)))
                .buffer_unordered(self.store.concurrency);
            let mut batcher = Batcher::default();
            while let Some((rec, keys)) = records.next().await {
                if keys.is_empty() && rec.problems.is_empty() {
                    continue; // `_layers/` or `_uploads/` only: not a repository
                }
                count += 1;
                if let Some(batch) = batcher.push(rec)
                    && out.send(batch).is_err()
                {
                    return;
                }
            }
            if let Some(batch) = batcher.finish() {
                let _ = out.send(batch);
            }
        });
        ScanStats {
            repositories: count,
            warnings,
        }
    }

    fn read_repo(&self, name: &str) -> RepoRecord {
        self.handle.block_on(self.read_repo_async(name))
    }

    fn read_tags(&self, name: &str) -> (Vec<TagLink>, Vec<String>) {
        let rec = self.read_repo(name);
        (rec.tags, rec.problems)
    }

    fn blobs(&self) -> &dyn BlobSource {
        &self.blobs
    }

    fn kind(&self) -> &'static str {
        "S3"
    }

    fn remove_manifests(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Vec<(Digest, Result<bool, String>)> {
        self.handle.block_on(self.remove_async(repo, digests))
    }

    fn requests(&self) -> Option<serde_json::Value> {
        Some(self.store.stats.to_json())
    }
}
