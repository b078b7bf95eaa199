//! GC mark: every blob any revision (or tag target) of any repository references, the union
//! over all repositories. Any link, listing or manifest it cannot read, parse or
//! digest-check aborts the whole collection: a blob is shared across repositories.

use super::error::GcError;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::bounded;

use crate::digest::{Digest, DigestMap, DigestSet};
use crate::meta::checked_manifest;
use crate::meta::parse::Manifest;
use crate::record::{ProblemKind, RepoRecord};
use crate::report::status::Counters;
use crate::storage::link::parse_link;
use crate::storage::{Batch, BlobSource, RepoFilter, Storage};

/// The marked digests: a sorted vector without duplicates (32 bytes a blob once
/// finished), with new marks gathered apart and merged in as they pile up.
#[derive(Debug, Default)]
pub struct MarkSet {
    sorted: Vec<Digest>,
    pending: Vec<Digest>,
}

impl MarkSet {
    /// Marks `d`.
    pub fn insert(&mut self, d: Digest) {
        self.pending.push(d);
        if self.pending.len() >= self.sorted.len().max(1 << 16) {
            self.compact();
        }
    }

    /// Marks every one of `ds`.
    pub fn extend(&mut self, ds: impl IntoIterator<Item = Digest>) {
        for d in ds {
            self.insert(d);
        }
    }

    /// Merges the pending marks into the sorted ones.
    fn compact(&mut self) {
        self.sorted.append(&mut self.pending);
        self.sorted.sort_unstable();
        self.sorted.dedup();
    }

    /// Merges everything and gives back spare memory: call before looking marks up.
    pub fn finish(&mut self) {
        self.compact();
        self.sorted.shrink_to_fit();
        self.pending = Vec::new();
    }

    /// Whether `d` is marked (after [`MarkSet::finish`]).
    pub fn contains(&self, d: &Digest) -> bool {
        self.sorted.binary_search(d).is_ok() || self.pending.contains(d)
    }

    /// Marked digests (after [`MarkSet::finish`]).
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether nothing is marked.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty() && self.pending.is_empty()
    }

    /// Bytes the set holds.
    pub fn bytes(&self) -> usize {
        (self.sorted.capacity() + self.pending.capacity()) * std::mem::size_of::<Digest>()
    }
}

/// What the mark phase found.
#[derive(Debug, Default)]
pub struct Marked {
    /// Every referenced blob digest: every digest any manifest mentions (protect by
    /// mention), digests of other algorithms resolved to the blobs that hold them.
    pub blobs: MarkSet,
    /// Manifests read.
    pub manifests: usize,
    /// Repositories read.
    pub repositories: usize,
    /// Manifests already read and marked.
    read: DigestSet,
    /// Manifests referred to (index children, subjects) whose body was not there when
    /// looked for: not read, so that a revision of that digest pushed later (an image
    /// pushed after a referrer naming it) is read by a re-mark.
    absent: DigestSet,
    /// Manifests that marked ones refer to (index children, subjects), with the repository
    /// of the first manifest that named them.
    referred: DigestMap<Arc<str>>,
    /// Digests of other algorithms than sha256 still to resolve: (repository, the
    /// manifest naming it, the digest, whether a field the registry reads names it).
    foreign: Vec<Foreign>,
}

/// A `sha384:`/`sha512:` digest a manifest names, to be resolved in its repository.
#[derive(Debug)]
struct Foreign {
    repo: Arc<str>,
    manifest: Digest,
    digest: String,
    /// Named by a field the registry reads (config, layers, fsLayers): unresolved, it is
    /// a doubt; a mere mention (an annotation) resolves where it can.
    structural: bool,
}

impl Marked {
    /// Marks a manifest's own digest and everything it mentions.
    fn add(&mut self, repo: &Arc<str>, d: Digest, m: &Manifest) {
        self.read.insert(d);
        self.blobs.insert(d);
        // Every sha256 digest anywhere in it: config, layers, children and subject are
        // among them whatever the parse made of the keys.
        self.blobs.extend(m.mentions.iter().copied());
        let mut refer = |x: Digest| {
            self.referred.entry(x).or_insert_with(|| repo.clone());
        };
        if m.kind == crate::meta::Kind::Index {
            m.children.iter().for_each(|c| refer(c.digest));
        }
        m.subject.into_iter().for_each(&mut refer);
        for f in &m.foreign_mentions {
            self.foreign.push(Foreign {
                repo: repo.clone(),
                manifest: d,
                digest: f.clone(),
                structural: m.foreign_blobs.contains(f),
            });
        }
    }
}

