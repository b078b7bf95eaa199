//! Deleter: deletes a plan through the registry API, parents before children, re-verifying
//! each repository against storage just before touching it.

pub mod auth;
pub mod client;
pub mod journal;
pub mod ledger;
pub mod verify;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinSet;

pub use client::{ClientOptions, RegistryClient, TagsError};

use crate::digest::{Digest, DigestMap, DigestSet};
use crate::outcome::{DeleteResult, Fatal, Outcome, Progress, Refusal};
use crate::plan::RepoPlan;
use journal::{Journal, Record};
use ledger::{Ledger, Settled};

/// Why re-verification holds a planned delete back; reads as its text (`Deref<str>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    /// The revision link is gone: for a delete already sent once, that attempt did its job.
    pub gone: bool,
    /// Why, for people.
    why: String,
}

impl Skip {
    /// Held back for `why`.
    pub fn because(why: impl Into<String>) -> Skip {
        Skip {
            gone: false,
            why: why.into(),
        }
    }

    /// The revision link disappeared since the scan.
    pub fn gone() -> Skip {
        Skip {
            gone: true,
            why: "its revision link disappeared since the scan".to_owned(),
        }
    }
}

impl std::ops::Deref for Skip {
    type Target = str;
    fn deref(&self) -> &str {
        &self.why
    }
}

/// Re-reads a repository from storage and says which planned deletions must now be skipped.
pub trait Reverify: Send + Sync + 'static {
    /// Which of `pending` (deletions of `plan` not yet done) to skip, each with the reason;
    /// `held` are those skipped before, whose descendants must stay too; `removed` those
    /// this run already deleted (storage is expected to lack them and their tags).
    fn changed(
        &self,
        plan: &RepoPlan,
        pending: &[Digest],
        held: &DigestSet,
        removed: &DigestSet,
    ) -> Result<DigestMap<Skip>, ReverifyError>;
    /// The repository's tags in storage now, each with its current digest.
    fn current_tags(&self, repo: &str) -> Result<Vec<(String, Digest)>, ReverifyError>;
}

/// Why storage could not be re-read; reads as the problem the storage reported.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ReverifyError {
    /// Storage could not be read as the scan read it (its problem, worded by the scan).
    #[error("{0}")]
    Unreadable(String),
}

/// The default of [`DeletionPass::reverify_window`].
pub const REVERIFY_WINDOW: Duration = Duration::from_secs(30);

/// Fresh re-verifications a single delete may wait for (none of its attempts fitting in
/// the window after one) before it counts as failed.
const MAX_REVERIFY_WAITS: u32 = 6;

/// Where deletes go.
pub enum Target {
    /// Through the registry's HTTP API (the registry keeps running).
    Api(Box<RegistryClient>),
    /// Straight in storage (`--delete-via storage`): the registry is stopped or read-only.
    Storage(Arc<dyn crate::storage::Storage>),
}

/// Everything a deletion pass needs besides the plans.
pub struct DeletionPass {
    /// Where deletes go.
    pub target: Target,
    /// Who the credentials are, for error messages.
    pub who: String,
    /// Re-reads storage before each layer of deletes.
    pub reverify: Box<dyn Reverify>,
    /// Prints progress.
    pub progress: Box<dyn Progress>,
    /// Repositories worked on at once.
    pub repo_parallelism: usize,
    /// Where planned and finished deletes are recorded, if anywhere.
    pub journal: Option<Journal>,
    /// Set from outside (Ctrl-C) to stop scheduling new deletes.
    pub cancel: Arc<AtomicBool>,
    /// How long after re-reading a repository its deletes may still be sent; a delete (or
    /// a retry) that would go later waits for a fresh re-read. Stretched to twice the time
    /// a re-read takes when that is longer, so a slow re-read still lets deletes through.
    pub reverify_window: Duration,
}

