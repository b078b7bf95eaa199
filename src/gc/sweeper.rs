//! Where a collection lists, removes and quarantines blobs and uploads: a filesystem root
//! or an S3 bucket, behind one [`Sweeper`].

use super::error::GcError;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::{Result, anyhow};

use super::{mark, quarantine, sweep, sweep_s3, uploads};
use crate::config::{Config, StorageConfig};
use crate::digest::Digest;
use crate::s3::S3Store;
use crate::storage::Storage;
use crate::storage::fs::FsStorage;
use crate::storage::s3::S3Storage;

/// Where blobs are swept, and how.
pub(super) enum Sweeper<'a> {
    /// A filesystem root, listed and unlinked on rayon's global pool, sized by
    /// `app::io_threads` (each call mostly waits on the filesystem; at 100k,
    /// 2 threads swept in 21.7 s, 16 in 9.9 s).
    Fs(std::path::PathBuf),
    /// A bucket, with the runtime its requests run on.
    S3(Arc<S3Store>, &'a tokio::runtime::Runtime),
}

impl<'a> Sweeper<'a> {
    /// The unmarked blobs old enough to go, and the counts of the others.
    pub(super) fn list(
        &self,
        marked: &mark::MarkSet,
        now: i64,
        min_age: i64,
        listed: &AtomicU64,
    ) -> Result<sweep::Listed, GcError> {
        match self {
            Sweeper::Fs(root) => sweep::list(root, marked, now, min_age, listed),
            Sweeper::S3(store, rt) => {
                rt.block_on(sweep_s3::list(store, marked, now, min_age, listed))
            }
        }
        .map_err(GcError::Listing)
    }

    /// Removes the candidates; gives the blobs that could not be removed, with why.
    pub(super) fn remove(&self, candidates: &[sweep::Candidate]) -> Vec<(Digest, String)> {
        match self {
            Sweeper::Fs(root) => sweep::remove(root, candidates),
            Sweeper::S3(store, rt) => rt.block_on(sweep_s3::remove(store, candidates)),
        }
    }

    /// The quarantine of online collections beside this storage.
    pub(super) fn quarantine(&self) -> quarantine::Quarantine<'a> {
        match self {
            Sweeper::Fs(root) => quarantine::Quarantine::fs(root),
            Sweeper::S3(store, rt) => quarantine::Quarantine::s3(store.clone(), rt),
        }
    }

    /// The uploads under every repository, with their start times.
    pub(super) fn uploads(&self) -> Result<Vec<uploads::Upload>, GcError> {
        match self {
            Sweeper::Fs(root) => uploads::list_fs(root),
            Sweeper::S3(store, rt) => rt.block_on(uploads::list_s3(store)),
        }
        .map_err(GcError::Listing)
    }

    /// Removes uploads; gives those that could not be removed, with why.
    pub(super) fn remove_uploads(&self, old: &[uploads::Upload]) -> Vec<(String, String)> {
        match self {
            Sweeper::Fs(root) => uploads::remove_fs(root, old),
            Sweeper::S3(store, rt) => rt.block_on(uploads::remove_s3(store, old)),
        }
    }
}

/// Opens the storage the configuration names: to mark (counting links into `links`) and
/// to sweep.
pub(super) fn open<'a>(
    cfg: &Config,
    rt: &'a tokio::runtime::Runtime,
    links: Arc<AtomicU64>,
) -> Result<(Sweeper<'a>, Box<dyn Storage>)> {
    Ok(match &cfg.storage {
        StorageConfig::Fs(root) => (
            Sweeper::Fs(root.clone()),
            Box::new(FsStorage::new(root, cfg.threads).with_progress(links)),
        ),
        StorageConfig::S3(o) => {
            let store = Arc::new(rt.block_on(S3Store::connect(o)).map_err(|e| anyhow!(e))?);
            let storage = S3Storage::new(store.clone(), rt.handle().clone()).with_progress(links);
            (Sweeper::S3(store, rt), Box::new(storage))
        }
    })
}