/// Marks every blob the storage's manifests reference, counting repositories and manifests
/// into `counters`; `Err` with the first doubt found (and how many there were), in which
/// case nothing may be swept.
pub fn mark(storage: &dyn Storage, counters: &Counters) -> Result<Marked, GcError> {
    let mut marked = Marked::default();
    let mut errors = list_and_mark(storage, storage.blobs(), counters, &mut marked, false);
    if errors.is_empty() {
        settle(storage, storage.blobs(), &mut marked, &mut errors);
    }
    marked.blobs.finish();
    verdict(marked, errors)
}

/// Right before the first delete: lists every repository again and marks each manifest a
/// revision or tag link names that the mark has not read (pushed since the mark began),
/// with everything it mentions, its bodies read from `blobs` (the storage's, or one that
/// puts quarantined manifests back first). Gives the manifests it read; `Err` with a doubt.
pub fn remark(
    storage: &dyn Storage,
    blobs: &dyn BlobSource,
    counters: &Counters,
    marked: Marked,
) -> Result<(Marked, usize), GcError> {
    let mut marked = marked;
    let before = marked.manifests;
    // Referred manifests that were missing are looked for again.
    marked.absent.clear();
    let mut errors = list_and_mark(storage, blobs, counters, &mut marked, true);
    if errors.is_empty() {
        settle(storage, blobs, &mut marked, &mut errors);
    }
    marked.blobs.finish();
    let found = marked.manifests - before;
    verdict(marked, errors).map(|m| (m, found))
}

/// The mark, or its first doubt (with how many more there were).
fn verdict(marked: Marked, errors: Vec<String>) -> Result<Marked, GcError> {
    match errors.first() {
        None => Ok(marked),
        Some(first) if errors.len() == 1 => Err(GcError::Doubt(first.clone())),
        Some(first) => Err(GcError::Doubt(format!(
            "{first} (and {} more problems)",
            errors.len() - 1
        ))),
    }
}

/// One listing of every repository: marks each revision and tag target (with `only_new`,
/// those not read yet; without, each repository reads its own, so that a digest of
/// another algorithm is resolved in every repository whose manifest names it).
/// Gives the problems met.
fn list_and_mark(
    storage: &dyn Storage,
    blobs: &dyn BlobSource,
    counters: &Counters,
    marked: &mut Marked,
    only_new: bool,
) -> Vec<String> {
    let mut errors: Vec<String> = Vec::new();
    let (tx, rx) = bounded::<Batch>(16);
    let warnings = std::thread::scope(|s| {
        let lister = s.spawn(move || storage.list(&RepoFilter::default(), &tx).warnings);
        let mut repositories = 0;
        for record in rx.iter().flatten() {
            repositories += 1;
            let record = settled(storage, record);
            errors.extend(
                record
                    .problems
                    .iter()
                    .map(|p| format!("repository {}: {p}", record.name)),
            );
            let mut wanted: Vec<Digest> = record.revisions.iter().map(|r| r.digest).collect();
            // Tag targets too: more than the registry's collector marks, never less.
            wanted.extend(record.tags.iter().map(|t| t.digest));
            wanted.sort_unstable();
            wanted.dedup();
            if only_new {
                wanted.retain(|d| !marked.read.contains(d));
            }
            counters.repositories.fetch_add(1, Ordering::Relaxed);
            counters
                .manifests
                .fetch_add(wanted.len() as u64, Ordering::Relaxed);
            for (d, body) in wanted.iter().zip(blobs.read_many(&wanted)) {
                match checked_manifest(blobs, d, body) {
                    Ok(m) => {
                        marked.manifests += 1;
                        marked.add(&record.name, *d, &m);
                    }
                    Err(e) => errors.push(format!("repository {}: {e}", record.name)),
                }
            }
        }
        marked.repositories = marked.repositories.max(repositories);
        lister
            .join()
            .unwrap_or_else(|_| vec!["the storage lister panicked".to_owned()])
    });
    errors.extend(warnings);
    errors
}

/// A repository read with torn links is read again a few times over most of a second
/// before they count: a registry serving while it is read (`--online`) writes a link in
/// place, and a link read halfway through its write is torn for a moment. A problem that
/// stays is a doubt.
///
/// Only a record whose every problem is a torn link is read again, and the new reading
/// replaces it only when it has no problem at all: any other problem (a shape the
/// repository read alone may not check) stays as the listing found it.
fn settled(storage: &dyn Storage, record: RepoRecord) -> RepoRecord {
    let torn = |r: &RepoRecord| {
        !r.problems.is_empty()
            && r.problems
                .iter()
                .all(|p| p.kind == ProblemKind::MalformedLink)
    };
    if !torn(&record) {
        return record;
    }
    for pause in [50, 100, 200, 400] {
        std::thread::sleep(std::time::Duration::from_millis(pause));
        let again = storage.read_repo(&record.name);
        if again.problems.is_empty() {
            return again;
        }
        if !torn(&again) {
            break;
        }
    }
    record
}

