//! `regsweep gc --online`: a collection while the registry serves. The candidates go into
//! quarantine (the registry answers 404 for them from then on, and a push of one uploads
//! it afresh); every manifest pushed since the mark began is marked again, over and over
//! for a settle period longer than any request, and what it names comes back; then the
//! quarantine is deleted. Any doubt, interruption or failure to clear the registry's cache
//! puts everything back.

use super::BLOBS_PER_STEP;
use super::error::GcError;
use std::collections::BTreeSet;
use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::blob_cache;
use super::mark::{self, Marked};
use super::quarantine::{Failure, Quarantine};
use super::registry_config::RedisTarget;
use super::sweep::Candidate;
use crate::delete::journal::{Journal, Record};
use crate::digest::Digest;
use crate::report::status::Counters;
use crate::signals::Signals;
use crate::storage::{BlobSource, Storage};

/// How an online collection runs.
pub struct Online<'a> {
    /// Where candidates wait.
    pub quarantine: &'a Quarantine<'a>,
    /// The registry's Redis blob descriptor cache, if it keeps one.
    pub cache: Option<&'a RedisTarget>,
    /// How long quarantined blobs wait, marked again all along.
    pub settle: Duration,
}

impl Online<'_> {
    /// Time between two marks during the settle period.
    fn interval(&self) -> Duration {
        (self.settle / 8).clamp(Duration::from_millis(250), Duration::from_secs(15))
    }
}

/// What the online collection did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Blobs moved into quarantine.
    pub quarantined: usize,
    /// Blobs put back because a manifest pushed during the collection names them.
    pub restored: usize,
    /// Quarantined blobs deleted for good.
    pub deleted: usize,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// Blobs that could not be moved, put back or deleted, with why.
    pub failed: Vec<Failure>,
    /// Stopped by a signal: everything was put back.
    pub interrupted: bool,
    /// Stopped by a doubt (a re-mark that could not read something, a cache that could not
    /// be cleared): everything was put back.
    pub doubt: Option<GcError>,
    /// The registry's cache could not be cleared after the deletion: it may still claim
    /// deleted blobs exist.
    pub cache_error: Option<GcError>,
}

/// Reads manifests for a re-mark: one whose body sits in quarantine (deleted, then pushed
/// again) is put back first, then read.
struct Restoring<'a> {
    inner: &'a dyn BlobSource,
    quarantine: &'a Quarantine<'a>,
    held: &'a Mutex<BTreeSet<Digest>>,
    restored: Mutex<Vec<Digest>>,
    failed: Mutex<Vec<Failure>>,
}

impl Restoring<'_> {
    /// Puts `d` back if it is quarantined; gives whether it was.
    fn bring_back(&self, d: &Digest) -> bool {
        let was_held = self.held.lock().map(|mut h| h.remove(d)).unwrap_or(false);
        if was_held {
            let failed = self.quarantine.restore(std::slice::from_ref(d));
            if let Ok(mut f) = self.failed.lock() {
                f.extend(failed);
            }
            if let Ok(mut r) = self.restored.lock() {
                r.push(*d);
            }
        }
        was_held
    }
}

impl BlobSource for Restoring<'_> {
    fn read_blob(&self, d: &Digest) -> io::Result<Vec<u8>> {
        match self.inner.read_blob(d) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.bring_back(d) => {
                self.inner.read_blob(d)
            }
            r => r,
        }
    }

    fn reread(&self, d: &Digest) -> io::Result<Vec<u8>> {
        self.inner.reread(d)
    }

    fn locate(&self, d: &Digest) -> String {
        self.inner.locate(d)
    }

    fn read_many(&self, digests: &[Digest]) -> Vec<io::Result<Vec<u8>>> {
        let mut out = self.inner.read_many(digests);
        for (d, r) in digests.iter().zip(out.iter_mut()) {
            if matches!(r, Err(e) if e.kind() == io::ErrorKind::NotFound) && self.bring_back(d) {
                *r = self.inner.read_blob(d);
            }
        }
        out
    }
}

