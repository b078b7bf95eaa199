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

pub use client::{ClientOptions, DeleteResult, Fatal, RegistryClient, TagsError};

use auth::Refusal;

use crate::digest::{Digest, DigestMap, DigestSet};
use crate::plan::RepoPlan;
use journal::{Journal, Record};
use ledger::{Deletion, Ledger, Settled};

/// One deletion that did not happen, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Missed {
    /// Repository.
    pub repository: String,
    /// Manifest.
    pub digest: Digest,
    /// What went wrong (status and message, or what changed).
    pub why: String,
}

/// What a deletion pass did: counts and lists taken from its ledger, where every planned
/// delete has exactly one outcome.
#[derive(Clone, Debug, Default, serde::Serialize)]
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
    /// The counts and lists of a closed ledger.
    fn of(deletions: Vec<Deletion>) -> Outcome {
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
    ) -> Result<DigestMap<Skip>, String>;
    /// The repository's tags in storage now, each with its current digest.
    fn current_tags(&self, repo: &str) -> Result<Vec<(String, Digest)>, String>;
}

/// The default of [`Run::reverify_window`].
pub const REVERIFY_WINDOW: Duration = Duration::from_secs(30);

/// Re-verifications a single delete may wait for before it counts as failed.
const MAX_BOUNCES: u32 = 6;

/// Receives a line for each finished deletion (the original's `Deleted:` lines).
pub trait Progress: Send + Sync + 'static {
    /// One deletion finished.
    fn done(&self, plan: &RepoPlan, digest: &Digest, result: &DeleteResult);
    /// One deletion was skipped.
    fn skipped(&self, plan: &RepoPlan, digest: &Digest, why: &str);
}

/// Where deletes go.
pub enum Target {
    /// Through the registry's HTTP API (the registry keeps running).
    Api(Box<RegistryClient>),
    /// Straight in storage (`--delete-via storage`): the registry is stopped or read-only.
    Storage(Arc<dyn crate::scan::Storage>),
}

