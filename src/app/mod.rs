//! One run of regsweep, as phases that read top to bottom: prepare (plan file, runtime,
//! signals, registry check, journal, storage) → scan and plan → report → act (delete, or
//! nothing in a dry run) → finish (closing lines, exit code). Each phase has a file of its
//! own; none of them decides a verdict (that is `plan`) or talks HTTP itself (`delete`).

mod act;
mod prepare;
mod report;
mod scan;

use anyhow::Result;

use crate::config::{Config, Task};
use crate::exit::Exit;
use crate::plan::Policies;

/// The policies a configuration asks for, as of now.
pub fn policies(cfg: &Config) -> Policies {
    let mut p = cfg.policies.clone();
    p.set_now(chrono::Utc::now().timestamp());
    p
}

/// Threads that read and remove small files (links, manifests, configs, blob directories)
/// for `threads` scan threads. Such calls mostly wait on storage: with the page cache
/// dropped, a 100k dry run takes 32 s with 2 such threads, 14.5 s with 8, 12.2 s with
/// 16, 11.8 s with 64; warm it is 1.1 s with any of them (2 cores; README "Performance").
pub fn io_threads(threads: usize) -> usize {
    (threads * 4).clamp(8, 64)
}

/// Sizes rayon's global pool, where every parallel file read and removal runs, to
/// [`io_threads`]; a pool already started (a second run in one process) is kept.
fn start_io_pool(threads: usize) {
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(io_threads(threads))
        .thread_name(|i| format!("regsweep-io-{i}"))
        .build_global();
}

/// Runs the configuration's task; says how it ended (an error is fatal, exit 1).
pub fn run(cfg: &Config) -> Result<Exit> {
    start_io_pool(cfg.threads);
    let rec = &cfg.recorder;
    if cfg.task == Task::Gc {
        rec.begin("gc", cfg.dry_run);
        return crate::gc::collect(cfg);
    }
    rec.begin("cleanup", cfg.dry_run);
    rec.phase("prepare");
    let mut run = prepare::Prepared::prepare(cfg)?;
    rec.phase("scan");
    let Some(scanned) = scan::scan_and_plan(&run)? else {
        return Ok(Exit::Usage);
    };
    rec.planned(&scanned.planned.plans, scanned.planned.bytes_freed);
    rec.phase("report");
    report::report(&run, &scanned)?;
    rec.phase("delete");
    let acted = act::act(&mut run, &scanned)?;
    let exit = act::finish(&run, scanned, acted)?;
    if cfg.gc && cfg.dry_run {
        // What a collection would free depends on the deletes this dry run only planned.
        crate::logging::line(
            tracing::Level::INFO,
            "note",
            "note: ",
            "GC: no collection in a dry run; after the cleanup, `regsweep gc --dry-run` lists what it would free",
        );
    }
    // `--gc`: blobs go only after a cleanup that went through (skips are fine: a skipped
    // manifest is still there, and so is everything it marks).
    if cfg.gc && !cfg.dry_run && exit.succeeded() {
        println!();
        let collected = crate::gc::mark_and_sweep(cfg, &run.rt, &run.signals)?;
        return Ok(exit.merge(collected));
    }
    Ok(exit)
}
