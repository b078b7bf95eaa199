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
                crate::timefmt::rfc3339(*at).unwrap_or_else(|| at.to_string()),
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

/// [`Reason`] without its payload, one byte in a [`Decision`] (a pull's source is part
/// of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum ReasonKind {
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
    /// The reason's payload: a rank, a pull time (unix seconds, clamped to `u32`), or the
    /// related digest's index (see [`RepoPlan::related`]); 0 when the reason has none.
    reason_payload: u32,
    /// Keep or delete.
    pub verdict: Verdict,
    /// Image, index, schema 1, unknown; `None` when unreadable.
    pub kind: Option<Kind>,
    /// Why, without payload.
    reason_kind: ReasonKind,
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
        self.verdict == Verdict::Delete && self.reason_kind == ReasonKind::HashTagExpired
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
        let rank = d.reason_payload;
        let related = || {
            let i = d.reason_payload as usize;
            match self.decisions.get(i) {
                Some(x) => x.digest,
                None => self
                    .related
                    .get(i - self.decisions.len())
                    .copied()
                    .unwrap_or(Digest([0; 32])),
            }
        };
        match d.reason_kind {
            ReasonKind::VersionTag => Reason::VersionTag,
            ReasonKind::HashTagKept => Reason::HashTagKept { rank },
            ReasonKind::KeepTag => Reason::KeepTag,
            ReasonKind::HashTagRecent => Reason::HashTagRecent { rank },
            ReasonKind::GracePeriod => Reason::GracePeriod,
            ReasonKind::InUse => Reason::InUse,
            ReasonKind::PulledRecentlyLog => Reason::PulledRecently {
                at: i64::from(d.reason_payload),
                source: crate::evidence::Source::PullLog,
            },
            ReasonKind::PulledRecentlyEvents => Reason::PulledRecently {
                at: i64::from(d.reason_payload),
                source: crate::evidence::Source::PullEvents,
            },
            ReasonKind::ChildOf => Reason::ChildOf { parent: related() },
            ReasonKind::MentionedBy => Reason::MentionedBy { parent: related() },
            ReasonKind::ReferrerOf => Reason::ReferrerOf { subject: related() },
            ReasonKind::AttachmentOf => Reason::AttachmentOf { subject: related() },
            ReasonKind::ForeignAttachment => Reason::ForeignAttachment { subject: related() },
            ReasonKind::FailClosed => Reason::FailClosed,
            ReasonKind::Untagged => Reason::Untagged,
            ReasonKind::HashTagExpired => Reason::HashTagExpired { rank },
            ReasonKind::ChildOfDeleted => Reason::ChildOfDeleted { parent: related() },
            ReasonKind::ReferrerOfDeleted => Reason::ReferrerOfDeleted { subject: related() },
            ReasonKind::AttachmentOfDeleted => Reason::AttachmentOfDeleted { subject: related() },
            ReasonKind::Deferred => Reason::Deferred,
        }
    }

    /// The compact form of `r` (kind and payload); digests not among the revisions go to
    /// `related`.
    fn compact_reason(&mut self, r: Reason) -> (ReasonKind, u32) {
        let mut related_index = |d: Digest| -> u32 {
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
            Reason::VersionTag => (ReasonKind::VersionTag, 0),
            Reason::HashTagKept { rank } => (ReasonKind::HashTagKept, rank),
            Reason::KeepTag => (ReasonKind::KeepTag, 0),
            Reason::HashTagRecent { rank } => (ReasonKind::HashTagRecent, rank),
            Reason::GracePeriod => (ReasonKind::GracePeriod, 0),
            Reason::InUse => (ReasonKind::InUse, 0),
            Reason::PulledRecently { at, source } => match source {
                crate::evidence::Source::PullLog => {
                    (ReasonKind::PulledRecentlyLog, compact_time(at))
                }
                crate::evidence::Source::PullEvents => {
                    (ReasonKind::PulledRecentlyEvents, compact_time(at))
                }
            },
            Reason::ChildOf { parent } => (ReasonKind::ChildOf, related_index(parent)),
            Reason::MentionedBy { parent } => (ReasonKind::MentionedBy, related_index(parent)),
            Reason::ReferrerOf { subject } => (ReasonKind::ReferrerOf, related_index(subject)),
            Reason::AttachmentOf { subject } => (ReasonKind::AttachmentOf, related_index(subject)),
            Reason::ForeignAttachment { subject } => {
                (ReasonKind::ForeignAttachment, related_index(subject))
            }
            Reason::FailClosed => (ReasonKind::FailClosed, 0),
            Reason::Untagged => (ReasonKind::Untagged, 0),
            Reason::HashTagExpired { rank } => (ReasonKind::HashTagExpired, rank),
            Reason::ChildOfDeleted { parent } => {
                (ReasonKind::ChildOfDeleted, related_index(parent))
            }
            Reason::ReferrerOfDeleted { subject } => {
                (ReasonKind::ReferrerOfDeleted, related_index(subject))
            }
            Reason::AttachmentOfDeleted { subject } => {
                (ReasonKind::AttachmentOfDeleted, related_index(subject))
            }
            Reason::Deferred => (ReasonKind::Deferred, 0),
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
                d.reason_kind = ReasonKind::Deferred;
                d.reason_payload = 0;
            }
        }
        for t in &mut p.tags {
            t.kept = t.kept || kept.contains(&t.digest);
        }
        p
    }
}

