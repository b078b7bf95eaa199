//! The ledger of a deletion pass: every planned delete with exactly one outcome (deleted,
//! already gone, failed with its status, skipped, or not attempted). The text summary, the
//! JSON report, the journal and the exit code are all taken from it, also when the run
//! stops early.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::digest::Digest;
use crate::outcome::Deletion;
use crate::plan::RepoPlan;

/// How one planned delete ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The registry deleted it (202), or it was removed from storage.
    Deleted,
    /// It was gone already (404 `MANIFEST_UNKNOWN`).
    AlreadyGone,
    /// Sent (or tried) and failed: the status and message, or the error.
    Failed(String),
    /// Held back by re-verification (storage changed since the scan).
    Skipped(String),
}

/// Every planned delete of a pass, each settled at most once (the first outcome stays).
pub struct Ledger {
    /// Planned deletes in plan order.
    keys: Vec<(Arc<str>, Digest)>,
    /// Position of each planned delete in `keys`.
    index: HashMap<(Arc<str>, Digest), usize>,
    /// Outcomes by position; `None`: not settled (yet).
    settled: Mutex<Vec<Option<Settled>>>,
}

impl Ledger {
    /// A ledger of every delete the plans list, none settled.
    pub fn new(plans: &[Arc<RepoPlan>]) -> Ledger {
        let keys: Vec<(Arc<str>, Digest)> = plans
            .iter()
            .flat_map(|p| p.delete_digests().map(|d| (p.name.clone(), d)))
            .collect();
        let index = keys
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, k)| (k, i))
            .collect();
        let settled = Mutex::new(vec![None; keys.len()]);
        Ledger {
            keys,
            index,
            settled,
        }
    }

    /// Settles one delete; false (and nothing changes) when it is not planned or was
    /// settled already.
    pub fn settle(&self, repo: &Arc<str>, digest: Digest, outcome: Settled) -> bool {
        let Some(&i) = self.index.get(&(repo.clone(), digest)) else {
            return false;
        };
        let mut settled = self.settled.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut settled[i] {
            Some(_) => false,
            slot @ None => {
                *slot = Some(outcome);
                true
            }
        }
    }

    /// Every planned delete with its outcome, in plan order; what was never settled is
    /// not attempted, for the reason `why_not` gives for its repository.
    pub fn close(self, why_not: impl Fn(&str) -> String) -> Vec<Deletion> {
        let settled = self
            .settled
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        self.keys
            .into_iter()
            .zip(settled)
            .map(|((repo, digest), s)| deletion(&repo, digest, s, &why_not))
            .collect()
    }
}

/// The report's view of one delete and its outcome.
fn deletion(
    repo: &str,
    digest: Digest,
    settled: Option<Settled>,
    why_not: &impl Fn(&str) -> String,
) -> Deletion {
    let (result, why) = match settled {
        Some(Settled::Deleted) => ("deleted", None),
        Some(Settled::AlreadyGone) => ("already-gone", None),
        Some(Settled::Failed(why)) => ("failed", Some(why)),
        Some(Settled::Skipped(why)) => ("skipped", Some(why)),
        None => ("not-attempted", Some(why_not(repo))),
    };
    let status = match result {
        "failed" => why.as_deref().and_then(status_of),
        _ => None,
    };
    Deletion {
        repository: repo.to_owned(),
        digest,
        result,
        status,
        why,
    }
}

/// The HTTP status a failure's text starts with (`401 Unauthorized (insufficient_scope)`,
/// `503 Service Unavailable (gave up after 6 attempts)`): every answer-based failure is
/// worded from its status first; connection errors start otherwise.
fn status_of(why: &str) -> Option<u16> {
    let code = why.get(..3)?;
    let rest = &why[3..];
    let follows = rest.is_empty() || rest.starts_with(' ') || rest.starts_with(':');
    (code.bytes().all(|b| b.is_ascii_digit()) && follows)
        .then(|| code.parse().ok())
        .flatten()
        .filter(|c| (100..600).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_from_failure_texts() {
        assert_eq!(
            status_of("401 Unauthorized (insufficient_scope)"),
            Some(401)
        );
        assert_eq!(status_of("404 NAME_UNKNOWN: the registry"), Some(404));
        assert_eq!(status_of("503"), Some(503));
        assert_eq!(status_of("error sending request"), None);
        assert_eq!(status_of("4044 x"), None);
        assert_eq!(status_of("99 x"), None);
        assert_eq!(status_of(""), None);
        assert_eq!(status_of("é12"), None);
    }
}
