//! `regsweep gc`: blob garbage collection, with the registry stopped or read-only, or
//! (`--online`, see [`online`]) while it serves. Mark (every blob any manifest of any
//! repository references) then sweep (unmarked blobs older than MIN_AGE), journaled and
//! interruptible between batches; optionally purge old uploads. Any doubt while marking
//! aborts before the first delete. Filesystem and S3.

pub mod blob_cache;
pub mod mark;
pub mod online;
pub mod quarantine;
pub mod registry_config;
pub mod sweep;
pub mod sweep_s3;
pub mod uploads;

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, anyhow};

use crate::app::{
    EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, Signals, policy_time,
    runtime_and_signals,
};
use crate::cli::{Config, StorageConfig};
use crate::delete::journal::{self, Journal, Record, UnfinishedGc};
use crate::digest::Digest;
use crate::report::status::{Counters, Status};
use crate::s3::S3Store;
use crate::scan::Storage;
use crate::scan::fs::FsStorage;
use crate::scan::s3::S3Storage;

/// Blobs removed between two looks at the interrupt flag, and journaled as one line.
const BATCH: usize = 4096;

/// `regsweep gc`: a collection on its own, where repository filters make no sense.
pub fn collect(cfg: &Config) -> Result<i32> {
    if cfg.filter.exact.is_some() || cfg.filter.globs.is_some() || cfg.filter.shard.is_some() {
        crate::logging::error(format_args!(
            "regsweep gc marks every repository (a blob is shared across them): \
             REPO_FILTER, REPO_GLOB and --shard do not apply"
        ));
        return Ok(EXIT_USAGE);
    }
    let (rt, signals) = runtime_and_signals(cfg)?;
    run(cfg, &rt, &signals)
}

/// Where blobs are swept, and how.
enum Sweeper<'a> {
    /// A filesystem root, listed and unlinked on rayon's global pool, sized by
    /// [`crate::app::io_threads`] (each call mostly waits on the filesystem; at 100k,
    /// 2 threads swept in 21.7 s, 16 in 9.9 s).
    Fs(std::path::PathBuf),
    /// A bucket, with the runtime its requests run on.
    S3(Arc<S3Store>, &'a tokio::runtime::Runtime),
}

impl<'a> Sweeper<'a> {
    /// The unmarked blobs old enough to go, and the counts of the others.
    fn list(
        &self,
        marked: &mark::MarkSet,
        now: i64,
        min_age: i64,
        listed: &AtomicU64,
    ) -> Result<sweep::Listed, String> {
        match self {
            Sweeper::Fs(root) => sweep::list(root, marked, now, min_age, listed),
            Sweeper::S3(store, rt) => {
                rt.block_on(sweep_s3::list(store, marked, now, min_age, listed))
            }
        }
    }

    /// Removes the candidates; gives the blobs that could not be removed, with why.
    fn remove(&self, candidates: &[sweep::Candidate]) -> Vec<(Digest, String)> {
        match self {
            Sweeper::Fs(root) => sweep::remove(root, candidates),
            Sweeper::S3(store, rt) => rt.block_on(sweep_s3::remove(store, candidates)),
        }
    }

    /// The quarantine of online collections beside this storage.
    fn quarantine(&self) -> quarantine::Quarantine<'a> {
        match self {
            Sweeper::Fs(root) => quarantine::Quarantine::fs(root),
            Sweeper::S3(store, rt) => quarantine::Quarantine::s3(store.clone(), rt),
        }
    }

    /// The uploads under every repository, with their start times.
    fn uploads(&self) -> Result<Vec<uploads::Upload>, String> {
        match self {
            Sweeper::Fs(root) => uploads::list_fs(root),
            Sweeper::S3(store, rt) => rt.block_on(uploads::list_s3(store)),
        }
    }

    /// Removes uploads; gives those that could not be removed, with why.
    fn remove_uploads(&self, old: &[uploads::Upload]) -> Vec<(String, String)> {
        match self {
            Sweeper::Fs(root) => uploads::remove_fs(root, old),
            Sweeper::S3(store, rt) => rt.block_on(uploads::remove_s3(store, old)),
        }
    }
}

/// Opens the storage the configuration names: to mark (counting links into `links`) and
/// to sweep.
fn open<'a>(
    cfg: &Config,
    rt: &'a tokio::runtime::Runtime,
    links: Arc<AtomicU64>,
) -> Result<(Sweeper<'a>, Box<dyn Storage>)> {
    Ok(match &cfg.storage {
        StorageConfig::Fs(root) => (
            Sweeper::Fs(root.clone()),
            Box::new(FsStorage::new(root, cfg.threads).with_progress(links)),
        ),
        StorageConfig::S3(o) => {
            let store = Arc::new(rt.block_on(S3Store::connect(o)).map_err(|e| anyhow!(e))?);
            let storage = S3Storage::new(store.clone(), rt.handle().clone()).with_progress(links);
            (Sweeper::S3(store, rt), Box::new(storage))
        }
    })
}

