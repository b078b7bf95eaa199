//! Command line and environment: the original tool's variables plus regsweep's own, checked
//! into one `Config` (every bad value a one-line usage error). It parses and validates
//! only: it reads no storage and sends no request (a CA file and REGISTRY_DIR are checked).

use std::num::NonZeroU32;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Parser, ValueEnum};

use crate::delete::ClientOptions;
use crate::delete::auth::{Credentials, docker_config_path, from_docker_config};
use crate::logging::LogFormat;
use crate::plan::{DEFAULT_HASH_TAG_PATTERN, Policies, Policy};
use crate::report::metrics::{Recorder, Settings as MetricsSettings};
use crate::s3::S3Options;
use crate::scan::{RepoFilter, Shard};
use crate::secret::{Secret, redact_userinfo};
use crate::values::{
    hash_tag_regex, parse_duration, parse_duration_secs, parse_min_age, regex, repo_globs,
    split_globs,
};

/// Where deletes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeleteVia {
    /// Through the registry's HTTP API (the registry keeps serving).
    Api,
    /// Straight in storage: revision links and tag directories, as the registry's own
    /// delete removes them; only with the registry stopped or read-only.
    Storage,
}

/// Report format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The original tool's summary.
    Text,
    /// One JSON document with every decision and its reason.
    Json,
}

/// regsweep: delete the manifests of a Docker Registry v2 that no tag reaches any more.
///
/// With no subcommand: scan, plan and delete in one go, as the original tool does.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// `plan` or `apply`; none for the original behaviour.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The options of a run without a subcommand.
    #[command(flatten)]
    pub args: Args,
}

/// Two-step runs: review a plan, then carry out exactly it.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Scan and plan, print the report, write the plan to --out; delete nothing.
    Plan {
        /// Where the plan file goes (JSON; the report's format is --output).
        #[arg(long)]
        out: PathBuf,
        /// The usual options.
        #[command(flatten)]
        args: Args,
    },
    /// Collect blobs no manifest of any repository references (registry stopped or
    /// read-only: confirm with --registry-stopped; while it serves: --online with
    /// --registry-config; --dry-run lists them with sizes).
    Gc {
        /// The usual options (storage, --dry-run, --min-age, --registry-stopped).
        #[command(flatten)]
        args: Args,
    },
    /// Receive the registry's notifications (its `notifications.endpoints` posts here) and
    /// store the manifest pulls in FILE for --pull-events; answers 200 once stored.
    Events {
        /// Address to listen on (e.g. 127.0.0.1:5080).
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The store of pulls (JSON lines, the last pull per repository and digest).
        #[arg(long)]
        store: PathBuf,
    },
    /// Delete exactly the manifests a plan file lists, after re-verifying each one.
    Apply {
        /// A plan file written by `regsweep plan --out`.
        plan: PathBuf,
        /// The usual options.
        #[command(flatten)]
        args: Args,
    },
}

/// What a run does.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Scan, plan, delete (or print, in dry-run).
    Run,
    /// Scan, plan, write the plan file.
    Plan(PathBuf),
    /// Delete what a plan file lists.
    Apply(PathBuf),
    /// Collect unreferenced blobs.
    Gc,
}

impl Cli {
    /// `regsweep events`' options, when that is the command.
    pub fn events(&self) -> Option<crate::evidence::events::Options> {
        match &self.command {
            Some(Command::Events { listen, store }) => Some(crate::evidence::events::Options {
                listen: *listen,
                store: store.clone(),
            }),
            _ => None,
        }
    }

    /// The mode and its options (`regsweep events`, see [`Cli::events`], runs as a plain run).
    pub fn split(self) -> (Mode, Args) {
        match self.command {
            None | Some(Command::Events { .. }) => (Mode::Run, self.args),
            Some(Command::Plan { out, mut args }) => {
                // Planning never deletes and needs no registry URL.
                args.dry_run = true;
                (Mode::Plan(out), args)
            }
            Some(Command::Apply { plan, args }) => (Mode::Apply(plan), args),
            Some(Command::Gc { mut args }) => {
                // Storage is written, the registry must be stopped: as offline deletes.
                args.delete_via = DeleteVia::Storage;
                args.gc = true;
                args.collect_only = true;
                (Mode::Gc, args)
            }
        }
    }
}

/// The help heading of the options only a run that deletes uses.
const DELETING: &str = "Deleting (not used by `plan` or a dry run)";

/// The help heading of the metrics options.
const METRICS: &str = "Metrics (Prometheus)";

/// Exit codes and examples, after `--help`.
const AFTER_HELP: &str = "\
Exit codes:
  0    done: everything planned was deleted (or, in a dry run, planned)
  1    fatal error (bad storage, registry unreachable, deletes refused with 405/401/403)
  2    usage error (a flag or environment variable is wrong)
  3    finished, but some deletions failed (each listed)
  4    finished, but something was skipped: a repository failed closed, a deletion was
       skipped because storage changed, a warning
  130  interrupted by SIGINT or SIGTERM

