//! The JSON report: the base and per-repository policy, totals, per-repository counts,
//! every tag and every decision with its reason, streamed while written. It formats what
//! the plans say; it decides nothing.

use std::sync::Arc;

use serde::Serialize;

use crate::digest::{Digest, DigestMap};
use crate::meta::Kind;
use crate::outcome::Outcome;
use crate::plan::{Decision, PlannedTag, Policies, Reason, RepoPlan, TagClass, Verdict};
use crate::timefmt::rfc3339;

/// Top-level document.
#[derive(Serialize)]
pub struct Report<'a> {
    /// regsweep version.
    pub regsweep: &'static str,
    /// Whether anything was deleted.
    pub dry_run: bool,
    /// The base policy (the flags); each repository's own is `repositories[].policy`.
    pub policy: PolicyView<'a>,
    /// Counts over all repositories.
    pub totals: Totals,
    /// One entry per repository, sorted by name.
    pub repositories: Vec<RepoView<'a>>,
    /// Problems outside any single repository.
    pub warnings: &'a [String],
    /// What the deletion pass did (absent in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'a Outcome>,
    /// S3 requests by kind and bytes read (S3 storage only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_requests: Option<serde_json::Value>,
    /// The evidence of use given (`--keep-in-use`, `--pull-log`), absent when none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceView>,
}

/// What the evidence of use held.
#[derive(Serialize)]
pub struct EvidenceView {
    /// Digests of this registry that workloads pin.
    pub pinned_digests: usize,
    /// Pulls recorded (last one per repository and digest or tag).
    pub pulls: usize,
    /// References to other registries, ignored.
    pub references_ignored: usize,
    /// References to this registry without a digest, ignored.
    pub references_without_digest: usize,
    /// `--keep-pulled-within` in seconds (0: none).
    pub pulled_within_seconds: i64,
    /// From when pull evidence exists (RFC 3339).
    pub evidence_from: Option<String>,
}

impl EvidenceView {
    /// The view of `ev`, when evidence was asked for.
    pub fn of(ev: &crate::evidence::Evidence) -> Option<EvidenceView> {
        if !ev.is_asked() {
            return None;
        }
        let (pinned, pulls, tag_pulls) = ev.counts();
        Some(EvidenceView {
            pinned_digests: pinned,
            pulls: pulls + tag_pulls,
            references_ignored: ev.ignored_refs,
            references_without_digest: ev.unpinned_refs,
            pulled_within_seconds: ev.window_secs,
            evidence_from: ev.covered_from.and_then(rfc3339),
        })
    }
}

/// The policy as the report states it.
#[derive(Serialize)]
pub struct PolicyView<'a> {
    /// `HASH_TAG_PATTERN` (the first pattern).
    pub hash_tag_pattern: &'a str,
    /// Every hash-tag pattern.
    pub hash_tag_patterns: &'a [String],
    /// `--keep-tags`.
    pub keep_tags: Option<&'a str>,
    /// `--older-than` in seconds (0: none).
    pub older_than_seconds: i64,
    /// The repository globs of each policy-file rule, in order.
    pub rules: Vec<Vec<String>>,
    /// `HASH_TAG_KEEP`.
    pub hash_tag_keep: usize,
    /// `--min-age` in seconds.
    pub min_age_seconds: i64,
}

/// The policy that planned one repository (a policy-file rule's, or the base one).
#[derive(Serialize)]
pub struct RepoPolicyView {
    /// Index of the policy-file rule that applies (absent: the base policy of the flags).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// Hash-tag patterns.
    pub hash_tag_patterns: Vec<String>,
    /// Hash-tagged images kept.
    pub hash_tag_keep: usize,
    /// `keep_tags`.
    pub keep_tags: Option<String>,
    /// `older_than` in seconds (0: none).
    pub older_than_seconds: i64,
    /// `min_age` in seconds.
    pub min_age_seconds: i64,
}

impl RepoPolicyView {
    fn of(policies: &Policies, name: &str) -> RepoPolicyView {
        let p = policies.for_repo(name);
        RepoPolicyView {
            rule: policies.rule_of(name),
            hash_tag_patterns: std::iter::once(&p.hash_tag)
                .chain(&p.extra_hash_tags)
                .map(|r| r.as_str().to_owned())
                .collect(),
            hash_tag_keep: p.keep,
            keep_tags: p.keep_tags.as_ref().map(|r| r.as_str().to_owned()),
            older_than_seconds: p.older_than_secs,
            min_age_seconds: p.min_age_secs,
        }
    }
}

/// Counts over all repositories.
#[derive(Serialize, Default)]
pub struct Totals {
    /// Repositories planned.
    pub repositories: usize,
    /// Revisions seen.
    pub manifests: usize,
    /// Revisions kept.
    pub keep: usize,
    /// Revisions to delete.
    pub delete: usize,
    /// Repositories where nothing is deleted because something could not be trusted.
    pub failed_closed_repositories: usize,
    /// Bytes garbage-collect frees once the plan is carried out: blobs (manifest bodies,
    /// configs, layers) that no kept manifest of any repository in the run references.
    pub bytes_freed: u64,
    /// Blobs of deleted manifests whose size is unknown (schema 1 layers), not in bytes_freed.
    pub unsized_blobs: u64,
}

