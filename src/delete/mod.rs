//! Deleter: deletes a plan through the registry API, parents before children, re-verifying
//! each repository against storage just before touching it.

pub mod auth;
pub mod client;
pub mod journal;
pub mod verify;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;

pub use client::{ClientOptions, DeleteResult, Fatal, RegistryClient, TagsError};

use crate::digest::{Digest, DigestMap};
use crate::plan::RepoPlan;
use journal::{Journal, Record};

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

/// What a deletion pass did.
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
}

/// Re-reads a repository from storage and says which planned deletions must now be skipped.
pub trait Reverify: Send + Sync + 'static {
    /// Digests of `plan` to skip, each with the reason.
    fn changed(&self, plan: &RepoPlan) -> Result<DigestMap<String>, String>;
    /// The repository's tag names in storage now.
    fn current_tags(&self, repo: &str) -> Result<Vec<String>, String>;
}

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
}

struct Shared {
    target: Target,
    who: String,
    stop: AtomicBool,
    cancel: Arc<AtomicBool>,
    outcome: Mutex<Outcome>,
    attempted: AtomicUsize,
    reverify: Box<dyn Reverify>,
    progress: Box<dyn Progress>,
    journal: Option<Journal>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.cancel.load(Ordering::SeqCst)
    }

    fn journal(&self, r: Record) {
        if let Some(j) = &self.journal {
            j.record(r);
        }
    }

    fn miss(&self, plan: &RepoPlan, d: &Digest, why: &str, skipped: bool) {
        self.journal(Record::Missed {
            repo: plan.name.to_string(),
            digest: d.to_string(),
            why: why.to_owned(),
        });
        if let Ok(mut o) = self.outcome.lock() {
            let m = Missed {
                repository: plan.name.to_string(),
                digest: *d,
                why: why.to_owned(),
            };
            if skipped {
                o.skipped.push(m)
            } else {
                o.failed.push(m)
            }
        }
    }

    fn skip(&self, plan: &RepoPlan, d: &Digest, why: &str) {
        self.attempted.fetch_add(1, Ordering::SeqCst);
        self.progress.skipped(plan, d, why);
        self.miss(plan, d, why, true);
    }
}

fn fatal_text(f: &Fatal, client_who: &str) -> String {
    match f {
        Fatal::DeleteDisabled => "the registry refuses deletes (405 Method Not Allowed): enable them with \
             `storage: delete: enabled: true` in its config.yml (or REGISTRY_STORAGE_DELETE_ENABLED=true) and restart it"
            .to_owned(),
        Fatal::Denied { repo, status } => {
            format!("the registry answered {status} deleting in repository {repo} with {client_who}: the credentials lack delete rights there")
        }
    }
}

