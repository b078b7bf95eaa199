//! Wires the stages: lister → (bounded channel) → meta reader + planner threads → plans
//! sorted by repository, with the registry-wide bytes-freed ledger. It moves records
//! between stages; it prints nothing and deletes nothing.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crossbeam_channel::bounded;

use crate::meta;
use crate::plan::freed::{Ledger, blob_use};
use crate::plan::{Policies, RepoPlan, plan_repository};
use crate::report::status::Counters;
use crate::storage::BlobSource;
use crate::storage::fs::FsStorage;
use crate::storage::{Batch, RepoFilter, Storage};

/// Everything a scan-and-plan pass produced.
#[derive(Debug, Default)]
pub struct Planned {
    /// One plan per repository, sorted by name.
    pub plans: Vec<Arc<RepoPlan>>,
    /// Problems outside any single repository.
    pub warnings: Vec<String>,
    /// Bytes garbage-collect frees after the plan: blobs no kept manifest of any
    /// repository in the run references.
    pub bytes_freed: u64,
    /// Blobs of deleted manifests whose size the manifests do not give.
    pub unsized_blobs: u64,
}

/// Scans a filesystem registry under `root` and plans every repository `filter` admits.
pub fn plan_filesystem(
    root: &Path,
    filter: &RepoFilter,
    policy: &Policies,
    threads: usize,
) -> Planned {
    plan_storage(&FsStorage::new(root, threads), filter, policy, threads)
}

/// Scans any storage and plans every repository `filter` admits, with `threads` planners.
pub fn plan_storage(
    storage: &dyn Storage,
    filter: &RepoFilter,
    policy: &Policies,
    threads: usize,
) -> Planned {
    plan_storage_counted(storage, filter, policy, threads, None)
}

/// [`plan_storage`], counting each planned repository into `counters` (for progress).
pub fn plan_storage_counted(
    storage: &dyn Storage,
    filter: &RepoFilter,
    policy: &Policies,
    threads: usize,
    counters: Option<&Counters>,
) -> Planned {
    run(threads, storage.blobs(), policy, counters, |tx| {
        storage.list(filter, &tx).warnings
    })
}

/// Runs a lister (which sends batches into the channel it is given) into `threads` planners.
fn run<L>(
    threads: usize,
    blobs: &dyn BlobSource,
    policy: &Policies,
    counters: Option<&Counters>,
    lister: L,
) -> Planned
where
    L: FnOnce(crossbeam_channel::Sender<Batch>) -> Vec<String> + Send,
{
    let (tx, rx) = bounded::<Batch>(threads * 4);
    let plans = Mutex::new((Vec::new(), Ledger::default()));
    let mut warnings = Vec::new();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            let rx = rx.clone();
            let plans = &plans;
            s.spawn(move || {
                let mut mine = Vec::new();
                let mut ledger = Ledger::default();
                for batch in rx.iter() {
                    for record in batch {
                        let snap = meta::load(blobs, record);
                        let p = policy.for_repo(&snap.record.name);
                        let mut plan = plan_repository(&snap, p);
                        let used = blob_use(&snap, &plan);
                        plan.bytes_freed = used.bytes();
                        plan.unsized_blobs = used.no_size;
                        ledger.add(&used);
                        if let Some(c) = counters {
                            c.planned(&plan);
                        }
                        mine.push(Arc::new(plan));
                    }
                }
                if let Ok(mut all) = plans.lock() {
                    all.0.append(&mut mine);
                    all.1.merge(ledger);
                }
            });
        }
        drop(rx);
        warnings = lister(tx);
    });
    let (mut plans, ledger) = plans.into_inner().unwrap_or_default();
    plans.sort_by(|a, b| a.name.cmp(&b.name));
    let unsized_blobs = ledger.no_size;
    Planned {
        plans,
        warnings,
        bytes_freed: ledger.total(),
        unsized_blobs,
    }
}
