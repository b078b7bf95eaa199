//! `regsweep gc --online`: a collection while the registry serves. The candidates go into
//! quarantine (the registry answers 404 for them from then on, and a push of one uploads
//! it afresh); every manifest pushed since the mark began is marked again, over and over
//! for a settle period longer than any request, and what it names comes back; then the
//! quarantine is deleted. Any doubt, interruption or failure to clear the registry's cache
//! puts everything back.

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
use crate::app::Signals;
use crate::delete::journal::{Journal, Record};
use crate::digest::Digest;
use crate::report::status::Counters;
use crate::scan::{BlobSource, Storage};

/// Blobs moved between two looks at the interrupt flag, and journaled as one line.
const BATCH: usize = 4096;

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
    /// Blobs that could not be moved, put back or deleted, with why.
    pub failed: Vec<Failure>,
    /// Stopped by a signal: everything was put back.
    pub interrupted: bool,
    /// Stopped by a doubt (a re-mark that could not read something, a cache that could not
    /// be cleared): everything was put back.
    pub doubt: Option<String>,
    /// The registry's cache could not be cleared after the deletion: it may still claim
    /// deleted blobs exist.
    pub cache_error: Option<String>,
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

/// Runs the online collection of `candidates` (the plan already printed), reporting
/// progress lines to `out`.
#[allow(clippy::too_many_arguments)]
pub fn collect(
    storage: &dyn Storage,
    marked: Marked,
    candidates: &[Candidate],
    online: &Online,
    signals: &Signals,
    journal: Option<&Journal>,
    counters: &Counters,
    out: &mut Lines,
) -> Outcome {
    let q = online.quarantine;
    let mut outcome = Outcome::default();
    let held = Mutex::new(BTreeSet::new());
    signals.deleting.store(true, Ordering::SeqCst);
    counters.start_sweep(candidates.len());
    // 1. Quarantine.
    for batch in candidates.chunks(BATCH) {
        if signals.cancel.load(Ordering::SeqCst) {
            outcome.interrupted = true;
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
            journal,
            Record::GcQuarantined {
                digests: names(&moved),
            },
        );
        counters
            .delete_done
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        counters
            .delete_failed
            .fetch_add(failed.len() as u64, Ordering::Relaxed);
        outcome.quarantined += moved.len();
        if let Ok(mut h) = held.lock() {
            h.extend(moved);
        }
        outcome.failed.extend(failed);
    }
    let bytes: u64 = {
        let h = held.lock().map(|h| h.clone()).unwrap_or_default();
        candidates
            .iter()
            .filter(|c| h.contains(&c.digest))
            .map(|c| c.size)
            .sum()
    };
    out.line(format_args!(
        "Quarantined {} blobs ({}) in {}; settling for {}, marking again every {}.",
        outcome.quarantined,
        indicatif::BinaryBytes(bytes),
        q.shown(),
        humantime::format_duration(online.settle),
        humantime::format_duration(online.interval()),
    ));
    if !outcome.interrupted
        && let Err(e) = forget(online, &held)
    {
        outcome.doubt = Some(e);
    }
    // 2. Settle: mark again until the settle period is over, then once more.
    let mut marked = marked;
    let (mut remarks, mut remark_time) = (0u32, Duration::ZERO);
    if !outcome.interrupted && outcome.doubt.is_none() {
        let deadline = Instant::now() + online.settle;
        loop {
            let last = Instant::now() >= deadline;
            if !wait(
                signals,
                online
                    .interval()
                    .min(deadline.saturating_duration_since(Instant::now())),
            ) {
                outcome.interrupted = true;
                break;
            }
            // A request that read a blob's presence from storage right before the
            // quarantine may write it into the cache right after it was cleared: clear it
            // again before each re-mark, so that such an entry lives one interval at most.
            if let Err(e) = forget(online, &held) {
                outcome.doubt = Some(e);
                break;
            }
            let began = Instant::now();
            let result = remark(storage, q, &held, marked, journal, out);
            remarks += 1;
            remark_time += began.elapsed();
            match result {
                Ok((m, restored, failed)) => {
                    marked = m;
                    outcome.restored += restored;
                    outcome.failed.extend(failed);
                }
                Err(e) => {
                    outcome.doubt = Some(e);
                    break;
                }
            }
            if last {
                break;
            }
        }
    }
    let remaining: Vec<Digest> = held
        .lock()
        .map(|h| h.iter().copied().collect())
        .unwrap_or_default();
    // Stopped early: everything goes back.
    if outcome.interrupted || outcome.doubt.is_some() {
        let why = if outcome.interrupted {
            "interrupted"
        } else {
            "doubt"
        };
        let failed = q.restore(&remaining);
        record(
            journal,
            Record::GcRestored {
                digests: names(&remaining),
                why: why.into(),
            },
        );
        out.line(format_args!(
            "Put back all {} quarantined blobs ({why}).",
            remaining.len() - failed.len()
        ));
        outcome.failed.extend(failed);
        return outcome;
    }
    // 3. Delete the quarantine, then make the cache forget once more (an entry a request
    //    wrote back between the first clearing and the quarantine is gone now).
    out.line(format_args!(
        "Settled: deleting {} quarantined blobs (marked again {remarks} times, {} ms each on average).",
        remaining.len(),
        (remark_time / remarks.max(1)).as_millis()
    ));
    let extra: Vec<(Digest, String)> = extra_keys(candidates, &remaining);
    for (i, batch) in remaining.chunks(BATCH).enumerate() {
        if signals.cancel.load(Ordering::SeqCst) {
            // What is left goes back: always safe.
            let rest = &remaining[i * BATCH..];
            let failed = q.restore(rest);
            record(
                journal,
                Record::GcRestored {
                    digests: names(rest),
                    why: "interrupted".into(),
                },
            );
            out.line(format_args!(
                "Interrupted: put back {} quarantined blobs not yet deleted.",
                rest.len() - failed.len()
            ));
            outcome.failed.extend(failed);
            outcome.interrupted = true;
            return outcome;
        }
        let failed = q.purge(batch, &extra);
        let bad: BTreeSet<Digest> = failed.iter().map(|(d, _)| *d).collect();
        let gone: Vec<Digest> = batch.iter().copied().filter(|d| !bad.contains(d)).collect();
        record(
            journal,
            Record::GcDone {
                digests: names(&gone),
            },
        );
        outcome.deleted += gone.len();
        outcome.failed.extend(failed);
    }
    if let Err(e) = forget(online, &Mutex::new(remaining.iter().copied().collect())) {
        outcome.cache_error = Some(e);
    }
    outcome
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
    storage: &dyn Storage,
    q: &Quarantine,
    held: &Mutex<BTreeSet<Digest>>,
    marked: Marked,
    journal: Option<&Journal>,
    out: &mut Lines,
) -> Result<(Marked, usize, Vec<Failure>), String> {
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
        Err(_) => return Err("the quarantine's record was poisoned".into()),
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

/// Makes the registry's Redis forget every blob in `held`.
fn forget(online: &Online, held: &Mutex<BTreeSet<Digest>>) -> Result<(), String> {
    let Some(t) = online.cache else {
        return Ok(());
    };
    let digests: Vec<Digest> = held
        .lock()
        .map(|h| h.iter().copied().collect())
        .unwrap_or_default();
    blob_cache::forget(t, &digests)
        .map(|f| {
            tracing::debug!("cache entries removed: {f:?}");
        })
        .map_err(|e| format!("clearing the registry's blob descriptor cache: {e}"))
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
