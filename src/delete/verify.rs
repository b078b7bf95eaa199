//! Re-verification (policy rule 9): re-reads a repository from storage just before deleting
//! in it, re-plans it when anything changed, and says which deletes to skip (and what they
//! hold back). It reads storage only; it deletes nothing.

use std::sync::Arc;

use super::{Reverify, ReverifyError, Skip};
use crate::digest::{Digest, DigestMap, DigestSet};
use crate::meta::{self, Snapshot};
use crate::plan::{
    Policies, Policy, RepoPlan, Verdict, descendants, plan_repository, same_link_time,
};
use crate::record::RepoRecord;
use crate::storage::Storage;

/// Re-reads a repository from storage and re-plans it when anything changed since the scan.
pub struct StorageReverify {
    /// The storage the plan was made from.
    pub storage: Arc<dyn Storage>,
    /// The policy of the scan (same `now`).
    pub policy: Policies,
}

/// A repository's tags as (name, digest), sorted.
type Tags<'a> = Vec<(&'a str, Digest)>;

impl Reverify for StorageReverify {
    fn changed(
        &self,
        plan: &RepoPlan,
        pending: &[Digest],
        held: &DigestSet,
        removed: &DigestSet,
    ) -> Result<DigestMap<Skip>, ReverifyError> {
        let rec = self.storage.read_repo(&plan.name);
        // What storage should hold now: the scan's view less what this run removed (the
        // manifests, and the tags that pointed at them).
        let mut old_tags: Tags = plan
            .tags
            .iter()
            .filter(|t| !removed.contains(&t.digest))
            .map(|t| (&*t.name, t.digest))
            .collect();
        let mut new_tags: Tags = rec
            .tags
            .iter()
            .map(|t| (t.name.as_str(), t.digest))
            .collect();
        old_tags.sort();
        new_tags.sort();
        let unchanged = old_tags == new_tags && same_revisions(plan, &rec, removed);
        if held.is_empty() && rec.problems.is_empty() && unchanged {
            return Ok(DigestMap::default());
        }
        tracing::debug!(repo = %plan.name, "storage differs from the scan: re-planning");
        let policy = self.policy.for_repo(&plan.name);
        let snap = meta::load(self.storage.blobs(), rec.clone());
        let fresh = plan_repository(&snap, policy);
        let mut skip = DigestMap::default();
        for d in pending {
            if let Some(why) = skip_reason(plan, &fresh, d, (&old_tags, &new_tags)) {
                skip.insert(*d, why);
            }
        }
        hold_descendants(&mut skip, (&snap, policy), pending, held);
        Ok(skip)
    }

    fn current_tags(&self, repo: &str) -> Result<Vec<(String, Digest)>, ReverifyError> {
        let (tags, problems) = self.storage.read_tags(repo);
        match problems.first() {
            Some(p) => Err(ReverifyError::Unreadable(p.to_string())),
            None => Ok(tags.into_iter().map(|t| (t.name, t.digest)).collect()),
        }
    }
}

/// Same revisions as the scan saw (less what this run removed), each linked at the same
/// time: a manifest re-pushed since the scan has a fresh link and must fall under the
/// grace period again.
fn same_revisions(plan: &RepoPlan, rec: &RepoRecord, removed: &DigestSet) -> bool {
    let mut new_revs: Vec<(Digest, i64)> = rec
        .revisions
        .iter()
        .map(|r| (r.digest, r.linked_at))
        .collect();
    new_revs.sort_unstable();
    let mut old_revs = plan
        .decisions
        .iter()
        .filter(|d| !removed.contains(&d.digest));
    new_revs.iter().all(|(digest, at)| {
        old_revs
            .next()
            .is_some_and(|d| d.digest == *digest && same_link_time(d, *at))
    }) && old_revs.next().is_none()
}

/// Why the fresh plan holds back `d`, if it does; `tags` are the expected and the current
/// tags.
fn skip_reason(
    plan: &RepoPlan,
    fresh: &RepoPlan,
    d: &Digest,
    tags: (&Tags, &Tags),
) -> Option<Skip> {
    let tags_on = |tags: &Tags, d: &Digest| -> Vec<String> {
        tags.iter()
            .filter(|(_, x)| x == d)
            .map(|(n, _)| (*n).to_owned())
            .collect()
    };
    let before = plan.decision(d);
    match fresh.decision(d) {
        None => Some(Skip::gone()),
        Some(x) if x.verdict == Verdict::Keep => Some(Skip::because(format!(
            "changed since the scan, now kept ({})",
            fresh.reason(x)
        ))),
        Some(x) if before.is_some_and(|b| b.linked_at() != x.linked_at()) => Some(Skip::because(
            "its revision link was rewritten since the scan (pushed again)",
        )),
        Some(_) if tags_on(tags.0, d) != tags_on(tags.1, d) => {
            Some(Skip::because("its tags changed since the scan"))
        }
        Some(_) => None,
    }
}

/// What a skipped (or earlier `held`) manifest refers to stays with it: a kept index keeps
/// its children.
fn hold_descendants(
    skip: &mut DigestMap<Skip>,
    (snap, policy): (&Snapshot, &Policy),
    pending: &[Digest],
    held: &DigestSet,
) {
    let roots: Vec<Digest> = skip.keys().chain(held).copied().collect();
    if roots.is_empty() {
        return;
    }
    let pending: DigestSet = pending.iter().copied().collect();
    for d in descendants(snap, policy, roots.iter().copied()) {
        if pending.contains(&d) && !skip.contains_key(&d) {
            skip.insert(
                d,
                Skip::because("a manifest that refers to it was skipped, so it stays too"),
            );
        }
    }
}