Logging (stderr; the report goes to stdout):
  REGSWEEP_LOG=LEVEL  regsweep's own level: error, warn (default), info, debug, trace; it
                      never enables other crates' logs (they can carry headers)
  -v, --verbose       the same as REGSWEEP_LOG=debug; with both, the more verbose wins
  LOG_FORMAT=json     one JSON object per line (time, level, message, fields)
  NO_COLOR=1          no colour codes; there are none unless stderr is a terminal

Examples:
  Dry run over a filesystem registry:
    DRY_RUN=true REGISTRY_DIR=/var/lib/registry regsweep
  Clean up through the registry API, keeping 20 hash-tagged images per repository:
    REGISTRY_URL=https://registry:5000 REGISTRY_DIR=/var/lib/registry \\
      REGISTRY_AUTH=cleaner:secret HASH_TAG_KEEP=20 regsweep
  Review a plan, then carry out exactly it:
    regsweep plan --out plan.json --registry-dir /var/lib/registry
    regsweep apply plan.json --registry-url https://registry:5000 --registry-dir /var/lib/registry";

/// Every option, each with its environment variable.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Registry base URL, used for deletes (e.g. http://127.0.0.1:5000).
    #[arg(long, env = "REGISTRY_URL")]
    pub registry_url: Option<String>,

    /// The registry's storage root (the filesystem driver's rootdirectory).
    #[arg(long, env = "REGISTRY_DIR")]
    pub registry_dir: Option<String>,

    /// Storage driver: filesystem (default) or S3.
    #[arg(long, env = "REGISTRY_STORAGE")]
    pub storage: Option<String>,

    /// S3 bucket.
    #[arg(long, env = "BUCKET")]
    pub bucket: Option<String>,

    /// S3 region.
    #[arg(long, env = "REGION")]
    pub region: Option<String>,

    /// S3 access key (else the standard AWS credential chain).
    #[arg(long, env = "ACCESS_KEY", hide_env_values = true)]
    pub access_key: Option<String>,

    /// S3 secret key.
    #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<Secret>,

    /// S3-compatible endpoint (MinIO, Ceph, R2), e.g. http://127.0.0.1:9000.
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Path-style S3 addressing (default: on when --s3-endpoint is set).
    #[arg(long, env = "S3_PATH_STYLE", value_parser = BoolishValueParser::new())]
    pub s3_path_style: Option<bool>,

    /// S3 requests in flight per stream: the repository listings, the manifest and config
    /// reads, a collection's blob listing (at most 32 there) and its deletes each keep up to
    /// this many in flight, so a scan, whose listings and reads overlap, can have a few times
    /// as many at once.
    #[arg(long, env = "S3_CONCURRENCY", default_value = "32")]
    pub s3_concurrency: String,

    /// Print the plan, delete nothing.
    #[arg(long, env = "DRY_RUN", value_parser = BoolishValueParser::new(), num_args = 0..=1,
          default_value = "false", default_missing_value = "true")]
    pub dry_run: bool,

    /// Only this repository (exact name).
    #[arg(long, env = "REPO_FILTER")]
    pub repo_filter: Option<String>,

    /// Only repositories matching this glob (repeatable, or comma-separated; `*` stays
    /// within one path segment; commas inside `{a,b}` belong to the glob).
    #[arg(long = "repo", env = "REPO_GLOB")]
    pub repo: Vec<String>,

    /// Only shard K of N (stable hash of the repository name), so that N processes split a
    /// registry; K may be `index` for a Kubernetes Indexed Job's JOB_COMPLETION_INDEX.
    #[arg(long, env = "SHARD")]
    pub shard: Option<String>,

    /// Tags matching this regex are commit-hash tags (repeatable: a tag matching any is one).
    #[arg(long, env = "HASH_TAG_PATTERN", default_value = DEFAULT_HASH_TAG_PATTERN)]
    pub hash_tag_pattern: Vec<String>,

    /// Tags matching this regex are never deleted, nor anything they reach.
    #[arg(long, env = "KEEP_TAGS")]
    pub keep_tags: Option<String>,

    /// Hash-tagged images beyond the newest N go only when older than this (e.g. 30d).
    #[arg(long, env = "OLDER_THAN")]
    pub older_than: Option<String>,

    /// Policy file (TOML): per-repository-glob rules overriding the policy flags.
    #[arg(long, env = "POLICY_FILE")]
    pub policy: Option<PathBuf>,

    /// Hash-tagged images kept per repository.
    #[arg(long, env = "HASH_TAG_KEEP", default_value = "10")]
    pub hash_tag_keep: String,

    /// Never delete a revision younger than this (0, 30m, 1h, 2d).
    #[arg(long, env = "MIN_AGE", default_value = "1h")]
    pub min_age: String,

    /// Never delete what a workload runs: a file (`-`: stdin) of image references, one per
    /// line, or the JSON of `kubectl get pods -A -o json` or of a Deployment/CronJob/… list.
    /// Every `<host>/<repo>@sha256:…` naming this registry keeps that manifest and all it
    /// reaches (reason in-use). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub keep_in_use: Vec<PathBuf>,

    /// Another name of this registry in image references (host or host:port), besides
    /// REGISTRY_URL's. Repeatable.
    #[arg(long, value_name = "HOST")]
    pub registry_host: Vec<String>,

    /// Never delete a manifest pulled within this long (e.g. 30d), as the --pull-log
    /// evidence shows (reason pulled-recently).
    #[arg(long, value_name = "DURATION")]
    pub keep_pulled_within: Option<String>,

    /// The registry's log (plain or gzip; access log, logrus text or JSON lines), as
    /// evidence of pulls for --keep-pulled-within. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub pull_log: Vec<PathBuf>,

    /// A store of `regsweep events`, as evidence of pulls for --keep-pulled-within.
    /// Repeatable.
    #[arg(long, value_name = "FILE")]
    pub pull_events: Vec<PathBuf>,

    /// Report format on stdout.
    #[arg(long, env = "OUTPUT_FORMAT", value_enum, default_value = "text")]
    pub output: Output,

    /// Scanner and planner threads (default: twice the number of cores).
    #[arg(long, env = "SCAN_THREADS")]
    pub threads: Option<usize>,

    /// Basic-auth credentials `user:password` (split at the first ':').
    #[arg(long, env = "REGISTRY_AUTH", hide_env_values = true, help_heading = DELETING)]
    pub registry_auth: Option<Secret>,

    /// User name; the password comes from --password-stdin or --password-file.
    #[arg(long, env = "REGISTRY_USERNAME", help_heading = DELETING)]
    pub username: Option<String>,

    /// Read the password from standard input (one line).
    #[arg(long, help_heading = DELETING)]
    pub password_stdin: bool,

    /// Read the password from this file (first line).
    #[arg(long, env = "REGISTRY_PASSWORD_FILE", help_heading = DELETING)]
    pub password_file: Option<PathBuf>,

    /// Directory of docker's config.json for credentials (default ~/.docker).
    #[arg(long, env = "DOCKER_CONFIG", help_heading = DELETING)]
    pub docker_config: Option<PathBuf>,

    /// Skip TLS certificate verification (self-signed registry certificates).
    #[arg(long, env = "SELF_SIGNED_CERT", value_parser = BoolishValueParser::new(), num_args = 0..=1,
          default_value = "false", default_missing_value = "true", help_heading = DELETING)]
    pub self_signed_cert: bool,

    /// Verify the registry's TLS certificate against this CA (PEM).
    #[arg(long, env = "CA_CERT", help_heading = DELETING)]
    pub ca_cert: Option<PathBuf>,

    /// Deletes in flight at once (API); repositories deleted in at once (--delete-via storage).
    #[arg(long, env = "CONCURRENCY", default_value = "8", help_heading = DELETING)]
    pub concurrency: String,

    /// Most delete requests per second (0: no limit).
    #[arg(long, env = "RATE", default_value = "0", help_heading = DELETING)]
    pub rate: String,

    /// Attempts per delete on 429, 5xx and connection errors, the first included.
    #[arg(long, env = "MAX_ATTEMPTS", default_value = "6", help_heading = DELETING)]
    pub max_attempts: String,

    /// Per-request timeout (30s, 2m).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", help_heading = DELETING)]
    pub request_timeout: String,

    /// Longest time after re-reading a repository that its deletes (and retries) may still
    /// be sent; later ones wait for a fresh re-read (30s, 1m).
    #[arg(long, env = "REVERIFY_WINDOW", default_value = "30s", help_heading = DELETING)]
    pub reverify_window: String,

    /// Delete through the registry API (default) or straight in storage (offline migration).
    #[arg(long, env = "DELETE_VIA", value_enum, default_value = "api", help_heading = DELETING)]
    pub delete_via: DeleteVia,

    /// Confirms the registry is stopped or read-only, as --delete-via storage requires.
    #[arg(long, env = "REGISTRY_STOPPED", value_parser = BoolishValueParser::new(), num_args = 0..=1,
          default_value = "false", default_missing_value = "true", help_heading = DELETING)]
    pub registry_stopped: bool,

    /// After an offline cleanup (--delete-via storage), collect the blobs nothing references
    /// any more, as `regsweep gc` does.
    #[arg(long, env = "GC", value_parser = BoolishValueParser::new(), num_args = 0..=1,
          default_value = "false", default_missing_value = "true", help_heading = DELETING)]
    pub gc: bool,

    /// With a blob collection (`regsweep gc`, --gc): also purge uploads started longer ago
    /// than this (168h is the registry's own default), as the registry's upload purging
    /// does: each `_uploads/<uuid>` whose `startedat` is older. Unset: uploads stay.
    #[arg(long, env = "PURGE_UPLOADS", help_heading = DELETING)]
    pub purge_uploads: Option<String>,

    /// With a blob collection: sweep even though the mark found no manifest at all while
    /// the store holds blobs (a registry whose every repository was deleted). Without it,
    /// such a collection stops: an empty mark is far more often a listing gone wrong.
    #[arg(long, env = "ALLOW_EMPTY_MARK", value_parser = BoolishValueParser::new(), num_args = 0..=1,
          default_value = "false", default_missing_value = "true", help_heading = DELETING)]
    pub allow_empty_mark: bool,

    /// `regsweep gc` while the registry serves: unreferenced blobs go into a quarantine
    /// beside the registry's tree (a rename; on S3 a copy), manifests pushed meanwhile are
    /// marked again over --settle and what they name is put back, then the quarantine is
    /// deleted. Needs --registry-config (the registry's blob descriptor cache must be none
    /// or Redis).
    #[arg(long, env = "GC_ONLINE", value_parser = BoolishValueParser::new(), num_args = 0..=1,
          default_value = "false", default_missing_value = "true", help_heading = DELETING)]
    pub online: bool,

    /// With --online: how long quarantined blobs wait, marked again all along, before they
    /// are deleted; longer than any request the registry serves (a manifest push that
    /// checked a blob before the quarantine must have written its links by then).
    #[arg(long, env = "GC_SETTLE", default_value = "10m", help_heading = DELETING)]
    pub settle: String,

    /// `regsweep gc --restore-quarantine`: put every blob an interrupted online collection
    /// left in quarantine back where the registry finds it, and stop.
    #[arg(long, help_heading = DELETING)]
    pub restore_quarantine: bool,

    /// The registry's configuration file (config.yml): a collection reads which blob
    /// descriptor cache it keeps; with Redis, the entries of every blob removed (or put in
    /// quarantine) are removed from it, so the registry stops claiming they exist.
    #[arg(long, env = "REGISTRY_CONFIGURATION_PATH", help_heading = DELETING)]
    pub registry_config: Option<PathBuf>,

    /// Set by `regsweep gc` (a collection on its own), not a flag.
    #[arg(skip)]
    pub collect_only: bool,

    /// Record planned and finished deletes here; rerun with the same file to resume.
    #[arg(long, env = "JOURNAL", help_heading = DELETING)]
    pub journal: Option<PathBuf>,

    /// Text report without a line per manifest: section headings with counts, the table per
    /// repository and the closing lines (failures and skips are still listed).
    #[arg(long, env = "SUMMARY_ONLY", value_parser = BoolishValueParser::new(), num_args = 0..=1,
          default_value = "false", default_missing_value = "true")]
    pub summary_only: bool,

    /// No progress on stderr (bars on a terminal, a line every PROGRESS_INTERVAL otherwise).
    #[arg(long, short, env = "QUIET", value_parser = BoolishValueParser::new(), num_args = 0..=1,
          default_value = "false", default_missing_value = "true")]
    pub quiet: bool,

    /// How often a progress line is printed when stderr is not a terminal (0: never).
    #[arg(long, env = "PROGRESS_INTERVAL", default_value = "10s")]
    pub progress_interval: String,

    /// Debug logging on stderr (requests, retries, timings); never secrets. The same as
    /// REGSWEEP_LOG=debug; with both, the more verbose level wins.
    #[arg(long, short, env = "VERBOSE", value_parser = BoolishValueParser::new(), num_args = 0..=1,
          default_value = "false", default_missing_value = "true")]
    pub verbose: bool,

    /// Log format on stderr: text, or json (one object per line: time, level, message,
    /// fields) for warnings, errors, progress lines and debug logs. The report stays on stdout.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Write the run's Prometheus metrics to this file at the end of the run (atomically:
    /// a file beside it renamed over it), for node_exporter's textfile collector.
    #[arg(long, env = "METRICS_FILE", help_heading = METRICS)]
    pub metrics_file: Option<PathBuf>,

    /// Push the run's Prometheus metrics to this Pushgateway (e.g. http://pushgateway:9091)
    /// at the end of the run, a failed one too; grouped by job, command and, with --shard,
    /// the shard as instance.
    #[arg(long, env = "PUSHGATEWAY_URL", help_heading = METRICS)]
    pub pushgateway: Option<String>,

    /// The job label of the pushed metrics.
    #[arg(long, env = "METRICS_JOB", default_value = "regsweep", help_heading = METRICS)]
    pub metrics_job: String,
}

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Registry base URL without a trailing slash.
    pub registry_url: Option<String>,
    /// Where the registry's storage is.
    pub storage: StorageConfig,
    /// Print only.
    pub dry_run: bool,
    /// Repositories in scope.
    pub filter: RepoFilter,
    /// Hash-tag regexes as given.
    pub hash_tag_patterns: Vec<String>,
    /// The policies, with `now` unset (0): see `app::policies`.
    pub policies: Policies,
    /// Hash-tagged images kept per repository.
    pub keep: usize,
    /// Grace period in seconds.
    pub min_age_secs: i64,
    /// Report format.
    pub output: Output,
    /// Scanner threads.
    pub threads: usize,
    /// Deletes in flight (API), repositories deleted in at once (storage).
    pub concurrency: usize,
    /// How to reach the registry for deletes; `None` in dry-run without a URL.
    pub client: Option<ClientOptions>,
    /// The repository globs as given (`REPO_GLOB`, `--repo`), for messages.
    pub repo_globs: Vec<String>,
    /// Journal file.
    pub journal: Option<PathBuf>,
    /// How long after a repository's re-read its deletes may still be sent.
    pub reverify_window: std::time::Duration,
    /// Where deletes go.
    pub delete_via: DeleteVia,
    /// Debug logging.
    pub verbose: bool,
    /// Text report without a line per manifest.
    pub summary_only: bool,
    /// Collect unreferenced blobs after an offline cleanup.
    pub gc: bool,
    /// Also purge uploads started longer ago than this many seconds (with a collection).
    pub purge_uploads_secs: Option<i64>,
    /// Sweep even when the mark found no manifest but the store holds blobs.
    pub allow_empty_mark: bool,
    /// `regsweep gc --online`: the settle period; `None` for an offline collection.
    pub online: Option<std::time::Duration>,
    /// `regsweep gc --restore-quarantine`.
    pub restore_quarantine: bool,
    /// The registry's configuration file.
    pub registry_config: Option<PathBuf>,
    /// How progress is shown.
    pub progress: crate::report::status::Mode,
    /// Where the run's metrics go.
    pub metrics: MetricsSettings,
    /// The run's metrics, as it goes.
    pub recorder: std::sync::Arc<Recorder>,
}

