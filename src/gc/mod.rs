//! `regsweep gc`: blob garbage collection with the registry stopped or read-only. Mark
//! (every blob any manifest of any repository references) then sweep (unmarked blobs older
//! than MIN_AGE). Any doubt while marking aborts before the first delete; it never touches
//! repository files or `_uploads`. Filesystem and S3 storage.

pub mod mark;
pub mod sweep;
pub mod sweep_s3;

use std::io::{self, Write};

use anyhow::{Context, Result, anyhow};

use crate::app::{EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE};
use crate::cli::{Config, StorageConfig};
use crate::digest::Digest;
use crate::s3::S3Store;
use crate::scan::Storage;
use crate::scan::fs::FsStorage;
use crate::scan::s3::S3Storage;

/// `regsweep gc`: a collection on its own, where repository filters make no sense.
pub fn collect(cfg: &Config) -> Result<i32> {
    if cfg.filter.exact.is_some() || cfg.filter.globs.is_some() || cfg.filter.shard.is_some() {
        eprintln!(
            "regsweep: error: regsweep gc marks every repository (a blob is shared across them): \
             REPO_FILTER, REPO_GLOB and --shard do not apply"
        );
        return Ok(EXIT_USAGE);
    }
    run(cfg)
}

/// Where blobs are swept, and how.
enum Sweeper {
    /// A filesystem root.
    Fs(std::path::PathBuf),
    /// A bucket, with the runtime its requests run on.
    S3(std::sync::Arc<S3Store>, tokio::runtime::Runtime),
}

impl Sweeper {
    /// The unmarked blobs old enough to go, and the counts of the others.
    fn list(
        &self,
        marked: &mark::MarkSet,
        now: i64,
        min_age: i64,
    ) -> Result<sweep::Listed, String> {
        match self {
            Sweeper::Fs(root) => sweep::list(root, marked, now, min_age),
            Sweeper::S3(store, rt) => rt.block_on(sweep_s3::list(store, marked, now, min_age)),
        }
    }

    /// Removes the candidates; gives the blobs that could not be removed, with why.
    fn remove(&self, candidates: &[sweep::Candidate]) -> Vec<(Digest, String)> {
        match self {
            Sweeper::Fs(root) => sweep::remove(root, candidates),
            Sweeper::S3(store, rt) => rt.block_on(sweep_s3::remove(store, candidates)),
        }
    }
}

/// Runs a collection as the configuration says (dry run: list only); gives the exit code.
/// It always marks every repository, whatever filters a cleanup before it used.
pub fn run(cfg: &Config) -> Result<i32> {
    let now = chrono::Utc::now().timestamp();
    let (sweeper, storage): (Sweeper, Box<dyn Storage>) = match &cfg.storage {
        StorageConfig::Fs(root) => (
            Sweeper::Fs(root.clone()),
            Box::new(FsStorage::new(root, cfg.threads)),
        ),
        StorageConfig::S3(o) => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let store =
                std::sync::Arc::new(rt.block_on(S3Store::connect(o)).map_err(|e| anyhow!(e))?);
            let storage = S3Storage::new(store.clone(), rt.handle().clone());
            (Sweeper::S3(store, rt), Box::new(storage))
        }
    };
    let marked = match mark::mark(&*storage) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("regsweep: error: garbage collection aborted, nothing deleted: {e}");
            return Ok(EXIT_FATAL);
        }
    };
    let listed = sweeper
        .list(&marked.blobs, now, cfg.min_age_secs)
        .map_err(|e| anyhow!("garbage collection aborted, nothing deleted: {e}"))?;
    let bytes: u64 = listed.candidates.iter().map(|c| c.size).sum();
    let mut out = io::BufWriter::new(io::stdout().lock());
    if cfg.dry_run {
        writeln!(out, "Garbage collection (dry run: nothing is deleted)")?;
    } else {
        writeln!(out, "Garbage collection")?;
    }
    writeln!(
        out,
        "Marked {} blobs referenced by {} manifests in {} repositories.",
        marked.blobs.len(),
        marked.manifests,
        marked.repositories
    )?;
    let prefix = if cfg.dry_run { "DRY_RUN:" } else { "[delete]" };
    if !cfg.summary_only {
        for c in &listed.candidates {
            writeln!(
                out,
                "  {prefix} {}  {}",
                c.digest,
                indicatif::BinaryBytes(c.size)
            )?;
        }
    }
    writeln!(
        out,
        "Blobs to delete: {} ({}, {bytes} bytes). Kept: {} referenced, {} younger than MIN_AGE.",
        listed.candidates.len(),
        indicatif::BinaryBytes(bytes),
        listed.marked,
        listed.young
    )?;
    if cfg.dry_run {
        out.flush()?;
        return Ok(EXIT_OK);
    }
    let failed = sweeper.remove(&listed.candidates);
    writeln!(
        out,
        "Deleted {} of {} blobs. Restart the registry before it serves again: its blob \
         descriptor cache may still claim deleted blobs exist.",
        listed.candidates.len() - failed.len(),
        listed.candidates.len()
    )?;
    out.flush()?;
    for (d, why) in &failed {
        eprintln!("regsweep: failed: blob {d}: {why}");
    }
    Ok(if failed.is_empty() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}
