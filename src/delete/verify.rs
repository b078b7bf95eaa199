//! Re-verification (policy rule 9): re-reads a repository from storage just before deleting
//! in it, re-plans it when anything changed, and says which deletes to skip (and what they
//! hold back). It reads storage only; it deletes nothing.

use std::sync::Arc;

use super::{Reverify, Skip};
use crate::digest::{Digest, DigestMap, DigestSet};
use crate::meta;
use crate::plan::{Policies, RepoPlan, Verdict, descendants, plan_repository, same_link_time};
use crate::scan::Storage;

/// Re-reads a repository from storage and re-plans it when anything changed since the scan.
pub struct StorageReverify {
    /// The storage the plan was made from.
    pub storage: Arc<dyn Storage>,
    /// The policy of the scan (same `now`).
    pub policy: Policies,
}

impl Reverify for StorageReverify {
    fn changed(
        &self,
        plan: &RepoPlan,
        pending: &[Digest],
        held: &DigestSet,
        removed: &DigestSet,
    ) -> Result<DigestMap<Skip>, String> {
        let rec = self.storage.read_repo(&plan.name);
        // What storage should hold now: the scan's view less what this run removed (the
        // manifests, and the tags that pointed at them).
        let mut old_tags: Vec<(&str, Digest)> = plan
            .tags
            .iter()
            .filter(|t| !removed.contains(&t.digest))
            .map(|t| (&*t.name, t.digest))
            .collect();
        let mut new_tags: Vec<(&str, Digest)> = rec
            .tags
            .iter()
            .map(|t| (t.name.as_str(), t.digest))
            .collect();
        old_tags.sort();
        new_tags.sort();
        let mut new_revs: Vec<(Digest, i64)> = rec
            .revisions
            .iter()
            .map(|r| (r.digest, r.linked_at))
            .collect();
        new_revs.sort_unstable();
        // Same revisions, each linked at the same time: a manifest re-pushed since the scan
        // has a fresh link and must fall under the grace period again.
        let mut old_revs = plan
            .decisions
            .iter()
            .filter(|d| !removed.contains(&d.digest));
        let same_revs = new_revs.iter().all(|(digest, at)| {
            old_revs
                .next()
                .is_some_and(|d| d.digest == *digest && same_link_time(d, *at))
        }) && old_revs.next().is_none();
        if held.is_empty() && rec.problems.is_empty() && old_tags == new_tags && same_revs {
            return Ok(DigestMap::default());
        }
        tracing::debug!(repo = %plan.name, "storage differs from the scan: re-planning");
        let tags_on = |tags: &[(&str, Digest)], d: &Digest| -> Vec<String> {
            tags.iter()
                .filter(|(_, x)| x == d)
                .map(|(n, _)| (*n).to_owned())
                .collect()
        };
        let policy = self.policy.for_repo(&plan.name);
        let snap = meta::load(self.storage.blobs(), rec.clone());
        let fresh = plan_repository(&snap, policy);
        let mut skip = DigestMap::default();
        for d in pending {
            let before = plan.decision(d);
            let why = match fresh.decision(d) {
                None => Some(Skip::gone()),
                Some(x) if x.verdict == Verdict::Keep => Some(Skip::because(format!(
                    "changed since the scan, now kept ({})",
                    fresh.reason(x)
                ))),
                Some(x) if before.is_some_and(|b| b.linked_at() != x.linked_at()) => Some(
                    Skip::because("its revision link was rewritten since the scan (pushed again)"),
                ),
                Some(_) if tags_on(&old_tags, d) != tags_on(&new_tags, d) => {
                    Some(Skip::because("its tags changed since the scan"))
                }
                Some(_) => None,
            };
            if let Some(w) = why {
                skip.insert(*d, w);
            }
        }
        // What a skipped manifest refers to stays with it: a kept index keeps its children.
        let roots: Vec<Digest> = skip.keys().chain(held).copied().collect();
        if !roots.is_empty() {
            let pending: DigestSet = pending.iter().copied().collect();
            for d in descendants(&snap, policy, roots.iter().copied()) {
                if pending.contains(&d) && !skip.contains_key(&d) {
                    skip.insert(
                        d,
                        Skip::because("a manifest that refers to it was skipped, so it stays too"),
                    );
                }
            }
        }
        Ok(skip)
    }

    fn current_tags(&self, repo: &str) -> Result<Vec<(String, Digest)>, String> {
        let (tags, problems) = self.storage.read_tags(repo);
        match problems.first() {
            Some(p) => Err(p.to_string()),
            None => Ok(tags.into_iter().map(|t| (t.name, t.digest)).collect()),
        }
    }
}