/// The interrupted collection the journal records, when this one is to delete.
fn unfinished(cfg: &Config) -> Result<Option<UnfinishedGc>> {
    let Some(path) = cfg.journal.as_ref().filter(|_| !cfg.dry_run) else {
        return Ok(None);
    };
    let Some(u) = journal::load_gc(path).map_err(|e| anyhow!(e))? else {
        return Ok(None);
    };
    policy_time(&format!("journal {}", path.display()), u.now)?;
    crate::logging::note(format_args!(
        "resuming the collection recorded in {}: {} of {} planned blob deletions remain",
        path.display(),
        u.remaining().len(),
        u.planned.len()
    ));
    journal::warn_torn(path, &u.unreadable_lines);
    Ok(Some(u))
}

/// Runs a collection as the configuration says (dry run: list only); gives the exit code.
/// It always marks every repository, whatever filters a cleanup before it used. A resumed
/// collection measures the minimum age from the interrupted one's time, marks afresh and
/// deletes only what that one planned and did not finish. Whatever an interrupted online
/// collection left in quarantine is put back first.
pub fn run(cfg: &Config, rt: &tokio::runtime::Runtime, signals: &Signals) -> Result<i32> {
    let cache = match blob_cache_of(cfg) {
        Ok(c) => c,
        Err(e) => {
            crate::logging::error(format_args!("{e}"));
            return Ok(EXIT_USAGE);
        }
    };
    let links = Arc::new(AtomicU64::new(0));
    let (sweeper, storage) = open(cfg, rt, links.clone())?;
    let quarantine = sweeper.quarantine();
    // Every collection that may touch the quarantine holds its lock: an online one and a
    // restore make it, an offline one takes it where it exists (it puts leftovers back).
    let creates = cfg.online.is_some() || cfg.restore_quarantine;
    let _lock = match (!cfg.dry_run).then(|| quarantine.lock(creates)).transpose() {
        Ok(l) => l.flatten(),
        Err(e) => {
            crate::logging::error(format_args!("{e}"));
            return Ok(EXIT_FATAL);
        }
    };
    if cfg.restore_quarantine {
        return restore_leftovers(cfg, &quarantine, true);
    }
    if !cfg.dry_run {
        let code = restore_leftovers(cfg, &quarantine, false)?;
        if code != EXIT_OK {
            return Ok(code);
        }
    } else if let Ok(left) = quarantine.held()
        && !left.is_empty()
    {
        crate::logging::warn(format_args!(
            "{} blobs sit in the quarantine {} (an interrupted online collection); \
             a collection that deletes puts them back first",
            left.len(),
            quarantine.shown()
        ));
    }
    let resume = unfinished(cfg)?;
    let now = resume
        .as_ref()
        .map_or_else(|| chrono::Utc::now().timestamp(), |u| u.now);
    let status = Status::start(cfg.progress, links);
    let counters = status.counters.clone();
    counters.start_mark();
    cfg.recorder.phase("mark");
    let marked = match mark::mark(&*storage, &counters) {
        Ok(m) => m,
        Err(e) => return Ok(aborted(status, e)),
    };
    cfg.recorder.marked(marked.blobs.len());
    counters.start_listing();
    cfg.recorder.phase("list");
    let mut listed = sweeper
        .list(&marked.blobs, now, cfg.min_age_secs, &counters.blobs_listed)
        .map_err(|e| anyhow!("garbage collection aborted, nothing deleted: {e}"))?;
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
        drop(status);
        crate::logging::error(format_args!(
            "garbage collection aborted, nothing deleted: the mark found no \
             manifest in {} repositories, yet the store holds {} blobs (a listing gone wrong \
             would look the same); if every repository really is gone, rerun with --allow-empty-mark",
            marked.repositories,
            listed.seen()
        ));
        return Ok(EXIT_FATAL);
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
    let mut out = io::BufWriter::new(io::stdout().lock());
    write_plan(&mut out, cfg, &marked, &listed, unplanned, &old_uploads)?;
    if cfg.dry_run {
        out.flush()?;
        return Ok(EXIT_OK);
    }
    if signals.cancel.load(Ordering::SeqCst) {
        out.flush()?;
        drop(status);
        crate::logging::note(format_args!(
            "interrupted before the sweep: the collection deleted nothing"
        ));
        return Ok(EXIT_INTERRUPTED);
    }
    out.flush()?;
    // A push between the mark and now may name a blob the mark left out: list every link
    // again and mark what appeared, right before the first delete.
    let (marked, found) =
        match mark::remark(&*storage, storage.blobs(), &Counters::default(), marked) {
            Ok(m) => m,
            Err(e) => return Ok(aborted(status, e)),
        };
    if found > 0 {
        let before = listed.candidates.len();
        listed
            .candidates
            .retain(|c| !marked.blobs.contains(&c.digest));
        writeln!(
            out,
            "Marked again before the sweep: {found} manifests pushed since the mark began; {} blobs they reference are kept.",
            before - listed.candidates.len()
        )?;
        out.flush()?;
    }
    let journal = begin_journal(cfg, &listed.candidates, now, &resume)?;
    cfg.recorder.phase("sweep");
    if let Some(settle) = cfg.online {
        let online = online::Online {
            quarantine: &quarantine,
            cache: match &cache {
                Some(registry_config::BlobCache::Redis(t)) => Some(t),
                _ => None,
            },
            settle,
        };
        let mut lines = online::Lines::new(&mut out);
        let cx = online::Context {
            storage: &*storage,
            online: &online,
            signals,
            journal: journal.as_ref(),
            counters: &counters,
        };
        let outcome = online::collect(&cx, marked, &listed.candidates, &mut lines);
        cfg.recorder
            .swept(outcome.deleted, outcome.deleted_bytes, outcome.failed.len());
        let upload_failures = if outcome.interrupted || outcome.doubt.is_some() {
            Vec::new()
        } else {
            sweeper.remove_uploads(&old_uploads)
        };
        drop(status);
        if !old_uploads.is_empty() && upload_failures.len() < old_uploads.len() {
            lines.line(format_args!(
                "Purged {} of {} uploads.",
                old_uploads.len() - upload_failures.len(),
                old_uploads.len()
            ));
        }
        for (u, why) in &upload_failures {
            crate::logging::failed(format_args!("upload {u}: {why}"));
        }
        let code = finish_online(&mut lines, &outcome, listed.candidates.len(), journal)?;
        return Ok(if code == EXIT_OK && !upload_failures.is_empty() {
            EXIT_PARTIAL
        } else {
            code
        });
    }
    let mut swept = sweep_journaled(&sweeper, &listed.candidates, signals, &counters, &journal);
    cfg.recorder
        .swept_blobs(&listed.candidates[..swept.attempted], &swept.failed);
    if let Some(j) = journal {
        if !swept.interrupted {
            j.record(Record::GcEnd);
        }
        swept.journal_error = j.close().err().map(|e| e.to_string());
    }
    let upload_failures = if swept.interrupted {
        Vec::new()
    } else {
        sweeper.remove_uploads(&old_uploads)
    };
    drop(status);
    let cache_cleared = match &cache {
        Some(registry_config::BlobCache::Redis(t)) => {
            let gone = swept.deleted(&listed.candidates);
            Some(blob_cache::forget(t, &gone).map(|_| ()))
        }
        _ => None,
    };
    write_closing(
        &mut out,
        &swept,
        listed.candidates.len(),
        &old_uploads,
        &upload_failures,
        cache_cleared.as_ref(),
    )?;
    out.flush()?;
    for (d, why) in &swept.failed {
        crate::logging::failed(format_args!("blob {d}: {why}"));
    }
    for (u, why) in &upload_failures {
        crate::logging::failed(format_args!("upload {u}: {why}"));
    }
    if let Some(e) = &swept.journal_error {
        crate::logging::error(format_args!("{e}"));
    }
    if let Some(Err(e)) = &cache_cleared {
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
                listed.candidates.len() - swept.attempted
            ),
        );
        return Ok(EXIT_INTERRUPTED);
    }
    let clean = swept.failed.is_empty()
        && upload_failures.is_empty()
        && swept.journal_error.is_none()
        && !matches!(cache_cleared, Some(Err(_)));
    Ok(if clean { EXIT_OK } else { EXIT_PARTIAL })
}

