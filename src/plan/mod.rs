//! Planner: a pure function from one repository's snapshot and the policy to a plan (a
//! verdict and a reason per revision, and the delete order). No I/O, no clock: `now` comes
//! in with the policy. The rules are in docs/POLICY.md.

pub mod freed;
mod order;
mod policy;

pub use order::descendants;

use std::sync::Arc;

use serde::Serialize;

use crate::digest::{Digest, DigestMap, DigestSet};
use crate::meta::{Kind, Meta, Platform, Snapshot};
pub use policy::{
    DEFAULT_HASH_TAG_PATTERN, Policies, Policy, Rule, TagClass, attachment_subject, classify_tag,
};

/// Why a manifest is kept or deleted; the first reason found wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Reason {
    /// A tag that is not a hash tag points to it.
    VersionTag,
    /// One of the newest hash-tagged images (rank 0 is the newest).
    HashTagKept {
        /// Position among the repository's hash-tagged images, newest first.
        rank: u32,
    },
    /// A tag matching `--keep-tags` points to it.
    KeepTag,
    /// Beyond the newest N hash-tagged images, but younger than `--older-than`.
    HashTagRecent {
        /// Position among the repository's hash-tagged images, newest first.
        rank: u32,
    },
    /// Its revision link is younger than `--min-age`: it may be mid-push.
    GracePeriod,
    /// A workload names it by digest (`--keep-in-use`).
    InUse,
    /// It was pulled inside `--keep-pulled-within`.
    PulledRecently {
        /// When (unix seconds).
        at: i64,
        /// Where the pull was seen.
        source: crate::evidence::Source,
    },
    /// A kept index lists it.
    ChildOf {
        /// The kept index.
        parent: Digest,
    },
    /// A kept manifest mentions its digest outside any field that structures it (an
    /// annotation, a key the registry folds, an unknown field): kept by mention.
    MentionedBy {
        /// The kept manifest.
        parent: Digest,
    },
    /// Its `subject` is kept.
    ReferrerOf {
        /// The kept subject.
        subject: Digest,
    },
    /// A `sha256-<subject>[.sig|.att|.sbom]` tag points to it and the subject is kept.
    AttachmentOf {
        /// The kept subject.
        subject: Digest,
    },
    /// An attachment tag points to it whose subject is no revision of this repository
    /// (signatures stored apart, cosign's `COSIGN_REPOSITORY`): a live tag.
    ForeignAttachment {
        /// The subject, which lives in another repository (or nowhere this run can see).
        subject: Digest,
    },
    /// Something in the repository could not be trusted; see the repository's problems.
    FailClosed,
    /// No tag reaches it.
    Untagged,
    /// Only hash tags beyond the newest N point to it.
    HashTagExpired {
        /// Position among the repository's hash-tagged images, newest first.
        rank: u32,
    },
    /// Only an index deleted in this run lists it.
    ChildOfDeleted {
        /// The deleted index.
        parent: Digest,
    },
    /// Its `subject` is deleted or absent.
    ReferrerOfDeleted {
        /// The deleted or absent subject.
        subject: Digest,
    },
    /// It is an attachment tag's target and the subject, a revision of this repository,
    /// is deleted in this run.
    AttachmentOfDeleted {
        /// The deleted subject.
        subject: Digest,
    },
    /// Deletable, but left for a later run: not part of the interrupted run being resumed.
    Deferred,
}

impl Reason {
    /// The reason's name as reports give it (`version-tag`, `child-of`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Reason::VersionTag => "version-tag",
            Reason::HashTagKept { .. } => "hash-tag-kept",
            Reason::KeepTag => "keep-tag",
            Reason::HashTagRecent { .. } => "hash-tag-recent",
            Reason::GracePeriod => "grace-period",
            Reason::InUse => "in-use",
            Reason::PulledRecently { .. } => "pulled-recently",
            Reason::ChildOf { .. } => "child-of",
            Reason::MentionedBy { .. } => "mentioned-by",
            Reason::ReferrerOf { .. } => "referrer-of",
            Reason::AttachmentOf { .. } => "attachment-of",
            Reason::ForeignAttachment { .. } => "foreign-attachment",
            Reason::FailClosed => "fail-closed",
            Reason::Untagged => "untagged",
            Reason::HashTagExpired { .. } => "hash-tag-expired",
            Reason::ChildOfDeleted { .. } => "child-of-deleted",
            Reason::ReferrerOfDeleted { .. } => "referrer-of-deleted",
            Reason::AttachmentOfDeleted { .. } => "attachment-of-deleted",
            Reason::Deferred => "deferred",
        }
    }
}