/// Follows what the marked manifests name until nothing new turns up: digests of other
/// algorithms through their repository's links, then index children and subjects that are
/// no revision anywhere.
fn settle(
    storage: &dyn Storage,
    blobs: &dyn BlobSource,
    marked: &mut Marked,
    errors: &mut Vec<String>,
) {
    loop {
        resolve_foreign(storage, marked, errors);
        if !errors.is_empty() || !mark_referenced_manifests(blobs, marked, errors) {
            return;
        }
    }
}

/// Resolves each pending `sha384:`/`sha512:` digest as the registry does for its
/// repository: `_layers/<algo>/<hex>/link`, else `_manifests/revisions/<algo>/<hex>/link`,
/// each holding the sha256 digest of the blob with the data, which is marked. A link that
/// cannot be read or holds anything else is a doubt; so is a digest a field names that
/// no link resolves (a mention elsewhere, an annotation say, is only marked where it can be).
fn resolve_foreign(storage: &dyn Storage, marked: &mut Marked, errors: &mut Vec<String>) {
    let mut todo = std::mem::take(&mut marked.foreign);
    todo.sort_by(|a, b| {
        (&a.repo, &a.digest, !a.structural).cmp(&(&b.repo, &b.digest, !b.structural))
    });
    todo.dedup_by(|a, b| a.repo == b.repo && a.digest == b.digest);
    for f in todo {
        let Some((algo, hex)) = f.digest.split_once(':') else {
            continue;
        };
        let mut resolved = None;
        for (is_manifest, rel) in [false, true].into_iter().zip([
            format!("_layers/{algo}/{hex}/link"),
            format!("_manifests/revisions/{algo}/{hex}/link"),
        ]) {
            match storage.read_repo_file(&f.repo, &rel) {
                Ok(None) => continue,
                Ok(Some(body)) => match parse_link(&body) {
                    Some(d) => {
                        resolved = Some((d, is_manifest));
                        break;
                    }
                    None => {
                        errors.push(format!(
                            "repository {}: {rel} does not hold a sha256 digest (resolving {} named by manifest {})",
                            f.repo, f.digest, f.manifest
                        ));
                        break;
                    }
                },
                Err(e) => {
                    errors.push(format!(
                        "repository {}: cannot read {rel} (resolving {} named by manifest {}): {e}",
                        f.repo, f.digest, f.manifest
                    ));
                    break;
                }
            }
        }
        match resolved {
            Some((d, is_manifest)) => {
                marked.blobs.insert(d);
                // A manifest named by another algorithm (an index's child): follow it.
                if is_manifest {
                    marked.referred.entry(d).or_insert_with(|| f.repo.clone());
                }
            }
            None if f.structural => errors.push(format!(
                "repository {}: manifest {} references {} which no link of the repository resolves",
                f.repo, f.manifest, f.digest
            )),
            None => tracing::debug!(
                "repository {}: manifest {} mentions {}, which no link resolves",
                f.repo,
                f.manifest,
                f.digest
            ),
        }
    }
}

/// Index children and subjects that are no revision anywhere: where such a manifest exists,
/// what it references is marked too (transitively), as distribution 3 does. Gives whether
/// it read any.
fn mark_referenced_manifests(
    blobs: &dyn BlobSource,
    marked: &mut Marked,
    errors: &mut Vec<String>,
) -> bool {
    let mut any = false;
    loop {
        let todo: Vec<(Digest, Arc<str>)> = marked
            .referred
            .iter()
            .filter(|(d, _)| !marked.read.contains(*d) && !marked.absent.contains(*d))
            .map(|(d, r)| (*d, r.clone()))
            .collect();
        if todo.is_empty() {
            return any;
        }
        let digests: Vec<Digest> = todo.iter().map(|(d, _)| *d).collect();
        for ((d, repo), body) in todo.iter().zip(blobs.read_many(&digests)) {
            match body {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Nothing to keep now; looked for again by the next re-mark.
                    marked.absent.insert(*d);
                }
                body => match checked_manifest(blobs, d, body) {
                    Ok(m) => {
                        any = true;
                        marked.add(repo, *d, &m);
                    }
                    Err(e) => {
                        marked.read.insert(*d);
                        errors.push(e.to_string());
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MarkSet;
    use crate::digest::Digest;

    #[test]
    fn the_mark_set_keeps_each_digest_once_in_32_bytes() {
        let d = |i: u32| Digest::of(&i.to_le_bytes());
        let mut set = MarkSet::default();
        // Every blob marked three times over, as layers shared by many manifests are.
        for round in 0..3 {
            for i in 0..100_000 {
                set.insert(d((i * 7 + round) % 100_000));
            }
        }
        set.finish();
        assert_eq!(set.len(), 100_000);
        assert!((0..100_000).all(|i| set.contains(&d(i))));
        assert!(!set.contains(&d(100_000)));
        assert!(set.bytes() <= 32 * 100_000, "{} bytes", set.bytes());
    }
}