/// Plans one repository: which revisions stay, which go, and why (docs/POLICY.md). Each
/// step is one rule; the order matters, since the first reason found for a digest wins.
pub fn plan_repository(snap: &Snapshot, policy: &Policy) -> RepoPlan {
    let mut p = Planning::new(snap, policy);
    let undated = p.rank_hash_tags(); // rule 3
    p.fail_closed_on_doubt(&undated); // rule 7 (and 3's untrusted dates)
    p.live_roots(); // rule 1
    p.foreign_attachments(); // rule 5
    p.newest_hash_images(); // rule 3
    p.evidence_of_use(); // rule 6a
    p.grace_period(); // rule 6
    p.unknown_media_types(); // rule 7
    let attachments = p.reachability(); // rules 4 and 5
    p.untagged(&attachments); // rule 2
    p.deletion_order(&attachments); // rule 8
    p.finish()
}

/// One repository's plan while the rules are applied to it.
struct Planning<'a> {
    snap: &'a Snapshot,
    policy: &'a Policy,
    /// The repository's revisions.
    revisions: DigestSet,
    /// Each tag's class, in the record's tag order (rules 3 and 5).
    classes: Vec<TagClass>,
    /// Each hash-tagged image's rank (newest first) and the date it was ranked by.
    ranks: DigestMap<(u32, i64)>,
    /// What is kept so far, with why.
    keep: KeepSet<'a>,
    /// The plan being filled in.
    plan: RepoPlan,
}