/// The report's lines: a line that cannot be written (stdout closed) must not stop a
/// collection with blobs in quarantine; the first error is kept for the end.
pub struct Lines<'a> {
    out: &'a mut dyn Write,
    /// The first write error.
    pub error: Option<io::Error>,
}

impl<'a> Lines<'a> {
    /// Lines to `out`.
    pub fn new(out: &'a mut dyn Write) -> Lines<'a> {
        Lines { out, error: None }
    }

    /// Writes one line and flushes it.
    pub fn line(&mut self, args: std::fmt::Arguments) {
        if self.error.is_none()
            && let Err(e) = self.out.write_fmt(args).and_then(|()| {
                self.out.write_all(b"\n")?;
                self.out.flush()
            })
        {
            self.error = Some(e);
        }
    }
}

/// What an online collection works with besides its candidates.
pub struct Context<'a> {
    /// The registry's storage, listed again by each re-mark.
    pub storage: &'a dyn Storage,
    /// The quarantine, the cache, the settle period.
    pub online: &'a Online<'a>,
    /// SIGINT/SIGTERM.
    pub signals: &'a Signals,
    /// Where each step is recorded, if anywhere.
    pub journal: Option<&'a Journal>,
    /// Progress.
    pub counters: &'a Counters,
}

/// One online collection in progress.
struct Collection<'a, 'o> {
    cx: &'a Context<'a>,
    /// Blobs in quarantine now.
    held: Mutex<BTreeSet<Digest>>,
    outcome: Outcome,
    out: &'a mut Lines<'o>,
}

/// Runs the online collection of `candidates` (the plan already printed), reporting
/// progress lines to `out`.
pub fn collect(cx: &Context, marked: Marked, candidates: &[Candidate], out: &mut Lines) -> Outcome {
    let mut c = Collection {
        cx,
        held: Mutex::new(BTreeSet::new()),
        outcome: Outcome::default(),
        out,
    };
    cx.signals.deleting.store(true, Ordering::SeqCst);
    cx.counters.start_sweep(candidates.len());
    c.quarantine(candidates);
    if !c.stopped() {
        c.settle(marked);
    }
    if c.stopped() {
        let why = if c.outcome.interrupted {
            "interrupted"
        } else {
            "doubt"
        };
        let all = c.held_now();
        let back = c.put_back(&all, why);
        c.out.line(format_args!(
            "Put back {back} of {} quarantined blobs ({why}).",
            all.len()
        ));
        return c.outcome;
    }
    c.purge(candidates);
    c.outcome
}

impl Collection<'_, '_> {
    /// Stopped by a signal or a doubt.
    fn stopped(&self) -> bool {
        self.outcome.interrupted || self.outcome.doubt.is_some()
    }

