//! What the scan stage records of one repository, as plain data (no I/O): its revision
//! links, its tags and the problems met reading them. Scan fills it; meta, plan, delete and
//! gc read it.

use std::fmt;
use std::sync::Arc;

use crate::digest::Digest;

/// A manifest revision linked into a repository (`_manifests/revisions/sha256/<hex>/link`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revision {
    /// The manifest digest.
    pub digest: Digest,
    /// When the revision link was written (unix seconds): the push time.
    pub linked_at: i64,
}

/// A tag's current target (`_manifests/tags/<tag>/current/link`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagLink {
    /// The tag name.
    pub name: String,
    /// The digest the tag points to now.
    pub digest: Digest,
    /// When the tag's current link was written (unix seconds).
    pub linked_at: i64,
}

/// Everything the lister saw of one repository.
#[derive(Clone, Debug, Default)]
pub struct RepoRecord {
    /// Repository name, as in `docker pull host/<name>`.
    pub name: Arc<str>,
    /// Every manifest revision linked into the repository.
    pub revisions: Vec<Revision>,
    /// Every tag with its current target.
    pub tags: Vec<TagLink>,
    /// Problems that make the repository fail closed (nothing in it may be deleted).
    pub problems: Vec<Problem>,
}

/// What sort of problem reading a repository met; callers decide on this, never on text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// A link file whose body is not exactly `sha256:<64 hex>` (the registry writes links
    /// in place, so a link read mid-write looks like this for a moment).
    MalformedLink,
    /// A tag directory without its `current/link`.
    MissingLink,
    /// A revision link in the directory of another digest.
    MisplacedLink,
    /// A link whose time is unknown (no `LastModified`, a time before 1970).
    UnknownAge,
    /// A name that is no sha256 revision directory, or a tag name that is not UTF-8.
    BadName,
    /// A file or object where a directory belongs.
    NotADirectory,
    /// A directory or prefix that could not be listed in full.
    Unlistable,
    /// A link that could not be read.
    Unreadable,
}

/// A problem met reading a repository: its kind, and the line the report shows (naming
/// the path or key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What sort of problem.
    pub kind: ProblemKind,
    /// The line reports show, naming the path or key.
    pub message: String,
}

impl Problem {
    /// A problem of `kind` shown as `message`.
    pub fn new(kind: ProblemKind, message: impl Into<String>) -> Problem {
        Problem {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
