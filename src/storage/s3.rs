//! S3 lister: delimiter listings discover repositories, one paginated listing per
//! repository's `_manifests/` reads its links, and ETags resolve tag links without GETs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Sender;
use futures_util::stream::{self, StreamExt};
use md5::{Digest as _, Md5};
use tokio::runtime::Handle;

use super::BlobSource;
use super::link::parse_link;
use super::s3_blobs::S3Blobs;
use super::{Batch, Batcher, RemoveError, RepoFilter, ScanStats, Storage};
use crate::digest::{Digest, DigestMap, DigestSet};
use crate::record::{Problem, ProblemKind, RepoRecord, Revision, TagLink};
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
    /// A candidate without `_manifests` keys is dropped when its listing comes back empty.
    ///
    /// What the server answered is cross-checked before anything is concluded from what it
    /// did not return (a repository missed here is a repository whose blobs gc deletes):
    /// every common prefix must lie under `repositories/` and end in `/_`, no key holding
    /// `/_` may come back unrolled, and a listing that yields no repository at all is
    /// believed only when `repositories/` holds no key. Otherwise (a server that refuses
    /// the delimiter, ignores it, rewrites it or answers it with nothing) the tree is
    /// walked level by level.
    async fn discover(&self, filter: &RepoFilter, warnings: &mut Vec<String>) -> Vec<String> {
        let top = self.repositories();
        let (objects, prefixes) = match self.store.list_all(&top, Some("/_")).await {
            Ok(listing) => listing,
            Err(e) => {
                tracing::debug!("listing rolled up at \"/_\" refused ({e}); walking instead");
                return self.discover_walk(filter, warnings).await;
            }
        };
        match self.rolled_up(&top, &objects, &prefixes).await {
            Ok(names) => {
                let mut repos: Vec<String> = names
                    .into_iter()
                    .filter(|name| filter.matches(name))
                    .map(str::to_owned)
                    .collect();
                repos.sort();
                repos.dedup();
                repos
            }
            Err(why) => {
                tracing::debug!(
                    "listing rolled up at \"/_\" not believed ({why}); walking instead"
                );
                self.discover_walk(filter, warnings).await
            }
        }
    }

    /// The repository names a listing of `top` rolled up at `/_` gives, or why it cannot
    /// be believed.
    async fn rolled_up<'a>(
        &self,
        top: &str,
        objects: &[aws_sdk_s3::types::Object],
        prefixes: &'a [String],
    ) -> Result<Vec<&'a str>, Unbelieved> {
        let mut names = Vec::with_capacity(prefixes.len());
        for p in prefixes {
            match p.strip_prefix(top).and_then(|n| n.strip_suffix("/_")) {
                Some(name) if !name.is_empty() && !name.contains("/_") => names.push(name),
                _ => {
                    return Err(Unbelieved::OddPrefix {
                        prefix: p.clone(),
                        top: top.to_owned(),
                    });
                }
            }
        }
        for key in objects.iter().filter_map(|o| o.key()) {
            match key.strip_prefix(top) {
                Some(rest) if !rest.contains("/_") => {}
                _ => return Err(Unbelieved::Unrolled(key.to_owned())),
            }
        }
        if names.is_empty() {
            // Nothing rolled up: true only of a `repositories/` without keys.
            let probe = self
                .store
                .list_page(top, None, None, Some(1))
                .await
                .map_err(|e| Unbelieved::Probe {
                    top: top.to_owned(),
                    why: e.to_string(),
                })?;
            if !probe.contents().is_empty() || probe.key_count().unwrap_or(0) > 0 {
                return Err(Unbelieved::KeysWithoutRepositories(top.to_owned()));
            }
        }
        Ok(names)
    }

    /// Walks the directory tree above `_manifests` with delimiter listings, level by level:
    /// a LIST per namespace and per repository, for servers that refuse a delimiter other
    /// than `/` (MinIO does) or ignore it. A directory holding an object named `_manifests`
    /// is a repository too (its listing reports the object); a level whose listing comes
    /// back with keys below it (the `/` delimiter ignored) is a warning, never silence.
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
                let (objects, prefixes) = match page {
                    Ok(listing) => listing,
                    Err(e) => {
                        warnings.push(e.to_string());
                        continue;
                    }
                };
                let name = dir.trim_end_matches('/');
                let mut is_repo = false;
                for key in objects.iter().filter_map(|o| o.key()) {
                    let leaf = key.strip_prefix(&top).unwrap_or(key);
                    let leaf = leaf.strip_prefix(dir.as_str()).unwrap_or(leaf);
                    if leaf.contains('/') {
                        warnings.push(format!(
                            "listing s3://{}/{top}{dir} with the delimiter \"/\" gave {key}: \
                             the server ignores the delimiter, so repositories cannot be discovered",
                            self.store.bucket
                        ));
                        break;
                    }
                    is_repo |= leaf == "_manifests";
                }
                for p in prefixes {
                    let child = p.strip_prefix(&top).unwrap_or(&p).to_owned();
                    let leaf = child.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                    match leaf {
                        "_manifests" => is_repo = true,
                        "_layers" | "_uploads" => {}
                        _ => level.push(child),
                    }
                }
                if is_repo && !name.is_empty() && filter.matches(name) {
                    repos.push(name.to_owned());
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
    ) -> Vec<(Digest, Result<bool, RemoveError>)> {
        let (rec, keys) = self.read_repo_keys(repo).await;
        if let Some(p) = rec.problems.first() {
            let why = RemoveError::RepositoryUnread(format!("cannot read {repo}: {p}"));
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
                Some(e) => (*d, Err(RemoveError::Remove(e.clone()))),
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
        let manifests = format!("{}{name}/_manifests", self.repositories());
        let Some(objects) = self.list_manifests(&manifests, &mut rec.problems).await else {
            return (rec, Vec::new());
        };
        let prefix = format!("{manifests}/");
        let mut links = self.sort_links(&objects, &prefix, &mut rec.problems);
        // Each known digest's md5 once: revisions are among them.
        let by_md5: HashMap<String, Digest> =
            links.known.iter().map(|d| (md5_hex(d), *d)).collect();
        let revisions = std::mem::take(&mut links.revisions);
        self.resolve_revisions(revisions, &by_md5, &mut rec).await;
        self.resolve_tags(&links, &prefix, &by_md5, &mut rec).await;
        let keys = objects
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        (rec, keys)
    }

    /// Every object under `<name>/_manifests/`, or `None` when the listing failed (the
    /// problem says why). Listed without the slash, so that an object named exactly
    /// `<name>/_manifests` (which S3 allows beside the `_manifests/` keys) shows up, as a
    /// problem: same requests.
    async fn list_manifests(
        &self,
        manifests: &str,
        problems: &mut Vec<Problem>,
    ) -> Option<Vec<aws_sdk_s3::types::Object>> {
        let prefix = format!("{manifests}/");
        let mut objects = match self.store.list_all(manifests, None).await {
            Ok((o, _)) => o,
            Err(e) => {
                problems.push(Problem::new(ProblemKind::Unlistable, e.to_string()));
                return None;
            }
        };
        objects.retain(|o| {
            let key = o.key().unwrap_or("");
            if not_a_directory(key, manifests) {
                problems.push(Problem::new(
                    ProblemKind::NotADirectory,
                    format!(
                        "s3://{}/{key}: an object where the directory {key}/ belongs",
                        self.store.bucket
                    ),
                ));
            }
            key.starts_with(&prefix)
        });
        Some(objects)
    }

    /// Sorts the keys of a `_manifests/` listing into revision links, tags' current links
    /// and the digests the listing names; a revision directory that is no sha256 digest and
    /// a link without `LastModified` are problems.
    fn sort_links(
        &self,
        objects: &[aws_sdk_s3::types::Object],
        prefix: &str,
        problems: &mut Vec<Problem>,
    ) -> ListedLinks {
        let mut links = ListedLinks::default();
        // No time means no grace period: such a link fails the repository closed.
        let mut untimed: Vec<String> = Vec::new();
        let mut time = |o: &aws_sdk_s3::types::Object| match o.last_modified() {
            Some(t) => t.secs(),
            None => {
                untimed.push(o.key().unwrap_or("?").to_owned());
                i64::MAX
            }
        };
        for o in objects {
            let Some(key) = o.key() else { continue };
            let rel = key.strip_prefix(prefix).unwrap_or(key);
            let parts: Vec<&str> = rel.split('/').collect();
            match parts.as_slice() {
                ["revisions", "sha256", hex, "link"] => match Digest::from_hex(hex) {
                    Some(d) => {
                        self.links.fetch_add(1, Ordering::Relaxed);
                        links.known.push(d);
                        let link = ListedLink::new(o, time(o), key);
                        links.revisions.push((d, link));
                    }
                    None => problems.push(Problem::new(
                        ProblemKind::BadName,
                        format!("s3://{}/{key}: not a sha256 revision", self.store.bucket),
                    )),
                },
                ["tags", tag, "current", "link"] => {
                    links.tag_dirs.insert((*tag).to_owned());
                    let link = ListedLink::new(o, time(o), key);
                    links.currents.insert((*tag).to_owned(), link);
                }
                ["tags", tag, "index", "sha256", hex, "link"] => {
                    links.tag_dirs.insert((*tag).to_owned());
                    links.known.extend(Digest::from_hex(hex));
                }
                _ => {}
            }
        }
        for key in untimed {
            problems.push(Problem::new(
                ProblemKind::UnknownAge,
                format!(
                    "s3://{}/{key}: the listing gives no LastModified, so the link's age is unknown",
                    self.store.bucket
                ),
            ));
        }
        links
    }

    /// Adds each listed revision link to `rec`: by its ETag where that is the md5 of the
    /// body it must hold, else by a GET of its body.
    async fn resolve_revisions(
        &self,
        revisions: Vec<(Digest, ListedLink)>,
        by_md5: &HashMap<String, Digest>,
        rec: &mut RepoRecord,
    ) {
        for (d, link) in revisions {
            let linked_at = link.at;
            if by_md5.get(&link.etag) == Some(&d) {
                rec.revisions.push(Revision {
                    digest: d,
                    linked_at,
                });
                continue;
            }
            // The ETag does not vouch for the body: read it.
            let key = link.key;
            match self.store.get(&key, GetKind::Link).await {
                Ok(body) if parse_link(&body) == Some(d) => rec.revisions.push(Revision {
                    digest: d,
                    linked_at,
                }),
                Ok(_) => rec.problems.push(Problem::new(
                    ProblemKind::MalformedLink,
                    format!(
                        "s3://{}/{key}: malformed link (want exactly {d})",
                        self.store.bucket
                    ),
                )),
                Err(e) => rec
                    .problems
                    .push(Problem::new(ProblemKind::Unreadable, e.to_string())),
            }
        }
    }

    /// Adds each tag's current target to `rec`: by the ETag where it is the md5 of a known
    /// digest's link body, else by a GET of its `current/link`.
    async fn resolve_tags(
        &self,
        links: &ListedLinks,
        prefix: &str,
        by_md5: &HashMap<String, Digest>,
        rec: &mut RepoRecord,
    ) {
        for tag in &links.tag_dirs {
            let Some(link) = links.currents.get(tag) else {
                rec.problems.push(Problem::new(
                    ProblemKind::MissingLink,
                    format!(
                        "s3://{}/{prefix}tags/{tag}/current/link: missing",
                        self.store.bucket
                    ),
                ));
                continue;
            };
            let digest = match by_md5.get(&link.etag) {
                Some(d) => Some(*d),
                None => match self.store.get(&link.key, GetKind::Link).await {
                    Ok(body) => parse_link(&body),
                    Err(e) => {
                        rec.problems
                            .push(Problem::new(ProblemKind::Unreadable, e.to_string()));
                        continue;
                    }
                },
            };
            match digest {
                Some(digest) => rec.tags.push(TagLink {
                    name: tag.clone(),
                    digest,
                    linked_at: link.at,
                }),
                None => rec.problems.push(Problem::new(
                    ProblemKind::MalformedLink,
                    format!(
                        "s3://{}/{}: malformed link (want exactly sha256:<64 lowercase hex>)",
                        self.store.bucket, link.key
                    ),
                )),
            }
        }
    }
}

