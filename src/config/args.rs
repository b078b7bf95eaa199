//! The command line and the environment as clap sees them: the original tool's variables
//! plus regsweep's own, each value parsed to its type by a value parser (a bad value is a
//! clap usage error naming the variable). Nothing here reads files or storage; turning
//! these flags into a run's `Config` is the job of `resolve`.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Parser, ValueEnum};
use secrecy::SecretString;

use super::parsers::{
    Blankable, HttpUrl, blank_or_secs, duration, duration_secs, nonzero_duration, positive,
    pushgateway_url, rate, registry_url, secret, threads, whole,
};
use crate::logging::LogFormat;
use crate::plan::DEFAULT_HASH_TAG_PATTERN;

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

/// What the command line asks for.
pub enum Invocation {
    /// `regsweep events`: receive the registry's notifications (the options without a
    /// subcommand still set the logging).
    Events(crate::evidence::events::Options, Box<Args>),
    /// A run of `task` with these options.
    Run(super::Task, Box<Args>),
}

impl Cli {
    /// Splits the command line into what to do and the options to do it with.
    pub fn invocation(self) -> Invocation {
        use super::Task;
        match self.command {
            Some(Command::Events { listen, store }) => {
                let opts = crate::evidence::events::Options { listen, store };
                Invocation::Events(opts, Box::new(self.args))
            }
            None => Invocation::Run(Task::Cleanup, Box::new(self.args)),
            Some(Command::Plan { out, args }) => Invocation::Run(Task::Plan(out), Box::new(args)),
            Some(Command::Apply { plan, args }) => {
                Invocation::Run(Task::Apply(plan), Box::new(args))
            }
            Some(Command::Gc { args }) => Invocation::Run(Task::Gc, Box::new(args)),
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
    #[arg(long, env = "REGISTRY_URL", value_parser = registry_url)]
    pub registry_url: Option<HttpUrl>,

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
    #[arg(long, env = "SECRET_KEY", hide_env_values = true, value_parser = secret)]
    pub secret_key: Option<SecretString>,

    /// S3-compatible endpoint (MinIO, Ceph, R2), e.g. http://127.0.0.1:9000.
    // The S3 settings are checked only when storage is S3 (`resolve`): a shared
    // environment may carry them, even empty, for a filesystem registry.
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
    #[arg(long, env = "OLDER_THAN", value_parser = blank_or_secs("OLDER_THAN"))]
    pub older_than: Option<Blankable<i64>>,

    /// Policy file (TOML): per-repository-glob rules overriding the policy flags.
    #[arg(long, env = "POLICY_FILE")]
    pub policy: Option<PathBuf>,

    /// Hash-tagged images kept per repository.
    #[arg(long, env = "HASH_TAG_KEEP", default_value = "10", value_parser = whole("HASH_TAG_KEEP"))]
    pub hash_tag_keep: usize,

    /// Never delete a revision younger than this (0, 30m, 1h, 2d).
    #[arg(long, env = "MIN_AGE", default_value = "1h", value_parser = duration_secs("MIN_AGE"))]
    pub min_age: i64,

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
    #[arg(long, value_name = "DURATION", value_parser = blank_or_secs("--keep-pulled-within"))]
    pub keep_pulled_within: Option<Blankable<i64>>,

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
    #[arg(long, env = "SCAN_THREADS", value_parser = threads)]
    pub threads: Option<usize>,

    /// Basic-auth credentials `user:password` (split at the first ':').
    #[arg(long, env = "REGISTRY_AUTH", hide_env_values = true, help_heading = DELETING, value_parser = secret)]
    pub registry_auth: Option<SecretString>,

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
    #[arg(long, env = "CONCURRENCY", default_value = "8", help_heading = DELETING,
          value_parser = positive("CONCURRENCY"))]
    pub concurrency: usize,

    /// Most delete requests per second (0: no limit).
    #[arg(long, env = "RATE", default_value = "0", help_heading = DELETING, value_parser = rate)]
    pub rate: u32,

    /// Attempts per delete on 429, 5xx and connection errors, the first included.
    #[arg(long, env = "MAX_ATTEMPTS", default_value = "6", help_heading = DELETING,
          value_parser = positive("MAX_ATTEMPTS"))]
    pub max_attempts: usize,

    /// Per-request timeout (30s, 2m).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", help_heading = DELETING,
          value_parser = nonzero_duration("REQUEST_TIMEOUT", "a request needs some time"))]
    pub request_timeout: Duration,

    /// Longest time after re-reading a repository that its deletes (and retries) may still
    /// be sent; later ones wait for a fresh re-read (30s, 1m).
    #[arg(long, env = "REVERIFY_WINDOW", default_value = "30s", help_heading = DELETING,
          value_parser = nonzero_duration("REVERIFY_WINDOW", "deletes need some time after a re-read"))]
    pub reverify_window: Duration,

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
    // Checked only with a collection (`resolve`), which it needs.
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
    // Checked only with --online (`resolve`): a cleanup and an online collection may share
    // an environment.
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
    #[arg(long, env = "PROGRESS_INTERVAL", default_value = "10s", value_parser = duration("PROGRESS_INTERVAL"))]
    pub progress_interval: Duration,

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
    #[arg(long, env = "PUSHGATEWAY_URL", help_heading = METRICS, value_parser = pushgateway_url)]
    pub pushgateway: Option<Blankable<HttpUrl>>,

    /// The job label of the pushed metrics.
    #[arg(long, env = "METRICS_JOB", default_value = "regsweep", help_heading = METRICS)]
    pub metrics_job: String,
}
