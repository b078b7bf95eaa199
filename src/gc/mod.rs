//! `regsweep gc`: blob garbage collection, with the registry stopped or read-only, or
//! (`--online`, see [`online`]) while it serves. Mark (every blob any manifest of any
//! repository references) then sweep (unmarked blobs older than MIN_AGE), journaled and
//! interruptible between batches; optionally purge old uploads. Any doubt while marking
//! aborts before the first delete. Filesystem and S3.

pub mod blob_cache;
pub mod error;
mod leftovers;
pub mod mark;
mod offline;
pub mod online;
pub mod quarantine;
pub mod registry_config;
mod served;
pub mod sweep;
pub mod sweep_s3;
mod sweeper;
pub mod uploads;

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, anyhow};

use crate::config::Config;
use crate::delete::journal::{self, Journal, Record, UnfinishedGc};
use crate::exit::Exit;
use crate::report::status::{Counters, Status};
use crate::signals::{Signals, runtime_and_signals};
use crate::storage::Storage;
use error::GcError;
use sweeper::Sweeper;

/// Blobs moved or removed between two looks at the interrupt flag, and journaled as one
/// line (a plan line, a done line).
const BLOBS_PER_STEP: usize = 4096;

/// `regsweep gc`: a collection on its own, where repository filters make no sense.
pub fn collect(cfg: &Config) -> Result<Exit> {
    if cfg.filter.exact.is_some() || cfg.filter.globs.is_some() || cfg.filter.shard.is_some() {
        crate::logging::error(format_args!(
            "regsweep gc marks every repository (a blob is shared across them): \
             REPO_FILTER, REPO_GLOB and --shard do not apply"
        ));
        return Ok(Exit::Usage);
    }
    let (rt, signals) = runtime_and_signals(cfg)?;
    mark_and_sweep(cfg, &rt, &signals)
}