/// Why a listing rolled up at `/_` is not believed (the tree is then walked instead).
#[derive(Debug, thiserror::Error)]
enum Unbelieved {
    /// A common prefix that is no `<name>/_` under `repositories/`.
    #[error("common prefix {prefix:?} is no <name>/_ under {top}")]
    OddPrefix { prefix: String, top: String },
    /// A key holding `/_` that the server did not roll up.
    #[error("key {0:?} came back unrolled")]
    Unrolled(String),
    /// The probe for keys under `repositories/` failed.
    #[error("probing {top}: {why}")]
    Probe { top: String, why: String },
    /// No repository rolled up, yet `repositories/` holds keys.
    #[error("no repository, yet {0} holds keys")]
    KeysWithoutRepositories(String),
}

/// A link key as a listing gives it: its ETag (lowercase, unquoted), time and key.
struct ListedLink {
    etag: String,
    at: i64,
    key: String,
}

impl ListedLink {
    fn new(o: &aws_sdk_s3::types::Object, at: i64, key: &str) -> ListedLink {
        ListedLink {
            etag: o
                .e_tag()
                .unwrap_or("")
                .trim_matches('"')
                .to_ascii_lowercase(),
            at,
            key: key.to_owned(),
        }
    }
}

/// The links of one `_manifests/` listing, sorted out by [`S3Storage::sort_links`].
#[derive(Default)]
struct ListedLinks {
    /// Every digest the listing names (revisions, tags' index entries): the ETags that
    /// may be resolved without a GET.
    known: Vec<Digest>,
    /// Revision links, in listing order.
    revisions: Vec<(Digest, ListedLink)>,
    /// Each tag's `current/link`, by tag name.
    currents: BTreeMap<String, ListedLink>,
    /// Every tag directory that holds any key, sorted.
    tag_dirs: BTreeSet<String>,
}

