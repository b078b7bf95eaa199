//! `regsweep gc`: blob garbage collection with the registry stopped or read-only. Mark
//! (every blob any manifest of any repository references) then sweep (unmarked blobs older
//! than MIN_AGE). Any doubt while marking aborts before the first delete; it never touches
//! repository files or `_uploads`. Filesystem storage only, for now.

pub mod mark;
pub mod sweep;

use std::io::{self, Write};

use anyhow::{Result, anyhow};

use crate::app::{EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE};
use crate::cli::{Config, StorageConfig};
use crate::scan::fs::FsStorage;

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

/// Runs a collection as the configuration says (dry run: list only); gives the exit code.
/// It always marks every repository, whatever filters a cleanup before it used.
pub fn run(cfg: &Config) -> Result<i32> {
    let StorageConfig::Fs(root) = &cfg.storage else {
        eprintln!(
            "regsweep: error: regsweep gc works on filesystem storage only so far; on S3 use `docker-registry garbage-collect`"
        );
        return Ok(EXIT_USAGE);
    };
    let now = chrono::Utc::now().timestamp();
    let storage = FsStorage::new(root, cfg.threads);
    let marked = match mark::mark(&storage) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("regsweep: error: garbage collection aborted, nothing deleted: {e}");
            return Ok(EXIT_FATAL);
        }
    };
    let listed = sweep::list(root, &marked.blobs, now, cfg.min_age_secs)
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
    let failed = sweep::remove(root, &listed.candidates);
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
