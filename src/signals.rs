//! SIGINT and SIGTERM: before any delete a signal ends the run at once (exit 130, its
//! metrics published); once deletes run, the first lets those in flight finish and the
//! second exits. Every run, and `regsweep gc`, installs this before it scans.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

use crate::config::Config;
use crate::exit::Exit;
use crate::logging;
use crate::report::metrics::{self, Recorder, Settings as MetricsSettings};

/// The async runtime and the SIGINT/SIGTERM handling every run starts with.
pub fn runtime_and_signals(cfg: &Config) -> Result<(tokio::runtime::Runtime, Signals)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads.max(1))
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let exit = ExitMetrics {
        settings: cfg.metrics.clone(),
        recorder: cfg.recorder.clone(),
    };
    let signals = install_signals(&rt, exit)?;
    Ok((rt, signals))
}

/// What a SIGINT/SIGTERM does: before deletes start, exit 130 at once (nothing was
/// deleted); once they run, the first stops scheduling deletes, the second exits.
pub struct Signals {
    /// Set by the first signal while deleting: no new deletes.
    pub cancel: Arc<AtomicBool>,
    /// Deletes have started.
    pub deleting: Arc<AtomicBool>,
}

/// What a run stopped by a signal before any delete publishes as it exits.
struct ExitMetrics {
    settings: MetricsSettings,
    recorder: Arc<Recorder>,
}

impl ExitMetrics {
    /// Publishes the metrics of a run interrupted now and exits 130 (a thread of its own:
    /// the push blocks, and this runs on the async runtime).
    fn exit(&self) -> ! {
        let (settings, recorder) = (self.settings.clone(), self.recorder.clone());
        let _ = std::thread::spawn(move || {
            if let Err(errors) = metrics::publish(&settings, &recorder, Exit::Interrupted) {
                errors.into_iter().for_each(logging::error);
            }
        })
        .join();
        Exit::Interrupted.exit()
    }
}

/// An `interrupted...` line on stderr.
fn interrupted(rest: &str) {
    logging::line(
        tracing::Level::WARN,
        "interrupted",
        "regsweep: ",
        format_args!("interrupted{rest}"),
    );
}

/// Installs the SIGINT / SIGTERM handling, before the scan starts.
fn install_signals(rt: &tokio::runtime::Runtime, metrics: ExitMetrics) -> Result<Signals> {
    use tokio::signal::unix::{SignalKind, signal};
    let cancel = Arc::new(AtomicBool::new(false));
    let deleting = Arc::new(AtomicBool::new(false));
    let (flag, phase) = (cancel.clone(), deleting.clone());
    let _guard = rt.enter();
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    rt.spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if !phase.load(Ordering::SeqCst) {
                interrupted(" before any delete: nothing was deleted");
                metrics.exit();
            }
            if flag.swap(true, Ordering::SeqCst) {
                interrupted(" again: exiting now");
                metrics.exit();
            }
            interrupted(": no new deletes; finishing those in flight (again to exit now)");
        }
    });
    // Tests (and anyone scripting a stop) wait for this line before they signal.
    tracing::debug!("ready for signals: SIGINT and SIGTERM handlers installed");
    Ok(Signals { cancel, deleting })
}