impl std::fmt::Display for Reason {
    /// `child-of sha256:…`, `hash-tag-kept rank 3`, `grace-period`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())?;
        match self {
            Reason::HashTagKept { rank }
            | Reason::HashTagRecent { rank }
            | Reason::HashTagExpired { rank } => write!(f, " rank {rank}"),
            Reason::ChildOf { parent }
            | Reason::MentionedBy { parent }
            | Reason::ChildOfDeleted { parent } => {
                write!(f, " {parent}")
            }
            Reason::ReferrerOf { subject }
            | Reason::AttachmentOf { subject }
            | Reason::ForeignAttachment { subject }
            | Reason::ReferrerOfDeleted { subject }
            | Reason::AttachmentOfDeleted { subject } => write!(f, " {subject}"),
            Reason::PulledRecently { at, source } => write!(
                f,
                " {} ({})",
                crate::report::rfc3339(*at).unwrap_or_else(|| at.to_string()),
                source.name()
            ),
            _ => Ok(()),
        }
    }
}

/// Keep or delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Stays.
    Keep,
    /// Deleted through the registry API.
    Delete,
}

/// [`Reason`] without its payload, one byte in a [`Decision`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Code {
    VersionTag,
    HashTagKept,
    KeepTag,
    HashTagRecent,
    GracePeriod,
    InUse,
    PulledRecentlyLog,
    PulledRecentlyEvents,
    ChildOf,
    MentionedBy,
    ReferrerOf,
    AttachmentOf,
    ForeignAttachment,
    FailClosed,
    Untagged,
    HashTagExpired,
    ChildOfDeleted,
    ReferrerOfDeleted,
    AttachmentOfDeleted,
    Deferred,
}

/// No creation date, in [`Decision`]'s compact `created`.
const NO_DATE: i64 = i64::MIN;

/// The verdict on one revision, with what the report shows of it; compact, since a
/// registry's plans hold one per manifest (56 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The revision's digest.
    pub digest: Digest,
    /// Image creation time, [`NO_DATE`] when unknown.
    created: i64,
    /// When its revision link was written (unix seconds, clamped to `u32`).
    linked_at: u32,
    /// Index into [`RepoPlan::labels`] of its platform label (`linux/amd64`, `index [...]`).
    pub label: u32,
    /// The reason's payload: a rank, or the related digest's index (see [`RepoPlan::related`]).
    arg: u32,
    /// Keep or delete.
    pub verdict: Verdict,
    /// Image, index, schema 1, unknown; `None` when unreadable.
    pub kind: Option<Kind>,
    /// Why, without payload.
    code: Code,
}

impl Decision {
    /// Image creation time (unix seconds), for an index that of its representative child.
    pub fn created(&self) -> Option<i64> {
        (self.created != NO_DATE).then_some(self.created)
    }

    /// When its revision link was written (unix seconds).
    pub fn linked_at(&self) -> i64 {
        i64::from(self.linked_at)
    }

    /// Whether it goes because only expired hash tags point to it.
    pub fn is_hash_expired(&self) -> bool {
        self.verdict == Verdict::Delete && self.code == Code::HashTagExpired
    }
}

/// What a tag is to the plan, without an attachment's subject (see [`PlannedTag::class`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TagKind {
    Version,
    Hash,
    Attachment,
}

/// A tag as the plan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedTag {
    /// Tag name.
    pub name: Box<str>,
    /// Current target.
    pub digest: Digest,
    /// Hash tags only: rank of its image among hash-tagged images, newest first.
    pub rank: Option<u32>,
    /// Version, hash or attachment tag.
    kind: TagKind,
    /// Whether the tag survives the plan.
    pub kept: bool,
}