/// The deleter: what every repository's task of one pass shares (where deletes go, the
/// ledger, the journal, why the pass stopped).
struct Deleter {
    target: Target,
    who: String,
    stop: AtomicBool,
    cancel: Arc<AtomicBool>,
    ledger: Ledger,
    /// Why the run stopped early (the first reason only).
    fatal: Mutex<Option<String>>,
    /// Repositories with a failed delete: their later layers are not attempted.
    failed_repos: Mutex<HashSet<Arc<str>>>,
    reverify: Box<dyn Reverify>,
    progress: Box<dyn Progress>,
    journal: Option<Journal>,
    reverify_window: Duration,
}

impl Deleter {
    /// True once the run stops: a fatal answer (already when the client halted, before it
    /// is recorded), the circuit breaker, or a signal.
    fn stopping(&self) -> bool {
        let halted = matches!(&self.target, Target::Api(c) if c.halted());
        halted || self.stop.load(Ordering::SeqCst) || self.cancel.load(Ordering::SeqCst)
    }

    /// Journals `r`, if there is a journal.
    fn journal(&self, r: Record) {
        if let Some(j) = &self.journal {
            j.record(r);
        }
    }

    /// Stops the run for `why` (the first reason is the one reported).
    fn halt(&self, why: impl FnOnce() -> String) {
        self.stop.store(true, Ordering::SeqCst);
        let mut fatal = self.fatal.lock().unwrap_or_else(PoisonError::into_inner);
        if fatal.is_none() {
            *fatal = Some(why());
        }
    }

    /// Settles one delete in the ledger and journals it; false (nothing recorded) when it
    /// was settled before.
    fn settle(&self, plan: &RepoPlan, d: Digest, outcome: Settled) -> bool {
        let (repo, digest) = (plan.name.to_string(), d.to_string());
        let record = match &outcome {
            Settled::Deleted => Record::Done {
                repo,
                digest,
                result: "deleted".to_owned(),
            },
            Settled::AlreadyGone => Record::Done {
                repo,
                digest,
                result: "already-gone".to_owned(),
            },
            Settled::Failed(why) | Settled::Skipped(why) => Record::Missed {
                repo,
                digest,
                why: why.clone(),
            },
        };
        let failed = matches!(outcome, Settled::Failed(_));
        if !self.ledger.settle(&plan.name, d, outcome) {
            tracing::debug!(repo = &*plan.name, %d, "settled twice; the first outcome stays");
            return false;
        }
        if failed {
            let mut repos = self
                .failed_repos
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            repos.insert(plan.name.clone());
        }
        self.journal(record);
        true
    }

    /// Whether a delete of `repo` failed.
    fn failed_in(&self, repo: &str) -> bool {
        let repos = self
            .failed_repos
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        repos.contains(repo)
    }

    /// Records a delete held back by re-verification.
    fn skip(&self, plan: &RepoPlan, d: &Digest, why: &str) {
        if self.settle(plan, *d, Settled::Skipped(why.to_owned())) {
            self.progress.skipped(plan, d, why);
        }
    }
}

/// The run's one-line error for a fatal answer, naming the repository, the user and what
/// to do.
fn fatal_text(f: &Fatal, client_who: &str) -> String {
    let Fatal::Denied {
        repo,
        status,
        action,
        refusal,
    } = f
    else {
        return "the registry refuses deletes (405 Method Not Allowed): enable them with \
             `storage: delete: enabled: true` in its config.yml (or REGISTRY_STORAGE_DELETE_ENABLED=true) and restart it"
            .to_owned();
    };
    let doing = if *action == "delete" {
        format!("deleting in repository {repo}")
    } else {
        format!("reading repository {repo}")
    };
    match refusal {
        Some(r @ Refusal::InsufficientScope { .. }) => {
            let asked = r.actions_on(repo);
            let missing = if asked.is_empty() {
                (*action).to_owned()
            } else {
                asked.join(",")
            };
            format!(
                "the registry answered {f} {doing}: the token issued to {client_who} lacks the \
                 `{missing}` action on repository {repo}; grant that user {missing} on {repo} in \
                 the token service, or run with credentials that have it"
            )
        }
        Some(Refusal::InvalidToken { description }) => {
            let said = description
                .as_deref()
                .map_or_else(String::new, |d| format!(": {d:?}"));
            format!(
                "the registry answered {f} {doing} with {client_who}: its token is no longer \
                 valid, expired or revoked (invalid_token{said}); check that the clocks of this \
                 machine, the token service and the registry agree and that the registry trusts \
                 the token service's signing certificate, then rerun"
            )
        }
        _ if *status == 401 => format!(
            "the registry answered {f} {doing} with {client_who}: \
             the credentials are no longer accepted (expired, revoked or changed during the run?)"
        ),
        _ => format!(
            "the registry answered {f} {doing} with {client_who}: \
             the credentials lack {action} rights there"
        ),
    }
}

