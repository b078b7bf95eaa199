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

/// Where blobs are swept.
enum Target {
    /// A filesystem root.
    Fs(std::path::PathBuf),
    /// A bucket, with the runtime its requests run on.
    S3(std::sync::Arc<S3Store>, tokio::runtime::Runtime),
}

/// Runs a collection as the configuration says (dry run: list only); gives the exit code.
/// It always marks every repository, whatever filters a cleanup before it used.
pub fn run(cfg: &Config) -> Result<i32> {
    let now = chrono::Utc::now().timestamp();
    let (target, storage): (Target, Box<dyn Storage>) = match &cfg.storage {
        StorageConfig::Fs(root) => (
            Target::Fs(root.clone()),
            Box::new(FsStorage::new(root, cfg.threads)),
        ),
        StorageConfig::S3(o) => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let store =
                std::sync::Arc::new(rt.block_on(S3Store::connect(o)).map_err(|e| anyhow!(e))?);
            let storage = S3Storage::new(store.clone(), rt.handle().clone());
            (Target::S3(store, rt), Box::new(storage))
        }
    };
    let marked = match mark::mark(&*storage) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("regsweep: error: garbage collection aborted, nothing deleted: {e}");
            return Ok(EXIT_FATAL);
        }
    };
    let (listed, s3_keys) = match &target {
        Target::Fs(root) => (
            sweep::list(root, &marked.blobs, now, cfg.min_age_secs),
            Vec::new(),
        ),
        Target::S3(store, rt) => {
            match rt.block_on(sweep_s3::list(store, &marked.blobs, now, cfg.min_age_secs)) {
                Ok(l) => (Ok(l.listed), l.keys),
                Err(e) => (Err(e), Vec::new()),
            }
        }
    };
    let listed = listed.map_err(|e| anyhow!("garbage collection aborted, nothing deleted: {e}"))?;
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
    let failed: Vec<(String, String)> = match &target {
        Target::Fs(root) => sweep::remove(root, &listed.candidates)
            .into_iter()
            .map(|(d, why)| (d.to_string(), why))
            .collect(),
        Target::S3(store, rt) => rt.block_on(sweep_s3::remove(store, &s3_keys)),
    };
    let failed_blobs = failed
        .iter()
        .map(|(k, _)| k.split('/').rev().nth(1).unwrap_or(k.as_str()).to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        .min(listed.candidates.len());
    writeln!(
        out,
        "Deleted {} of {} blobs. Restart the registry before it serves again: its blob \
         descriptor cache may still claim deleted blobs exist.",
        listed.candidates.len() - failed_blobs,
        listed.candidates.len()
    )?;
    out.flush()?;
    for (what, why) in &failed {
        eprintln!("regsweep: failed: {what}: {why}");
    }
    Ok(if failed.is_empty() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}
