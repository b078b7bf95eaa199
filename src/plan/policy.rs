//! The retention policy and tag classification (DESIGN section 4, rules 3 and 5).

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::digest::Digest;

/// Default `HASH_TAG_PATTERN`.
pub const DEFAULT_HASH_TAG_PATTERN: &str = "^[0-9a-f]{7,12}$";

/// What the planner is told to keep.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Tags matching this are commit-hash tags (`HASH_TAG_PATTERN`).
    pub hash_tag: Regex,
    /// Hash-tagged images kept per repository (`HASH_TAG_KEEP`).
    pub keep: usize,
    /// Revisions younger than this many seconds are never deleted (`--min-age`).
    pub min_age_secs: i64,
    /// The time the run started (unix seconds), so planning stays pure.
    pub now: i64,
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

/// Classifies a tag; attachment tags win over the hash pattern.
pub fn classify_tag(name: &str, policy: &Policy) -> TagClass {
    if let Some(subject) = ATTACHMENT
        .captures(name)
        .and_then(|c| Digest::from_hex(&c[1]))
    {
        return TagClass::Attachment { subject };
    }
    if policy.hash_tag.is_match(name) {
        TagClass::Hash
    } else {
        TagClass::Version
    }
}
