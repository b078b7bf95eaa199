//! From parsed flags to a run's [`Config`]: the checks that span several flags, and the
//! reading they need (the policy file, the evidence of use, credentials, the CA file, the
//! storage root). Every error is a [`UsageError`]: one line naming what is wrong, exit 2.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::args::Args;
use super::parsers::{self, BadValue, given};
use super::{Config, DeleteVia, StorageConfig, Task, credentials};
use crate::delete::ClientOptions;
use crate::logging::LogFormat;
use crate::plan::{Policies, Policy};
use crate::report::metrics::Settings as MetricsSettings;
use crate::report::status::ProgressDisplay;
use crate::s3::S3Options;
use crate::secret::redact_userinfo;
use crate::storage::{RepoFilter, Shard};
use crate::values::{hash_tag_regex, regex, repo_globs, split_globs};

/// A flag, a variable or a file it names is wrong; the message says which and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl From<String> for UsageError {
    fn from(s: String) -> UsageError {
        UsageError(s)
    }
}

impl From<BadValue> for UsageError {
    fn from(e: BadValue) -> UsageError {
        UsageError(e.0)
    }
}

impl From<&str> for UsageError {
    fn from(s: &str) -> UsageError {
        UsageError(s.to_owned())
    }
}

type Resolved<T> = Result<T, UsageError>;

impl Args {
    /// The configuration of a run of `task` with these flags.
    pub fn resolve(mut self, task: Task) -> Resolved<Config> {
        match task {
            // Planning never deletes and needs no registry URL.
            Task::Plan(_) => self.dry_run = true,
            // A collection writes storage with the registry stopped, as offline deletes do.
            Task::Gc => {
                self.delete_via = DeleteVia::Storage;
                self.gc = true;
            }
            Task::Cleanup | Task::Apply(_) => {}
        }
        let policies = self.policies()?;
        let filter = self.filter()?;
        let storage = self.storage_config(filter.exact.as_deref())?;
        let registry_url = self.registry_url.as_ref().map(|u| base_url(u.as_str()));
        let purge_uploads_secs = self.collection_settings()?;
        let online = self.online_settings(&task)?;
        self.deleting_settings(online.is_some())?;
        let client = self.client_options(registry_url.as_deref())?;
        let metrics = self.metrics_settings(filter.shard)?;
        Ok(Config {
            task,
            registry_url,
            storage,
            dry_run: self.dry_run,
            repo_globs: self.repo.iter().flat_map(|g| split_globs(g)).collect(),
            filter,
            hash_tag_patterns: self.hash_tag_pattern.clone(),
            policies,
            keep: self.hash_tag_keep,
            min_age_secs: self.min_age,
            output: self.output,
            threads: self
                .threads
                .filter(|n| *n > 0)
                .unwrap_or_else(default_threads),
            client,
            concurrency: self.concurrency,
            journal: self.journal,
            reverify_window: self.reverify_window,
            delete_via: self.delete_via,
            summary_only: self.summary_only,
            gc: self.gc,
            purge_uploads_secs,
            allow_empty_mark: self.allow_empty_mark,
            online,
            restore_quarantine: self.restore_quarantine,
            registry_config: self.registry_config,
            progress: ProgressDisplay::detect(
                self.quiet,
                self.progress_interval,
                self.log_format == LogFormat::Json,
            ),
            metrics,
            recorder: Arc::default(),
        })
    }

    /// The policy flags (and the policy file, which overrides them per repository glob).
    fn policies(&self) -> Resolved<Policies> {
        let mut hash_tags = self
            .hash_tag_pattern
            .iter()
            .map(|p| hash_tag_regex("HASH_TAG_PATTERN", p))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let hash_tag = hash_tags.next().ok_or("HASH_TAG_PATTERN is empty")?;
        let keep_tags = match self.keep_tags.as_deref().filter(|k| !k.is_empty()) {
            Some(k) => Some(regex("KEEP_TAGS", k)?),
            None => None,
        };
        let base = Policy {
            hash_tag,
            extra_hash_tags: hash_tags.collect(),
            keep: self.hash_tag_keep,
            keep_tags,
            older_than_secs: given(&self.older_than).unwrap_or(0),
            min_age_secs: self.min_age,
            now: 0,
            evidence: Arc::new(self.evidence()?),
        };
        Ok(match &self.policy {
            Some(path) => crate::policy_file::load(path, &base)?,
            None => Policies::from(base),
        })
    }

