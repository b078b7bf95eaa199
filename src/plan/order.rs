//! Deletion order: whatever refers to a manifest goes before it (an index before its
//! children, a signature before its subject), in layers; and what a kept manifest holds
//! back. Pure: it orders verdicts, it never changes one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::policy::{Policy, TagClass, classify_tag};
use super::{Decision, Verdict};
use crate::digest::{Digest, DigestMap, DigestSet};
use crate::meta::Snapshot;

/// What `d` refers to and so must outlive it: its children, its subject, and every other
/// digest it mentions (protect by mention: docs/POLICY.md).
fn referred<'a>(snap: &'a Snapshot, d: &Digest) -> impl Iterator<Item = Digest> + use<'a> {
    snap.manifest(d).into_iter().flat_map(|m| {
        m.children
            .iter()
            .map(|c| c.digest)
            .chain(m.subject)
            .chain(m.mentions.iter().copied())
    })
}

/// Everything that goes after `roots` in a delete order, transitively (children, subjects,
/// the subjects of attachment tags), `roots` left out: what must stay when a root stays.
pub fn descendants(
    snap: &Snapshot,
    policy: &Policy,
    roots: impl IntoIterator<Item = Digest>,
) -> DigestSet {
    let mut attached: DigestMap<Vec<Digest>> = DigestMap::default();
    for t in &snap.record.tags {
        if let TagClass::Attachment { subject } = classify_tag(&t.name, policy) {
            attached.entry(t.digest).or_default().push(subject);
        }
    }
    let roots: DigestSet = roots.into_iter().collect();
    let mut queue: Vec<Digest> = roots.iter().copied().collect();
    let mut seen = DigestSet::default();
    while let Some(d) = queue.pop() {
        let next = referred(snap, &d).chain(attached.get(&d).into_iter().flatten().copied());
        for n in next.collect::<Vec<_>>() {
            if !roots.contains(&n) && seen.insert(n) {
                queue.push(n);
            }
        }
    }
    seen
}

/// Orders the deletions so that a run cut off half way never leaves a surviving manifest
/// pointing at a deleted one: indexes before children, referrers before subjects.
/// Among manifests free to go, hash-tag expiries come first, then by digest. Also returns
/// each deletion's layer: 0 when nothing doomed refers to it, else one more than its referrers.
pub fn delete_order(
    snap: &Snapshot,
    decisions: &[Decision],
    attachments: &[(Digest, Digest)],
) -> (Vec<Digest>, Vec<u32>) {
    let doomed: DigestMap<u8> = decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Delete)
        .map(|d| (d.digest, u8::from(!d.is_hash_expired())))
        .collect();
    // Edges referrer -> referred, both doomed.
    let mut edges: DigestMap<Vec<Digest>> = DigestMap::default();
    let mut indegree: DigestMap<usize> = doomed.keys().map(|d| (*d, 0)).collect();
    let mut add = |from: Digest, to: Digest, edges: &mut DigestMap<Vec<Digest>>| {
        if from != to && doomed.contains_key(&from) && doomed.contains_key(&to) {
            edges.entry(from).or_default().push(to);
            *indegree.entry(to).or_default() += 1;
        }
    };
    for d in doomed.keys() {
        let mut seen = DigestSet::default();
        for to in referred(snap, d).filter(|x| seen.insert(*x)) {
            add(*d, to, &mut edges);
        }
    }
    for (subject, target) in attachments {
        add(*target, *subject, &mut edges);
    }
    let mut ready: BinaryHeap<Reverse<(u8, Digest)>> = indegree
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(d, _)| Reverse((doomed[d], *d)))
        .collect();
    let mut out = Vec::with_capacity(doomed.len());
    let mut layer: DigestMap<u32> = DigestMap::default();
    while let Some(Reverse((_, d))) = ready.pop() {
        out.push(d);
        let mine = layer.get(&d).copied().unwrap_or(0);
        for to in edges.get(&d).into_iter().flatten() {
            let l = layer.entry(*to).or_insert(0);
            *l = (*l).max(mine + 1);
            if let Some(n) = indegree.get_mut(to) {
                *n -= 1;
                if *n == 0 {
                    ready.push(Reverse((doomed[to], *to)));
                }
            }
        }
    }
    if out.len() < doomed.len() {
        append_cycle_members(&doomed, &mut out, &mut layer);
    }
    let layers = out
        .iter()
        .map(|d| layer.get(d).copied().unwrap_or(0))
        .collect();
    (out, layers)
}

/// Appends what a reference cycle left unplaced (impossible with honest content
/// addressing): the cycle members go last, sorted, one layer each, after everything else.
fn append_cycle_members(doomed: &DigestMap<u8>, out: &mut Vec<Digest>, layer: &mut DigestMap<u32>) {
    let placed: DigestSet = out.iter().copied().collect();
    let mut rest: Vec<Digest> = doomed
        .keys()
        .filter(|d| !placed.contains(d))
        .copied()
        .collect();
    rest.sort_unstable();
    let top = layer.values().copied().max().unwrap_or(0);
    for (i, d) in rest.iter().enumerate() {
        layer.insert(*d, top + 1 + i as u32);
    }
    out.extend(rest);
}
