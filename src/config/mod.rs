//! What a run needs, and how it gets there: [`args`] are the flags and variables as clap
//! parses them, [`resolve`] turns them into a [`Config`] (reading the files they name),
//! [`usage`] prints clap's usage errors on one line. `Config` itself is plain data.

pub mod args;
mod credentials;
pub mod parsers;
mod resolve;
pub mod usage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use args::{Cli, DeleteVia, Output};
pub use resolve::UsageError;

use crate::delete::ClientOptions;
use crate::plan::Policies;
use crate::report::metrics::{Recorder, Settings as MetricsSettings};
use crate::report::status::ProgressDisplay;
use crate::s3::S3Options;
use crate::storage::RepoFilter;

/// What a run does: the subcommand, without its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Scan, plan, delete (or print, in a dry run): the original tool's run.
    Cleanup,
    /// Scan, plan, write the plan file (`regsweep plan --out FILE`).
    Plan(PathBuf),
    /// Delete what a plan file lists (`regsweep apply FILE`).
    Apply(PathBuf),
    /// Collect unreferenced blobs (`regsweep gc`).
    Gc,
}

/// Which storage to read, and how.
#[derive(Clone, Debug)]
pub enum StorageConfig {
    /// A filesystem `rootdirectory`.
    Fs(PathBuf),
    /// An S3 bucket.
    S3(S3Options),
}

/// Everything a run needs, resolved from the command line and the environment.
#[derive(Debug)]
pub struct Config {
    /// What the run does.
    pub task: Task,
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
    pub reverify_window: Duration,
    /// Where deletes go.
    pub delete_via: DeleteVia,
    /// Text report without a line per manifest.
    pub summary_only: bool,
    /// Collect unreferenced blobs: `regsweep gc`, or after an offline cleanup (`--gc`).
    pub gc: bool,
    /// Also purge uploads started longer ago than this many seconds (with a collection).
    pub purge_uploads_secs: Option<i64>,
    /// Sweep even when the mark found no manifest but the store holds blobs.
    pub allow_empty_mark: bool,
    /// `regsweep gc --online`: the settle period; `None` for an offline collection.
    pub online: Option<Duration>,
    /// `regsweep gc --restore-quarantine`.
    pub restore_quarantine: bool,
    /// The registry's configuration file.
    pub registry_config: Option<PathBuf>,
    /// How progress is shown.
    pub progress: ProgressDisplay,
    /// Where the run's metrics go.
    pub metrics: MetricsSettings,
    /// The run's metrics, as it goes.
    pub recorder: Arc<Recorder>,
}