impl Args {
    /// `--metrics-file` and `--pushgateway`, checked: the file's directory exists, the URL
    /// is http(s) without credentials; the shard is the push's instance.
    fn metrics_settings(&self, shard: Option<Shard>) -> Result<MetricsSettings, String> {
        if let Some(f) = &self.metrics_file
            && (f.as_os_str().is_empty()
                || f.parent()
                    .is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir()))
        {
            return Err(format!(
                "--metrics-file {}: its directory does not exist",
                f.display()
            ));
        }
        let pushgateway = match self.pushgateway.as_deref().map(str::trim) {
            Some(u) if !u.is_empty() => Some(pushgateway_url(u)?),
            _ => None,
        };
        let job = self.metrics_job.trim();
        if job.is_empty() {
            return Err("METRICS_JOB is empty: the pushed metrics need a job label".to_owned());
        }
        Ok(MetricsSettings {
            file: self.metrics_file.clone(),
            pushgateway,
            job: job.to_owned(),
            instance: shard.map(|s| format!("{}/{}", s.index, s.count)),
        })
    }

    /// `--online` with its settle period, checked: only `regsweep gc` collects online, and
    /// only with the registry's configuration at hand.
    fn online_settings(&self) -> Result<Option<std::time::Duration>, String> {
        if (self.online || self.restore_quarantine) && !self.collect_only {
            return Err(
                "--online and --restore-quarantine go with `regsweep gc` (a collection on its own)"
                    .to_owned(),
            );
        }
        if !self.online {
            return Ok(None);
        }
        if self.registry_stopped {
            return Err(
                "--online collects while the registry serves; --registry-stopped says it is \
                 stopped: give one or the other"
                    .to_owned(),
            );
        }
        if self.registry_config.is_none() {
            return Err(
                "--online needs --registry-config FILE (the registry's config.yml): whether its \
                 blob descriptor cache can be cleared decides whether a quarantined blob looks gone"
                    .to_owned(),
            );
        }
        let settle = parse_duration("GC_SETTLE", &self.settle)?;
        if settle.is_zero() {
            return Err(format!(
                "GC_SETTLE {:?}: the settle period must outlast the registry's longest request; \
                 give a duration above 0 like 10m",
                self.settle
            ));
        }
        Ok(Some(settle))
    }
}

