//! The sweep of `regsweep gc --online`: the candidates go into quarantine, are marked
//! again over the settle period, and are deleted or put back; then old uploads, the
//! closing lines and the exit code.

use std::io::Write;

use anyhow::Result;

use super::online::{self, Lines};
use super::quarantine::Quarantine;
use super::sweeper::Sweeper;
use super::{mark, registry_config, sweep, uploads};
use crate::delete::journal::{Journal, Record};
use crate::exit::Exit;
use crate::report::status::Status;
use crate::signals::Signals;
use crate::storage::Storage;

/// What the online sweep works with.
pub(super) struct Sweep<'a> {
    /// The registry's storage, listed again by each re-mark.
    pub storage: &'a dyn Storage,
    /// Where uploads go.
    pub sweeper: &'a Sweeper<'a>,
    /// The quarantine beside the storage.
    pub quarantine: &'a Quarantine<'a>,
    /// The registry's blob descriptor cache, when its configuration was given.
    pub cache: Option<&'a registry_config::BlobCache>,
    /// How long quarantined blobs wait, marked again all along.
    pub settle: std::time::Duration,
    /// The unreferenced blobs.
    pub candidates: &'a [sweep::Candidate],
    /// The uploads to purge.
    pub old_uploads: &'a [uploads::Upload],
    /// SIGINT/SIGTERM.
    pub signals: &'a Signals,
}

/// Runs the online collection of the candidates; writes its lines and gives the exit code.
pub(super) fn sweep(
    s: &Sweep,
    marked: mark::Marked,
    status: Status,
    journal: Option<Journal>,
    out: &mut impl Write,
    recorder: &crate::report::metrics::Recorder,
) -> Result<Exit> {
    let online = online::Online {
        quarantine: s.quarantine,
        cache: match s.cache {
            Some(registry_config::BlobCache::Redis(t)) => Some(t),
            _ => None,
        },
        settle: s.settle,
    };
    let mut lines = Lines::new(out);
    let counters = status.counters.clone();
    let cx = online::Context {
        storage: s.storage,
        online: &online,
        signals: s.signals,
        journal: journal.as_ref(),
        counters: &counters,
    };
    let outcome = online::collect(&cx, marked, s.candidates, &mut lines);
    recorder.swept(outcome.deleted, outcome.deleted_bytes, outcome.failed.len());
    let upload_failures = if outcome.interrupted || outcome.doubt.is_some() {
        Vec::new()
    } else {
        s.sweeper.remove_uploads(s.old_uploads)
    };
    drop(status);
    let total = s.old_uploads.len();
    if total > 0 && upload_failures.len() < total {
        lines.line(format_args!(
            "Purged {} of {total} uploads.",
            total - upload_failures.len(),
        ));
    }
    for (u, why) in &upload_failures {
        crate::logging::failed(format_args!("upload {u}: {why}"));
    }
    let exit = finish_online(&mut lines, &outcome, s.candidates.len(), journal)?;
    Ok(if exit == Exit::Ok && !upload_failures.is_empty() {
        Exit::Partial
    } else {
        exit
    })
}

/// The closing lines and exit code of an online collection.
fn finish_online(
    out: &mut Lines,
    o: &online::Outcome,
    total: usize,
    journal: Option<Journal>,
) -> Result<Exit> {
    let mut journal_error = None;
    if let Some(j) = journal {
        if !o.interrupted && o.doubt.is_none() {
            j.record(Record::GcEnd);
        }
        journal_error = j.close().err().map(|e| e.to_string());
    }
    out.line(format_args!(
        "Deleted {} of {total} blobs while the registry served ({} put back: named by manifests pushed during the collection).",
        o.deleted, o.restored
    ));
    if let Some(e) = &out.error {
        crate::logging::error(format_args!("writing the report: {e}"));
    }
    for (d, why) in &o.failed {
        crate::logging::failed(format_args!("blob {d}: {why}"));
    }
    if let Some(e) = &journal_error {
        crate::logging::error(format_args!("{e}"));
    }
    if let Some(e) = &o.cache_error {
        crate::logging::error(format_args!("{e}"));
    }
    if let Some(e) = &o.doubt {
        crate::logging::error(format_args!(
            "online collection stopped, every quarantined blob put back: {e}"
        ));
        return Ok(Exit::Fatal);
    }
    if o.interrupted {
        crate::logging::line(
            tracing::Level::WARN,
            "interrupted",
            "regsweep: interrupted: ",
            format_args!("every blob not yet deleted was put back; rerun to collect them"),
        );
        return Ok(Exit::Interrupted);
    }
    let clean = o.failed.is_empty()
        && journal_error.is_none()
        && o.cache_error.is_none()
        && out.error.is_none();
    Ok(if clean { Exit::Ok } else { Exit::Partial })
}
