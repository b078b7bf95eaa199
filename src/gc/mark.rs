//! GC mark: every blob any revision (or tag target) of any repository references, the union
//! over all repositories. Any link, listing or manifest it cannot read, parse or
//! digest-check aborts the whole collection: a blob is shared across repositories.

use std::sync::atomic::Ordering;

use crossbeam_channel::bounded;

use crate::digest::{Digest, DigestSet};
use crate::meta::checked_manifest;
use crate::meta::parse::Manifest;
use crate::report::status::Counters;
use crate::scan::{Batch, BlobSource, RepoFilter, Storage};

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
    /// Every referenced blob digest (manifests, configs, layers, children, subjects).
    pub blobs: MarkSet,
    /// Manifests read.
    pub manifests: usize,
    /// Repositories read.
    pub repositories: usize,
    /// Manifests already read and marked.
    read: DigestSet,
    /// Manifests that marked ones refer to (index children, subjects).
    referred: DigestSet,
}

impl Marked {
    /// Marks a manifest's own digest and everything it names.
    fn add(&mut self, d: Digest, m: &Manifest) {
        self.read.insert(d);
        self.blobs.insert(d);
        self.blobs.extend(m.blobs.iter().map(|(b, _)| *b));
        self.blobs.extend(m.children.iter().map(|c| c.digest));
        self.blobs.extend(m.subject);
        if m.kind == crate::meta::Kind::Index {
            self.referred.extend(m.children.iter().map(|c| c.digest));
        }
        self.referred.extend(m.subject);
    }
}

/// Marks every blob the storage's manifests reference, counting repositories and manifests
/// into `counters`; `Err` with the first doubt found (and how many there were), in which
/// case nothing may be swept.
pub fn mark(storage: &dyn Storage, counters: &Counters) -> Result<Marked, String> {
    let blobs = storage.blobs();
    let mut marked = Marked::default();
    let mut errors: Vec<String> = Vec::new();
    let (tx, rx) = bounded::<Batch>(16);
    let warnings = std::thread::scope(|s| {
        let lister = s.spawn(move || storage.list(&RepoFilter::default(), &tx).warnings);
        for record in rx.iter().flatten() {
            marked.repositories += 1;
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
            counters.repositories.fetch_add(1, Ordering::Relaxed);
            counters
                .manifests
                .fetch_add(wanted.len() as u64, Ordering::Relaxed);
            for (d, body) in wanted.iter().zip(blobs.read_many(&wanted)) {
                match checked_manifest(blobs, d, body) {
                    Ok(m) => {
                        marked.manifests += 1;
                        marked.add(*d, &m);
                    }
                    Err(e) => errors.push(format!("repository {}: {e}", record.name)),
                }
            }
        }
        lister
            .join()
            .unwrap_or_else(|_| vec!["the storage lister panicked".to_owned()])
    });
    errors.extend(warnings);
    if errors.is_empty() {
        mark_referenced_manifests(blobs, &mut marked, &mut errors);
    }
    marked.blobs.finish();
    marked.read = DigestSet::default();
    marked.referred = DigestSet::default();
    match errors.first() {
        None => Ok(marked),
        Some(first) if errors.len() == 1 => Err(first.clone()),
        Some(first) => Err(format!("{first} (and {} more problems)", errors.len() - 1)),
    }
}

/// Index children and subjects that are no revision anywhere: where such a manifest exists,
/// what it references is marked too (transitively), as distribution 3 does.
fn mark_referenced_manifests(
    blobs: &dyn BlobSource,
    marked: &mut Marked,
    errors: &mut Vec<String>,
) {
    loop {
        let todo: Vec<Digest> = marked
            .referred
            .iter()
            .filter(|d| !marked.read.contains(*d))
            .copied()
            .collect();
        if todo.is_empty() {
            return;
        }
        for (d, body) in todo.iter().zip(blobs.read_many(&todo)) {
            marked.read.insert(*d);
            match body {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // nothing to keep
                body => match checked_manifest(blobs, d, body) {
                    Ok(m) => marked.add(*d, &m),
                    Err(e) => errors.push(e),
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