/// Stops the progress display and says the collection stopped before deleting anything,
/// because of `why`; gives the exit code.
fn aborted(status: Status, why: impl std::fmt::Display) -> i32 {
    drop(status);
    crate::logging::error(format_args!(
        "garbage collection aborted, nothing deleted: {why}"
    ));
    EXIT_FATAL
}

/// The registry's blob descriptor cache as its configuration file says (`None` without
/// one), checked against what this collection needs: an online one cannot run beside an
/// in-memory or unknown cache; a Redis one must answer before anything moves.
fn blob_cache_of(cfg: &Config) -> Result<Option<registry_config::BlobCache>, String> {
    use registry_config::BlobCache;
    let Some(path) = &cfg.registry_config else {
        return Ok(None);
    };
    let cache = registry_config::read(path)?;
    let online = cfg.online.is_some();
    match &cache {
        BlobCache::InMemory if online => {
            return Err(format!(
                "--online: the registry keeps its blob descriptor cache in memory ({}: \
                 storage.cache.blobdescriptor: inmemory), which only a restart clears: pushes \
                 would go on skipping blobs in quarantine as if they were there. Set it to redis \
                 (regsweep clears that) or remove it, or collect with the registry stopped",
                path.display()
            ));
        }
        BlobCache::Unknown(kind) if online => {
            return Err(format!(
                "--online: {}: storage.cache.blobdescriptor {kind:?} is a cache regsweep does \
                 not know how to clear",
                path.display()
            ));
        }
        BlobCache::Redis(t) if !cfg.dry_run => blob_cache::check(t)?,
        _ => {}
    }
    Ok(Some(cache))
}