impl PlannedTag {
    /// Version, hash or attachment tag (with the attachment's subject, read off the name).
    pub fn class(&self) -> TagClass {
        match self.kind {
            TagKind::Version => TagClass::Version,
            TagKind::Hash => TagClass::Hash,
            TagKind::Attachment => attachment_subject(&self.name)
                .map_or(TagClass::Version, |subject| TagClass::Attachment {
                    subject,
                }),
        }
    }
}

/// The plan for one repository.
#[derive(Clone, Debug, Default)]
pub struct RepoPlan {
    /// Repository name.
    pub name: Arc<str>,
    /// One decision per revision, sorted by digest.
    pub decisions: Vec<Decision>,
    /// Indexes into `decisions` of those to delete, parents before children.
    delete_order: Vec<u32>,
    /// For each of `delete_order`, its layer: a layer may go only after the one before it.
    delete_layers: Vec<u32>,
    /// Digests that reasons name and that are not revisions (an absent subject); a
    /// reason's index `i >= decisions.len()` means `related[i - decisions.len()]`.
    related: Vec<Digest>,
    /// Every tag, sorted by name.
    pub tags: Vec<PlannedTag>,
    /// Interned platform labels; index 0 is the empty label.
    pub labels: Vec<String>,
    /// Why the repository failed closed; empty when it did not.
    pub problems: Vec<String>,
    /// Observations that did not change any verdict (a tag pointing at no revision).
    pub notes: Vec<String>,
    /// Bytes of blobs that only this plan's deleted manifests reference in this repository.
    pub bytes_freed: u64,
    /// Blobs of deleted manifests whose size is unknown (schema 1 layers).
    pub unsized_blobs: u32,
}

impl RepoPlan {
    /// The decision on `d`, if `d` is a revision of this repository.
    pub fn decision(&self, d: &Digest) -> Option<&Decision> {
        self.index_of(d).map(|i| &self.decisions[i])
    }

    fn index_of(&self, d: &Digest) -> Option<usize> {
        self.decisions.binary_search_by(|x| x.digest.cmp(d)).ok()
    }

    /// The tag names on each digest (each list sorted, as the tags are).
    pub fn tags_by_digest(&self) -> DigestMap<Vec<&str>> {
        let mut m: DigestMap<Vec<&str>> = DigestMap::default();
        for t in &self.tags {
            m.entry(t.digest).or_default().push(&t.name);
        }
        m
    }

    /// The platform label of a decision.
    pub fn label(&self, d: &Decision) -> &str {
        self.labels.get(d.label as usize).map_or("", String::as_str)
    }

    /// Number of revisions to delete.
    pub fn delete_count(&self) -> usize {
        self.delete_order.len()
    }