/// Deletes every plan's `delete_order`; repositories in parallel, inside one repository
/// layer by layer so no child goes before its parent. Returns what happened; the journal
/// is flushed and closed before it returns.
pub async fn execute(run: Run, plans: Vec<Arc<RepoPlan>>) -> Outcome {
    let total: usize = plans.iter().map(|p| p.delete_count()).sum();
    let shared = Arc::new(Shared {
        target: run.target,
        who: run.who,
        stop: AtomicBool::new(false),
        cancel: run.cancel,
        outcome: Mutex::new(Outcome::default()),
        attempted: AtomicUsize::new(0),
        reverify: run.reverify,
        progress: run.progress,
        journal: run.journal,
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
    let attempted = shared.attempted.load(Ordering::SeqCst);
    let mut out = shared.outcome.lock().map(|o| o.clone()).unwrap_or_default();
    out.not_attempted = total.saturating_sub(attempted);
    out.interrupted = shared.cancel.load(Ordering::SeqCst);
    if out.not_attempted == 0 && !out.interrupted {
        shared.journal(Record::End);
    }
    if let Some(j) = Arc::into_inner(shared).and_then(|s| s.journal)
        && let Err(e) = j.close()
    {
        out.journal_error = Some(e);
    }
    out
}

/// Checks that the registry at REGISTRY_URL lists the same tags as the storage under
/// REGISTRY_DIR: a wrong directory (a backup, another registry) must never drive deletes.
async fn same_registry(s: &Arc<Shared>, plan: &Arc<RepoPlan>) -> Result<(), String> {
    let Target::Api(client) = &s.target else {
        return Ok(()); // Offline: storage is the only truth, the registry is stopped.
    };
    let mut api = match client.tag_names(&plan.name).await {
        Ok(t) => t,
        Err(TagsError::Fatal(f)) => {
            s.stop.store(true, Ordering::SeqCst);
            let text = fatal_text(&f, &s.who);
            if let Ok(mut o) = s.outcome.lock() {
                o.fatal.get_or_insert_with(|| text.clone());
            }
            return Err(text);
        }
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
    if api != stored {
        return Err(format!(
            "the registry lists {} tags for {} but storage under REGISTRY_DIR has {}: \
             is REGISTRY_DIR the storage of REGISTRY_URL? (or tags changed during the run)",
            api.len(),
            plan.name,
            stored.len()
        ));
    }
    Ok(())
}

/// Digests of `plan` that changed since the scan, each with why; all of them on error.
async fn changed(s: &Arc<Shared>, plan: &Arc<RepoPlan>) -> DigestMap<String> {
    let (s2, p2) = (s.clone(), plan.clone());
    match tokio::task::spawn_blocking(move || s2.reverify.changed(&p2)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => plan
            .delete_digests()
            .map(|d| (d, format!("cannot re-verify: {e}")))
            .collect(),
        Err(e) => plan
            .delete_digests()
            .map(|d| (d, format!("re-verification panicked: {e}")))
            .collect(),
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
    let mut skipped = crate::digest::DigestSet::default();
    for layer in layers {
        if s.stopping() {
            return;
        }
        // Re-verify just before each layer: the window for a concurrent tag push is one layer.
        let changed = changed(&s, &plan).await;
        let mut go = Vec::with_capacity(layer.len());
        for d in layer {
            match changed.get(&d) {
                Some(why) => {
                    if skipped.insert(d) {
                        s.skip(&plan, &d, why);
                    }
                }
                None => go.push(d),
            }
        }
        match &s.target {
            Target::Storage(storage) => storage_layer(&s, &plan, storage.clone(), go).await,
            Target::Api(_) => api_layer(&s, &plan, go).await,
        }
        // A child waits until every parent is gone: if a parent failed, keep its children.
        let failed_here = s
            .outcome
            .lock()
            .map(|o| o.failed.iter().any(|m| *m.repository == *plan.name))
            .unwrap_or(true);
        if failed_here {
            return;
        }
    }
}

/// One layer of deletes straight in storage (`--delete-via storage`), in one call.
async fn storage_layer(
    s: &Arc<Shared>,
    plan: &Arc<RepoPlan>,
    storage: Arc<dyn crate::scan::Storage>,
    go: Vec<Digest>,
) {
    s.attempted.fetch_add(go.len(), Ordering::SeqCst);
    let name = plan.name.clone();
    let results =
        match tokio::task::spawn_blocking(move || storage.remove_manifests(&name, &go)).await {
            Ok(r) => r,
            Err(e) => {
                s.stop.store(true, Ordering::SeqCst);
                if let Ok(mut o) = s.outcome.lock() {
                    o.fatal
                        .get_or_insert(format!("removing from storage panicked: {e}"));
                }
                return;
            }
        };
    for (d, r) in results {
        let r = match r {
            Ok(true) => DeleteResult::Deleted,
            Ok(false) => DeleteResult::AlreadyGone,
            Err(e) => DeleteResult::Failed(e),
        };
        s.progress.done(plan, &d, &r);
        record(s, plan, d, r);
    }
}

/// One layer of deletes through the API, in parallel up to the client's concurrency.
async fn api_layer(s: &Arc<Shared>, plan: &Arc<RepoPlan>, go: Vec<Digest>) {
    let mut set = JoinSet::new();
    for d in go {
        let s = s.clone();
        let plan = plan.clone();
        set.spawn(async move {
            let gate = || {
                let go = !s.stopping();
                if go {
                    s.attempted.fetch_add(1, Ordering::SeqCst);
                }
                go
            };
            let Target::Api(client) = &s.target else {
                return;
            };
            let r = client.delete_manifest(&plan.name, &d, &gate).await;
            if r == DeleteResult::Cancelled {
                return;
            }
            s.progress.done(&plan, &d, &r);
            record(&s, &plan, d, r);
        });
    }
    while set.join_next().await.is_some() {}
}

/// Journals and counts one finished delete.
fn record(s: &Arc<Shared>, plan: &Arc<RepoPlan>, d: Digest, r: DeleteResult) {
    match r {
        DeleteResult::Cancelled => {}
        DeleteResult::Deleted | DeleteResult::AlreadyGone => {
            let gone = r == DeleteResult::AlreadyGone;
            s.journal(Record::Done {
                repo: plan.name.to_string(),
                digest: d.to_string(),
                result: if gone { "already-gone" } else { "deleted" }.to_owned(),
            });
            if let Ok(mut o) = s.outcome.lock() {
                if gone {
                    o.already_gone += 1
                } else {
                    o.deleted += 1
                }
            }
        }
        DeleteResult::Failed(why) => s.miss(plan, &d, &why, false),
        DeleteResult::Fatal(f) => {
            s.stop.store(true, Ordering::SeqCst);
            let text = fatal_text(&f, &s.who);
            s.miss(plan, &d, &text, false);
            if let Ok(mut o) = s.outcome.lock() {
                o.fatal.get_or_insert(text);
            }
        }
    }
}