/// Whether `key` is an object named as one of the directories a repository's links live
/// in (`<name>/_manifests`, `_manifests/revisions`, `_manifests/revisions/sha256`,
/// `_manifests/tags`, with no slash after it): S3 lets such an object sit beside the keys
/// below the same name, and the registry's S3 driver (2.8) then sees a file there (`Stat`
/// takes the exact key first). Its collector's walk (`registry.Enumerate` with
/// `handleRepository`) ends the listing of a directory at a `_`-named file (`ErrSkipDir`
/// for a file ends that page): checked with `docker-registry garbage-collect --dry-run`
/// 2.8.2 on moto, an object `a/_layers` left `a/nested` unmarked and its blobs listed for
/// deletion. regsweep fails the repository closed instead. A `_layers` object is not
/// looked for: regsweep never reads `_layers` to find or mark anything (`a/nested` is
/// found by the rolled-up listing all the same), and seeing it would cost a LIST per
/// repository.
fn not_a_directory(key: &str, manifests: &str) -> bool {
    key.strip_prefix(manifests)
        .is_some_and(|rest| ["", "/revisions", "/revisions/sha256", "/tags"].contains(&rest))
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

    fn read_tags(&self, name: &str) -> (Vec<TagLink>, Vec<Problem>) {
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
    ) -> Vec<(Digest, Result<bool, RemoveError>)> {
        self.handle.block_on(self.remove_async(repo, digests))
    }

    fn read_repo_file(&self, repo: &str, rel: &str) -> std::io::Result<Option<Vec<u8>>> {
        let key = format!("{}{repo}/{rel}", self.repositories());
        match self.handle.block_on(self.store.get(&key, GetKind::Link)) {
            Ok(body) => Ok(Some(body)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn requests(&self) -> Option<serde_json::Value> {
        Some(self.store.stats.to_json())
    }
}