/// Everything a deletion pass needs besides the plans.
pub struct Run {
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

struct Shared {
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

impl Shared {
    /// True once the run stops: a fatal answer (already when the client halted, before it
    /// is recorded), the circuit breaker, or a signal.
    fn stopping(&self) -> bool {
        let halted = matches!(&self.target, Target::Api(c) if c.halted());
        halted || self.stop.load(Ordering::SeqCst) || self.cancel.load(Ordering::SeqCst)
    }

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
pub async fn execute(run: Run, plans: Vec<Arc<RepoPlan>>) -> Outcome {
    let shared = Arc::new(Shared {
        target: run.target,
        who: run.who,
        stop: AtomicBool::new(false),
        cancel: run.cancel,
        ledger: Ledger::new(&plans),
        fatal: Mutex::new(None),
        failed_repos: Mutex::new(HashSet::new()),
        reverify: run.reverify,
        progress: run.progress,
        journal: run.journal,
        reverify_window: run.reverify_window,
    });
    for p in &plans {
        for d in p.delete_digests() {
            shared.journal(Record::Plan {
                repo: p.name.to_string(),
                digest: d.to_string(),
            });
        }
    }
    let mut set = JoinSet::new();
    for plan in plans.into_iter().filter(|p| p.delete_count() > 0) {
        while set.len() >= run.repo_parallelism.max(1) {
            set.join_next().await;
        }
        if shared.stopping() {
            break;
        }
        let s = shared.clone();
        set.spawn(async move { delete_repository(s, plan).await });
    }
    while set.join_next().await.is_some() {}
    let Some(shared) = Arc::into_inner(shared) else {
        // Every task has ended, so nothing else holds it; never reached.
        return Outcome {
            fatal: Some("internal error: the deleter's state is still shared".to_owned()),
            ..Outcome::default()
        };
    };
    close(shared)
}

/// Settles what was never attempted, journals it, closes the journal and gives the outcome.
fn close(shared: Shared) -> Outcome {
    let Shared {
        ledger,
        cancel,
        fatal,
        failed_repos,
        journal,
        ..
    } = shared;
    let interrupted = cancel.load(Ordering::SeqCst);
    let failed_repos = failed_repos
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let deletions = ledger.close(|repo| why_not(failed_repos.contains(repo), interrupted));
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
        out.journal_error = Some(e);
    }
    out
}

/// Why a delete that was never settled was not attempted.
fn why_not(parent_failed: bool, interrupted: bool) -> String {
    if parent_failed {
        "not sent: an earlier delete in its repository failed (a parent stays, so do its children)"
            .to_owned()
    } else if interrupted {
        "not sent: the run was interrupted".to_owned()
    } else {
        "not sent: the run stopped".to_owned()
    }
}

/// Checks that the registry at REGISTRY_URL serves the same tags, each on the same digest,
/// as the storage under REGISTRY_DIR: a wrong directory (a backup, a lagging replica,
/// another registry) must never drive deletes.
async fn same_registry(s: &Arc<Shared>, plan: &Arc<RepoPlan>) -> Result<(), String> {
    let Target::Api(client) = &s.target else {
        return Ok(()); // Offline: storage is the only truth, the registry is stopped.
    };
    let fatal = |f: Fatal| {
        let text = fatal_text(&f, &s.who);
        s.halt(|| text.clone());
        text
    };
    let mut api = match client.tag_names(&plan.name).await {
        Ok(t) => t,
        Err(TagsError::Fatal(f)) => return Err(fatal(f)),
        Err(TagsError::Failed(e)) => {
            return Err(format!("cannot list its tags through the API: {e}"));
        }
    };
    let name = plan.name.to_string();
    let s2 = s.clone();
    let mut stored = tokio::task::spawn_blocking(move || s2.reverify.current_tags(&name))
        .await
        .unwrap_or_else(|e| Err(format!("reading tags panicked: {e}")))?;
    api.sort();
    stored.sort();
    let stored_names: Vec<&str> = stored.iter().map(|(n, _)| n.as_str()).collect();
    if api != stored_names {
        return Err(format!(
            "the registry lists {} tags for {} but storage under REGISTRY_DIR has {}: \
             is REGISTRY_DIR the storage of REGISTRY_URL? (or tags changed during the run)",
            api.len(),
            plan.name,
            stored.len()
        ));
    }
    // Same names are not enough: a stale copy may have a tag on another digest.
    let client: &RegistryClient = client;
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
            Ok(got) => {
                let got = got.map_or_else(|| "no such tag".to_owned(), |d| d.to_string());
                return Err(format!(
                    "tag {tag}: the registry serves {got} but storage under REGISTRY_DIR says {want}: \
                     is REGISTRY_DIR the storage of REGISTRY_URL (not a stale copy or a lagging replica)? \
                     (or the tag moved during the run)"
                ));
            }
            Err(TagsError::Fatal(f)) => return Err(fatal(f)),
            Err(TagsError::Failed(e)) => {
                return Err(format!("cannot check tag {tag} through the API: {e}"));
            }
        }
    }
    Ok(())
}

/// Which of `pending` to skip now, each with why; all of them when re-reading fails.
async fn changed(
    s: &Arc<Shared>,
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
    bounces: u32,
    /// The answer of its last attempt.
    last: Option<String>,
}

impl Pending {
    /// A delete no round has touched yet.
    fn new(digest: Digest) -> Pending {
        Pending {
            digest,
            sent: false,
            bounces: 0,
            last: None,
        }
    }
}

async fn delete_repository(s: Arc<Shared>, plan: Arc<RepoPlan>) {
    if let Err(why) = same_registry(&s, &plan).await {
        if !s.stopping() {
            for d in plan.delete_digests() {
                s.skip(&plan, &d, &why);
            }
        }
        return;
    }
    let mut layers: Vec<Vec<Digest>> = Vec::new();
    for (d, layer) in plan.deletes() {
        let l = layer as usize;
        if layers.len() <= l {
            layers.resize_with(l + 1, Vec::new);
        }
        layers[l].push(d);
    }
    // Skipped digests of this repository: what they refer to is held back with them.
    let mut held = DigestSet::default();
    // Deleted by this run (or found gone): storage is expected to lack them.
    let mut removed = DigestSet::default();
    for layer in layers {
        let mut pending: Vec<Pending> = layer.into_iter().map(Pending::new).collect();
        while !pending.is_empty() {
            if s.stopping() {
                abandon(&s, &plan, pending);
                return;
            }
            // Re-verify, then send only within the window after it: a delete that cannot go
            // in time comes back for the next round (rule 9).
            let verified_at = Instant::now();
            let digests: Vec<Digest> = pending.iter().map(|p| p.digest).collect();
            let changed = changed(&s, &plan, &digests, &held, &removed).await;
            let window = s.reverify_window.max(verified_at.elapsed() * 2);
            let deadline = verified_at + window;
            let mut go = Vec::with_capacity(pending.len());
            for p in pending {
                match changed.get(&p.digest) {
                    // An earlier attempt reached the registry (its answer was lost).
                    Some(why) if p.sent && why.gone => {
                        removed.insert(p.digest);
                        done(&s, &plan, p.digest, DeleteResult::AlreadyGone);
                    }
                    Some(why) => {
                        if held.insert(p.digest) {
                            s.skip(&plan, &p.digest, why);
                        }
                    }
                    None => go.push(p),
                }
            }
            let tried: Vec<Digest> = go.iter().map(|p| p.digest).collect();
            pending = match &s.target {
                Target::Storage(storage) => {
                    storage_layer(&s, &plan, storage.clone(), go, deadline).await
                }
                Target::Api(_) => api_layer(&s, &plan, go, deadline).await,
            };
            // What did not come back is done (a failure ends the repository just below).
            let back: DigestSet = pending.iter().map(|p| p.digest).collect();
            removed.extend(tried.into_iter().filter(|d| !back.contains(d)));
            // A child waits until every parent is gone: if a parent failed, keep its children.
            if s.failed_in(&plan.name) {
                abandon(&s, &plan, pending);
                return;
            }
        }
    }
}

