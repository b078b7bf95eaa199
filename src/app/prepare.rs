//! Phase 1, prepare: everything a run needs before it scans (the plan file, the async
//! runtime, signal handling, the registry check, an unfinished journal, the storage).
//! It reads files and asks the registry `/v2/`; it never lists or plans repositories.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow};

use super::EXIT_INTERRUPTED;
use crate::cli::{Config, DeleteVia, Mode, StorageConfig};
use crate::delete::RegistryClient;
use crate::delete::journal::{self, Unfinished};
use crate::logging;
use crate::plan::Policies;
use crate::planfile::{self, PlanFile};
use crate::report::metrics::{self, Recorder, Settings as MetricsSettings};
use crate::s3::S3Store;
use crate::scan::fs::FsStorage;
use crate::scan::s3::S3Storage;
use crate::scan::{RepoFilter, Storage};

/// A prepared run: the configuration and everything set up for it.
pub struct Run<'a> {
    /// The validated configuration.
    pub cfg: &'a Config,
    /// Plain run, `plan` or `apply`.
    pub mode: &'a Mode,
    /// The policies, as of the run's time (or the plan file's, or the resumed run's).
    pub policy: Policies,
    /// The repositories to plan (a plan file narrows them).
    pub filter: RepoFilter,
    /// The plan file of `apply`.
    pub plan_file: Option<PlanFile>,
    /// The async runtime deletes and S3 requests run on.
    pub rt: tokio::runtime::Runtime,
    /// SIGINT/SIGTERM handling.
    pub signals: Signals,
    /// The registry, checked, when deletes go through its API.
    pub client: Option<RegistryClient>,
    /// The interrupted run this one resumes.
    pub resume: Option<Unfinished>,
    /// Where the registry's storage is read (and, offline, written).
    pub storage: Arc<dyn Storage>,
    /// Revision links the lister has read (scan progress).
    pub links: Arc<AtomicU64>,
}

impl<'a> Run<'a> {
    /// Sets up a run of `mode`; an error is fatal (exit 1).
    pub fn prepare(cfg: &'a Config, mode: &'a Mode) -> Result<Run<'a>> {
        let mut policy = super::policies(cfg);
        let plan_file = match mode {
            Mode::Apply(path) => {
                let f = planfile::read(path).map_err(|e| anyhow!(e))?;
                policy_time(&format!("plan file {}", path.display()), f.now)?;
                Some(f)
            }
            _ => None,
        };
        let mut filter = cfg.filter.clone();
        if let Some(f) = &plan_file {
            // Plan as of the plan's time (same grace-period verdicts), only its repositories.
            policy.set_now(f.now);
            filter.names = Some(f.repositories.iter().map(|r| r.name.clone()).collect());
        }
        let (rt, signals) = runtime_and_signals(cfg)?;
        let client = connect(cfg, &rt)?;
        if cfg.delete_via == DeleteVia::Storage && !cfg.dry_run {
            warn_if_registry_answers(&rt, cfg.registry_url.as_deref());
        }
        let resume = unfinished(cfg)?;
        if let (Some(u), Some(path)) = (&resume, &cfg.journal) {
            // The same policy time as the interrupted run: the same grace-period verdicts.
            policy.set_now(policy_time(&format!("journal {}", path.display()), u.now)?);
        }
        let links = Arc::new(AtomicU64::new(0));
        let storage = open_storage(cfg, &rt, links.clone())?;
        if let (Mode::Apply(path), Some(f)) = (mode, &plan_file)
            && f.storage != storage.kind()
        {
            return Err(anyhow!(
                "plan file {}: made on {} storage, this run reads {} storage",
                path.display(),
                f.storage,
                storage.kind()
            ));
        }
        Ok(Run {
            cfg,
            mode,
            policy,
            filter,
            plan_file,
            rt,
            signals,
            client,
            resume,
            storage,
            links,
        })
    }
}

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

/// Checks the registry before a long scan: a wrong URL or password fails fast.
fn connect(cfg: &Config, rt: &tokio::runtime::Runtime) -> Result<Option<RegistryClient>> {
    let Some(opts) = &cfg.client else {
        return Ok(None);
    };
    if opts.insecure {
        crate::logging::warn("SELF_SIGNED_CERT: TLS certificate verification is off");
    }
    rt.block_on(RegistryClient::connect(opts.clone()))
        .map(Some)
        .map_err(|e| anyhow!(e))
}

/// The storage the configuration names, counting the links it reads into `links`.
fn open_storage(
    cfg: &Config,
    rt: &tokio::runtime::Runtime,
    links: Arc<AtomicU64>,
) -> Result<Arc<dyn Storage>> {
    Ok(match &cfg.storage {
        StorageConfig::Fs(root) => Arc::new(FsStorage::new(root, cfg.threads).with_progress(links)),
        StorageConfig::S3(o) => {
            let store = rt.block_on(S3Store::connect(o)).map_err(|e| anyhow!(e))?;
            Arc::new(S3Storage::new(Arc::new(store), rt.handle().clone()).with_progress(links))
        }
    })
}

/// `--delete-via storage` needs the registry stopped or read-only: say so when
/// `REGISTRY_URL` answers (a read-only registry answers too, so this only warns).
fn warn_if_registry_answers(rt: &tokio::runtime::Runtime, url: Option<&str>) {
    let Some(url) = url else { return };
    let probe = async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(3))
            .danger_accept_invalid_certs(true)
            .build()
            .ok()?;
        client.get(format!("{url}/v2/")).send().await.ok()
    };
    if let Some(r) = rt.block_on(probe) {
        crate::logging::warn(format_args!(
            "--delete-via storage, but the registry at {url} answers ({}): it must be stopped or \
             read-only while regsweep removes links under it",
            r.status()
        ));
    }
}

/// Checks a policy time read from a file: a time in the future would turn the grace
/// period off, one before 1970 is no time regsweep wrote.
pub fn policy_time(what: &str, now: i64) -> Result<i64> {
    let real = chrono::Utc::now().timestamp();
    if now < 0 || now > real.saturating_add(300) {
        return Err(anyhow!(
            "{what}: its time {now} is not a past time (now is {real}): refusing a grace period measured from it"
        ));
    }
    Ok(now)
}

/// Loads an unfinished journal, if the configuration names one and a run is to delete.
fn unfinished(cfg: &Config) -> Result<Option<Unfinished>> {
    match &cfg.journal {
        Some(path) if !cfg.dry_run => {
            let u = journal::load(path).map_err(|e| anyhow!(e))?;
            if let Some(u) = &u {
                let remaining = u.remaining().len();
                crate::logging::line(
                    tracing::Level::INFO,
                    "resume",
                    "regsweep: ",
                    format_args!(
                        "resuming the run recorded in {}: {remaining} of {} planned deletions remain",
                        path.display(),
                        u.planned.len()
                    ),
                );
                journal::warn_torn(path, &u.unreadable_lines);
            }
            Ok(u)
        }
        _ => Ok(None),
    }
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
            if let Err(errors) = metrics::publish(&settings, &recorder, EXIT_INTERRUPTED) {
                errors.into_iter().for_each(logging::error);
            }
        })
        .join();
        std::process::exit(EXIT_INTERRUPTED);
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
