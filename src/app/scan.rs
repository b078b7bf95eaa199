//! Phase 2, scan and plan: lists the storage, plans every repository, then narrows the
//! plans to what a resumed journal or a plan file still allows. It prints only the errors
//! of a filter that finds nothing; it never deletes.

use std::sync::Arc;

use anyhow::Result;

use super::prepare::Prepared;
use crate::outcome::Missed;
use crate::pipeline::{Planned, plan_storage_counted};
use crate::planfile;
use crate::report::status::Status;

/// The scan's plans, with what a plan file refused and the progress display.
pub struct Scanned {
    /// The plans (narrowed), warnings and the bytes-freed estimate.
    pub planned: Planned,
    /// Entries of the plan file that no longer hold.
    pub refused: Vec<Missed>,
    /// The progress display, kept for the deletes.
    pub status: Status,
}

/// Scans and plans; `None` when `REPO_FILTER` names no repository (a usage error).
pub fn scan_and_plan(run: &Prepared) -> Result<Option<Scanned>> {
    let cfg = run.cfg;
    let started = std::time::Instant::now();
    // Started once storage answers: a connection error stays one line.
    let status = Status::start(cfg.progress, run.links.clone());
    let mut planned = plan_storage_counted(
        &*run.storage,
        &run.filter,
        &run.policy,
        cfg.threads,
        Some(&status.counters),
    );
    status.counters.scan_done();
    // Evidence that starts late is worth a warning, not a different exit code: a freshly
    // started receiver or a rotated log is normal, and evidence only ever adds keeps.
    if let Some(w) = run.policy.base.evidence.coverage_warning(run.policy.now()) {
        crate::logging::warn(w);
    }
    let kind = run.storage.kind();
    if let Some(name) = &cfg.filter.exact
        && planned.plans.is_empty()
    {
        crate::logging::error(format_args!(
            "REPO_FILTER: repository {name:?} not found in the {kind} storage"
        ));
        return Ok(None);
    }
    if cfg.filter.globs.is_some() && planned.plans.is_empty() {
        planned.warnings.push(format!(
            "REPO_GLOB/--repo {:?} selects no repository in the {kind} storage: nothing to do",
            cfg.repo_globs
        ));
    }
    if let Some(r) = run.storage.requests() {
        tracing::debug!(requests = %r, "S3 requests for the scan");
    }
    tracing::debug!(
        repositories = planned.plans.len(),
        manifests = planned
            .plans
            .iter()
            .map(|p| p.decisions.len())
            .sum::<usize>(),
        deletes = planned
            .plans
            .iter()
            .map(|p| p.delete_count())
            .sum::<usize>(),
        seconds = started.elapsed().as_secs_f64(),
        "scanned and planned"
    );
    if let Some(u) = &run.resume {
        let remaining = u.remaining();
        planned.plans = planned
            .plans
            .iter()
            .map(|p| Arc::new(p.restrict_to(|d| remaining.contains(&(p.name.to_string(), *d)))))
            .collect();
    }
    let mut refused = Vec::new();
    if let Some(f) = &run.plan_file {
        refused = restrict_to_plan_file(&mut planned, f);
        for m in &refused {
            crate::logging::line(
                tracing::Level::WARN,
                "refused",
                "regsweep: refused: ",
                format_args!("{} in {}: {}", m.digest, m.repository, m.why),
            );
        }
    }
    Ok(Some(Scanned {
        planned,
        refused,
        status,
    }))
}

/// Restricts the fresh plans to the plan file's entries that still hold; returns the others.
fn restrict_to_plan_file(planned: &mut Planned, file: &planfile::PlanFile) -> Vec<Missed> {
    let mut refused = Vec::new();
    let mut plans = Vec::with_capacity(planned.plans.len());
    for entry in &file.repositories {
        let Some(fresh) = planned.plans.iter().find(|p| *p.name == *entry.name) else {
            refused.extend(entry.delete.iter().map(|e| Missed {
                repository: entry.name.clone(),
                digest: e.digest,
                why: "the repository is gone since the plan".to_owned(),
            }));
            continue;
        };
        let (ok, no) = planfile::admit(entry, fresh);
        let ok: crate::digest::DigestSet = ok.into_iter().collect();
        refused.extend(no.into_iter().map(|(digest, why)| Missed {
            repository: entry.name.clone(),
            digest,
            why,
        }));
        plans.push(Arc::new(fresh.restrict_to(|d| ok.contains(d))));
    }
    planned.plans = plans;
    refused
}