impl<'a> Planning<'a> {
    /// Starts the plan: the repository's revisions, its tags classified (rules 3 and 5),
    /// the lister's problems, nothing kept yet.
    fn new(snap: &'a Snapshot, policy: &'a Policy) -> Planning<'a> {
        let rec = &snap.record;
        Planning {
            snap,
            policy,
            revisions: rec.revisions.iter().map(|r| r.digest).collect(),
            classes: rec
                .tags
                .iter()
                .map(|t| classify_tag(&t.name, policy))
                .collect(),
            ranks: DigestMap::default(),
            keep: KeepSet::new(snap),
            plan: RepoPlan {
                name: rec.name.clone(),
                labels: vec![String::new()],
                problems: rec.problems.iter().map(ToString::to_string).collect(),
                ..RepoPlan::default()
            },
        }
    }

    /// Rule 3 (hash tags): ranks the hash-tagged images (distinct digests), newest first;
    /// gives the images that had no creation date of their own.
    fn rank_hash_tags(&mut self) -> Vec<Digest> {
        let (ranks, undated) = rank_hash_images(self.snap, &self.classes);
        self.ranks = ranks;
        undated
    }

    /// Rule 7 (fail closed): anything unreadable that could be a parent makes the whole
    /// repository opaque, and so does (rule 3) a hash-tagged image whose config cannot be
    /// trusted, which would be ranked by push time instead, silently. Every revision is
    /// then kept.
    fn fail_closed_on_doubt(&mut self, undated: &[Digest]) {
        let (snap, rec) = (self.snap, &self.snap.record);
        let plan = &mut self.plan;
        let targets = rec.revisions.iter().map(|r| r.digest);
        for d in targets.chain(rec.tags.iter().map(|t| t.digest)) {
            if let Some(Meta::Bad(why)) = snap.manifests.get(&d) {
                plan.problems.push(why.clone());
            }
        }
        for d in undated {
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
            if !self.revisions.contains(&t.digest) {
                plan.notes.push(format!(
                    "tag {} points to {} which has no revision link",
                    t.name, t.digest
                ));
            }
        }
        if !plan.problems.is_empty() {
            for r in &rec.revisions {
                self.keep.mark(r.digest, Reason::FailClosed);
            }
        }
    }

    /// Rule 1 (live roots), strongest reason first: `--keep-tags`, then version tags.
    fn live_roots(&mut self) {
        let tags = &self.snap.record.tags;
        for t in tags {
            if self.policy.is_kept_tag(&t.name) {
                self.keep.mark(t.digest, Reason::KeepTag);
            }
        }
        for (t, class) in tags.iter().zip(&self.classes) {
            if *class == TagClass::Version {
                self.keep.mark(t.digest, Reason::VersionTag);
            }
        }
    }

    /// Rule 5 (attachments): an attachment tag whose subject is no revision here belongs to
    /// an image kept elsewhere (signatures in their own repository): it is a live tag. Only
    /// a subject deleted in this run, in this repository, takes its attachments along.
    fn foreign_attachments(&mut self) {
        for (t, class) in self.snap.record.tags.iter().zip(&self.classes) {
            if let TagClass::Attachment { subject } = class
                && !self.revisions.contains(subject)
            {
                let reason = Reason::ForeignAttachment { subject: *subject };
                self.keep.mark(t.digest, reason);
            }
        }
    }

    /// Rule 3 (hash tags): the newest `HASH_TAG_KEEP` images stay, and so do older ones
    /// younger than `--older-than` when it is set.
    fn newest_hash_images(&mut self) {
        let policy = self.policy;
        let mut by_rank: Vec<(&Digest, &(u32, i64))> = self.ranks.iter().collect();
        by_rank.sort_by_key(|(_, (r, _))| *r);
        for (d, (rank, date)) in by_rank {
            let rank = *rank;
            if (rank as usize) < policy.keep {
                self.keep.mark(*d, Reason::HashTagKept { rank });
            } else if policy.older_than_secs > 0
                && policy.now.saturating_sub(*date) < policy.older_than_secs
            {
                self.keep.mark(*d, Reason::HashTagRecent { rank });
            }
        }
    }

    /// Rule 6a (evidence of use): a revision pinned by a workload, or pulled inside the
    /// window, stays. Tags by name are built only for a repository pulled by tag.
    fn evidence_of_use(&mut self) {
        let rec = &self.snap.record;
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
        let policy = self.policy;
        for (d, used) in policy.evidence.uses(&rec.name, policy.now, target) {
            if self.revisions.contains(&d) {
                self.keep.mark(d, reason_of_use(used));
            }
        }
    }

    /// Rule 6 (grace period): a revision whose link is younger than `--min-age` stays.
    fn grace_period(&mut self) {
        for r in &self.snap.record.revisions {
            // Saturating: `now` may come from a plan file or a journal.
            if self.policy.now.saturating_sub(r.linked_at) < self.policy.min_age_secs {
                self.keep.mark(r.digest, Reason::GracePeriod);
            }
        }
    }

    /// Rule 7 (fail closed): a manifest of an unknown media type, or one the registry could
    /// read otherwise than regsweep does, is kept with everything it mentions.
    fn unknown_media_types(&mut self) {
        for r in &self.snap.record.revisions {
            let Some(m) = self
                .snap
                .manifest(&r.digest)
                .filter(|m| m.kind == Kind::Unknown)
            else {
                continue;
            };
            self.plan.notes.push(match &m.doubt {
                Some(why) => format!(
                    "manifest {} cannot be read one way only ({why}): kept with every digest it names",
                    r.digest
                ),
                None => format!(
                    "manifest {} has an unknown media type: kept with every digest it names",
                    r.digest
                ),
            });
            self.keep.mark(r.digest, Reason::FailClosed);
        }
    }

    /// Rules 4 and 5 (reachability, attachments): what is kept keeps its index children,
    /// what it mentions, its referrers and its attachments, transitively. Gives the
    /// attachment tags as (subject, target) pairs.
    fn reachability(&mut self) -> Vec<(Digest, Digest)> {
        let attachments: Vec<(Digest, Digest)> = self
            .snap
            .record
            .tags
            .iter()
            .zip(&self.classes)
            .filter_map(|(t, c)| match c {
                TagClass::Attachment { subject } => Some((*subject, t.digest)),
                _ => None,
            })
            .collect();
        self.keep.propagate(&attachments);
        attachments
    }

    /// Rule 2 (untagged): a revision nothing above keeps is deleted, with the reason it
    /// goes (an expired hash tag, a deleted subject or parent, or no tag at all).
    fn untagged(&mut self, attachments: &[(Digest, Digest)]) {
        let snap = self.snap;
        let mut attached_to: DigestMap<Digest> = DigestMap::default();
        for (subject, target) in attachments {
            attached_to.entry(*target).or_insert(*subject);
        }
        let parents = parents_of(snap, &self.revisions);
        let mut by_platform = Vec::new();
        let mut decisions: Vec<(Decision, Reason)> = Vec::with_capacity(self.revisions.len());
        for r in &snap.record.revisions {
            let (verdict, reason) = match self.keep.reasons.get(&r.digest) {
                Some(reason) => (Verdict::Keep, *reason),
                None => (
                    Verdict::Delete,
                    delete_reason(snap, r.digest, &self.ranks, &attached_to, &parents),
                ),
            };
            let labels = &mut self.plan.labels;
            let (kind, label) = label_of(snap, &r.digest, labels, &mut by_platform);
            let decision = Decision {
                digest: r.digest,
                verdict,
                reason_kind: ReasonKind::Untagged,
                reason_payload: 0,
                kind,
                created: snap.created_of(&r.digest).unwrap_or(NO_DATE),
                linked_at: compact_time(r.linked_at),
                label,
            };
            decisions.push((decision, reason));
        }
        decisions.sort_by_key(|(d, _)| d.digest);
        decisions.dedup_by(|a, b| a.0.digest == b.0.digest);
        let plan = &mut self.plan;
        plan.decisions = decisions.iter().map(|(d, _)| *d).collect();
        // Reasons last: a reason names other manifests by their place among the decisions.
        for (i, (_, reason)) in decisions.into_iter().enumerate() {
            let (kind, payload) = plan.compact_reason(reason);
            plan.decisions[i].reason_kind = kind;
            plan.decisions[i].reason_payload = payload;
        }
    }

    /// Rule 8 (deletion order): whatever refers to a manifest goes before it, in layers.
    fn deletion_order(&mut self, attachments: &[(Digest, Digest)]) {
        let plan = &mut self.plan;
        let (digests, layers) = order::delete_order(self.snap, &plan.decisions, attachments);
        plan.delete_order = digests
            .iter()
            .filter_map(|d| plan.index_of(d).and_then(|i| u32::try_from(i).ok()))
            .collect();
        plan.delete_layers = layers;
    }

    /// The plan, with every tag as it stands after the deletions.
    fn finish(self) -> RepoPlan {
        let mut plan = self.plan;
        let ranks = &self.ranks;
        let deleted: DigestSet = plan.delete_digests().collect();
        plan.tags = self
            .snap
            .record
            .tags
            .iter()
            .zip(self.classes)
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
struct KeepSet<'a> {
    snap: &'a Snapshot,
    reasons: DigestMap<Reason>,
    queue: Vec<Digest>,
}

impl<'a> KeepSet<'a> {
    fn new(snap: &'a Snapshot) -> Self {
        KeepSet {
            snap,
            reasons: DigestMap::with_capacity_and_hasher(
                snap.record.revisions.len(),
                Default::default(),
            ),
            queue: Vec::new(),
        }
    }

    /// Keeps `d` for `reason` unless it is kept already (the first reason wins).
    fn mark(&mut self, d: Digest, reason: Reason) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.reasons.entry(d) {
            e.insert(reason);
            self.queue.push(d);
        }
    }

    /// Keeps everything the kept manifests reach (children, mentions, referrers and the
    /// targets of attachment tags given as (subject, target) pairs), transitively.
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

/// Why a revision nothing keeps goes: an expired hash tag, a deleted subject (attachment
/// or referrer), a deleted parent index, else no tag at all.
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

/// The index of `label` in `labels`, added if new.
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
