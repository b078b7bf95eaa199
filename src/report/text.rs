//! The text report: the original `docker-registry-manifest-cleanup` sections line for line,
//! a section for what goes with deleted manifests, a table per repository and the closing
//! lines. It formats plans and outcomes; it decides nothing.

use std::io::{self, Write};
use std::sync::Arc;

use crate::meta::Kind;
use crate::outcome::Outcome;
use crate::plan::{Decision, Reason, RepoPlan, TagClass};
use crate::timefmt::format_time;

/// What the summary needs to know of the run.
pub struct Header<'a> {
    /// `local` or `S3`.
    pub storage: &'a str,
    /// Dry-run mode.
    pub dry_run: bool,
    /// `REPO_FILTER`, if any.
    pub repo_filter: Option<&'a str>,
    /// `HASH_TAG_KEEP`, and where policy-file rules keep another number.
    pub keep: KeepNote,
    /// Headings and counts only, no line per manifest (`--summary-only`).
    pub summary_only: bool,
    /// The evidence of use, when any was given (`--keep-in-use`, `--pull-log`).
    pub evidence: Option<&'a crate::evidence::Evidence>,
}

/// How many hash-tagged images are kept: the base number, and the repositories of this
/// report where a policy-file rule sets another.
#[derive(Clone, Debug, Default)]
pub struct KeepNote {
    /// `HASH_TAG_KEEP`.
    pub base: usize,
    /// Each other number with the repositories it applies to (sorted).
    pub others: Vec<(usize, Vec<String>)>,
}

impl KeepNote {
    /// The note for `plans`, with `keep_of` giving each repository's number.
    pub fn of(base: usize, plans: &[Arc<RepoPlan>], keep_of: impl Fn(&str) -> usize) -> KeepNote {
        let mut others: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
        for p in plans {
            let k = keep_of(&p.name);
            if k != base {
                others.entry(k).or_default().push(p.name.to_string());
            }
        }
        KeepNote {
            base,
            others: others.into_iter().collect(),
        }
    }

