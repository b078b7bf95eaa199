//! Live progress on stderr: indicatif bars on a terminal, a plain line at intervals
//! otherwise, from counters the lister, planners and deleter update. Never stdout.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::digest::Digest;
use crate::outcome::{DeleteResult, Progress};
use crate::plan::RepoPlan;

/// The counters the pipeline and the deleter update and the status thread shows.
#[derive(Debug, Default)]
pub struct Counters {
    phase: AtomicU8,
    /// Repositories planned.
    pub repositories: AtomicU64,
    /// Manifests planned.
    pub manifests: AtomicU64,
    /// Revision links read by the lister so far (moves inside a big repository too).
    pub links: Arc<AtomicU64>,
    /// Deletes planned in all.
    pub delete_total: AtomicU64,
    /// Deletes finished (deleted, gone, failed or skipped).
    pub delete_done: AtomicU64,
    /// Of those, failed.
    pub delete_failed: AtomicU64,
    /// Of those, skipped.
    pub delete_skipped: AtomicU64,
    /// Blobs listed under `blobs/sha256` (collection).
    pub blobs_listed: AtomicU64,
    delete_started: std::sync::OnceLock<Instant>,
    stop: AtomicBool,
}

const SCAN: u8 = 0;
const DELETE: u8 = 1;
const PAUSED: u8 = 2;
const MARK: u8 = 3;
const LIST: u8 = 4;
const SWEEP: u8 = 5;

impl Counters {
    /// One repository planned.
    pub fn planned(&self, plan: &RepoPlan) {
        self.repositories.fetch_add(1, Ordering::Relaxed);
        self.manifests
            .fetch_add(plan.decisions.len() as u64, Ordering::Relaxed);
    }

    /// The scan is over; the report is being written (nothing is shown).
    pub fn scan_done(&self) {
        self.phase.store(PAUSED, Ordering::Relaxed);
    }

    /// The scan is over; `total` deletes follow.
    pub fn start_deletes(&self, total: usize) {
        self.start_counted(DELETE, total);
    }

    /// A blob collection marks (reads every repository's manifests).
    pub fn start_mark(&self) {
        self.phase.store(MARK, Ordering::Relaxed);
    }

    /// A blob collection lists `blobs/sha256`.
    pub fn start_listing(&self) {
        self.phase.store(LIST, Ordering::Relaxed);
    }

    /// A blob collection sweeps `total` blobs.
    pub fn start_sweep(&self, total: usize) {
        self.start_counted(SWEEP, total);
    }

    /// A phase of `total` deletions begins.
    fn start_counted(&self, phase: u8, total: usize) {
        self.delete_total.store(total as u64, Ordering::Relaxed);
        let _ = self.delete_started.set(Instant::now());
        self.phase.store(phase, Ordering::Relaxed);
    }
}