/// Deletes every plan's `delete_order`; repositories in parallel, inside one repository
/// layer by layer so no child goes before its parent. Returns what happened to each planned
/// delete; the journal is flushed and closed before it returns.
pub async fn execute(pass: DeletionPass, plans: Vec<Arc<RepoPlan>>) -> Outcome {
    let deleter = Arc::new(Deleter {
        target: pass.target,
        who: pass.who,
        stop: AtomicBool::new(false),
        cancel: pass.cancel,
        ledger: Ledger::new(&plans),
        fatal: Mutex::new(None),
        failed_repos: Mutex::new(HashSet::new()),
        reverify: pass.reverify,
        progress: pass.progress,
        journal: pass.journal,
        reverify_window: pass.reverify_window,
    });
    for p in &plans {
        for d in p.delete_digests() {
            deleter.journal(Record::Plan {
                repo: p.name.to_string(),
                digest: d.to_string(),
            });
        }
    }
    let mut set = JoinSet::new();
    for plan in plans.into_iter().filter(|p| p.delete_count() > 0) {
        while set.len() >= pass.repo_parallelism.max(1) {
            set.join_next().await;
        }
        if deleter.stopping() {
            break;
        }
        let s = deleter.clone();
        set.spawn(async move { delete_repository(s, plan).await });
    }
    while set.join_next().await.is_some() {}
    let Some(deleter) = Arc::into_inner(deleter) else {
        // Every task has ended, so nothing else holds it; never reached.
        return Outcome {
            fatal: Some("internal error: the deleter's state is still shared".to_owned()),
            ..Outcome::default()
        };
    };
    close(deleter)
}

/// Settles what was never attempted, journals it, closes the journal and gives the outcome.
fn close(deleter: Deleter) -> Outcome {
    let Deleter {
        ledger,
        cancel,
        fatal,
        failed_repos,
        journal,
        ..
    } = deleter;
    let interrupted = cancel.load(Ordering::SeqCst);
    let failed_repos = failed_repos
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let deletions = ledger.close(|repo| {
        let why = if failed_repos.contains(repo) {
            NotSent::ParentFailed
        } else if interrupted {
            NotSent::Interrupted
        } else {
            NotSent::Stopped
        };
        why.to_string()
    });
    let mut out = Outcome::of(deletions);
    out.interrupted = interrupted;
    out.fatal = fatal.into_inner().unwrap_or_else(PoisonError::into_inner);
    if let Some(j) = &journal {
        for d in out.deletions.iter().filter(|d| d.result == "not-attempted") {
            j.record(Record::NotAttempted {
                repo: d.repository.clone(),
                digest: d.digest.to_string(),
                why: d.why.clone().unwrap_or_default(),
            });
        }
        if out.not_attempted == 0 && !out.interrupted {
            j.record(Record::End);
        }
    }
    if let Some(j) = journal
        && let Err(e) = j.close()
    {
        out.journal_error = Some(e.to_string());
    }
    out
}

/// Why a delete that was never settled was not attempted.
#[derive(Clone, Copy, Debug, thiserror::Error)]
enum NotSent {
    /// A delete in its repository failed: a parent stays, so do its children.
    #[error(
        "not sent: an earlier delete in its repository failed (a parent stays, so do its children)"
    )]
    ParentFailed,
    /// A signal stopped the run.
    #[error("not sent: the run was interrupted")]
    Interrupted,
    /// A fatal answer or the circuit breaker stopped the run.
    #[error("not sent: the run stopped")]
    Stopped,
}

