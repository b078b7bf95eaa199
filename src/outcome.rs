//! What a deletion pass did, as the deleter records it and the reports show it.

use serde::Serialize;

use crate::digest::Digest;
use crate::plan::RepoPlan;

/// One deletion that did not happen, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Missed {
    /// Repository.
    pub repository: String,
    /// Manifest.
    pub digest: Digest,
    /// What went wrong (status and message, or what changed).
    pub why: String,
}

/// One planned delete and its outcome, as the reports show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Deletion {
    /// Repository.
    pub repository: String,
    /// Manifest.
    pub digest: Digest,
    /// `deleted`, `already-gone`, `failed`, `skipped` or `not-attempted`.
    pub result: &'static str,
    /// The HTTP status of a failed delete's last answer, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed, was skipped or was not attempted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// What a deletion pass did: counts and lists taken from its ledger, where every planned
/// delete has exactly one outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    /// Deleted now (202).
    pub deleted: usize,
    /// Already gone (404).
    pub already_gone: usize,
    /// Failed after retries.
    pub failed: Vec<Missed>,
    /// Skipped because storage changed since the scan (re-verification).
    pub skipped: Vec<Missed>,
    /// Not attempted because the run stopped.
    pub not_attempted: usize,
    /// Why the run stopped early, if it did.
    pub fatal: Option<String>,
    /// Stopped by a signal (Ctrl-C, SIGTERM).
    pub interrupted: bool,
    /// The journal could not be written completely.
    pub journal_error: Option<String>,
    /// Deletes this pass planned; each is in `deletions` exactly once.
    pub planned: usize,
    /// Every planned delete with its outcome, in plan order.
    pub deletions: Vec<Deletion>,
}

impl Outcome {
    /// The counts and lists of a closed ledger's deletions.
    pub fn of(deletions: Vec<Deletion>) -> Outcome {
        let mut o = Outcome {
            planned: deletions.len(),
            ..Outcome::default()
        };
        for d in &deletions {
            let missed = || Missed {
                repository: d.repository.clone(),
                digest: d.digest,
                why: d.why.clone().unwrap_or_default(),
            };
            match d.result {
                "deleted" => o.deleted += 1,
                "already-gone" => o.already_gone += 1,
                "failed" => o.failed.push(missed()),
                "skipped" => o.skipped.push(missed()),
                _ => o.not_attempted += 1,
            }
        }
        o.deletions = deletions;
        o
    }
}

/// Why the run must stop: every further request would fail the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fatal {
    /// 405: the registry has deletes disabled.
    DeleteDisabled,
    /// 401/403 for a repository.
    Denied {
        /// The repository.
        repo: String,
        /// 401 or 403.
        status: u16,
        /// What the request needed: `delete` for a DELETE, `pull` for a read.
        action: &'static str,
        /// Why, as the registry's Bearer challenge says (`insufficient_scope`, ...).
        refusal: Option<Refusal>,
    },
}

impl std::fmt::Display for Fatal {
    /// The status as a person reads it: `405 Method Not Allowed`, `401 Unauthorized`, with
    /// the challenge's error when there is one: `401 Unauthorized (insufficient_scope)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (status, refusal) = match self {
            Fatal::DeleteDisabled => return f.write_str("405 Method Not Allowed"),
            Fatal::Denied {
                status, refusal, ..
            } => (*status, refusal),
        };
        match status {
            401 => f.write_str("401 Unauthorized")?,
            403 => f.write_str("403 Forbidden")?,
            s => write!(f, "{s}")?,
        }
        match refusal {
            Some(r) => write!(f, " ({})", r.code()),
            None => Ok(()),
        }
    }
}

/// Why a registry refused a bearer token: the `error` of its challenge (RFC 6750 section 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `insufficient_scope`: the token does not grant what the request needs.
    InsufficientScope {
        /// The challenge's `scope`: what the request needs, e.g. `repository:app:delete`.
        scope: Option<String>,
    },
    /// `invalid_token`: the token expired, was revoked or is not trusted.
    InvalidToken {
        /// The challenge's `error_description`, if any.
        description: Option<String>,
    },
    /// Another `error` value.
    Other {
        /// The `error` value.
        error: String,
    },
}

impl Refusal {
    /// The `error` value as the registry spells it.
    pub fn code(&self) -> &str {
        match self {
            Refusal::InsufficientScope { .. } => "insufficient_scope",
            Refusal::InvalidToken { .. } => "invalid_token",
            Refusal::Other { error } => error,
        }
    }

    /// The actions the registry asked for on `repo` (`delete` in `repository:<repo>:delete`);
    /// empty when the challenge names no scope for it.
    pub fn actions_on(&self, repo: &str) -> Vec<String> {
        let Refusal::InsufficientScope { scope: Some(scope) } = self else {
            return Vec::new();
        };
        // Several scopes are separated by spaces; a repository name never holds ':'.
        scope
            .split_whitespace()
            .filter_map(|s| s.strip_prefix("repository:"))
            .filter_map(|s| s.rsplit_once(':'))
            .filter(|(name, _)| *name == repo)
            .flat_map(|(_, actions)| actions.split(','))
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// The outcome of one DELETE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteResult {
    /// 202: deleted.
    Deleted,
    /// 404: already gone (another run, or a concurrent delete).
    AlreadyGone,
    /// Failed after retries, or a non-retryable error; the text says how.
    Failed(String),
    /// Stop the whole run.
    Fatal(Fatal),
    /// Not sent: the run stopped (a signal, or an answer that halted the client) before it
    /// could go.
    Cancelled,
    /// The registry stopped answering (connections fail again and again); nothing more is
    /// sent to it.
    Unreachable {
        /// Whether an attempt of this delete was sent (it counts as attempted and failed).
        sent: bool,
        /// The last connection error.
        last: String,
    },
    /// Not sent: the repository's re-verification is older than the deadline; re-verify,
    /// then send again.
    Stale {
        /// Whether an earlier attempt of this delete was sent (it counts as attempted).
        sent: bool,
        /// The answer of that attempt.
        last: Option<String>,
    },
}

/// Receives a line for each finished deletion (the original's `Deleted:` lines).
pub trait Progress: Send + Sync + 'static {
    /// One deletion finished.
    fn done(&self, plan: &RepoPlan, digest: &Digest, result: &DeleteResult);
    /// One deletion was skipped.
    fn skipped(&self, plan: &RepoPlan, digest: &Digest, why: &str);
}