    /// The digests to delete, parents before children.
    pub fn delete_digests(&self) -> impl ExactSizeIterator<Item = Digest> + '_ {
        self.delete_order
            .iter()
            .map(|i| self.decisions[*i as usize].digest)
    }

    /// The decisions to delete, parents before children.
    pub fn delete_decisions(&self) -> impl ExactSizeIterator<Item = &Decision> + '_ {
        self.delete_order
            .iter()
            .map(|i| &self.decisions[*i as usize])
    }

    /// Each digest to delete with its layer: a layer may go only after the one before it.
    pub fn deletes(&self) -> impl Iterator<Item = (Digest, u32)> + '_ {
        self.delete_digests()
            .zip(self.delete_layers.iter().copied())
    }

    /// Why `d` is kept or deleted, with the related digest where there is one.
    pub fn reason(&self, d: &Decision) -> Reason {
        let rank = d.arg;
        let related = || {
            let i = d.arg as usize;
            match self.decisions.get(i) {
                Some(x) => x.digest,
                None => self
                    .related
                    .get(i - self.decisions.len())
                    .copied()
                    .unwrap_or(Digest([0; 32])),
            }
        };
        match d.code {
            Code::VersionTag => Reason::VersionTag,
            Code::HashTagKept => Reason::HashTagKept { rank },
            Code::KeepTag => Reason::KeepTag,
            Code::HashTagRecent => Reason::HashTagRecent { rank },
            Code::GracePeriod => Reason::GracePeriod,
            Code::InUse => Reason::InUse,
            Code::PulledRecentlyLog => Reason::PulledRecently {
                at: i64::from(d.arg),
                source: crate::evidence::Source::PullLog,
            },
            Code::PulledRecentlyEvents => Reason::PulledRecently {
                at: i64::from(d.arg),
                source: crate::evidence::Source::PullEvents,
            },
            Code::ChildOf => Reason::ChildOf { parent: related() },
            Code::MentionedBy => Reason::MentionedBy { parent: related() },
            Code::ReferrerOf => Reason::ReferrerOf { subject: related() },
            Code::AttachmentOf => Reason::AttachmentOf { subject: related() },
            Code::ForeignAttachment => Reason::ForeignAttachment { subject: related() },
            Code::FailClosed => Reason::FailClosed,
            Code::Untagged => Reason::Untagged,
            Code::HashTagExpired => Reason::HashTagExpired { rank },
            Code::ChildOfDeleted => Reason::ChildOfDeleted { parent: related() },
            Code::ReferrerOfDeleted => Reason::ReferrerOfDeleted { subject: related() },
            Code::AttachmentOfDeleted => Reason::AttachmentOfDeleted { subject: related() },
            Code::Deferred => Reason::Deferred,
        }
    }

    /// The compact form of `r`; digests not among the revisions go to `related`.
    fn encode(&mut self, r: Reason) -> (Code, u32) {
        let mut at = |d: Digest| -> u32 {
            let i = match self.index_of(&d) {
                Some(i) => i,
                None => match self.related.iter().position(|x| *x == d) {
                    Some(k) => self.decisions.len() + k,
                    None => {
                        self.related.push(d);
                        self.decisions.len() + self.related.len() - 1
                    }
                },
            };
            u32::try_from(i).unwrap_or(u32::MAX)
        };
        match r {
            Reason::VersionTag => (Code::VersionTag, 0),
            Reason::HashTagKept { rank } => (Code::HashTagKept, rank),
            Reason::KeepTag => (Code::KeepTag, 0),
            Reason::HashTagRecent { rank } => (Code::HashTagRecent, rank),
            Reason::GracePeriod => (Code::GracePeriod, 0),
            Reason::InUse => (Code::InUse, 0),
            Reason::PulledRecently { at, source } => match source {
                crate::evidence::Source::PullLog => (Code::PulledRecentlyLog, compact_time(at)),
                crate::evidence::Source::PullEvents => {
                    (Code::PulledRecentlyEvents, compact_time(at))
                }
            },
            Reason::ChildOf { parent } => (Code::ChildOf, at(parent)),
            Reason::MentionedBy { parent } => (Code::MentionedBy, at(parent)),
            Reason::ReferrerOf { subject } => (Code::ReferrerOf, at(subject)),
            Reason::AttachmentOf { subject } => (Code::AttachmentOf, at(subject)),
            Reason::ForeignAttachment { subject } => (Code::ForeignAttachment, at(subject)),
            Reason::FailClosed => (Code::FailClosed, 0),
            Reason::Untagged => (Code::Untagged, 0),
            Reason::HashTagExpired { rank } => (Code::HashTagExpired, rank),
            Reason::ChildOfDeleted { parent } => (Code::ChildOfDeleted, at(parent)),
            Reason::ReferrerOfDeleted { subject } => (Code::ReferrerOfDeleted, at(subject)),
            Reason::AttachmentOfDeleted { subject } => (Code::AttachmentOfDeleted, at(subject)),
            Reason::Deferred => (Code::Deferred, 0),
        }
    }

    /// The same plan deleting only what `allowed` admits; the rest is kept as deferred.
    pub fn restrict_to(&self, allowed: impl Fn(&Digest) -> bool) -> RepoPlan {
        let mut p = self.clone();
        let mut kept = DigestSet::default();
        p.delete_order.clear();
        p.delete_layers.clear();
        for (i, layer) in self.delete_order.iter().zip(&self.delete_layers) {
            let d = &mut p.decisions[*i as usize];
            if allowed(&d.digest) {
                p.delete_order.push(*i);
                p.delete_layers.push(*layer);
            } else {
                kept.insert(d.digest);
                d.verdict = Verdict::Keep;
                d.code = Code::Deferred;
                d.arg = 0;
            }
        }
        for t in &mut p.tags {
            t.kept = t.kept || kept.contains(&t.digest);
        }
        p
    }
}