/// Why a repository's deletes cannot go: its registry may not be the one whose storage
/// was scanned, or the check itself failed. Reads as the skip reason.
#[derive(Debug, thiserror::Error)]
enum Unverified {
    /// A fatal answer stopped the run (recorded as the run's fatal error).
    #[error("{0}")]
    Fatal(Fatal),
    /// The API's tag list could not be read.
    #[error("cannot list its tags through the API: {0}")]
    TagList(TagsError),
    /// Storage's tags could not be read.
    #[error(transparent)]
    Storage(ReverifyError),
    /// Reading storage's tags panicked.
    #[error("reading tags panicked: {0}")]
    Panicked(tokio::task::JoinError),
    /// The API and storage list different numbers or names of tags.
    #[error(
        "the registry lists {api} tags for {repo} but storage under REGISTRY_DIR has {stored}: \
         is REGISTRY_DIR the storage of REGISTRY_URL? (or tags changed during the run)"
    )]
    TagNames {
        /// The repository.
        repo: Arc<str>,
        /// Tags the API lists.
        api: usize,
        /// Tags in storage.
        stored: usize,
    },
    /// A tag the API serves on another digest than storage has (or not at all).
    #[error(
        "tag {tag}: the registry serves {} but storage under REGISTRY_DIR says {want}: \
         is REGISTRY_DIR the storage of REGISTRY_URL (not a stale copy or a lagging replica)? \
         (or the tag moved during the run)",
        .got.map_or_else(|| "no such tag".to_owned(), |d| d.to_string())
    )]
    TagMoved {
        /// The tag.
        tag: String,
        /// What the API serves.
        got: Option<Digest>,
        /// What storage says.
        want: Digest,
    },
    /// A tag's digest could not be read through the API.
    #[error("cannot check tag {tag} through the API: {cause}")]
    TagCheck {
        /// The tag.
        tag: String,
        /// Why.
        cause: TagsError,
    },
}

/// Checks that the registry at REGISTRY_URL serves the same tags, each on the same digest,
/// as the storage under REGISTRY_DIR: a wrong directory (a backup, a lagging replica,
/// another registry) must never drive deletes. A fatal answer also stops the run.
async fn same_registry(s: &Arc<Deleter>, plan: &Arc<RepoPlan>) -> Result<(), Unverified> {
    let Target::Api(client) = &s.target else {
        return Ok(()); // Offline: storage is the only truth, the registry is stopped.
    };
    let checked = same_tags(s, client, plan).await;
    if let Err(Unverified::Fatal(f)) = &checked {
        s.halt(|| fatal_text(f, &s.who));
    }
    checked
}

/// The tag names and digests of `plan`'s repository, through the API and in storage, agree.
async fn same_tags(
    s: &Arc<Deleter>,
    client: &RegistryClient,
    plan: &Arc<RepoPlan>,
) -> Result<(), Unverified> {
    let mut api = client.tag_names(&plan.name).await.map_err(|e| match e {
        TagsError::Fatal(f) => Unverified::Fatal(f),
        e => Unverified::TagList(e),
    })?;
    let name = plan.name.to_string();
    let s2 = s.clone();
    let mut stored = tokio::task::spawn_blocking(move || s2.reverify.current_tags(&name))
        .await
        .map_err(Unverified::Panicked)?
        .map_err(Unverified::Storage)?;
    api.sort();
    stored.sort();
    let stored_names: Vec<&str> = stored.iter().map(|(n, _)| n.as_str()).collect();
    if api != stored_names {
        return Err(Unverified::TagNames {
            repo: plan.name.clone(),
            api: api.len(),
            stored: stored.len(),
        });
    }
    // Same names are not enough: a stale copy may have a tag on another digest.
    let repo: &str = &plan.name;
    let heads = futures_util::stream::iter(stored.into_iter().map(|(tag, want)| async move {
        let got = client.tag_digest(repo, &tag).await;
        (tag, want, got)
    }))
    .buffer_unordered(client.concurrency());
    futures_util::pin_mut!(heads);
    while let Some((tag, want, got)) = heads.next().await {
        match got {
            Ok(Some(d)) if d == want => {}
            Ok(got) => return Err(Unverified::TagMoved { tag, got, want }),
            Err(TagsError::Fatal(f)) => return Err(Unverified::Fatal(f)),
            Err(cause) => return Err(Unverified::TagCheck { tag, cause }),
        }
    }
    Ok(())
}