    /// What follows `per repo` in a heading: nothing, or `; 3 in team/a, team/b; 5 in x
    /// and 4 more by policy-file rules` when rules set other numbers.
    fn rules_suffix(&self) -> String {
        if self.others.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = self
            .others
            .iter()
            .map(|(k, repos)| {
                let shown: Vec<&str> = repos.iter().take(3).map(String::as_str).collect();
                let more = repos.len().saturating_sub(shown.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("{k} in {}{more}", shown.join(", "))
            })
            .collect();
        format!("; {} by policy-file rules", parts.join("; "))
    }
}

/// The ` created=…  os/arch` or ` index [...]` tail of a line, as the original prints it.
pub fn detail(plan: &RepoPlan, d: &Decision) -> String {
    let created = d.created().map(format_time);
    match d.kind {
        Some(Kind::Image | Kind::Schema1) => format!(
            "  created={:<19}  {}",
            created.as_deref().unwrap_or("?"),
            plan.label(d)
        ),
        Some(Kind::Index) => {
            let c = created
                .map(|c| format!("  created={c:<19}"))
                .unwrap_or_default();
            format!("{c}  {}", plan.label(d))
        }
        _ => String::new(),
    }
}

/// One manifest line of a delete section: `  DRY_RUN: sha256:<12>  repo=<name>…`.
pub fn delete_line(prefix: &str, plan: &RepoPlan, d: &Decision) -> String {
    format!(
        "  {prefix} sha256:{}  repo={:<30}{}",
        d.digest.short(),
        plan.name,
        detail(plan, d)
    )
}

/// Most tag names shown on one line; the rest are counted.
const TAGS_SHOWN: usize = 3;

/// `a,b,c +N more`: a digest's tags on one line.
fn tag_list(tags: &[&str]) -> String {
    let shown = tags[..tags.len().min(TAGS_SHOWN)].join(",");
    match tags.len().saturating_sub(TAGS_SHOWN) {
        0 => shown,
        more => format!("{shown} +{more} more"),
    }
}

/// Writes the preamble and the summary sections that come before any deletion: one line
/// per kept digest with its tags (never one per tag), then the expired hash-tagged images
/// with their tags.
pub fn write_summary(out: &mut dyn Write, h: &Header, plans: &[Arc<RepoPlan>]) -> io::Result<()> {
    if h.dry_run {
        writeln!(out, "Running in dry-run mode. No changes will be made.")?;
        writeln!(out)?;
    }
    writeln!(out, "Running against {} storage", h.storage)?;
    if let Some(f) = h.repo_filter {
        writeln!(out, "Filtering to repository: {f}")?;
    }
    writeln!(out)?;
    writeln!(out, "Version-tagged manifests (always kept):")?;
    if h.summary_only {
        let n: usize = plans
            .iter()
            .map(|p| tagged(p, |t| t.class() == TagClass::Version).len())
            .sum();
        writeln!(out, "  {n} manifests")?;
    } else {
        for plan in plans {
            for (d, tags) in tagged(plan, |t| t.class() == TagClass::Version) {
                writeln!(out, "{}", tagged_line("[keep]", plan, d, &tag_list(&tags)))?;
            }
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "Hash-tagged manifests (keeping {} most recent per repo{}):",
        h.keep.base,
        h.keep.rules_suffix()
    )?;
    if h.summary_only {
        let n: usize = plans
            .iter()
            .map(|p| tagged(p, |t| t.class() == TagClass::Hash && t.kept).len())
            .sum();
        writeln!(out, "  {n} manifests")?;
    } else {
        for plan in plans {
            let mut kept = tagged(plan, |t| t.class() == TagClass::Hash && t.kept);
            kept.sort_by_key(|(d, _)| match plan.reason(d) {
                Reason::HashTagKept { rank } | Reason::HashTagRecent { rank } => rank,
                _ => u32::MAX,
            });
            for (d, tags) in kept {
                writeln!(out, "{}", tagged_line("[keep]", plan, d, &tag_list(&tags)))?;
            }
        }
    }
    if let Some(ev) = h.evidence {
        write_in_use(out, ev, plans, h.summary_only)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Hash-tagged manifests to delete (beyond {} most recent per repo{}):",
        h.keep.base,
        h.keep.rules_suffix()
    )?;
    let prefix = if h.dry_run { "DRY_RUN:" } else { "[delete]" };
    if h.summary_only {
        let n: usize = plans.iter().map(|p| hash_deletes(p).len()).sum();
        writeln!(out, "  {n} manifests")?;
    } else {
        for plan in plans {
            let by_digest = plan.tags_by_digest();
            for d in hash_deletes(plan) {
                let tags = by_digest.get(&d.digest).map(Vec::as_slice).unwrap_or(&[]);
                writeln!(out, "{}", tagged_line(prefix, plan, d, &tag_list(tags)))?;
            }
        }
    }
    Ok(())
}

/// The section of manifests kept on evidence of use (issue 22): each with its reason,
/// after a line counting the evidence and the references to other registries ignored.
fn write_in_use(
    out: &mut dyn Write,
    ev: &crate::evidence::Evidence,
    plans: &[Arc<RepoPlan>],
    summary_only: bool,
) -> io::Result<()> {
    let (pinned, pulls, tag_pulls) = ev.counts();
    writeln!(out)?;
    writeln!(
        out,
        "Kept as in use or pulled recently (evidence: {pinned} pinned digests, {} pulls; {} references to other registries ignored, {} without a digest):",
        pulls + tag_pulls,
        ev.ignored_refs,
        ev.unpinned_refs
    )?;
    let mut n = 0;
    for plan in plans {
        for d in &plan.decisions {
            let reason = plan.reason(d);
            if !matches!(reason, Reason::InUse | Reason::PulledRecently { .. }) {
                continue;
            }
            n += 1;
            if !summary_only {
                writeln!(
                    out,
                    "  [keep] sha256:{}  repo={:<30}{}  ({reason})",
                    d.digest.short(),
                    plan.name,
                    detail(plan, d)
                )?;
            }
        }
    }
    if summary_only {
        writeln!(out, "  {n} manifests")?;
    }
    Ok(())
}

/// A plan's decisions that tags of one kind point to, each with those tags, in the order
/// of each digest's first tag name.
fn tagged(
    plan: &RepoPlan,
    which: impl Fn(&crate::plan::PlannedTag) -> bool,
) -> Vec<(&Decision, Vec<&str>)> {
    let mut out: Vec<(&Decision, Vec<&str>)> = Vec::new();
    let mut at: crate::digest::DigestMap<usize> = Default::default();
    for t in plan.tags.iter().filter(|t| which(t)) {
        let Some(d) = plan.decision(&t.digest) else {
            continue;
        };
        match at.get(&t.digest) {
            Some(i) => out[*i].1.push(&t.name),
            None => {
                at.insert(t.digest, out.len());
                out.push((d, vec![&t.name]));
            }
        }
    }
    out
}

/// The deletions a plan makes for expired hash tags, newest first.
pub fn hash_deletes(plan: &RepoPlan) -> Vec<&Decision> {
    let mut v: Vec<&Decision> = plan
        .decisions
        .iter()
        .filter(|d| d.is_hash_expired())
        .collect();
    v.sort_by_key(|d| match plan.reason(d) {
        Reason::HashTagExpired { rank } => rank,
        _ => u32::MAX,
    });
    v
}

/// A plan's deletions besides expired hash tags, in delete order, in two: the untagged
/// ones (no tag reaches them), and the companions that go with deleted manifests (children
/// of deleted indexes, signatures and referrers of deleted images).
pub fn untagged_and_companions(plan: &RepoPlan) -> (Vec<&Decision>, Vec<&Decision>) {
    plan.delete_decisions()
        .filter(|d| !d.is_hash_expired())
        .partition(|d| plan.reason(d) == Reason::Untagged)
}

/// A line naming a manifest with its tags: `  [keep] sha256:…  repo=…  tag=…  created=…`.
fn tagged_line(prefix: &str, plan: &RepoPlan, d: &Decision, tags: &str) -> String {
    format!(
        "  {prefix} sha256:{}  repo={:<30}  tag={:<20}{}",
        d.digest.short(),
        plan.name,
        tags,
        detail(plan, d)
    )
}

/// The heading of the section of companions: what they go with.
const COMPANIONS: &str =
    "Deleted with them (children of deleted indexes, signatures and referrers of deleted images)";

/// The headings of the untagged section and of the companions, which also head the
/// deletion lines of a real run; gives the number of deletions they name.
pub fn write_untagged_heading(out: &mut dyn Write, plans: &[Arc<RepoPlan>]) -> io::Result<usize> {
    let (mut untagged, mut companions) = (0, 0);
    for plan in plans {
        let (u, c) = untagged_and_companions(plan);
        untagged += u.len();
        companions += c.len();
    }
    writeln!(out)?;
    writeln!(
        out,
        "Untagged manifests to delete ({untagged} in registry):"
    )?;
    if companions > 0 {
        writeln!(out, "{COMPANIONS}: {companions}")?;
    }
    Ok(untagged + companions)
}

/// One companion's line: what it goes with, and its attachment tags.
fn companion_line(prefix: &str, plan: &RepoPlan, d: &Decision, tags: &[&str]) -> String {
    let tags = if tags.is_empty() {
        String::new()
    } else {
        format!("  tag={}", tag_list(tags))
    };
    let reason = plan.reason(d);
    let related = match reason {
        Reason::ChildOfDeleted { parent: x }
        | Reason::ReferrerOfDeleted { subject: x }
        | Reason::AttachmentOfDeleted { subject: x } => format!(" sha256:{}", x.short()),
        _ => String::new(),
    };
    format!(
        "{}{tags}  ({}{related})",
        delete_line(prefix, plan, d),
        reason.name()
    )
}

/// One row per repository and a total: what the plan keeps, deletes and frees (a row's
/// bytes are the blobs only that repository's deleted manifests use; the total is the
/// registry-wide estimate, where a blob shared across repositories counts once and only
/// when no kept manifest anywhere uses it).
pub fn write_repository_table(
    out: &mut dyn Write,
    plans: &[Arc<RepoPlan>],
    freed: &Freed,
) -> io::Result<()> {
    writeln!(out)?;
    writeln!(out, "Per repository:")?;
    writeln!(
        out,
        "  {:<40} {:>10} {:>10} {:>10} {:>12}",
        "repository", "manifests", "keep", "delete", "frees"
    )?;
    let (mut n, mut k, mut del) = (0, 0, 0);
    for p in plans {
        let (m, d) = (p.decisions.len(), p.delete_count());
        let name = if p.problems.is_empty() {
            p.name.to_string()
        } else {
            format!("{} (failed closed)", p.name)
        };
        writeln!(
            out,
            "  {name:<40} {m:>10} {:>10} {d:>10} {:>12}",
            m - d,
            indicatif::BinaryBytes(p.bytes_freed).to_string()
        )?;
        n += m;
        k += m - d;
        del += d;
    }
    writeln!(
        out,
        "  {:<40} {n:>10} {k:>10} {del:>10} {:>12}",
        format!("total ({} repositories)", plans.len()),
        indicatif::BinaryBytes(freed.bytes).to_string()
    )
}

/// What garbage-collect is expected to free after the plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct Freed {
    /// Bytes of blobs no kept manifest references.
    pub bytes: u64,
    /// Such blobs whose size the manifests do not give.
    pub unsized_blobs: u64,
    /// When only `done` of `total` planned deletions were done, the estimate is an
    /// upper bound.
    pub upper_bound_of: Option<(usize, usize)>,
}

/// Writes the dry-run listing of untagged deletions and their companions, the table per
/// repository and the closing lines.
pub fn write_dry_run(
    out: &mut dyn Write,
    plans: &[Arc<RepoPlan>],
    freed: &Freed,
    summary_only: bool,
) -> io::Result<()> {
    let split: Vec<_> = plans
        .iter()
        .map(|p| (p, untagged_and_companions(p)))
        .collect();
    let untagged: usize = split.iter().map(|(_, (u, _))| u.len()).sum();
    let companions: usize = split.iter().map(|(_, (_, c))| c.len()).sum();
    writeln!(out)?;
    writeln!(
        out,
        "Untagged manifests to delete ({untagged} in registry):"
    )?;
    if !summary_only {
        let mut i = 0;
        for (plan, (deletes, _)) in &split {
            for d in deletes {
                i += 1;
                writeln!(
                    out,
                    "  Cleaning {i} of {untagged} ..not really, due to dry-run mode"
                )?;
                writeln!(out, "{}", delete_line("DRY_RUN:", plan, d))?;
            }
        }
    }
    if companions > 0 {
        writeln!(out)?;
        writeln!(out, "{COMPANIONS} ({companions}):")?;
        if !summary_only {
            for (plan, (_, deletes)) in &split {
                let by_digest = plan.tags_by_digest();
                for d in deletes {
                    let tags = by_digest.get(&d.digest).map(Vec::as_slice).unwrap_or(&[]);
                    writeln!(out, "{}", companion_line("DRY_RUN:", plan, d, tags))?;
                }
            }
        }
    }
    let all: usize = plans.iter().map(|p| p.delete_count()).sum();
    write_repository_table(out, plans, freed)?;
    writeln!(out)?;
    if all == 0 {
        writeln!(out, "No manifests without tags found. Nothing to do.")?;
    } else {
        writeln!(out, "Job done, Cleaned 0 of {all} manifests.")?;
        writeln!(out, "Dry run: {all} manifests would be deleted.")?;
    }
    write_gc_hint(out, freed, all > 0)
}

/// The closing hint: blobs are freed only by a garbage collection, `regsweep gc` (the
/// original's first words kept, for scripts that look for them); with the estimate of what
/// it frees when anything is deleted.
pub fn write_gc_hint(out: &mut dyn Write, freed: &Freed, deletes: bool) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "Please run a garbage-collect on the registry now to free up disk space: regsweep gc \
         --registry-stopped with the registry stopped or read-only (the same storage options as \
         this run), or regsweep gc --online --registry-config <config.yml> while it serves."
    )?;
    if deletes {
        let extra = if freed.unsized_blobs > 0 {
            format!(
                ", plus {} blobs of unknown size (schema 1 layers)",
                freed.unsized_blobs
            )
        } else {
            String::new()
        };
        match freed.upper_bound_of {
            None => writeln!(
                out,
                "Estimated space it frees: {} ({} bytes){extra}.",
                indicatif::BinaryBytes(freed.bytes),
                freed.bytes
            )?,
            Some((done, total)) => writeln!(
                out,
                "Estimated space it frees: at most {} ({} bytes){extra}: only {done} of the {total} planned deletions were done.",
                indicatif::BinaryBytes(freed.bytes),
                freed.bytes
            )?,
        }
    }
    Ok(())
}