fn positive(name: &str, v: &str) -> Result<usize, String> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{name} {v:?} is not a whole number above 0"))
}

/// Finds the credentials: REGISTRY_AUTH, then --username with a password, then docker config.json.
fn credentials(a: &Args, url: &str) -> Result<Option<Credentials>, String> {
    if let Some(pair) = &a.registry_auth {
        return Credentials::from_pair(pair.expose(), "REGISTRY_AUTH").map(Some);
    }
    let password = if a.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("--password-stdin: cannot read standard input: {e}"))?;
        Some((
            line.trim_end_matches(['\n', '\r']).to_owned(),
            "--password-stdin".to_owned(),
        ))
    } else if let Some(f) = &a.password_file {
        let body = std::fs::read_to_string(f)
            .map_err(|e| format!("--password-file {}: {e}", f.display()))?;
        let first = body.lines().next().unwrap_or("").to_owned();
        Some((first, format!("--password-file {}", f.display())))
    } else {
        None
    };
    match (&a.username, password) {
        (Some(user), Some((password, source))) => {
            return Ok(Some(Credentials {
                user: user.clone(),
                password,
                source,
            }));
        }
        (None, Some((_, source))) => {
            return Err(format!("{source} needs --username (REGISTRY_USERNAME)"));
        }
        (Some(_), None) => {
            return Err("--username needs --password-stdin or --password-file".to_owned());
        }
        (None, None) => {}
    }
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            })
        })
        .unwrap_or_default();
    match docker_config_path(a.docker_config.as_deref()) {
        Some(path) => from_docker_config(&path, &host),
        None => Ok(None),
    }
}