/// Which of `pending` to skip now, each with why; all of them when re-reading fails.
async fn changed(
    s: &Arc<Deleter>,
    plan: &Arc<RepoPlan>,
    pending: &[Digest],
    held: &DigestSet,
    removed: &DigestSet,
) -> DigestMap<Skip> {
    let (s2, p2) = (s.clone(), plan.clone());
    let (pending2, held2, removed2) = (pending.to_vec(), held.clone(), removed.clone());
    let why = match tokio::task::spawn_blocking(move || {
        s2.reverify.changed(&p2, &pending2, &held2, &removed2)
    })
    .await
    {
        Ok(Ok(c)) => return c,
        Ok(Err(e)) => format!("cannot re-verify: {e}"),
        Err(e) => format!("re-verification panicked: {e}"),
    };
    pending.iter().map(|d| (*d, Skip::because(&why))).collect()
}

/// A delete still to send, with what earlier rounds did with it.
#[derive(Clone, Debug)]
struct Pending {
    digest: Digest,
    /// An attempt was sent already: if the run stops before it is retried, it failed
    /// with its last answer (it is never "not attempted").
    sent: bool,
    /// Rounds it waited for a fresh re-verification.
    reverify_waits: u32,
    /// The answer of its last attempt.
    last: Option<String>,
}

impl Pending {
    /// A delete no round has touched yet.
    fn new(digest: Digest) -> Pending {
        Pending {
            digest,
            sent: false,
            reverify_waits: 0,
            last: None,
        }
    }
}

/// What one repository's deletes have come to so far, across its layers.
#[derive(Default)]
struct RepoProgress {
    /// Skipped digests of this repository: what they refer to is held back with them.
    held: DigestSet,
    /// Deleted by this run (or found gone): storage is expected to lack them.
    removed: DigestSet,
}

/// Deletes one repository's plan, layer by layer, each layer in rounds of re-verify, then
/// send; stops at the run's stop or at a failed delete (its children stay).
async fn delete_repository(s: Arc<Deleter>, plan: Arc<RepoPlan>) {
    if let Err(why) = same_registry(&s, &plan).await {
        if !matches!(why, Unverified::Fatal(_)) && !s.stopping() {
            let why = why.to_string();
            for d in plan.delete_digests() {
                s.skip(&plan, &d, &why);
            }
        }
        return;
    }
    let mut progress = RepoProgress::default();
    for layer in layers(&plan) {
        let mut pending: Vec<Pending> = layer.into_iter().map(Pending::new).collect();
        while !pending.is_empty() {
            if s.stopping() {
                abandon(&s, &plan, pending);
                return;
            }
            pending = round(&s, &plan, pending, &mut progress).await;
            // A child waits until every parent is gone: if a parent failed, keep its children.
            if s.failed_in(&plan.name) {
                abandon(&s, &plan, pending);
                return;
            }
        }
    }
}

/// The plan's deletes by layer: parents in earlier layers than their children.
fn layers(plan: &RepoPlan) -> Vec<Vec<Digest>> {
    let mut layers: Vec<Vec<Digest>> = Vec::new();
    for (d, layer) in plan.deletes() {
        let l = layer as usize;
        if layers.len() <= l {
            layers.resize_with(l + 1, Vec::new);
        }
        layers[l].push(d);
    }
    layers
}

