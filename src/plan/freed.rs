//! Bytes freed: blobs that only the manifests a plan deletes reference (the closing line's
//! garbage-collect estimate), per repository, and the registry-wide ledger behind the total.

use crate::digest::{Digest, DigestMap, DigestSet};
use crate::meta::Snapshot;

use super::RepoPlan;

/// What one repository's plan frees and what it still references.
#[derive(Debug, Default)]
pub struct BlobUse {
    /// Blobs (manifest bodies, configs, layers) only deleted manifests reference, with sizes.
    pub candidates: Vec<(Digest, u64)>,
    /// Blobs of deleted manifests whose size the manifest does not give (schema 1 layers).
    pub no_size: u32,
    /// Every blob a kept manifest references (its own body, config, layers, children).
    pub kept: DigestSet,
}

impl BlobUse {
    /// The repository's own estimate: the candidates' sizes.
    pub fn bytes(&self) -> u64 {
        self.candidates.iter().map(|(_, s)| s).sum()
    }
}

/// Splits the blobs of `snap` into those the plan frees and those kept manifests hold.
pub fn blob_use(snap: &Snapshot, plan: &RepoPlan) -> BlobUse {
    let deleted: DigestSet = plan.delete_digests().collect();
    let mut out = BlobUse::default();
    for d in &plan.decisions {
        if deleted.contains(&d.digest) {
            continue;
        }
        out.kept.insert(d.digest);
        if let Some(m) = snap.manifest(&d.digest) {
            out.kept.extend(m.blobs.iter().map(|(b, _)| *b));
            out.kept.extend(m.children.iter().map(|c| c.digest));
            // Whatever a kept manifest mentions stays (protect by mention).
            out.kept.extend(m.mentions.iter().copied());
        }
    }
    let mut sizes: DigestMap<u64> = DigestMap::default();
    let mut no_size = DigestSet::default();
    for d in &deleted {
        let Some(m) = snap.manifest(d) else { continue };
        sizes.insert(*d, m.size);
        for (b, size) in &m.blobs {
            match size {
                Some(s) => {
                    sizes.insert(*b, *s);
                }
                None => {
                    no_size.insert(*b);
                }
            }
        }
    }
    out.candidates = sizes
        .into_iter()
        .filter(|(b, _)| !out.kept.contains(b))
        .collect();
    out.candidates.sort_unstable();
    out.no_size = no_size.iter().filter(|b| !out.kept.contains(b)).count() as u32;
    out
}

/// The registry-wide view: a blob is freed only if no kept manifest in any repository
/// references it. Blobs are kept as 8-byte digest prefixes to stay small; a prefix
/// collision can only make the total smaller.
#[derive(Debug, Default)]
pub struct Ledger {
    kept: Vec<u64>,
    candidates: Vec<(u64, u64)>,
    /// Blobs of deleted manifests without a size.
    pub no_size: u64,
}

fn prefix(d: &Digest) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.0[..8]);
    u64::from_be_bytes(b)
}

impl Ledger {
    /// Adds one repository's blob use.
    pub fn add(&mut self, u: &BlobUse) {
        self.kept.extend(u.kept.iter().map(prefix));
        self.candidates
            .extend(u.candidates.iter().map(|(d, s)| (prefix(d), *s)));
        self.no_size += u64::from(u.no_size);
    }

    /// Merges another ledger (from another planner thread).
    pub fn merge(&mut self, mut other: Ledger) {
        self.kept.append(&mut other.kept);
        self.candidates.append(&mut other.candidates);
        self.no_size += other.no_size;
    }

    /// Bytes that garbage-collect frees once every planned delete is done.
    pub fn total(mut self) -> u64 {
        self.kept.sort_unstable();
        self.kept.dedup();
        self.candidates.sort_unstable();
        self.candidates.dedup_by_key(|(p, _)| *p);
        self.candidates
            .iter()
            .filter(|(p, _)| self.kept.binary_search(p).is_err())
            .map(|(_, s)| s)
            .sum()
    }
}