    /// The repositories in scope: REPO_FILTER, the `--repo` globs, the shard.
    fn filter(&self) -> Resolved<RepoFilter> {
        let exact = self.repo_filter.clone().filter(|s| !s.is_empty());
        let globs: Vec<String> = self.repo.iter().flat_map(|g| split_globs(g)).collect();
        let globs = if self.repo.is_empty() {
            None
        } else {
            Some(repo_globs("--repo", &globs)?)
        };
        let shard = match self.shard.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => {
                Some(parse_shard(s, std::env::var("JOB_COMPLETION_INDEX").ok())?)
            }
            _ => None,
        };
        if shard.is_some() && exact.is_some() {
            return Err(
                "--shard and REPO_FILTER cannot be combined: REPO_FILTER names one repository"
                    .into(),
            );
        }
        Ok(RepoFilter {
            exact,
            globs,
            shard,
            names: None,
        })
    }

    /// Which storage to read: the filesystem root (checked: it holds the registry's
    /// repositories, and REPO_FILTER's), or the S3 bucket.
    fn storage_config(&self, repo_filter: Option<&str>) -> Resolved<StorageConfig> {
        let kind = self.storage.as_deref().unwrap_or("").trim();
        match kind.to_ascii_lowercase().as_str() {
            "" | "filesystem" | "fs" | "local" => {
                let root = PathBuf::from(self.registry_dir.as_deref().unwrap_or("/registry"));
                check_fs_root(&root, repo_filter)?;
                Ok(StorageConfig::Fs(root))
            }
            "s3" => self.s3_options().map(StorageConfig::S3),
            other => Err(format!("REGISTRY_STORAGE {other:?} is not one of filesystem, S3").into()),
        }
    }

    /// The S3 bucket, endpoint and credentials.
    fn s3_options(&self) -> Resolved<S3Options> {
        let bucket = self
            .bucket
            .clone()
            .filter(|b| !b.is_empty())
            .ok_or("REGISTRY_STORAGE=S3 needs BUCKET")?;
        let credentials = match (&self.access_key, &self.secret_key) {
            (Some(a), Some(s)) => Some((a.clone(), s.clone())),
            (None, None) => None,
            (Some(_), None) => return Err("ACCESS_KEY is set but SECRET_KEY is not".into()),
            (None, Some(_)) => return Err("SECRET_KEY is set but ACCESS_KEY is not".into()),
        };
        let endpoint = match &self.s3_endpoint {
            Some(e) => Some(parsers::s3_endpoint(e)?.as_str().to_owned()),
            None => None,
        };
        Ok(S3Options {
            bucket,
            region: self.region.clone().filter(|r| !r.is_empty()),
            path_style: self.s3_path_style.unwrap_or(endpoint.is_some()),
            endpoint,
            credentials,
            root: self.registry_dir.clone().unwrap_or_default(),
            concurrency: parsers::positive("S3_CONCURRENCY")(&self.s3_concurrency)?,
        })
    }

    /// Reads the evidence of use the flags name (issue 22); an unreadable file is an error.
    fn evidence(&self) -> Resolved<crate::evidence::Evidence> {
        use crate::evidence::{Evidence, events, pull_log, refs};
        let mut ev = Evidence::default();
        let pulls_given = !self.pull_log.is_empty() || !self.pull_events.is_empty();
        if !self.keep_in_use.is_empty() || pulls_given {
            ev.ask();
        }
        if !self.keep_in_use.is_empty() {
            let url = self.registry_url.as_ref().map(|u| u.as_str());
            if url.is_none() && self.registry_host.is_empty() {
                return Err(
                    "--keep-in-use needs REGISTRY_URL or --registry-host: references \
                            name this registry by its host"
                        .into(),
                );
            }
            let hosts = refs::Hosts::new(url, &self.registry_host)?;
            for f in &self.keep_in_use {
                refs::load(f, &hosts, &mut ev).map_err(|e| format!("--keep-in-use {e}"))?;
            }
        }
        match given(&self.keep_pulled_within) {
            Some(_) if !pulls_given => {
                return Err(
                    "--keep-pulled-within needs evidence: give --pull-log or --pull-events".into(),
                );
            }
            Some(window) => ev.window_secs = window,
            None if pulls_given => {
                return Err("--pull-log and --pull-events need --keep-pulled-within".into());
            }
            None => {}
        }
        for f in &self.pull_log {
            pull_log::load(f, &mut ev)?;
        }
        for f in &self.pull_events {
            events::load(f, &mut ev)?;
        }
        Ok(ev)
    }

    /// `PURGE_UPLOADS`, which only a blob collection does; `--gc` only offline.
    fn collection_settings(&self) -> Resolved<Option<i64>> {
        if self.gc && self.delete_via != DeleteVia::Storage {
            return Err(
                "--gc collects blobs straight in storage: it goes with --delete-via \
                        storage (registry stopped), or run `regsweep gc` on its own"
                    .into(),
            );
        }
        let purge = self.purge_uploads.as_deref().map(str::trim);
        let Some(purge) = purge.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        if !self.gc {
            return Err(
                "PURGE_UPLOADS goes with a blob collection: `regsweep gc`, or --gc on an \
                        offline cleanup"
                    .into(),
            );
        }
        Ok(Some(parsers::duration_secs("PURGE_UPLOADS")(purge)?))
    }

    /// `--online` with its settle period, checked: only `regsweep gc` collects online, and
    /// only with the registry's configuration at hand.
    fn online_settings(&self, task: &Task) -> Resolved<Option<Duration>> {
        if (self.online || self.restore_quarantine) && *task != Task::Gc {
            return Err(
                "--online and --restore-quarantine go with `regsweep gc` (a collection \
                        on its own)"
                    .into(),
            );
        }
        if !self.online {
            return Ok(None);
        }
        if self.registry_stopped {
            return Err(
                "--online collects while the registry serves; --registry-stopped says \
                        it is stopped: give one or the other"
                    .into(),
            );
        }
        if self.registry_config.is_none() {
            return Err(
                "--online needs --registry-config FILE (the registry's config.yml): \
                        whether its blob descriptor cache can be cleared decides whether a \
                        quarantined blob looks gone"
                    .into(),
            );
        }
        let settle = parsers::duration("GC_SETTLE")(&self.settle)?;
        if settle.is_zero() {
            return Err(format!(
                "GC_SETTLE {:?}: the settle period must outlast the registry's longest \
                 request; give a duration above 0 like 10m",
                self.settle
            )
            .into());
        }
        Ok(Some(settle))
    }

    /// What deleting needs: offline deletes a stopped registry, API deletes a URL, the
    /// journal a directory, the CA file certificates.
    fn deleting_settings(&self, online: bool) -> Resolved<()> {
        let offline = self.delete_via == DeleteVia::Storage;
        if offline && !self.dry_run && !self.registry_stopped && !online && !self.restore_quarantine
        {
            return Err(
                "--delete-via storage removes links under a running registry's feet: \
                        stop the registry (or make it read-only), then confirm with \
                        --registry-stopped"
                    .into(),
            );
        }
        if !self.dry_run && !offline && self.registry_url.is_none() {
            return Err("REGISTRY_URL is required unless DRY_RUN=true".into());
        }
        if let Some(j) = &self.journal
            && j.parent()
                .is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir())
        {
            return Err(format!("--journal {}: its directory does not exist", j.display()).into());
        }
        if let Some(ca) = &self.ca_cert {
            check_ca_cert(ca)?;
        }
        Ok(())
    }

    /// How to reach the registry for deletes: only a run that deletes through the API.
    fn client_options(&self, url: Option<&str>) -> Resolved<Option<ClientOptions>> {
        let Some(url) = url else { return Ok(None) };
        if self.dry_run || self.delete_via == DeleteVia::Storage {
            return Ok(None);
        }
        Ok(Some(ClientOptions {
            url: url.to_owned(),
            credentials: credentials::credentials(self, url)?,
            insecure: self.self_signed_cert,
            ca_cert: self.ca_cert.clone(),
            concurrency: self.concurrency,
            rate: NonZeroU32::new(self.rate),
            max_attempts: self.max_attempts,
            timeout: self.request_timeout,
        }))
    }

    /// `--metrics-file` and `--pushgateway`, checked: the file's directory exists; the
    /// shard is the push's instance.
    fn metrics_settings(&self, shard: Option<Shard>) -> Resolved<MetricsSettings> {
        if let Some(f) = &self.metrics_file
            && (f.as_os_str().is_empty()
                || f.parent()
                    .is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir()))
        {
            return Err(format!(
                "--metrics-file {}: its directory does not exist",
                f.display()
            )
            .into());
        }
        let pushgateway = given(&self.pushgateway).map(|u| u.url().clone());
        let job = self.metrics_job.trim();
        if job.is_empty() {
            return Err("METRICS_JOB is empty: the pushed metrics need a job label".into());
        }
        Ok(MetricsSettings {
            file: self.metrics_file.clone(),
            pushgateway,
            job: job.to_owned(),
            instance: shard.map(|s| format!("{}/{}", s.index, s.count)),
        })
    }
}

