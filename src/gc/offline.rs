//! The sweep of a collection with the registry stopped or read-only: the candidates go
//! in journaled batches, then old uploads and the cache entries of what went; the closing
//! lines and the exit code.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::Ordering;

use anyhow::Result;

use super::error::GcError;
use super::sweeper::Sweeper;
use super::{BLOBS_PER_STEP, blob_cache, registry_config, sweep, uploads};
use crate::delete::journal::{Journal, Record};
use crate::digest::Digest;
use crate::exit::Exit;
use crate::report::status::{Counters, Status};
use crate::signals::Signals;

/// What the offline sweep works with.
pub(super) struct Sweep<'a> {
    /// Where blobs and uploads go.
    pub sweeper: &'a Sweeper<'a>,
    /// The unreferenced blobs to remove.
    pub candidates: &'a [sweep::Candidate],
    /// The uploads to purge.
    pub old_uploads: &'a [uploads::Upload],
    /// SIGINT/SIGTERM.
    pub signals: &'a Signals,
    /// The registry's blob descriptor cache, when its configuration was given.
    pub cache: Option<&'a registry_config::BlobCache>,
}

/// Removes the candidates (journaled), purges the uploads, clears the cache; writes the
/// closing lines and gives the exit code.
pub(super) fn sweep(
    s: &Sweep,
    status: Status,
    journal: Option<Journal>,
    out: &mut impl Write,
    recorder: &crate::report::metrics::Recorder,
) -> Result<Exit> {
    let counters = status.counters.clone();
    let mut swept = sweep_journaled(s.sweeper, s.candidates, s.signals, &counters, &journal);
    let attempted = &s.candidates[..swept.attempted];
    let bad: BTreeSet<&Digest> = swept.failed.iter().map(|(d, _)| d).collect();
    let freed = attempted
        .iter()
        .filter(|c| !bad.contains(&c.digest))
        .map(|c| c.size)
        .sum();
    recorder.swept(
        attempted.len() - swept.failed.len(),
        freed,
        swept.failed.len(),
    );
    if let Some(j) = journal {
        if !swept.interrupted {
            j.record(Record::GcEnd);
        }
        swept.journal_error = j.close().err().map(|e| e.to_string());
    }
    let upload_failures = if swept.interrupted {
        Vec::new()
    } else {
        s.sweeper.remove_uploads(s.old_uploads)
    };
    drop(status);
    let cache_cleared = match s.cache {
        Some(registry_config::BlobCache::Redis(t)) => {
            let gone = swept.deleted(s.candidates);
            Some(blob_cache::forget(t, &gone).map(|_| ()))
        }
        _ => None,
    };
    let total = s.candidates.len();
    write_closing(
        out,
        &swept,
        total,
        s.old_uploads,
        &upload_failures,
        cache_cleared.as_ref(),
    )?;
    out.flush()?;
    Ok(closing_exit(
        &swept,
        total,
        &upload_failures,
        cache_cleared.as_ref(),
    ))
}

/// The failures, each on a line of its own, and the exit code they make.
fn closing_exit(
    swept: &Swept,
    total: usize,
    upload_failures: &[(String, String)],
    cache_cleared: Option<&Result<(), GcError>>,
) -> Exit {
    for (d, why) in &swept.failed {
        crate::logging::failed(format_args!("blob {d}: {why}"));
    }
    for (u, why) in upload_failures {
        crate::logging::failed(format_args!("upload {u}: {why}"));
    }
    if let Some(e) = &swept.journal_error {
        crate::logging::error(format_args!("{e}"));
    }
    if let Some(Err(e)) = cache_cleared {
        crate::logging::error(format_args!(
            "clearing the registry's blob descriptor cache: {e}"
        ));
    }
    if swept.interrupted {
        crate::logging::line(
            tracing::Level::WARN,
            "interrupted",
            "regsweep: interrupted: ",
            format_args!(
                "{} blob deletions not attempted; rerun (with the same --journal) to finish",
                total - swept.attempted
            ),
        );
        return Exit::Interrupted;
    }
    let clean = swept.failed.is_empty()
        && upload_failures.is_empty()
        && swept.journal_error.is_none()
        && !matches!(cache_cleared, Some(Err(_)));
    if clean { Exit::Ok } else { Exit::Partial }
}

/// What the sweep did.
#[derive(Default)]
struct Swept {
    /// Blobs it tried to remove.
    attempted: usize,
    /// Blobs it could not remove, with why.
    failed: Vec<(Digest, String)>,
    /// Stopped by a signal before every blob was tried.
    interrupted: bool,
    /// The journal could not be written.
    journal_error: Option<String>,
}

impl Swept {
    /// The candidates removed.
    fn deleted(&self, candidates: &[sweep::Candidate]) -> Vec<Digest> {
        let bad: BTreeSet<Digest> = self.failed.iter().map(|(d, _)| *d).collect();
        candidates[..self.attempted.min(candidates.len())]
            .iter()
            .map(|c| c.digest)
            .filter(|d| !bad.contains(d))
            .collect()
    }
}

/// Removes the candidates in batches, journaling each, until done or interrupted.
fn sweep_journaled(
    sweeper: &Sweeper,
    candidates: &[sweep::Candidate],
    signals: &Signals,
    counters: &Counters,
    journal: &Option<Journal>,
) -> Swept {
    signals.deleting.store(true, Ordering::SeqCst);
    counters.start_sweep(candidates.len());
    let mut swept = Swept::default();
    for batch in candidates.chunks(BLOBS_PER_STEP) {
        if signals.cancel.load(Ordering::SeqCst) {
            swept.interrupted = true;
            break;
        }
        let failed = sweeper.remove(batch);
        let bad: BTreeSet<Digest> = failed.iter().map(|(d, _)| *d).collect();
        if let Some(j) = journal {
            j.record(Record::GcDone {
                digests: batch
                    .iter()
                    .filter(|c| !bad.contains(&c.digest))
                    .map(|c| c.digest.to_string())
                    .collect(),
            });
        }
        swept.attempted += batch.len();
        counters
            .delete_failed
            .fetch_add(failed.len() as u64, Ordering::Relaxed);
        counters
            .delete_done
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        swept.failed.extend(failed);
    }
    swept
}

/// The closing lines after the sweep.
fn write_closing(
    out: &mut impl Write,
    swept: &Swept,
    total: usize,
    old_uploads: &[uploads::Upload],
    upload_failures: &[(String, String)],
    cache_cleared: Option<&Result<(), GcError>>,
) -> Result<()> {
    let deleted = swept.attempted - swept.failed.len();
    match cache_cleared {
        Some(Ok(())) => writeln!(
            out,
            "Deleted {deleted} of {total} blobs, and their entries in the registry's Redis blob \
             descriptor cache."
        )?,
        _ => writeln!(
            out,
            "Deleted {deleted} of {total} blobs. Restart the registry before it serves again: its \
             blob descriptor cache may still claim deleted blobs exist."
        )?,
    }
    if !old_uploads.is_empty() && !swept.interrupted {
        writeln!(
            out,
            "Purged {} of {} uploads.",
            old_uploads.len() - upload_failures.len(),
            old_uploads.len()
        )?;
    }
    Ok(())
}
