//! Progress while deleting: the original's `Cleaning i of N` and `Deleted:` lines (only
//! failures and skips with `--summary-only`). It prints what the deleter tells it.

use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::text;
use crate::digest::Digest;
use crate::outcome::{DeleteResult, Progress};
use crate::plan::RepoPlan;

/// Prints the original's per-deletion lines as deletions finish.
pub struct TextProgress {
    total: usize,
    count: AtomicUsize,
    lock: Mutex<()>,
    /// Only failures and skips, not a line per deleted manifest (`--summary-only`).
    summary_only: bool,
}

impl TextProgress {
    /// Progress over `total` planned deletions.
    pub fn new(total: usize, summary_only: bool) -> TextProgress {
        TextProgress {
            total,
            count: AtomicUsize::new(0),
            lock: Mutex::new(()),
            summary_only,
        }
    }
}

impl Progress for TextProgress {
    fn done(&self, plan: &RepoPlan, digest: &Digest, result: &DeleteResult) {
        let i = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        let line = match (result, plan.decision(digest)) {
            (DeleteResult::Deleted | DeleteResult::AlreadyGone, _) if self.summary_only => return,
            (DeleteResult::Deleted, Some(d)) => text::delete_line("Deleted:", plan, d),
            (DeleteResult::AlreadyGone, Some(d)) => text::delete_line("Already gone:", plan, d),
            (DeleteResult::Failed(why) | DeleteResult::Unreachable { last: why, .. }, _) => {
                format!(
                    "Failed to clean manifest {digest} from repo {} with response code {why}",
                    plan.name
                )
            }
            (DeleteResult::Cancelled | DeleteResult::Stale { .. }, _) => return,
            (DeleteResult::Fatal(f), _) => {
                format!(
                    "Failed to clean manifest {digest} from repo {} with response code {f}",
                    plan.name
                )
            }
            (_, None) => format!("  Deleted: {digest}  repo={}", plan.name),
        };
        let _g = self.lock.lock();
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "  Cleaning {i} of {}", self.total);
        let _ = writeln!(out, "{line}");
    }

    fn skipped(&self, plan: &RepoPlan, digest: &Digest, why: &str) {
        self.count.fetch_add(1, Ordering::SeqCst);
        let _g = self.lock.lock();
        let _ = writeln!(
            io::stdout().lock(),
            "  Skipped: {digest}  repo={}  ({why})",
            plan.name
        );
    }
}

/// Prints nothing while deleting (JSON output).
pub struct Quiet;

impl Progress for Quiet {
    fn done(&self, _: &RepoPlan, _: &Digest, _: &DeleteResult) {}
    fn skipped(&self, _: &RepoPlan, _: &Digest, _: &str) {}
}