/// Whether `phase` counts towards a known total (a bar) rather than up (a spinner).
fn counted(phase: u8) -> bool {
    phase == DELETE || phase == SWEEP
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressDisplay {
    /// Nothing (`--quiet`).
    Off,
    /// indicatif bars (stderr is a terminal).
    Bars,
    /// A plain line every so often (CI logs).
    Lines(Duration),
}

impl ProgressDisplay {
    /// Bars on a terminal, lines every `every` otherwise (and with JSON logs, whose
    /// readers want lines), nothing when `quiet`.
    pub fn detect(quiet: bool, every: Duration, json_logs: bool) -> ProgressDisplay {
        if quiet || every.is_zero() {
            ProgressDisplay::Off
        } else if std::io::stderr().is_terminal() && !json_logs {
            ProgressDisplay::Bars
        } else {
            ProgressDisplay::Lines(every)
        }
    }
}

/// The running status display; stops (and clears its bar) when dropped.
pub struct Status {
    /// Shared counters.
    pub counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl Status {
    /// Starts showing progress in `mode`; while scanning it shows `links` (revision links
    /// the lister has read).
    pub fn start(mode: ProgressDisplay, links: Arc<AtomicU64>) -> Status {
        let counters = Arc::new(Counters {
            links,
            ..Counters::default()
        });
        let c = counters.clone();
        let thread = match mode {
            ProgressDisplay::Off => None,
            ProgressDisplay::Bars => Some(std::thread::spawn(move || bars(&c))),
            ProgressDisplay::Lines(every) => Some(std::thread::spawn(move || lines(&c, every))),
        };
        Status { counters, thread }
    }
}

impl Drop for Status {
    fn drop(&mut self) {
        self.counters.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The line of a phase without a total: what has been read so far.
fn scan_text(c: &Counters, phase: u8, since: Instant) -> String {
    let read = c.links.load(Ordering::Relaxed);
    let m = c.manifests.load(Ordering::Relaxed);
    let secs = since.elapsed().as_secs_f64().max(0.001);
    let repos = c.repositories.load(Ordering::Relaxed);
    match phase {
        MARK => format!(
            "marking: read {read} manifest links ({:.0}/s), marked {repos} repositories with {m} manifests",
            read as f64 / secs
        ),
        LIST => format!(
            "listing blobs/sha256: {} entries listed",
            c.blobs_listed.load(Ordering::Relaxed)
        ),
        _ => format!(
            "read {read} manifest links ({:.0}/s), planned {repos} repositories with {m} manifests",
            read as f64 / secs
        ),
    }
}

fn bars(c: &Counters) {
    let started = Instant::now();
    let scan = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    scan.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut deletes: Option<ProgressBar> = None;
    // On a terminal stdout the original's `Cleaning i of N` lines are the delete progress.
    let delete_bar = !std::io::stdout().is_terminal();
    while !c.stop.load(Ordering::SeqCst) {
        let phase = c.phase.load(Ordering::Relaxed);
        if (counted(phase) || phase == PAUSED) && !scan.is_finished() {
            scan.finish_and_clear();
        }
        if counted(phase) && (delete_bar || phase == SWEEP) {
            let bar = deletes.get_or_insert_with(|| {
                let b = ProgressBar::with_draw_target(
                    Some(c.delete_total.load(Ordering::Relaxed)),
                    ProgressDrawTarget::stderr(),
                );
                let what = if phase == SWEEP {
                    "sweeping blobs"
                } else {
                    "deleting"
                };
                b.set_style(
                    ProgressStyle::with_template(&format!(
                        "{what} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} ETA {{eta}}"
                    ))
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b
            });
            bar.set_position(c.delete_done.load(Ordering::Relaxed));
        } else if matches!(phase, SCAN | MARK | LIST) {
            scan.set_message(scan_text(c, phase, started));
            scan.tick();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    scan.finish_and_clear();
    if let Some(b) = deletes {
        b.finish_and_clear();
    }
}

fn lines(c: &Counters, every: Duration) {
    let started = Instant::now();
    let mut next = started + every;
    while !c.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100).min(every));
        if Instant::now() < next {
            continue;
        }
        next += every;
        let phase = c.phase.load(Ordering::Relaxed);
        if phase == PAUSED {
            continue;
        }
        let line = if counted(phase) {
            let since = c.delete_started.get().copied().unwrap_or(started);
            let done = c.delete_done.load(Ordering::Relaxed);
            let total = c.delete_total.load(Ordering::Relaxed);
            let rate = done as f64 / since.elapsed().as_secs_f64().max(0.001);
            let eta = if rate > 0.0 {
                format!("{:.0}s", total.saturating_sub(done) as f64 / rate)
            } else {
                "?".to_owned()
            };
            let failed = c.delete_failed.load(Ordering::Relaxed);
            let skipped = c.delete_skipped.load(Ordering::Relaxed);
            let deleted = done.saturating_sub(failed + skipped);
            let mut extra = String::new();
            if failed > 0 {
                extra.push_str(&format!(", {failed} failed"));
            }
            if skipped > 0 {
                extra.push_str(&format!(", {skipped} skipped"));
            }
            let what = if phase == SWEEP { " blobs" } else { "" };
            format!("deleted {deleted} of {total}{what}{extra} ({rate:.0}/s, ETA {eta})")
        } else {
            scan_text(c, phase, started)
        };
        crate::logging::progress(line);
    }
}

/// Forwards deletion events to the report's progress and counts them for the status.
pub struct Counting {
    /// The report's own progress lines.
    pub inner: Box<dyn Progress>,
    /// Where finished deletes are counted.
    pub counters: Arc<Counters>,
}

impl Progress for Counting {
    fn done(&self, plan: &RepoPlan, digest: &Digest, result: &DeleteResult) {
        if !matches!(result, DeleteResult::Deleted | DeleteResult::AlreadyGone) {
            self.counters.delete_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.delete_done.fetch_add(1, Ordering::Relaxed);
        self.inner.done(plan, digest, result);
    }

    fn skipped(&self, plan: &RepoPlan, digest: &Digest, why: &str) {
        self.counters.delete_skipped.fetch_add(1, Ordering::Relaxed);
        self.counters.delete_done.fetch_add(1, Ordering::Relaxed);
        self.inner.skipped(plan, digest, why);
    }
}