/// Plans one repository: which revisions stay, which go, and why (docs/POLICY.md).
pub fn plan_repository(snap: &Snapshot, policy: &Policy) -> RepoPlan {
    let rec = &snap.record;
    let mut plan = RepoPlan {
        name: rec.name.clone(),
        labels: vec![String::new()],
        problems: rec.problems.clone(),
        ..RepoPlan::default()
    };
    let revisions: DigestSet = rec.revisions.iter().map(|r| r.digest).collect();

    // Rule 3: rank hash-tagged images (distinct digests), newest first.
    let classes: Vec<TagClass> = rec
        .tags
        .iter()
        .map(|t| classify_tag(&t.name, policy))
        .collect();
    let (ranks, undated) = rank_hash_images(snap, &classes);

    // Rule 7: anything unreadable that could be a parent makes the whole repository opaque.
    let mut targets: Vec<Digest> = rec.revisions.iter().map(|r| r.digest).collect();
    targets.extend(rec.tags.iter().map(|t| t.digest));
    for d in &targets {
        if let Some(Meta::Bad(why)) = snap.manifests.get(d) {
            plan.problems.push(why.clone());
        }
    }
    // Rule 3 ranks by the config's date: a hash-tagged image whose config cannot be
    // trusted would be ranked by push time instead, silently: fail closed.
    for d in &undated {
        match snap.date_problem(d) {
            Some(why) => plan
                .problems
                .push(format!("hash-tagged image {d} cannot be ranked: {why}")),
            None if snap.manifest(d).is_some() => plan.notes.push(format!(
                "hash-tagged image {d} has no creation date in its config: ranked by its tag's push time"
            )),
            None => {}
        }
    }
    plan.problems.sort();
    plan.problems.dedup();
    for t in &rec.tags {
        if !revisions.contains(&t.digest) {
            plan.notes.push(format!(
                "tag {} points to {} which has no revision link",
                t.name, t.digest
            ));
        }
    }

    let mut keep = Reach::new(snap);
    if !plan.problems.is_empty() {
        for r in &rec.revisions {
            keep.mark(r.digest, Reason::FailClosed);
        }
    }
    // Rule 1: live roots, strongest reason first: `--keep-tags`, then version tags.
    for t in &rec.tags {
        if policy.is_kept_tag(&t.name) {
            keep.mark(t.digest, Reason::KeepTag);
        }
    }
    for (t, class) in rec.tags.iter().zip(&classes) {
        if *class == TagClass::Version {
            keep.mark(t.digest, Reason::VersionTag);
        }
    }
    // Rule 5: an attachment tag whose subject is no revision here belongs to an image kept
    // elsewhere (signatures in their own repository): it is a live tag. Only a subject
    // deleted in this run, in this repository, takes its attachments along.
    for (t, class) in rec.tags.iter().zip(&classes) {
        if let TagClass::Attachment { subject } = class
            && !revisions.contains(subject)
        {
            keep.mark(t.digest, Reason::ForeignAttachment { subject: *subject });
        }
    }
    let mut by_rank: Vec<(&Digest, &(u32, i64))> = ranks.iter().collect();
    by_rank.sort_by_key(|(_, (r, _))| *r);
    for (d, (rank, date)) in by_rank {
        let rank = *rank;
        if (rank as usize) < policy.keep {
            keep.mark(*d, Reason::HashTagKept { rank });
        } else if policy.older_than_secs > 0
            && policy.now.saturating_sub(*date) < policy.older_than_secs
        {
            keep.mark(*d, Reason::HashTagRecent { rank });
        }
    }
    // Evidence of use (issue 22): pinned by a workload, or pulled inside the window.
    // Tags by name, built only for a repository pulled by tag.
    let by_name = std::cell::OnceCell::new();
    let target = |tag: &str| {
        by_name
            .get_or_init(|| {
                rec.tags
                    .iter()
                    .map(|t| (t.name.as_str(), t.digest))
                    .collect::<std::collections::HashMap<&str, Digest>>()
            })
            .get(tag)
            .copied()
    };
    for (d, used) in policy.evidence.uses(&rec.name, policy.now, target) {
        if revisions.contains(&d) {
            keep.mark(d, reason_of_use(used));
        }
    }
    // Rule 6: grace period.
    for r in &rec.revisions {
        // Saturating: `now` may come from a plan file or a journal.
        if policy.now.saturating_sub(r.linked_at) < policy.min_age_secs {
            keep.mark(r.digest, Reason::GracePeriod);
        }
    }
    // Rule 7: an unknown media type, or a manifest the registry could read otherwise than
    // regsweep does, is kept with everything it mentions.
    for r in &rec.revisions {
        let Some(m) = snap.manifest(&r.digest).filter(|m| m.kind == Kind::Unknown) else {
            continue;
        };
        plan.notes.push(match &m.doubt {
            Some(why) => format!(
                "manifest {} cannot be read one way only ({why}): kept with every digest it names",
                r.digest
            ),
            None => format!(
                "manifest {} has an unknown media type: kept with every digest it names",
                r.digest
            ),
        });
        keep.mark(r.digest, Reason::FailClosed);
    }
    // Rules 4 and 5: reachability through index children, subjects and attachment tags.
    let attachments: Vec<(Digest, Digest)> = rec
        .tags
        .iter()
        .zip(&classes)
        .filter_map(|(t, c)| match c {
            TagClass::Attachment { subject } => Some((*subject, t.digest)),
            _ => None,
        })
        .collect();
    keep.propagate(&attachments);
    let mut attached_to: DigestMap<Digest> = DigestMap::default();
    for (subject, target) in &attachments {
        attached_to.entry(*target).or_insert(*subject);
    }

    let parents = parents_of(snap, &revisions);
    let mut by_platform = Vec::new();
    let mut decisions: Vec<(Decision, Reason)> = Vec::with_capacity(rec.revisions.len());
    for r in &rec.revisions {
        let (verdict, reason) = match keep.reasons.get(&r.digest) {
            Some(reason) => (Verdict::Keep, *reason),
            None => (
                Verdict::Delete,
                delete_reason(snap, r.digest, &ranks, &attached_to, &parents),
            ),
        };
        let (kind, label) = label_of(snap, &r.digest, &mut plan.labels, &mut by_platform);
        let decision = Decision {
            digest: r.digest,
            verdict,
            code: Code::Untagged,
            arg: 0,
            kind,
            created: snap.created_of(&r.digest).unwrap_or(NO_DATE),
            linked_at: compact_time(r.linked_at),
            label,
        };
        decisions.push((decision, reason));
    }
    decisions.sort_by_key(|(d, _)| d.digest);
    decisions.dedup_by(|a, b| a.0.digest == b.0.digest);
    plan.decisions = decisions.iter().map(|(d, _)| *d).collect();
    // Codes last: a reason names other manifests by their place among the decisions.
    for (i, (_, reason)) in decisions.into_iter().enumerate() {
        let (code, arg) = plan.encode(reason);
        plan.decisions[i].code = code;
        plan.decisions[i].arg = arg;
    }
    let order = order::delete_order(snap, &plan.decisions, &attachments);
    plan.delete_order = order
        .0
        .iter()
        .filter_map(|d| plan.index_of(d).and_then(|i| u32::try_from(i).ok()))
        .collect();
    plan.delete_layers = order.1;

    let deleted: DigestSet = plan.delete_digests().collect();
    plan.tags = rec
        .tags
        .iter()
        .zip(classes)
        .map(|(t, class)| PlannedTag {
            name: t.name.as_str().into(),
            digest: t.digest,
            rank: (class == TagClass::Hash)
                .then(|| ranks.get(&t.digest).map(|(r, _)| *r))
                .flatten(),
            kind: match class {
                TagClass::Version => TagKind::Version,
                TagClass::Hash => TagKind::Hash,
                TagClass::Attachment { .. } => TagKind::Attachment,
            },
            kept: !deleted.contains(&t.digest),
        })
        .collect();
    plan.tags.sort_by(|a, b| a.name.cmp(&b.name));
    plan.notes.sort();
    plan.notes.shrink_to_fit();
    plan.labels.shrink_to_fit();
    plan
}

