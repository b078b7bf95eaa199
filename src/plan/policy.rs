//! The retention policy and tag classification (docs/POLICY.md, rules 3 and 5): hash tags,
//! attachment tags, version tags, and the policy-file rules per repository. Pure values.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::digest::Digest;

pub use crate::values::DEFAULT_HASH_TAG_PATTERN;

/// What the planner is told to keep in one repository.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Tags matching this are commit-hash tags (`HASH_TAG_PATTERN`).
    pub hash_tag: Regex,
    /// More hash-tag patterns (further `--hash-tag-pattern`s); a tag matching any is one.
    pub extra_hash_tags: Vec<Regex>,
    /// Hash-tagged images kept per repository (`HASH_TAG_KEEP`).
    pub keep: usize,
    /// Tags matching this are never deleted, nor anything they reach (`--keep-tags`).
    pub keep_tags: Option<Regex>,
    /// Hash-tagged images beyond the newest `keep` go only when older than this many
    /// seconds (`--older-than`; 0: no such condition).
    pub older_than_secs: i64,
    /// Revisions younger than this many seconds are never deleted (`--min-age`).
    pub min_age_secs: i64,
    /// The time the run started (unix seconds), so planning stays pure.
    pub now: i64,
    /// Evidence of use (`--keep-in-use`, `--pull-log`): it only adds keeps.
    pub evidence: std::sync::Arc<crate::evidence::Evidence>,
}

impl Policy {
    /// The original tool's policy: one hash-tag pattern, keep N, and a grace period.
    pub fn new(hash_tag: Regex, keep: usize, min_age_secs: i64, now: i64) -> Policy {
        Policy {
            hash_tag,
            extra_hash_tags: Vec::new(),
            keep,
            keep_tags: None,
            older_than_secs: 0,
            min_age_secs,
            now,
            evidence: std::sync::Arc::default(),
        }
    }

    /// Whether `tag` matches a hash-tag pattern.
    pub fn is_hash_tag(&self, tag: &str) -> bool {
        self.hash_tag.is_match(tag) || self.extra_hash_tags.iter().any(|r| r.is_match(tag))
    }

    /// Whether `tag` matches `--keep-tags`.
    pub fn is_kept_tag(&self, tag: &str) -> bool {
        self.keep_tags.as_ref().is_some_and(|r| r.is_match(tag))
    }
}

/// The policies of a run: a base one, and per-repository rules from a policy file.
#[derive(Clone, Debug)]
pub struct Policies {
    /// For repositories no rule matches.
    pub base: Policy,
    /// The first rule whose globs match a repository gives its policy.
    pub rules: Vec<Rule>,
}

/// A policy-file rule: repositories matching `repos` get `policy`.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Repository globs (`*` stays within one path segment, `**` crosses them).
    pub repos: globset::GlobSet,
    /// The globs as written, for reports.
    pub patterns: Vec<String>,
    /// The policy for them.
    pub policy: Policy,
}

impl Policies {
    /// The index of the policy-file rule that gives `name` its policy (`None`: the base).
    pub fn rule_of(&self, name: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.repos.is_match(name))
    }

    /// The policy for repository `name`.
    pub fn for_repo(&self, name: &str) -> &Policy {
        self.rules
            .iter()
            .find(|r| r.repos.is_match(name))
            .map_or(&self.base, |r| &r.policy)
    }

    /// Sets the run's time everywhere (a resumed run plans as of the interrupted one).
    pub fn set_now(&mut self, now: i64) {
        self.base.now = now;
        for r in &mut self.rules {
            r.policy.now = now;
        }
    }

    /// The run's time.
    pub fn now(&self) -> i64 {
        self.base.now
    }
}

impl From<Policy> for Policies {
    fn from(base: Policy) -> Policies {
        Policies {
            base,
            rules: Vec::new(),
        }
    }
}

/// What a tag means to the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "class", rename_all = "lowercase")]
pub enum TagClass {
    /// Any tag that is neither a hash tag nor an attachment: a live root.
    Version,
    /// Matches `HASH_TAG_PATTERN`: live only among the newest N images.
    Hash,
    /// `sha256-<hex>[.sig|.att|.sbom]`: lives and dies with its subject.
    Attachment {
        /// The digest the attachment belongs to.
        subject: Digest,
    },
}

static ATTACHMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^sha256-([0-9a-f]{64})(?:\.(?:sig|att|sbom))?$")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});

/// The subject of an attachment tag `sha256-<hex>[.sig|.att|.sbom]`.
pub fn attachment_subject(name: &str) -> Option<Digest> {
    ATTACHMENT
        .captures(name)
        .and_then(|c| Digest::from_hex(&c[1]))
}

/// Classifies a tag; attachment tags win over the hash pattern.
pub fn classify_tag(name: &str, policy: &Policy) -> TagClass {
    if let Some(subject) = attachment_subject(name) {
        return TagClass::Attachment { subject };
    }
    if policy.is_hash_tag(name) {
        TagClass::Hash
    } else {
        TagClass::Version
    }
}