/// Puts back whatever sits in quarantine (`regsweep gc --restore-quarantine`, or before
/// any collection that deletes); gives the exit code.
fn restore_leftovers(cfg: &Config, q: &quarantine::Quarantine, asked: bool) -> Result<i32> {
    let left = match q.held() {
        Ok(l) => l,
        Err(e) => {
            crate::logging::error(format_args!("the quarantine {}: {e}", q.shown()));
            return Ok(EXIT_FATAL);
        }
    };
    if left.is_empty() {
        if asked {
            println!(
                "The quarantine {} is empty: nothing to put back.",
                q.shown()
            );
        }
        return Ok(EXIT_OK);
    }
    let failed = q.restore(&left);
    if let Some(path) = &cfg.journal {
        let j = Journal::open(path).map_err(|e| anyhow!(e))?;
        j.record(Record::GcRestored {
            digests: left.iter().map(|d| d.to_string()).collect(),
            why: "left in quarantine by an interrupted online collection".into(),
        });
        if let Err(e) = j.close() {
            crate::logging::error(format_args!("{e}"));
        }
    }
    let line = format!(
        "Put back {} of {} blobs an interrupted online collection left in quarantine ({}).",
        left.len() - failed.len(),
        left.len(),
        q.shown()
    );
    if asked {
        println!("{line}");
    } else {
        crate::logging::note(format_args!("{line}"));
    }
    for (d, why) in &failed {
        crate::logging::failed(format_args!("blob {d}: {why}"));
    }
    Ok(if failed.is_empty() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}

/// The closing lines and exit code of an online collection.
fn finish_online(
    out: &mut online::Lines,
    o: &online::Outcome,
    total: usize,
    journal: Option<Journal>,
) -> Result<i32> {
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
    for e in [&journal_error, &o.cache_error].into_iter().flatten() {
        crate::logging::error(format_args!("{e}"));
    }
    if let Some(e) = &o.doubt {
        crate::logging::error(format_args!(
            "online collection stopped, every quarantined blob put back: {e}"
        ));
        return Ok(EXIT_FATAL);
    }
    if o.interrupted {
        crate::logging::line(
            tracing::Level::WARN,
            "interrupted",
            "regsweep: interrupted: ",
            format_args!("every blob not yet deleted was put back; rerun to collect them"),
        );
        return Ok(EXIT_INTERRUPTED);
    }
    let clean = o.failed.is_empty()
        && journal_error.is_none()
        && o.cache_error.is_none()
        && out.error.is_none();
    Ok(if clean { EXIT_OK } else { EXIT_PARTIAL })
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
    for batch in candidates.chunks(BATCH) {
        j.record(Record::GcPlan {
            digests: batch.iter().map(|c| c.digest.to_string()).collect(),
        });
    }
    Ok(Some(j))
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
    for batch in candidates.chunks(BATCH) {
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

/// The report before any delete: what was marked, each blob (and upload) that goes, totals.
fn write_plan(
    out: &mut impl Write,
    cfg: &Config,
    marked: &mark::Marked,
    listed: &sweep::Listed,
    unplanned: usize,
    old_uploads: &[uploads::Upload],
) -> Result<()> {
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

/// The closing lines after the sweep.
fn write_closing(
    out: &mut impl Write,
    swept: &Swept,
    total: usize,
    old_uploads: &[uploads::Upload],
    upload_failures: &[(String, String)],
    cache_cleared: Option<&Result<(), String>>,
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