/// The reason evidence of use gives.
fn reason_of_use(u: crate::evidence::Use) -> Reason {
    match u {
        crate::evidence::Use::InUse => Reason::InUse,
        crate::evidence::Use::Pulled(p) => Reason::PulledRecently {
            at: p.at,
            source: p.source,
        },
    }
}

/// A link time as a [`Decision`] holds it: unix seconds clamped to `u32`.
fn compact_time(t: i64) -> u32 {
    u32::try_from(t.max(0)).unwrap_or(u32::MAX)
}

/// Whether a link time read now is the one a decision recorded (both as plans hold them).
pub fn same_link_time(d: &Decision, t: i64) -> bool {
    d.linked_at == compact_time(t)
}

/// Ranks the distinct digests of hash tags by creation date, newest first; ties and
/// missing dates fall back to the tag link's push time, then the digest. Gives each its
/// rank and the date it was ranked by, and the images that had no date of their own.
fn rank_hash_images(snap: &Snapshot, classes: &[TagClass]) -> (DigestMap<(u32, i64)>, Vec<Digest>) {
    let mut pushed: DigestMap<i64> = DigestMap::default();
    for (t, c) in snap.record.tags.iter().zip(classes) {
        if *c == TagClass::Hash {
            let e = pushed.entry(t.digest).or_insert(i64::MIN);
            *e = (*e).max(t.linked_at);
        }
    }
    let mut undated = Vec::new();
    let mut images: Vec<(i64, i64, Digest)> = pushed
        .into_iter()
        .map(|(d, push)| {
            let created = snap.created_of(&d);
            if created.is_none() {
                undated.push(d);
            }
            (created.unwrap_or(push), push, d)
        })
        .collect();
    images.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    let ranks = images
        .into_iter()
        .enumerate()
        .map(|(i, (date, _, d))| (d, (i as u32, date)))
        .collect();
    (ranks, undated)
}