/// One round: re-verify, then send only within the window after it; a delete that cannot
/// go in time comes back for the next round (rule 9). Returns what comes back.
async fn round(
    s: &Arc<Deleter>,
    plan: &Arc<RepoPlan>,
    pending: Vec<Pending>,
    progress: &mut RepoProgress,
) -> Vec<Pending> {
    let verified_at = Instant::now();
    let digests: Vec<Digest> = pending.iter().map(|p| p.digest).collect();
    let changed = changed(s, plan, &digests, &progress.held, &progress.removed).await;
    let window = s.reverify_window.max(verified_at.elapsed() * 2);
    let deadline = verified_at + window;
    let mut go = Vec::with_capacity(pending.len());
    for p in pending {
        match changed.get(&p.digest) {
            // An earlier attempt reached the registry (its answer was lost).
            Some(why) if p.sent && why.gone => {
                progress.removed.insert(p.digest);
                done(s, plan, p.digest, DeleteResult::AlreadyGone);
            }
            Some(why) => {
                if progress.held.insert(p.digest) {
                    s.skip(plan, &p.digest, why);
                }
            }
            None => go.push(p),
        }
    }
    let tried: Vec<Digest> = go.iter().map(|p| p.digest).collect();
    let back = match &s.target {
        Target::Storage(storage) => storage_layer(s, plan, storage.clone(), go, deadline).await,
        Target::Api(_) => api_layer(s, plan, go, deadline).await,
    };
    // What did not come back is done (a failure ends the repository after the round).
    let again: DigestSet = back.iter().map(|p| p.digest).collect();
    progress
        .removed
        .extend(tried.into_iter().filter(|d| !again.contains(d)));
    back
}

/// Leaves a repository's pending deletes: one sent before (and waiting to be retried)
/// failed with its last answer; the others stay not attempted.
fn abandon(s: &Arc<Deleter>, plan: &Arc<RepoPlan>, pending: Vec<Pending>) {
    for p in pending.into_iter().filter(|p| p.sent) {
        let why = format!(
            "{} (not retried: the run stopped)",
            p.last.unwrap_or_else(|| "sent, no answer".to_owned())
        );
        done(s, plan, p.digest, DeleteResult::Failed(why));
    }
}

/// Most manifests removed from storage in one call, so each call stays inside the window.
const MANIFESTS_PER_STORAGE_CALL: usize = 1000;

/// One round of deletes straight in storage (`--delete-via storage`), in chunks, until
/// `deadline`; returns what is left for the next round.
async fn storage_layer(
    s: &Arc<Deleter>,
    plan: &Arc<RepoPlan>,
    storage: Arc<dyn crate::storage::Storage>,
    go: Vec<Pending>,
    deadline: Instant,
) -> Vec<Pending> {
    let mut rest = go.into_iter().map(|p| p.digest).collect::<Vec<_>>();
    while !rest.is_empty() {
        if Instant::now() > deadline || s.stopping() {
            break;
        }
        let chunk: Vec<Digest> = rest
            .drain(..rest.len().min(MANIFESTS_PER_STORAGE_CALL))
            .collect();
        let name = plan.name.clone();
        let (st, sent) = (storage.clone(), chunk.clone());
        let results =
            match tokio::task::spawn_blocking(move || st.remove_manifests(&name, &sent)).await {
                Ok(r) => r,
                Err(e) => {
                    let why = format!("removing from storage panicked: {e}");
                    for d in chunk {
                        done(s, plan, d, DeleteResult::Failed(why.clone()));
                    }
                    s.halt(|| why);
                    return Vec::new();
                }
            };
        for (d, r) in results {
            let r = match r {
                Ok(true) => DeleteResult::Deleted,
                Ok(false) => DeleteResult::AlreadyGone,
                Err(e) => DeleteResult::Failed(e.to_string()),
            };
            done(s, plan, d, r);
        }
    }
    rest.into_iter().map(Pending::new).collect()
}

