//! Phase 4, act, and phase 5, finish: the deletes (through the API or in storage; none in
//! a dry run), then the closing lines and the exit code. Verdicts come from the plans as
//! they are; this phase only carries them out and reports what happened.

use std::io::{self, Write};
use std::sync::atomic::Ordering;

use anyhow::{Result, anyhow};
use tracing::Level;

use super::prepare::Prepared;
use super::report::{estimate, print_json};
use super::scan::Scanned;
use crate::config::{DeleteVia, Output};
use crate::delete::journal::{Journal, Record};
use crate::delete::verify::StorageReverify;
use crate::delete::{self, Target};
use crate::exit::Exit;
use crate::logging;
use crate::outcome::{Outcome, Progress};
use crate::pipeline::Planned;
use crate::report::progress::{Quiet, TextProgress};
use crate::report::status::Counting;
use crate::report::text;

/// What the act phase did.
pub enum Acted {
    /// Nothing was to be deleted: a dry run, or no registry to delete through.
    DryRun(Outcome),
    /// The plans delete nothing.
    NothingToDo(Outcome),
    /// Deletes ran: their outcome, of `total` planned.
    Deleted(Outcome, usize),
}

/// Carries out the plans: deletes through the registry API or in storage, journaled.
pub fn act(run: &mut Prepared, scanned: &Scanned) -> Result<Acted> {
    let (cfg, planned) = (run.cfg, &scanned.planned);
    // What is already decided before any delete: the plan file's refused entries.
    let before = Outcome {
        skipped: scanned.refused.clone(),
        ..Outcome::default()
    };
    let target = match cfg.delete_via {
        _ if cfg.dry_run => None,
        DeleteVia::Storage => Some(Target::Storage(run.storage.clone())),
        DeleteVia::Api => run.client.take().map(|c| Target::Api(Box::new(c))),
    };
    let Some(target) = target else {
        return Ok(Acted::DryRun(before));
    };
    let journal = match &cfg.journal {
        Some(path) => {
            let j = Journal::open(path).map_err(|e| anyhow!(e))?;
            j.record(Record::Begin {
                now: run.policy.now(),
                resumed: run.resume.is_some(),
            });
            Some(j)
        }
        None => None,
    };
    let total: usize = planned.plans.iter().map(|p| p.delete_count()).sum();
    if total == 0 {
        if let Some(j) = journal {
            j.record(Record::End);
            j.close().map_err(|e| anyhow!(e))?;
        }
        return Ok(Acted::NothingToDo(before));
    }
    let progress: Box<dyn Progress> = match cfg.output {
        Output::Text => {
            text::write_untagged_heading(&mut io::stdout().lock(), &planned.plans)?;
            Box::new(TextProgress::new(total, cfg.summary_only))
        }
        Output::Json => Box::new(Quiet),
    };
    let counters = scanned.status.counters.clone();
    counters.start_deletes(total);
    let who = cfg
        .client
        .as_ref()
        .and_then(|c| c.credentials.as_ref())
        .map_or_else(|| "no credentials".to_owned(), |c| c.describe());
    let deletes = delete::DeletionPass {
        target,
        who,
        reverify: Box::new(StorageReverify {
            storage: run.storage.clone(),
            policy: run.policy.clone(),
        }),
        progress: Box::new(Counting {
            inner: progress,
            counters,
        }),
        repo_parallelism: cfg.concurrency,
        journal,
        cancel: run.signals.cancel.clone(),
        reverify_window: cfg.reverify_window,
    };
    run.signals.deleting.store(true, Ordering::SeqCst);
    let mut outcome = run
        .rt
        .block_on(delete::execute(deletes, planned.plans.clone()));
    cfg.recorder.deleted(&outcome, before.skipped.len());
    outcome.skipped.extend(before.skipped);
    Ok(Acted::Deleted(outcome, total))
}

/// Prints the closing lines (or the JSON report) and gives the exit code.
pub fn finish(run: &Prepared, scanned: Scanned, acted: Acted) -> Result<Exit> {
    let Scanned {
        planned, status, ..
    } = scanned;
    drop(status); // progress bars off before the closing lines
    let cfg = run.cfg;
    let requests = || run.storage.requests();
    let (outcome, total) = match acted {
        Acted::DryRun(before) => {
            if cfg.output == Output::Json {
                print_json(cfg, &planned, None, requests())?;
            }
            return Ok(clean_exit(&planned, Some(&before)));
        }
        Acted::NothingToDo(before) => {
            match cfg.output {
                Output::Text => {
                    let mut out = io::stdout().lock();
                    writeln!(out)?;
                    writeln!(out, "No manifests without tags found. Nothing to do.")?;
                }
                Output::Json => print_json(cfg, &planned, Some(&before), requests())?,
            }
            return Ok(clean_exit(&planned, Some(&before)));
        }
        Acted::Deleted(outcome, total) => (outcome, total),
    };
    match cfg.output {
        Output::Text => text::write_closing(
            &mut io::stdout().lock(),
            &planned.plans,
            &outcome,
            total,
            &estimate(&planned),
        )?,
        Output::Json => print_json(cfg, &planned, Some(&outcome), requests())?,
    }
    if let Some(e) = &outcome.journal_error {
        logging::error(e);
    }
    for m in &outcome.failed {
        logging::line(
            Level::ERROR,
            "failed",
            "regsweep: failed: ",
            format_args!("{} in {}: {}", m.digest, m.repository, m.why),
        );
    }
    if outcome.interrupted {
        logging::line(
            Level::WARN,
            "interrupted",
            "regsweep: interrupted: ",
            format_args!(
                "{} deletions not attempted; rerun (with the same --journal) to finish",
                outcome.not_attempted
            ),
        );
        return Ok(Exit::Interrupted);
    }
    if let Some(fatal) = &outcome.fatal {
        logging::error(fatal);
        return Ok(Exit::Fatal);
    }
    if !outcome.failed.is_empty() || outcome.journal_error.is_some() {
        return Ok(Exit::Partial);
    }
    Ok(clean_exit(&planned, Some(&outcome)))
}

/// The exit code for a run that finished without fatal errors or failed deletes.
fn clean_exit(planned: &Planned, outcome: Option<&Outcome>) -> Exit {
    let skipped = outcome.is_some_and(|o| !o.skipped.is_empty());
    let closed = planned.plans.iter().any(|p| !p.problems.is_empty());
    if skipped || closed || !planned.warnings.is_empty() {
        Exit::Skipped
    } else {
        Exit::Ok
    }
}
