//! Deleter: deletes a plan through the registry API, parents before children, re-verifying
//! each repository against storage just before touching it.

pub mod auth;
pub mod client;
pub mod verify;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinSet;

pub use client::{ClientOptions, DeleteResult, Fatal, RegistryClient, TagsError};

use crate::digest::{Digest, DigestMap};
use crate::plan::RepoPlan;

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

struct Shared {
    client: RegistryClient,
    stop: AtomicBool,
    outcome: Mutex<Outcome>,
    attempted: AtomicUsize,
    reverify: Box<dyn Reverify>,
    progress: Box<dyn Progress>,
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

/// Deletes every plan's `delete_order` through `client`; repositories in parallel,
/// inside one repository layer by layer so no child goes before its parent.
pub async fn execute(
    client: RegistryClient,
    plans: Vec<Arc<RepoPlan>>,
    who: String,
    reverify: Box<dyn Reverify>,
    progress: Box<dyn Progress>,
    repo_parallelism: usize,
) -> Outcome {
    let total: usize = plans.iter().map(|p| p.delete_count()).sum();
    let shared = Arc::new(Shared {
        client,
        stop: AtomicBool::new(false),
        outcome: Mutex::new(Outcome::default()),
        attempted: AtomicUsize::new(0),
        reverify,
        progress,
    });
    let mut set = JoinSet::new();
    for plan in plans.into_iter().filter(|p| p.delete_count() > 0) {
        while set.len() >= repo_parallelism.max(1) {
            set.join_next().await;
        }
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let s = shared.clone();
        let who = who.clone();
        set.spawn(async move { delete_repository(s, plan, who).await });
    }
    while set.join_next().await.is_some() {}
    let attempted = shared.attempted.load(Ordering::SeqCst);
    let mut out = shared.outcome.lock().map(|o| o.clone()).unwrap_or_default();
    out.not_attempted = total.saturating_sub(attempted);
    out
}

/// Checks that the registry at REGISTRY_URL lists the same tags as the storage under
/// REGISTRY_DIR: a wrong directory (a backup, another registry) must never drive deletes.
async fn same_registry(s: &Arc<Shared>, plan: &Arc<RepoPlan>, who: &str) -> Result<(), String> {
    let mut api = match s.client.tag_names(&plan.name).await {
        Ok(t) => t,
        Err(TagsError::Fatal(f)) => {
            s.stop.store(true, Ordering::SeqCst);
            let text = fatal_text(&f, who);
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

fn skip_all(s: &Shared, plan: &RepoPlan, why: &str) {
    for d in &plan.delete_order {
        s.attempted.fetch_add(1, Ordering::SeqCst);
        s.progress.skipped(plan, d, why);
        if let Ok(mut o) = s.outcome.lock() {
            o.skipped.push(Missed {
                repository: plan.name.to_string(),
                digest: *d,
                why: why.to_owned(),
            });
        }
    }
}

async fn delete_repository(s: Arc<Shared>, plan: Arc<RepoPlan>, who: String) {
    if let Err(why) = same_registry(&s, &plan, &who).await {
        if !s.stop.load(Ordering::SeqCst) {
            skip_all(&s, &plan, &why);
        }
        return;
    }
    let changed = {
        let s = s.clone();
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || s.reverify.changed(&plan))
            .await
            .unwrap_or_else(|e| Err(format!("re-verification panicked: {e}")))
    };
    let changed = match changed {
        Ok(c) => c,
        Err(e) => plan
            .delete_order
            .iter()
            .map(|d| (*d, format!("cannot re-verify: {e}")))
            .collect(),
    };
    let mut layers: Vec<Vec<Digest>> = Vec::new();
    for (d, layer) in plan.delete_order.iter().zip(&plan.delete_layers) {
        if let Some(why) = changed.get(d) {
            s.attempted.fetch_add(1, Ordering::SeqCst);
            s.progress.skipped(&plan, d, why);
            if let Ok(mut o) = s.outcome.lock() {
                o.skipped.push(Missed {
                    repository: plan.name.to_string(),
                    digest: *d,
                    why: why.clone(),
                });
            }
            continue;
        }
        let l = *layer as usize;
        if layers.len() <= l {
            layers.resize_with(l + 1, Vec::new);
        }
        layers[l].push(*d);
    }
    for layer in layers {
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        let mut set = JoinSet::new();
        for d in layer {
            let s = s.clone();
            let plan = plan.clone();
            let who = who.clone();
            set.spawn(async move {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                s.attempted.fetch_add(1, Ordering::SeqCst);
                let r = s.client.delete_manifest(&plan.name, &d).await;
                s.progress.done(&plan, &d, &r);
                let Ok(mut o) = s.outcome.lock() else { return };
                match r {
                    DeleteResult::Deleted => o.deleted += 1,
                    DeleteResult::AlreadyGone => o.already_gone += 1,
                    DeleteResult::Failed(why) => o.failed.push(Missed {
                        repository: plan.name.to_string(),
                        digest: d,
                        why,
                    }),
                    DeleteResult::Fatal(f) => {
                        s.stop.store(true, Ordering::SeqCst);
                        o.failed.push(Missed {
                            repository: plan.name.to_string(),
                            digest: d,
                            why: fatal_text(&f, &who),
                        });
                        o.fatal.get_or_insert_with(|| fatal_text(&f, &who));
                    }
                }
            });
        }
        while set.join_next().await.is_some() {}
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
