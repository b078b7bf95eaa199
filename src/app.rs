//! One run: validate, scan and plan, report, and (unless dry-run) delete.

use std::io::{self, Write};

use anyhow::{Context, Result, bail};

use crate::cli::{Config, Output};
use crate::pipeline::{Planned, plan_filesystem};
use crate::plan::Policy;
use crate::report::{json, text};

/// Exit code: everything done.
pub const EXIT_OK: i32 = 0;
/// Exit code: fatal error before deleting.
pub const EXIT_FATAL: i32 = 1;
/// Exit code: usage error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: finished, some deletions failed.
pub const EXIT_PARTIAL: i32 = 3;

/// The policy a configuration asks for, as of now.
pub fn policy(cfg: &Config) -> Policy {
    Policy {
        hash_tag: cfg.hash_tag.clone(),
        keep: cfg.keep,
        min_age_secs: cfg.min_age_secs,
        now: chrono::Utc::now().timestamp(),
    }
}

/// Scans and plans the registry the configuration names.
pub fn scan_and_plan(cfg: &Config) -> Result<Planned> {
    Ok(plan_filesystem(
        &cfg.registry_dir,
        &cfg.filter,
        &policy(cfg),
        cfg.threads,
    ))
}

/// Prints every warning, failed-closed repository and note on stderr, one line each.
fn warn_all(planned: &Planned) -> usize {
    let mut n = 0;
    let mut err = io::stderr().lock();
    for w in &planned.warnings {
        n += 1;
        let _ = writeln!(err, "warning: {w}");
    }
    for p in &planned.plans {
        for problem in &p.problems {
            n += 1;
            let _ = writeln!(
                err,
                "warning: repository {} fails closed (nothing in it is deleted): {problem}",
                p.name
            );
        }
        for note in &p.notes {
            n += 1;
            let _ = writeln!(err, "warning: repository {}: {note}", p.name);
        }
    }
    n
}

/// Runs regsweep with a validated configuration; returns the process exit code.
pub fn run(cfg: &Config) -> Result<i32> {
    let planned = scan_and_plan(cfg)?;
    warn_all(&planned);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match cfg.output {
        Output::Json => {
            let report = json::build(
                &planned.plans,
                &planned.warnings,
                cfg.dry_run,
                json::PolicyView {
                    hash_tag_pattern: cfg.hash_tag.as_str(),
                    hash_tag_keep: cfg.keep,
                    min_age_seconds: cfg.min_age_secs,
                },
            );
            serde_json::to_writer_pretty(&mut out, &report).context("writing the JSON report")?;
            writeln!(out)?;
        }
        Output::Text => {
            let header = text::Header {
                dry_run: cfg.dry_run,
                repo_filter: cfg.filter.exact.as_deref(),
                keep: cfg.keep,
            };
            text::write_summary(&mut out, &header, &planned.plans)?;
            if cfg.dry_run {
                text::write_dry_run(&mut out, &planned.plans)?;
            }
        }
    }
    out.flush()?;
    if !cfg.dry_run {
        bail!("deleting is not available in this build; run with DRY_RUN=true");
    }
    Ok(EXIT_OK)
}