/// The keep set under construction: first reason wins, then reachability is followed.
struct Reach<'a> {
    snap: &'a Snapshot,
    reasons: DigestMap<Reason>,
    queue: Vec<Digest>,
}

impl<'a> Reach<'a> {
    fn new(snap: &'a Snapshot) -> Self {
        Reach {
            snap,
            reasons: DigestMap::with_capacity_and_hasher(
                snap.record.revisions.len(),
                Default::default(),
            ),
            queue: Vec::new(),
        }
    }

    fn mark(&mut self, d: Digest, reason: Reason) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.reasons.entry(d) {
            e.insert(reason);
            self.queue.push(d);
        }
    }

    fn propagate(&mut self, attachments: &[(Digest, Digest)]) {
        let mut referrers: DigestMap<Vec<Digest>> = DigestMap::default();
        for r in &self.snap.record.revisions {
            if let Some(s) = self.snap.manifest(&r.digest).and_then(|m| m.subject) {
                referrers.entry(s).or_default().push(r.digest);
            }
        }
        let mut attached: DigestMap<Vec<Digest>> = DigestMap::default();
        for (subject, target) in attachments {
            attached.entry(*subject).or_default().push(*target);
        }
        while let Some(d) = self.queue.pop() {
            if let Some(m) = self.snap.manifest(&d) {
                for c in &m.children {
                    self.mark(c.digest, Reason::ChildOf { parent: d });
                }
                // Protect by mention: a manifest of this repository that a kept one names
                // anywhere stays, whatever the structure says.
                for x in &m.mentions {
                    if self.snap.manifests.contains_key(x) {
                        self.mark(*x, Reason::MentionedBy { parent: d });
                    }
                }
            }
            for r in referrers.get(&d).into_iter().flatten() {
                self.mark(*r, Reason::ReferrerOf { subject: d });
            }
            for t in attached.get(&d).into_iter().flatten() {
                self.mark(*t, Reason::AttachmentOf { subject: d });
            }
        }
    }
}