    fn held_now(&self) -> Vec<Digest> {
        self.held
            .lock()
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    /// 1. Moves the candidates into quarantine, a batch at a time, then clears the cache.
    fn quarantine(&mut self, candidates: &[Candidate]) {
        let (q, cx) = (self.cx.online.quarantine, self.cx);
        for batch in candidates.chunks(BLOBS_PER_STEP) {
            if cx.signals.cancel.load(Ordering::SeqCst) {
                self.outcome.interrupted = true;
                break;
            }
            let (failed, absent) = q.put(batch);
            let bad: BTreeSet<Digest> = failed.iter().map(|(d, _)| *d).chain(absent).collect();
            let moved: Vec<Digest> = batch
                .iter()
                .map(|c| c.digest)
                .filter(|d| !bad.contains(d))
                .collect();
            record(
                cx.journal,
                Record::GcQuarantined {
                    digests: names(&moved),
                },
            );
            cx.counters
                .delete_done
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            cx.counters
                .delete_failed
                .fetch_add(failed.len() as u64, Ordering::Relaxed);
            self.outcome.quarantined += moved.len();
            if let Ok(mut h) = self.held.lock() {
                h.extend(moved);
            }
            self.outcome.failed.extend(failed);
        }
        let held: BTreeSet<Digest> = self.held_now().into_iter().collect();
        let bytes: u64 = candidates
            .iter()
            .filter(|c| held.contains(&c.digest))
            .map(|c| c.size)
            .sum();
        self.out.line(format_args!(
            "Quarantined {} blobs ({}) in {}; settling for {}, marking again every {}.",
            self.outcome.quarantined,
            indicatif::BinaryBytes(bytes),
            q.shown(),
            humantime::format_duration(cx.online.settle),
            humantime::format_duration(cx.online.interval()),
        ));
        if !self.outcome.interrupted
            && let Err(e) = forget(cx.online, &self.held_now())
        {
            self.outcome.doubt = Some(e);
        }
    }

    /// 2. Marks again every interval until the settle period is over, then once more,
    ///    putting back what new manifests name.
    fn settle(&mut self, marked: Marked) {
        let online = self.cx.online;
        let mut marked = marked;
        let (mut remarks, mut spent) = (0u32, Duration::ZERO);
        let deadline = Instant::now() + online.settle;
        loop {
            let last = Instant::now() >= deadline;
            let pause = online
                .interval()
                .min(deadline.saturating_duration_since(Instant::now()));
            if !wait(self.cx.signals, pause) {
                self.outcome.interrupted = true;
                return;
            }
            // A request that read a blob's presence from storage right before the
            // quarantine may write it into the cache right after it was cleared: clear it
            // again before each re-mark, so that such an entry lives one interval at most.
            if let Err(e) = forget(online, &self.held_now()) {
                self.outcome.doubt = Some(e);
                return;
            }
            let began = Instant::now();
            let result = remark(self.cx, &self.held, marked, self.out);
            remarks += 1;
            spent += began.elapsed();
            match result {
                Ok((m, restored, failed)) => {
                    marked = m;
                    self.outcome.restored += restored;
                    self.outcome.failed.extend(failed);
                }
                Err(e) => {
                    self.outcome.doubt = Some(e);
                    return;
                }
            }
            if last {
                break;
            }
        }
        self.out.line(format_args!(
            "Settled: deleting {} quarantined blobs (marked again {remarks} times, {} ms each on average).",
            self.held_now().len(),
            (spent / remarks.max(1)).as_millis()
        ));
    }

    /// Puts `digests` back from quarantine, journaled with why; gives how many went back.
    fn put_back(&mut self, digests: &[Digest], why: &str) -> usize {
        let failed = self.cx.online.quarantine.restore(digests);
        let back = digests.len() - failed.len();
        let why = why.to_owned();
        record(
            self.cx.journal,
            Record::GcRestored {
                digests: names(digests),
                why,
            },
        );
        self.outcome.failed.extend(failed);
        back
    }

    /// 3. Deletes the quarantine, a batch at a time (a signal puts the rest back), then
    ///    makes the cache forget once more.
    fn purge(&mut self, candidates: &[Candidate]) {
        let remaining = self.held_now();
        let extra: Vec<(Digest, String)> = extra_keys(candidates, &remaining);
        for (i, batch) in remaining.chunks(BLOBS_PER_STEP).enumerate() {
            if self.cx.signals.cancel.load(Ordering::SeqCst) {
                let rest = &remaining[i * BLOBS_PER_STEP..];
                let back = self.put_back(rest, "interrupted");
                self.out.line(format_args!(
                    "Interrupted: put back {back} quarantined blobs not yet deleted."
                ));
                self.outcome.interrupted = true;
                return;
            }
            let failed = self.cx.online.quarantine.purge(batch, &extra);
            let bad: BTreeSet<Digest> = failed.iter().map(|(d, _)| *d).collect();
            let gone: Vec<Digest> = batch.iter().copied().filter(|d| !bad.contains(d)).collect();
            record(
                self.cx.journal,
                Record::GcDone {
                    digests: names(&gone),
                },
            );
            let gone_set: BTreeSet<&Digest> = gone.iter().collect();
            self.outcome.deleted_bytes += candidates
                .iter()
                .filter(|c| gone_set.contains(&c.digest))
                .map(|c| c.size)
                .sum::<u64>();
            self.outcome.deleted += gone.len();
            self.outcome.failed.extend(failed);
        }
        if let Err(e) = forget(self.cx.online, &remaining) {
            self.outcome.cache_error = Some(e);
        }
    }
}

/// The keys besides `data` that lay under each deleted blob's key on S3.
fn extra_keys(candidates: &[Candidate], remaining: &[Digest]) -> Vec<(Digest, String)> {
    candidates
        .iter()
        .filter(|c| remaining.binary_search(&c.digest).is_ok())
        .flat_map(|c| {
            c.keys
                .iter()
                .filter(|k| !k.ends_with("/data"))
                .map(move |k| (c.digest, k.clone()))
        })
        .collect()
}

/// One re-mark: manifests pushed since the last, with what they name put back. Gives the
/// new marks, how many blobs came back, and those that could not.
fn remark(
    cx: &Context,
    held: &Mutex<BTreeSet<Digest>>,
    marked: Marked,
    out: &mut Lines,
) -> Result<(Marked, usize, Vec<Failure>), GcError> {
    let (storage, q, journal) = (cx.storage, cx.online.quarantine, cx.journal);
    let source = Restoring {
        inner: storage.blobs(),
        quarantine: q,
        held,
        restored: Mutex::new(Vec::new()),
        failed: Mutex::new(Vec::new()),
    };
    let (marked, found) = mark::remark(storage, &source, &Counters::default(), marked)?;
    let mut restored = source.restored.into_inner().unwrap_or_default();
    let mut failed = source.failed.into_inner().unwrap_or_default();
    let named: Vec<Digest> = match held.lock() {
        Ok(mut h) => {
            let named: Vec<Digest> = h
                .iter()
                .copied()
                .filter(|d| marked.blobs.contains(d))
                .collect();
            for d in &named {
                h.remove(d);
            }
            named
        }
        Err(_) => {
            return Err(GcError::Doubt(
                "the quarantine's record was poisoned".into(),
            ));
        }
    };
    failed.extend(q.restore(&named));
    restored.extend(named);
    if !restored.is_empty() {
        record(
            journal,
            Record::GcRestored {
                digests: names(&restored),
                why: "named by a manifest pushed during the collection".into(),
            },
        );
    }
    if found > 0 || !restored.is_empty() {
        out.line(format_args!(
            "Marked again: {found} manifests pushed since the mark began; {} quarantined blobs they name put back.",
            restored.len()
        ));
    }
    Ok((marked, restored.len(), failed))
}

/// Makes the registry's Redis forget every blob in `digests`.
fn forget(online: &Online, digests: &[Digest]) -> Result<(), GcError> {
    let Some(t) = online.cache else {
        return Ok(());
    };
    blob_cache::forget(t, digests)
        .map(|f| tracing::debug!("cache entries removed: {f:?}"))
        .map_err(|e| {
            GcError::Cache(format!(
                "clearing the registry's blob descriptor cache: {e}"
            ))
        })
}

/// Sleeps `d`, waking early on a signal; gives false when interrupted.
fn wait(signals: &Signals, d: Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        if signals.cancel.load(Ordering::SeqCst) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

fn record(journal: Option<&Journal>, r: Record) {
    if let Some(j) = journal {
        j.record(r);
    }
}

fn names(ds: &[Digest]) -> Vec<String> {
    ds.iter().map(|d| d.to_string()).collect()
}