/// Checks `REGISTRY_URL`: http or https, no credentials in it (they would show in every
/// message and log), no API path; gives the base URL without a trailing slash.
fn registry_url(url: &str) -> Result<String, String> {
    let shown = redact_userinfo(url);
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| format!("REGISTRY_URL {shown:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "REGISTRY_URL {shown:?}: the scheme must be http or https, not {}",
            parsed.scheme()
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "REGISTRY_URL {shown:?} carries credentials: they would show in messages and logs; \
             give them as REGISTRY_AUTH=user:password or --username with --password-stdin"
        ));
    }
    let mut base = url.trim().trim_end_matches('/').to_owned();
    if let Some(stripped) = base.strip_suffix("/v2") {
        crate::logging::warn(format_args!(
            "REGISTRY_URL {shown:?} ends in /v2: using the registry's base URL {stripped}"
        ));
        base = stripped.trim_end_matches('/').to_owned();
    }
    Ok(base)
}

/// Checks `PUSHGATEWAY_URL`: http or https, no credentials (they would show in messages).
fn pushgateway_url(url: &str) -> Result<reqwest::Url, String> {
    let shown = redact_userinfo(url);
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("PUSHGATEWAY_URL {shown:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "PUSHGATEWAY_URL {shown:?}: the scheme must be http or https, not {}",
            parsed.scheme()
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "PUSHGATEWAY_URL {shown:?} carries credentials: they would show in messages and logs"
        ));
    }
    Ok(parsed)
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