/// Runs a collection as the configuration says (dry run: list only); says how it ended.
/// It always marks every repository, whatever filters a cleanup before it used. A resumed
/// collection measures the minimum age from the interrupted one's time, marks afresh and
/// deletes only what that one planned and did not finish. Whatever an interrupted online
/// collection left in quarantine is put back first.
pub fn mark_and_sweep(
    cfg: &Config,
    rt: &tokio::runtime::Runtime,
    signals: &Signals,
) -> Result<Exit> {
    let cache = match blob_cache_of(cfg) {
        Ok(c) => c,
        Err(e) => {
            crate::logging::error(format_args!("{e}"));
            return Ok(e.exit());
        }
    };
    let links = Arc::new(AtomicU64::new(0));
    let (sweeper, storage) = sweeper::open(cfg, rt, links.clone())?;
    let quarantine = sweeper.quarantine();
    // Every collection that may touch the quarantine holds its lock: an online one and a
    // restore make it, an offline one takes it where it exists (it puts leftovers back).
    let creates = cfg.online.is_some() || cfg.restore_quarantine;
    let _lock = match (!cfg.dry_run).then(|| quarantine.lock(creates)).transpose() {
        Ok(l) => l.flatten(),
        Err(e) => {
            crate::logging::error(format_args!("{e}"));
            return Ok(Exit::Fatal);
        }
    };
    if let Some(exit) = leftovers::before_marking(cfg, &quarantine)? {
        return Ok(exit);
    }
    let resume = unfinished(cfg)?;
    let status = Status::start(cfg.progress, links);
    let found = match find(cfg, &*storage, &sweeper, resume, &status.counters)? {
        Ok(found) => found,
        Err(why) => return Ok(aborted(status, why)),
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    write_plan(&mut out, cfg, &found)?;
    out.flush()?;
    if cfg.dry_run {
        return Ok(Exit::Ok);
    }
    if signals.cancel.load(Ordering::SeqCst) {
        drop(status);
        crate::logging::note(format_args!(
            "interrupted before the sweep: the collection deleted nothing"
        ));
        return Ok(Exit::Interrupted);
    }
    let Found {
        now,
        resume,
        marked,
        mut listed,
        old_uploads,
        ..
    } = found;
    let marked = match remark_before_sweep(&*storage, marked, &mut listed, &mut out)? {
        Ok(m) => m,
        Err(why) => return Ok(aborted(status, why)),
    };
    let journal = begin_journal(cfg, &listed.candidates, now, &resume)?;
    cfg.recorder.phase("sweep");
    if let Some(settle) = cfg.online {
        let s = served::Sweep {
            storage: &*storage,
            sweeper: &sweeper,
            quarantine: &quarantine,
            cache: cache.as_ref(),
            settle,
            candidates: &listed.candidates,
            old_uploads: &old_uploads,
            signals,
        };
        return served::sweep(&s, marked, status, journal, &mut out, &cfg.recorder);
    }
    let s = offline::Sweep {
        sweeper: &sweeper,
        candidates: &listed.candidates,
        old_uploads: &old_uploads,
        signals,
        cache: cache.as_ref(),
    };
    offline::sweep(&s, status, journal, &mut out, &cfg.recorder)
}

/// What a collection found before it deletes anything.
struct Found {
    /// The time blob ages are measured from: now, or the resumed collection's.
    now: i64,
    /// The interrupted collection this one resumes.
    resume: Option<UnfinishedGc>,
    /// Every blob a manifest references.
    marked: mark::Marked,
    /// The unreferenced blobs old enough to go, and the counts of the others.
    listed: sweep::Listed,
    /// Unreferenced blobs the resumed collection had not planned (left for a fresh one).
    unplanned: usize,
    /// The uploads to purge.
    old_uploads: Vec<uploads::Upload>,
}

/// Marks, lists the unreferenced blobs (only those `resume` planned, when it resumes a
/// collection) and the old uploads. The inner error is a doubt that stops the collection
/// before anything is deleted.
fn find(
    cfg: &Config,
    storage: &dyn Storage,
    sweeper: &Sweeper,
    resume: Option<UnfinishedGc>,
    counters: &Counters,
) -> Result<Result<Found, GcError>> {
    let now = resume
        .as_ref()
        .map_or_else(|| chrono::Utc::now().timestamp(), |u| u.now);
    counters.start_mark();
    cfg.recorder.phase("mark");
    let marked = match mark::mark(storage, counters) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    cfg.recorder.marked(marked.blobs.len());
    counters.start_listing();
    cfg.recorder.phase("list");
    let mut listed =
        match sweeper.list(&marked.blobs, now, cfg.min_age_secs, &counters.blobs_listed) {
            Ok(l) => l,
            Err(e) => return Ok(Err(e)),
        };
    let unplanned = match &resume {
        Some(u) => {
            let remaining = u.remaining();
            let before = listed.candidates.len();
            listed.candidates.retain(|c| remaining.contains(&c.digest));
            before - listed.candidates.len()
        }
        None => 0,
    };
    if marked.manifests == 0 && listed.seen() > 0 && !cfg.allow_empty_mark {
        return Ok(Err(GcError::Doubt(format!(
            "the mark found no manifest in {} repositories, yet the store holds {} blobs (a \
             listing gone wrong would look the same); if every repository really is gone, \
             rerun with --allow-empty-mark",
            marked.repositories,
            listed.seen()
        ))));
    }
    let old_uploads = match cfg.purge_uploads_secs {
        Some(age) => {
            let all = sweeper
                .uploads()
                .map_err(|e| anyhow!("purging uploads: {e}"))?;
            uploads::older_than(all, now.saturating_sub(age))
        }
        None => Vec::new(),
    };
    counters.scan_done();
    cfg.recorder
        .unreferenced(listed.candidates.iter().map(|c| c.size));
    Ok(Ok(Found {
        now,
        resume,
        marked,
        listed,
        unplanned,
        old_uploads,
    }))
}

/// A push between the mark and now may name a blob the mark left out: lists every link
/// again and marks what appeared, right before the first delete; what it marks is no
/// longer a candidate.
fn remark_before_sweep(
    storage: &dyn Storage,
    marked: mark::Marked,
    listed: &mut sweep::Listed,
    out: &mut impl Write,
) -> Result<Result<mark::Marked, GcError>> {
    let (marked, found) = match mark::remark(storage, storage.blobs(), &Counters::default(), marked)
    {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    if found > 0 {
        let before = listed.candidates.len();
        listed
            .candidates
            .retain(|c| !marked.blobs.contains(&c.digest));
        let line = format!(
            "Marked again before the sweep: {found} manifests pushed since the mark began; {} blobs they reference are kept.",
            before - listed.candidates.len()
        );
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(Ok(marked))
}

/// The interrupted collection the journal records, when this one is to delete.
fn unfinished(cfg: &Config) -> Result<Option<UnfinishedGc>> {
    let Some(path) = cfg.journal.as_ref().filter(|_| !cfg.dry_run) else {
        return Ok(None);
    };
    let Some(u) = journal::load_gc(path).map_err(|e| anyhow!(e))? else {
        return Ok(None);
    };
    crate::clock::policy_time(&format!("journal {}", path.display()), u.now)?;
    crate::logging::note(format_args!(
        "resuming the collection recorded in {}: {} of {} planned blob deletions remain",
        path.display(),
        u.remaining().len(),
        u.planned.len()
    ));
    journal::warn_torn(path, &u.unreadable_lines);
    Ok(Some(u))
}

/// Stops the progress display and says the collection stopped before deleting anything,
/// because of `why`; gives the exit code.
fn aborted(status: Status, why: impl std::fmt::Display) -> Exit {
    drop(status);
    crate::logging::error(format_args!(
        "garbage collection aborted, nothing deleted: {why}"
    ));
    Exit::Fatal
}

/// The registry's blob descriptor cache as its configuration file says (`None` without
/// one), checked against what this collection needs: an online one cannot run beside an
/// in-memory or unknown cache; a Redis one must answer before anything moves.
fn blob_cache_of(cfg: &Config) -> Result<Option<registry_config::BlobCache>, GcError> {
    use registry_config::BlobCache;
    let Some(path) = &cfg.registry_config else {
        return Ok(None);
    };
    let cache = registry_config::read(path)?;
    let online = cfg.online.is_some();
    match &cache {
        BlobCache::InMemory if online => {
            return Err(GcError::RegistryConfig(format!(
                "--online: the registry keeps its blob descriptor cache in memory ({}: \
                 storage.cache.blobdescriptor: inmemory), which only a restart clears: pushes \
                 would go on skipping blobs in quarantine as if they were there. Set it to redis \
                 (regsweep clears that) or remove it, or collect with the registry stopped",
                path.display()
            )));
        }
        BlobCache::Unknown(kind) if online => {
            return Err(GcError::RegistryConfig(format!(
                "--online: {}: storage.cache.blobdescriptor {kind:?} is a cache regsweep does \
                 not know how to clear",
                path.display()
            )));
        }
        BlobCache::Redis(t) if !cfg.dry_run => blob_cache::check(t)?,
        _ => {}
    }
    Ok(Some(cache))
}

/// Opens the journal (if any) and records the collection's plan.
fn begin_journal(
    cfg: &Config,
    candidates: &[sweep::Candidate],
    now: i64,
    resume: &Option<UnfinishedGc>,
) -> Result<Option<Journal>> {
    let Some(path) = &cfg.journal else {
        return Ok(None);
    };
    let j = Journal::open(path).map_err(|e| anyhow!(e))?;
    j.record(Record::GcBegin {
        now,
        resumed: resume.is_some(),
    });
    for batch in candidates.chunks(BLOBS_PER_STEP) {
        j.record(Record::GcPlan {
            digests: batch.iter().map(|c| c.digest.to_string()).collect(),
        });
    }
    Ok(Some(j))
}

/// The report before any delete: what was marked, each blob (and upload) that goes, totals.
fn write_plan(out: &mut impl Write, cfg: &Config, found: &Found) -> Result<()> {
    let (marked, listed) = (&found.marked, &found.listed);
    let (unplanned, old_uploads) = (found.unplanned, &found.old_uploads);
    let bytes: u64 = listed.candidates.iter().map(|c| c.size).sum();
    if cfg.dry_run {
        writeln!(out, "Garbage collection (dry run: nothing is deleted)")?;
    } else {
        writeln!(out, "Garbage collection")?;
    }
    writeln!(
        out,
        "Marked {} blobs referenced by {} manifests in {} repositories.",
        marked.blobs.len(),
        marked.manifests,
        marked.repositories
    )?;
    let prefix = if cfg.dry_run { "DRY_RUN:" } else { "[delete]" };
    if !cfg.summary_only {
        for c in &listed.candidates {
            writeln!(
                out,
                "  {prefix} {}  {}",
                c.digest,
                indicatif::BinaryBytes(c.size)
            )?;
        }
    }
    writeln!(
        out,
        "Blobs to delete: {} ({}, {bytes} bytes). Kept: {} referenced, {} younger than MIN_AGE.",
        listed.candidates.len(),
        indicatif::BinaryBytes(bytes),
        listed.marked,
        listed.young
    )?;
    if unplanned > 0 {
        writeln!(
            out,
            "Left for a fresh collection: {unplanned} unreferenced blobs the interrupted collection had not planned."
        )?;
    }
    if let Some(age) = cfg.purge_uploads_secs {
        if !cfg.summary_only {
            for u in old_uploads {
                writeln!(out, "  {prefix} upload {}", u.shown)?;
            }
        }
        writeln!(
            out,
            "Uploads to purge (started over {} ago): {}.",
            humantime::format_duration(std::time::Duration::from_secs(
                u64::try_from(age).unwrap_or(0)
            )),
            old_uploads.len()
        )?;
    }
    Ok(())
}
