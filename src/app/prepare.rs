//! Phase 1, prepare: everything a run needs before it scans (the plan file, the async
//! runtime, signal handling, the registry check, an unfinished journal, the storage).
//! It reads files and asks the registry `/v2/`; it never lists or plans repositories.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::{Result, anyhow};

use crate::clock::policy_time;
use crate::config::{Config, DeleteVia, StorageConfig, Task};
use crate::delete::RegistryClient;
use crate::delete::journal::{self, Unfinished};
use crate::plan::Policies;
use crate::planfile::{self, PlanFile};
use crate::s3::S3Store;
use crate::signals::{Signals, runtime_and_signals};
use crate::storage::fs::FsStorage;
use crate::storage::s3::S3Storage;
use crate::storage::{RepoFilter, Storage};

/// A run set up to scan: the configuration and everything prepared for it.
pub struct Prepared<'a> {
    /// The resolved configuration (its task: a cleanup, `plan` or `apply`).
    pub cfg: &'a Config,
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

impl<'a> Prepared<'a> {
    /// Sets up a run of the configuration's task; an error is fatal (exit 1).
    pub fn prepare(cfg: &'a Config) -> Result<Prepared<'a>> {
        let mut policy = super::policies(cfg);
        let plan_file = match &cfg.task {
            Task::Apply(path) => {
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
        if let (Task::Apply(path), Some(f)) = (&cfg.task, &plan_file)
            && f.storage != storage.kind()
        {
            return Err(anyhow!(
                "plan file {}: made on {} storage, this run reads {} storage",
                path.display(),
                f.storage,
                storage.kind()
            ));
        }
        Ok(Prepared {
            cfg,
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