/// Scanner and planner threads by default: twice the cores, since reads wait on the
/// filesystem (1M tree, 2 cores: 1 thread 135 s, 2: 132 s, 4: 113 s, 8: 131 s; see README
/// "Performance").
fn default_threads() -> usize {
    2 * std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The registry's base URL from REGISTRY_URL: without a trailing slash, nor the API path
/// `/v2` (with a warning: the URL should name the registry, not its API).
fn base_url(url: &str) -> String {
    let mut base = url.trim().trim_end_matches('/').to_owned();
    if let Some(stripped) = base.strip_suffix("/v2") {
        crate::logging::warn(format_args!(
            "REGISTRY_URL {:?} ends in /v2: using the registry's base URL {stripped}",
            redact_userinfo(url)
        ));
        base = stripped.trim_end_matches('/').to_owned();
    }
    base
}

/// A filesystem root must hold `docker/registry/v2/repositories` (readable), and
/// REPO_FILTER's repository when one is named.
fn check_fs_root(root: &std::path::Path, repo_filter: Option<&str>) -> Resolved<()> {
    let repos = root.join("docker/registry/v2/repositories");
    if let Err(e) = std::fs::read_dir(&repos)
        && e.kind() == std::io::ErrorKind::PermissionDenied
    {
        return Err(format!(
            "REGISTRY_DIR {}: permission denied reading {} (run as a user that can read the registry's storage)",
            root.display(),
            repos.display()
        )
        .into());
    }
    if !repos.is_dir() {
        return Err(format!(
            "REGISTRY_DIR {} does not contain docker/registry/v2/repositories",
            root.display()
        )
        .into());
    }
    if let Some(name) = repo_filter {
        let dir = repos.join(name).join("_manifests");
        if !dir.is_dir() {
            return Err(format!(
                "REPO_FILTER: repository {name:?} not found ({} does not exist)",
                dir.display()
            )
            .into());
        }
    }
    Ok(())
}

/// `--ca-cert FILE` must be readable and hold at least one PEM certificate.
fn check_ca_cert(ca: &std::path::Path) -> Resolved<()> {
    let pem = std::fs::read(ca)
        .map_err(|e| format!("--ca-cert {}: cannot read it: {e}", ca.display()))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(()),
        Ok(_) => Err(format!("--ca-cert {}: no PEM certificate in it", ca.display()).into()),
        Err(e) => Err(format!("--ca-cert {}: not a PEM certificate: {e}", ca.display()).into()),
    }
}

/// Parses `--shard K/N`; `index/N` takes K from `job_index` (JOB_COMPLETION_INDEX).
pub fn parse_shard(s: &str, job_index: Option<String>) -> Result<Shard, String> {
    match s.split_once('/') {
        Some(("index", n)) => {
            let k = job_index.ok_or_else(|| {
                format!("--shard {s:?}: JOB_COMPLETION_INDEX is not set (not in an Indexed Job?)")
            })?;
            Shard::parse(&format!("{}/{n}", k.trim()))
                .map_err(|e| format!("{e} (JOB_COMPLETION_INDEX={k:?})"))
        }
        _ => Shard::parse(s).map_err(|e| e.to_string()),
    }
}
