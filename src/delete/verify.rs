//! Re-verification (DESIGN rule 9): re-read a repository just before deleting in it.

use std::sync::Arc;

use super::Reverify;
use crate::digest::{Digest, DigestMap};
use crate::meta;
use crate::plan::{Policies, RepoPlan, Verdict, plan_repository};
use crate::scan::Storage;

/// Re-reads a repository from storage and re-plans it when anything changed since the scan.
pub struct StorageReverify {
    /// The storage the plan was made from.
    pub storage: Arc<dyn Storage>,
    /// The policy of the scan (same `now`).
    pub policy: Policies,
}

impl Reverify for StorageReverify {
    fn changed(&self, plan: &RepoPlan) -> Result<DigestMap<String>, String> {
        let rec = self.storage.read_repo(&plan.name);
        let mut old_tags: Vec<(&str, Digest)> =
            plan.tags.iter().map(|t| (&*t.name, t.digest)).collect();
        let mut new_tags: Vec<(&str, Digest)> = rec
            .tags
            .iter()
            .map(|t| (t.name.as_str(), t.digest))
            .collect();
        old_tags.sort();
        new_tags.sort();
        let mut new_revs: Vec<Digest> = rec.revisions.iter().map(|r| r.digest).collect();
        new_revs.sort_unstable();
        let old_revs: Vec<Digest> = plan.decisions.iter().map(|d| d.digest).collect();
        if rec.problems.is_empty() && old_tags == new_tags && old_revs == new_revs {
            return Ok(DigestMap::default());
        }
        let tags_on = |tags: &[(&str, Digest)], d: &Digest| -> Vec<String> {
            tags.iter()
                .filter(|(_, x)| x == d)
                .map(|(n, _)| (*n).to_owned())
                .collect()
        };
        let snap = meta::load(self.storage.blobs(), rec.clone());
        let fresh = plan_repository(&snap, self.policy.for_repo(&plan.name));
        let mut skip = DigestMap::default();
        for d in &plan.delete_digests().collect::<Vec<_>>() {
            let why = match fresh.decision(d) {
                None => Some("its revision link disappeared since the scan".to_owned()),
                Some(x) if x.verdict == Verdict::Keep => Some(format!(
                    "changed since the scan, now kept ({:?})",
                    fresh.reason(x)
                )),
                Some(_) if tags_on(&old_tags, d) != tags_on(&new_tags, d) => {
                    Some("its tags changed since the scan".to_owned())
                }
                Some(_) => None,
            };
            if let Some(w) = why {
                skip.insert(*d, w);
            }
        }
        Ok(skip)
    }

    fn current_tags(&self, repo: &str) -> Result<Vec<String>, String> {
        let (tags, problems) = self.storage.read_tags(repo);
        match problems.first() {
            Some(p) => Err(p.clone()),
            None => Ok(tags.into_iter().map(|t| t.name).collect()),
        }
    }
}