/// The closing lines of a real run: counts, failed, skipped and unattempted deletions.
pub fn write_closing(
    out: &mut dyn Write,
    plans: &[Arc<RepoPlan>],
    outcome: &Outcome,
    total: usize,
    freed: &Freed,
) -> io::Result<()> {
    write_repository_table(out, plans, freed)?;
    writeln!(out)?;
    writeln!(
        out,
        "Job done, Cleaned {} of {total} manifests.",
        outcome.deleted + outcome.already_gone
    )?;
    if outcome.already_gone > 0 {
        writeln!(out, "({} of them were already gone.)", outcome.already_gone)?;
    }
    if !outcome.failed.is_empty() {
        // Each is listed once above, as it happened (and on stderr).
        writeln!(
            out,
            "Failed deletions: {} (each listed above).",
            outcome.failed.len()
        )?;
    }
    if !outcome.skipped.is_empty() {
        writeln!(out, "Skipped deletions ({}):", outcome.skipped.len())?;
        for m in &outcome.skipped {
            writeln!(out, "  {}  repo={}  {}", m.digest, m.repository, m.why)?;
        }
    }
    if outcome.not_attempted > 0 {
        writeln!(
            out,
            "Not attempted: {} (a parent's delete failed, or the run stopped).",
            outcome.not_attempted
        )?;
        write_not_attempted(out, outcome)?;
    }
    let done = outcome.deleted + outcome.already_gone;
    if done < total {
        write_accounting(out, outcome)?;
    }
    if done < total && outcome.deleted > 0 {
        // Not everything planned went: the plan's estimate is an upper bound.
        let partial = Freed {
            upper_bound_of: Some((done, total)),
            ..*freed
        };
        return write_gc_hint(out, &partial, true);
    }
    write_gc_hint(out, freed, outcome.deleted > 0)
}