/// For each revision, the revisions whose index lists it.
fn parents_of(snap: &Snapshot, revisions: &DigestSet) -> DigestMap<Vec<Digest>> {
    let mut parents: DigestMap<Vec<Digest>> = DigestMap::default();
    for p in revisions {
        if let Some(m) = snap.manifest(p) {
            for c in &m.children {
                parents.entry(c.digest).or_default().push(*p);
            }
        }
    }
    for v in parents.values_mut() {
        v.sort_unstable();
    }
    parents
}

fn delete_reason(
    snap: &Snapshot,
    d: Digest,
    ranks: &DigestMap<(u32, i64)>,
    attached_to: &DigestMap<Digest>,
    parents: &DigestMap<Vec<Digest>>,
) -> Reason {
    if let Some((rank, _)) = ranks.get(&d) {
        return Reason::HashTagExpired { rank: *rank };
    }
    if let Some(subject) = attached_to.get(&d) {
        return Reason::AttachmentOfDeleted { subject: *subject };
    }
    if let Some(subject) = snap.manifest(&d).and_then(|m| m.subject) {
        return Reason::ReferrerOfDeleted { subject };
    }
    match parents.get(&d).and_then(|p| p.first()) {
        Some(parent) => Reason::ChildOfDeleted { parent: *parent },
        None => Reason::Untagged,
    }
}

/// Kind and platform label: `os/arch` for an image, `index [os/arch, ...]` for an index.
fn describe(snap: &Snapshot, d: &Digest) -> (Option<Kind>, String) {
    let Some(m) = snap.manifest(d) else {
        return (None, String::new());
    };
    let label = match m.kind {
        Kind::Index => {
            let platforms: Vec<String> = m
                .children
                .iter()
                .map(|c| {
                    c.platform
                        .as_ref()
                        .map_or_else(|| "?/?".to_owned(), ToString::to_string)
                })
                .collect();
            format!("index [{}]", platforms.join(", "))
        }
        Kind::Image | Kind::Schema1 => snap
            .images
            .get(d)
            .and_then(|i| i.platform.as_ref())
            .map_or_else(|| "?/?".to_owned(), ToString::to_string),
        Kind::Unknown => String::new(),
    };
    (Some(m.kind), label)
}

/// A manifest's kind and the index of its label in `labels`; an image's platform label is
/// found in `by_platform` (the few platforms a repository has) without formatting it again.
fn label_of<'a>(
    snap: &'a Snapshot,
    d: &Digest,
    labels: &mut Vec<String>,
    by_platform: &mut Vec<(Option<&'a Platform>, u32)>,
) -> (Option<Kind>, u32) {
    if let Some(m) = snap.manifest(d)
        && matches!(m.kind, Kind::Image | Kind::Schema1)
    {
        let p = snap.images.get(d).and_then(|i| i.platform.as_ref());
        if let Some((_, i)) = by_platform.iter().find(|(q, _)| *q == p) {
            return (Some(m.kind), *i);
        }
        let label = p.map_or_else(|| "?/?".to_owned(), ToString::to_string);
        let i = intern(labels, label);
        by_platform.push((p, i));
        return (Some(m.kind), i);
    }
    let (kind, label) = describe(snap, d);
    (kind, intern(labels, label))
}

fn intern(labels: &mut Vec<String>, label: String) -> u32 {
    match labels.iter().position(|l| *l == label) {
        Some(i) => i as u32,
        None => {
            labels.push(label);
            (labels.len() - 1) as u32
        }
    }
}

#[cfg(test)]
mod tests;
