//! Phase 3, report: warnings on stderr, the text summary (and a dry run's listing) on
//! stdout, the plan file of `regsweep plan`. It writes what the plans say; it changes no
//! plan and touches no storage.

use std::io::{self, Write};

use anyhow::{Context, Result, anyhow};

use super::prepare::Prepared;
use super::scan::Scanned;
use crate::config::{Config, Output, Task};
use crate::logging;
use crate::outcome::Outcome;
use crate::pipeline::Planned;
use crate::planfile;
use crate::report::{json, text};

/// Prints the warnings, the text report (in a dry run with its listing) and writes the
/// plan file of `regsweep plan`.
pub fn report(run: &Prepared, scanned: &Scanned) -> Result<()> {
    let (cfg, planned) = (run.cfg, &scanned.planned);
    warn_all(planned);
    if cfg.output == Output::Text {
        let header = text::Header {
            storage: run.storage.kind(),
            dry_run: cfg.dry_run,
            repo_filter: cfg.filter.exact.as_deref(),
            keep: text::KeepNote::of(cfg.keep, &planned.plans, |name| {
                run.policy.for_repo(name).keep
            }),
            summary_only: cfg.summary_only,
            evidence: Some(&*run.policy.base.evidence).filter(|e| e.is_asked()),
        };
        let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
        text::write_summary(&mut out, &header, &planned.plans)?;
        if cfg.dry_run {
            text::write_dry_run(
                &mut out,
                &planned.plans,
                &estimate(planned),
                cfg.summary_only,
            )?;
        }
        out.flush()?;
    }
    if let Task::Plan(out) = &run.cfg.task {
        write_plan_file(run, planned, out)?;
    }
    Ok(())
}

/// Writes the plan file of `regsweep plan` and says how to carry it out.
fn write_plan_file(run: &Prepared, planned: &Planned, out: &std::path::Path) -> Result<()> {
    let file = planfile::build(
        &planned.plans,
        run.policy.now(),
        run.storage.kind(),
        planned.bytes_freed,
    );
    planfile::write(out, &file).map_err(|e| anyhow!(e))?;
    let n: usize = file.repositories.iter().map(|r| r.delete.len()).sum();
    logging::line(
        tracing::Level::INFO,
        "plan",
        "regsweep: ",
        format_args!(
            "plan with {n} deletions in {} repositories written to {}; carry it out with `regsweep apply {}`",
            file.repositories.len(),
            out.display(),
            out.display()
        ),
    );
    Ok(())
}

/// Prints every warning, failed-closed repository and note on stderr, one line each.
fn warn_all(planned: &Planned) {
    for w in &planned.warnings {
        logging::warn(w);
    }
    for p in &planned.plans {
        for problem in &p.problems {
            logging::warn(format_args!(
                "repository {} fails closed (nothing in it is deleted): {problem}",
                p.name
            ));
        }
        for note in &p.notes {
            logging::warn(format_args!("repository {}: {note}", p.name));
        }
    }
}

/// Writes the JSON report (with the deletion outcome, once there is one) on stdout.
pub fn print_json(
    cfg: &Config,
    planned: &Planned,
    outcome: Option<&Outcome>,
    requests: Option<serde_json::Value>,
) -> Result<()> {
    let mut report = json::build(
        &planned.plans,
        &planned.warnings,
        cfg.dry_run,
        json::PolicyView {
            hash_tag_pattern: cfg.hash_tag_patterns.first().map_or("", String::as_str),
            hash_tag_patterns: &cfg.hash_tag_patterns,
            keep_tags: cfg.policies.base.keep_tags.as_ref().map(|r| r.as_str()),
            older_than_seconds: cfg.policies.base.older_than_secs,
            rules: cfg
                .policies
                .rules
                .iter()
                .map(|r| r.patterns.clone())
                .collect(),
            hash_tag_keep: cfg.keep,
            min_age_seconds: cfg.min_age_secs,
        },
        &cfg.policies,
        outcome,
    );
    report.s3_requests = requests;
    report.evidence = json::EvidenceView::of(&cfg.policies.base.evidence);
    report.totals.bytes_freed = planned.bytes_freed;
    report.totals.unsized_blobs = planned.unsized_blobs;
    // Buffered: stdout is line-buffered, and a report has lines by the million.
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, &report).context("writing the JSON report")?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// The garbage-collect estimate of a plan.
pub fn estimate(planned: &Planned) -> text::Freed {
    text::Freed {
        bytes: planned.bytes_freed,
        unsized_blobs: planned.unsized_blobs,
        upper_bound_of: None,
    }
}