/// Not-attempted deletions listed in the closing lines; the rest are counted (all of them
/// are in `--output json` and the journal).
const NOT_ATTEMPTED_LISTED: usize = 100;

/// The not-attempted deletions, one line each (the first [`NOT_ATTEMPTED_LISTED`]).
fn write_not_attempted(out: &mut dyn Write, outcome: &Outcome) -> io::Result<()> {
    let not: Vec<_> = outcome
        .deletions
        .iter()
        .filter(|d| d.result == "not-attempted")
        .collect();
    for d in not.iter().take(NOT_ATTEMPTED_LISTED) {
        writeln!(out, "  {}  repo={}", d.digest, d.repository)?;
    }
    if not.len() > NOT_ATTEMPTED_LISTED {
        writeln!(
            out,
            "  ... and {} more (every one in --output json and the journal)",
            not.len() - NOT_ATTEMPTED_LISTED
        )?;
    }
    Ok(())
}

/// One line that accounts for every planned deletion: each has exactly one outcome.
fn write_accounting(out: &mut dyn Write, outcome: &Outcome) -> io::Result<()> {
    let count = |r: &str| outcome.deletions.iter().filter(|d| d.result == r).count();
    writeln!(
        out,
        "Of the {} planned deletions: {} cleaned, {} failed, {} skipped, {} not attempted.",
        outcome.planned,
        count("deleted") + count("already-gone"),
        count("failed"),
        count("skipped"),
        count("not-attempted")
    )
}