/// Leaves a repository's pending deletes: one sent before (and waiting to be retried)
/// failed with its last answer; the others stay not attempted.
fn abandon(s: &Arc<Shared>, plan: &Arc<RepoPlan>, pending: Vec<Pending>) {
    for p in pending.into_iter().filter(|p| p.sent) {
        let why = format!(
            "{} (not retried: the run stopped)",
            p.last.unwrap_or_else(|| "sent, no answer".to_owned())
        );
        done(s, plan, p.digest, DeleteResult::Failed(why));
    }
}

/// Most manifests removed from storage in one call, so each call stays inside the window.
const STORAGE_CHUNK: usize = 1000;

/// One round of deletes straight in storage (`--delete-via storage`), in chunks, until
/// `deadline`; returns what is left for the next round.
async fn storage_layer(
    s: &Arc<Shared>,
    plan: &Arc<RepoPlan>,
    storage: Arc<dyn crate::scan::Storage>,
    go: Vec<Pending>,
    deadline: Instant,
) -> Vec<Pending> {
    let mut rest = go.into_iter().map(|p| p.digest).collect::<Vec<_>>();
    while !rest.is_empty() {
        if Instant::now() > deadline || s.stopping() {
            break;
        }
        let chunk: Vec<Digest> = rest.drain(..rest.len().min(STORAGE_CHUNK)).collect();
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
    s: &Arc<Shared>,
    plan: &Arc<RepoPlan>,
    go: Vec<Pending>,
    deadline: Instant,
) -> Vec<Pending> {
    let mut set = JoinSet::new();
    for p in go {
        let s = s.clone();
        let plan = plan.clone();
        set.spawn(async move {
            let gate = |_first: bool| !s.stopping();
            let Target::Api(client) = &s.target else {
                return None;
            };
            let r = client
                .delete_manifest(&plan.name, &p.digest, &gate, deadline)
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
                DeleteResult::Stale { sent, last } => {
                    let sent = sent || p.sent;
                    let last = last.or(p.last.clone());
                    if p.bounces < MAX_BOUNCES {
                        return Some(Pending {
                            digest: p.digest,
                            sent,
                            bounces: p.bounces + 1,
                            last,
                        });
                    }
                    DeleteResult::Failed(format!(
                        "{} (no attempt fit inside a re-verification window {MAX_BOUNCES} times)",
                        last.unwrap_or_else(|| "not sent".to_owned())
                    ))
                }
                r => r,
            };
            done(&s, &plan, p.digest, r);
            None
        });
    }
    let mut again = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(Some(p)) = r {
            again.push(p);
        }
    }
    again
}

/// One finished delete: settled in the ledger (and journaled), then its progress line.
fn done(s: &Arc<Shared>, plan: &Arc<RepoPlan>, d: Digest, r: DeleteResult) {
    if record(s, plan, d, &r) {
        s.progress.done(plan, &d, &r);
    }
}

/// Settles one finished delete; a fatal answer also stops the run. False when there was
/// nothing to settle (not sent) or it was settled before.
fn record(s: &Arc<Shared>, plan: &Arc<RepoPlan>, d: Digest, r: &DeleteResult) -> bool {
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