/// One round of deletes through the API, in parallel up to the client's concurrency; a
/// delete that cannot be sent (or retried) before `deadline` comes back for the next round.
async fn api_layer(
    s: &Arc<Deleter>,
    plan: &Arc<RepoPlan>,
    go: Vec<Pending>,
    deadline: Instant,
) -> Vec<Pending> {
    let mut set = JoinSet::new();
    for p in go {
        let (s, plan) = (s.clone(), plan.clone());
        set.spawn(async move { api_delete(&s, &plan, p, deadline).await });
    }
    let mut again = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(Some(p)) = r {
            again.push(p);
        }
    }
    again
}

/// Sends one delete through the API and settles it; `Some` when it must wait for a fresh
/// re-verification and come back.
async fn api_delete(
    s: &Arc<Deleter>,
    plan: &Arc<RepoPlan>,
    p: Pending,
    deadline: Instant,
) -> Option<Pending> {
    let Target::Api(client) = &s.target else {
        return None;
    };
    let still_wanted = || !s.stopping();
    let r = client
        .delete_manifest(&plan.name, &p.digest, &still_wanted, deadline)
        .await;
    let r = match r {
        DeleteResult::Cancelled if !p.sent => return None,
        DeleteResult::Cancelled => DeleteResult::Failed(
            p.last.clone().unwrap_or_else(|| "interrupted".to_owned())
                + " (not retried: the run stopped)",
        ),
        DeleteResult::Unreachable { sent, last } => {
            s.halt(|| {
                format!(
                    "the registry at {} stopped answering (connections failed again and again, last: {last}): \
                     nothing more was sent; rerun when it is back (with the same --journal to resume)",
                    client.base_url()
                )
            });
            if !(sent || p.sent) {
                return None; // never sent: not attempted
            }
            DeleteResult::Failed(last)
        }
        DeleteResult::Stale { sent, last } => return stale(s, plan, p, sent, last),
        r => r,
    };
    done(s, plan, p.digest, r);
    None
}

/// A delete that missed its re-verification window: back for another round, or failed
/// once it has waited [`MAX_REVERIFY_WAITS`] times.
fn stale(
    s: &Arc<Deleter>,
    plan: &Arc<RepoPlan>,
    p: Pending,
    sent: bool,
    last: Option<String>,
) -> Option<Pending> {
    let sent = sent || p.sent;
    let last = last.or(p.last);
    if p.reverify_waits < MAX_REVERIFY_WAITS {
        return Some(Pending {
            digest: p.digest,
            sent,
            reverify_waits: p.reverify_waits + 1,
            last,
        });
    }
    let why = format!(
        "{} (no attempt fit inside a re-verification window {MAX_REVERIFY_WAITS} times)",
        last.unwrap_or_else(|| "not sent".to_owned())
    );
    done(s, plan, p.digest, DeleteResult::Failed(why));
    None
}

/// One finished delete: settled in the ledger (and journaled), then its progress line.
fn done(s: &Arc<Deleter>, plan: &Arc<RepoPlan>, d: Digest, r: DeleteResult) {
    if record(s, plan, d, &r) {
        s.progress.done(plan, &d, &r);
    }
}

/// Settles one finished delete; a fatal answer also stops the run. False when there was
/// nothing to settle (not sent) or it was settled before.
fn record(s: &Arc<Deleter>, plan: &Arc<RepoPlan>, d: Digest, r: &DeleteResult) -> bool {
    let settled = match r {
        DeleteResult::Cancelled | DeleteResult::Stale { .. } => return false,
        DeleteResult::Deleted => Settled::Deleted,
        DeleteResult::AlreadyGone => Settled::AlreadyGone,
        DeleteResult::Failed(why) | DeleteResult::Unreachable { last: why, .. } => {
            Settled::Failed(why.clone())
        }
        DeleteResult::Fatal(f) => {
            // The status per delete; the explanation once, as the run's fatal error.
            s.halt(|| fatal_text(f, &s.who));
            Settled::Failed(f.to_string())
        }
    };
    s.settle(plan, d, settled)
}