/// One repository.
#[derive(Serialize)]
pub struct RepoView<'a> {
    /// Name.
    pub name: &'a str,
    /// Revisions seen.
    pub manifests: usize,
    /// Revisions kept.
    pub keep: usize,
    /// Revisions to delete.
    pub delete: usize,
    /// True when nothing in it is deleted because something could not be trusted.
    pub failed_closed: bool,
    /// The policy that planned it.
    pub policy: RepoPolicyView,
    /// Bytes of blobs that only its deleted manifests reference (within this repository).
    pub bytes_freed: u64,
    /// Why it failed closed.
    pub problems: &'a [String],
    /// Observations that changed no verdict.
    pub notes: &'a [String],
    /// Every tag and what became of it.
    pub tags: Tags<'a>,
    /// Digests to delete, parents before children.
    pub delete_order: DeleteOrder<'a>,
    /// One decision per revision, sorted by digest.
    pub decisions: Decisions<'a>,
}

/// A plan's tags, serialized one by one (never all materialized).
pub struct Tags<'a>(&'a RepoPlan);

impl Serialize for Tags<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.tags.iter().map(TagView::from))
    }
}

/// A plan's delete order, serialized one by one.
pub struct DeleteOrder<'a>(&'a RepoPlan);

impl Serialize for DeleteOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.delete_digests())
    }
}

/// A plan's decisions, each turned into its view only while it is written: the report of
/// a registry with millions of manifests never holds them all as views.
pub struct Decisions<'a>(&'a RepoPlan);

impl Serialize for Decisions<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        // Tags by digest once per repository, not a scan of all tags per decision.
        let tags = p.tags_by_digest();
        s.collect_seq(p.decisions.iter().map(|d| decision_view(p, d, &tags)))
    }
}

/// One tag.
#[derive(Serialize)]
pub struct TagView<'a> {
    /// Tag name.
    pub name: &'a str,
    /// Current target.
    pub digest: Digest,
    /// version, hash or attachment (with its subject).
    #[serde(flatten)]
    pub class: TagClass,
    /// Hash tags only: rank of its image among hash-tagged images, newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    /// Whether the tag survives the plan.
    pub kept: bool,
}

impl<'a> From<&'a PlannedTag> for TagView<'a> {
    fn from(t: &'a PlannedTag) -> Self {
        TagView {
            name: &t.name,
            digest: t.digest,
            class: t.class(),
            rank: t.rank,
            kept: t.kept,
        }
    }
}

/// One decision.
#[derive(Serialize)]
pub struct DecisionView<'a> {
    /// Revision digest.
    pub digest: Digest,
    /// keep or delete.
    pub verdict: Verdict,
    /// Why, with the related digest where there is one.
    #[serde(flatten)]
    pub reason: Reason,
    /// image, index, schema1, unknown; null when unreadable.
    pub kind: Option<Kind>,
    /// Image creation time.
    pub created: Option<String>,
    /// When the revision link was written.
    pub linked_at: Option<String>,
    /// `os/arch`, or `index [...]`.
    pub platform: &'a str,
    /// Tags pointing at it now.
    pub tags: Vec<&'a str>,
}

fn decision_view<'a>(
    plan: &'a RepoPlan,
    d: &Decision,
    tags: &DigestMap<Vec<&'a str>>,
) -> DecisionView<'a> {
    DecisionView {
        digest: d.digest,
        verdict: d.verdict,
        reason: plan.reason(d),
        kind: d.kind,
        created: d.created().and_then(rfc3339),
        linked_at: rfc3339(d.linked_at()),
        platform: plan.label(d),
        tags: tags.get(&d.digest).cloned().unwrap_or_default(),
    }
}

/// Builds the report over all plans.
pub fn build<'a>(
    plans: &'a [Arc<RepoPlan>],
    warnings: &'a [String],
    dry_run: bool,
    policy: PolicyView<'a>,
    policies: &Policies,
    outcome: Option<&'a Outcome>,
) -> Report<'a> {
    let mut totals = Totals::default();
    let repositories = plans
        .iter()
        .map(|p| {
            let delete = p.delete_count();
            let view = RepoView {
                name: &p.name,
                manifests: p.decisions.len(),
                keep: p.decisions.len() - delete,
                delete,
                failed_closed: !p.problems.is_empty(),
                policy: RepoPolicyView::of(policies, &p.name),
                bytes_freed: p.bytes_freed,
                problems: &p.problems,
                notes: &p.notes,
                tags: Tags(p),
                delete_order: DeleteOrder(p),
                decisions: Decisions(p),
            };
            totals.repositories += 1;
            totals.manifests += view.manifests;
            totals.keep += view.keep;
            totals.delete += view.delete;
            totals.failed_closed_repositories += usize::from(view.failed_closed);
            view
        })
        .collect();
    Report {
        regsweep: env!("CARGO_PKG_VERSION"),
        dry_run,
        policy,
        totals,
        repositories,
        warnings,
        outcome,
        s3_requests: None,
        evidence: None,
    }
}