/// Which storage to read, and how.
#[derive(Clone, Debug)]
pub enum StorageConfig {
    /// A filesystem `rootdirectory`.
    Fs(PathBuf),
    /// An S3 bucket.
    S3(S3Options),
}

impl Args {
    fn storage_config(&self, repo_filter: Option<&str>) -> Result<StorageConfig, String> {
        let kind = self
            .storage
            .as_deref()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match kind.as_str() {
            "" | "filesystem" | "fs" | "local" => {
                let root = PathBuf::from(self.registry_dir.as_deref().unwrap_or("/registry"));
                let repos = root.join("docker/registry/v2/repositories");
                if let Err(e) = std::fs::read_dir(&repos)
                    && e.kind() == std::io::ErrorKind::PermissionDenied
                {
                    return Err(format!(
                        "REGISTRY_DIR {}: permission denied reading {} (run as a user that can read the registry's storage)",
                        root.display(),
                        repos.display()
                    ));
                }
                if !repos.is_dir() {
                    return Err(format!(
                        "REGISTRY_DIR {} does not contain docker/registry/v2/repositories",
                        root.display()
                    ));
                }
                if let Some(name) = repo_filter {
                    let dir = repos.join(name).join("_manifests");
                    if !dir.is_dir() {
                        return Err(format!(
                            "REPO_FILTER: repository {name:?} not found ({} does not exist)",
                            dir.display()
                        ));
                    }
                }
                Ok(StorageConfig::Fs(root))
            }
            "s3" => {
                let bucket = self
                    .bucket
                    .clone()
                    .filter(|b| !b.is_empty())
                    .ok_or("REGISTRY_STORAGE=S3 needs BUCKET")?;
                let credentials = match (&self.access_key, &self.secret_key) {
                    (Some(a), Some(s)) => Some((a.clone(), s.clone())),
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err("ACCESS_KEY is set but SECRET_KEY is not".to_owned());
                    }
                    (None, Some(_)) => {
                        return Err("SECRET_KEY is set but ACCESS_KEY is not".to_owned());
                    }
                };
                if let Some(e) = &self.s3_endpoint {
                    reqwest::Url::parse(e)
                        .map_err(|err| format!("S3_ENDPOINT {e:?} is not a URL: {err}"))?;
                }
                Ok(StorageConfig::S3(S3Options {
                    bucket,
                    region: self.region.clone().filter(|r| !r.is_empty()),
                    endpoint: self.s3_endpoint.clone(),
                    path_style: self.s3_path_style.unwrap_or(self.s3_endpoint.is_some()),
                    credentials,
                    root: self.registry_dir.clone().unwrap_or_default(),
                    concurrency: positive("S3_CONCURRENCY", &self.s3_concurrency)?,
                }))
            }
            other => Err(format!(
                "REGISTRY_STORAGE {other:?} is not one of filesystem, S3"
            )),
        }
    }

    /// Reads the evidence of use the flags name (issue 22); an unreadable file is an error.
    fn evidence(&self) -> Result<crate::evidence::Evidence, String> {
        use crate::evidence::{Evidence, events, pull_log, refs};
        let mut ev = Evidence::default();
        let pulls_given = !self.pull_log.is_empty() || !self.pull_events.is_empty();
        if !self.keep_in_use.is_empty() || pulls_given {
            ev.ask();
        }
        if !self.keep_in_use.is_empty() {
            let url = self.registry_url.as_deref().filter(|u| !u.is_empty());
            if url.is_none() && self.registry_host.is_empty() {
                return Err(
                    "--keep-in-use needs REGISTRY_URL or --registry-host: references name this registry by its host"
                        .to_owned(),
                );
            }
            let hosts = refs::Hosts::new(url, &self.registry_host)?;
            for f in &self.keep_in_use {
                refs::load(f, &hosts, &mut ev).map_err(|e| format!("--keep-in-use {e}"))?;
            }
        }
        match self.keep_pulled_within.as_deref().filter(|w| !w.is_empty()) {
            Some(w) => {
                ev.window_secs = parse_duration_secs("--keep-pulled-within", w)?;
                if !pulls_given {
                    return Err(
                        "--keep-pulled-within needs evidence: give --pull-log or --pull-events"
                            .to_owned(),
                    );
                }
            }
            None if pulls_given => {
                return Err("--pull-log and --pull-events need --keep-pulled-within".to_owned());
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

    /// Checks every value; the error is one line naming what is wrong.
    pub fn validate(self) -> Result<Config, String> {
        let hash_tags = self
            .hash_tag_pattern
            .iter()
            .map(|p| hash_tag_regex("HASH_TAG_PATTERN", p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut hash_tags = hash_tags.into_iter();
        let hash_tag = hash_tags.next().ok_or("HASH_TAG_PATTERN is empty")?;
        let keep_tags = match self.keep_tags.as_deref().filter(|k| !k.is_empty()) {
            Some(k) => Some(regex("KEEP_TAGS", k)?),
            None => None,
        };
        let older_than_secs = match self.older_than.as_deref().filter(|k| !k.is_empty()) {
            Some(o) => parse_duration_secs("OLDER_THAN", o)?,
            None => 0,
        };
        let keep = self.hash_tag_keep.trim().parse::<usize>().map_err(|_| {
            format!(
                "HASH_TAG_KEEP {:?} is not a non-negative whole number",
                self.hash_tag_keep
            )
        })?;
        let min_age_secs = parse_min_age(&self.min_age)?;
        let evidence = std::sync::Arc::new(self.evidence()?);
        let base = Policy {
            hash_tag,
            extra_hash_tags: hash_tags.collect(),
            keep,
            keep_tags,
            older_than_secs,
            min_age_secs,
            now: 0,
            evidence,
        };
        let policies = match &self.policy {
            Some(path) => crate::policy_file::load(path, &base)?,
            None => Policies::from(base),
        };
        let repo_filter = self.repo_filter.clone().filter(|s| !s.is_empty());
        let storage = self.storage_config(repo_filter.as_deref())?;
        let repo: Vec<String> = self.repo.iter().flat_map(|g| split_globs(g)).collect();
        let globs = if self.repo.is_empty() {
            None
        } else {
            Some(repo_globs("--repo", &repo)?)
        };
        let shard = match self
            .shard
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(s) => Some(parse_shard(s, std::env::var("JOB_COMPLETION_INDEX").ok())?),
        };
        if shard.is_some() && repo_filter.is_some() {
            return Err(
                "--shard and REPO_FILTER cannot be combined: REPO_FILTER names one repository"
                    .to_owned(),
            );
        }
        let registry_url = match &self.registry_url {
            Some(url) => Some(registry_url(url)?),
            None => None,
        };
        let offline = self.delete_via == DeleteVia::Storage;
        if self.gc && !offline {
            return Err(
                "--gc collects blobs straight in storage: it goes with --delete-via storage \
                 (registry stopped), or run `regsweep gc` on its own"
                    .to_owned(),
            );
        }
        let purge_uploads_secs = match self.purge_uploads.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => {
                if !self.gc {
                    return Err(
                        "PURGE_UPLOADS goes with a blob collection: `regsweep gc`, or --gc on an \
                         offline cleanup"
                            .to_owned(),
                    );
                }
                Some(parse_duration_secs("PURGE_UPLOADS", s)?)
            }
            _ => None,
        };
        let online = self.online_settings()?;
        if offline
            && !self.dry_run
            && !self.registry_stopped
            && online.is_none()
            && !self.restore_quarantine
        {
            return Err(
                "--delete-via storage removes links under a running registry's feet: \
                 stop the registry (or make it read-only), then confirm with --registry-stopped"
                    .to_owned(),
            );
        }
        if !self.dry_run && !offline && self.registry_url.is_none() {
            return Err("REGISTRY_URL is required unless DRY_RUN=true".to_owned());
        }
        let concurrency = positive("CONCURRENCY", &self.concurrency)?;
        let max_attempts = positive("MAX_ATTEMPTS", &self.max_attempts)?;
        let rate = self.rate.trim().parse::<u32>().map_err(|_| {
            format!(
                "RATE {:?} is not a whole number of requests per second",
                self.rate
            )
        })?;
        let timeout = parse_duration("REQUEST_TIMEOUT", &self.request_timeout)
            .and_then(|t| {
                if t.is_zero() {
                    Err(format!(
                        "REQUEST_TIMEOUT {:?}: a request needs some time; give a duration above 0 like 30s",
                        self.request_timeout
                    ))
                } else {
                    Ok(t)
                }
            })?;
        if let Some(j) = &self.journal
            && j.parent()
                .is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir())
        {
            return Err(format!(
                "--journal {}: its directory does not exist",
                j.display()
            ));
        }
        if let Some(ca) = &self.ca_cert {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("--ca-cert {}: cannot read it: {e}", ca.display()))?;
            match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(certs) if !certs.is_empty() => {}
                Ok(_) => {
                    return Err(format!(
                        "--ca-cert {}: no PEM certificate in it",
                        ca.display()
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "--ca-cert {}: not a PEM certificate: {e}",
                        ca.display()
                    ));
                }
            }
        }
        let metrics = self.metrics_settings(shard)?;
        let reverify_window = parse_duration("REVERIFY_WINDOW", &self.reverify_window)?;
        if reverify_window.is_zero() {
            return Err(format!(
                "REVERIFY_WINDOW {:?}: deletes need some time after a re-read; give a duration above 0 like 30s",
                self.reverify_window
            ));
        }
        let client = match &registry_url {
            Some(url) if !self.dry_run && !offline => Some(ClientOptions {
                url: url.clone(),
                credentials: credentials(&self, url)?,
                insecure: self.self_signed_cert,
                ca_cert: self.ca_cert.clone(),
                concurrency,
                rate: NonZeroU32::new(rate),
                max_attempts,
                timeout,
            }),
            _ => None,
        };
        Ok(Config {
            registry_url,
            storage,
            dry_run: self.dry_run,
            filter: RepoFilter {
                exact: repo_filter,
                globs,
                shard,
                names: None,
            },
            hash_tag_patterns: self.hash_tag_pattern.clone(),
            policies,
            keep,
            min_age_secs,
            output: self.output,
            threads: self
                .threads
                .filter(|n| *n > 0)
                // Twice the cores: reads wait on the filesystem (1M tree, 2 cores: 1 thread
                // 135 s, 2: 132 s, 4: 113 s, 8: 131 s; see README "Performance").
                .unwrap_or_else(|| 2 * std::thread::available_parallelism().map_or(2, |n| n.get())),
            client,
            concurrency,
            repo_globs: repo,
            journal: self.journal,
            reverify_window,
            delete_via: self.delete_via,
            verbose: self.verbose,
            summary_only: self.summary_only,
            gc: self.gc,
            purge_uploads_secs,
            allow_empty_mark: self.allow_empty_mark,
            online,
            restore_quarantine: self.restore_quarantine,
            registry_config: self.registry_config,
            progress: crate::report::status::Mode::detect(
                self.quiet,
                parse_duration("PROGRESS_INTERVAL", &self.progress_interval)?,
                self.log_format == LogFormat::Json,
            ),
            metrics,
            recorder: std::sync::Arc::default(),
        })
    }
}
