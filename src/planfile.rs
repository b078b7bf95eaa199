//! Plan files: `regsweep plan --out FILE` writes what would be deleted, and `regsweep apply
//! FILE` deletes exactly that after re-verifying each entry against storage.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::plan::RepoPlan;

/// Format version written in every plan file.
pub const VERSION: u32 = 1;

/// A whole plan file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// Always [`VERSION`].
    pub regsweep_plan: u32,
    /// The policy time the plan was made at (unix seconds); apply plans as of it.
    pub now: i64,
    /// `local` or `S3`.
    pub storage: String,
    /// Bytes garbage-collect frees once applied.
    pub bytes_freed: u64,
    /// Repositories with something to delete, sorted by name.
    pub repositories: Vec<RepoEntry>,
}

/// One repository's deletions.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoEntry {
    /// Repository name.
    pub name: String,
    /// Manifests to delete, parents before children.
    pub delete: Vec<DeleteEntry>,
}

/// One manifest to delete, with the tags on it when planned.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteEntry {
    /// The manifest.
    pub digest: Digest,
    /// Why it goes (the report's reason).
    pub reason: String,
    /// Tags pointing at it when planned (they go with it); apply refuses it if they changed.
    pub tags: Vec<String>,
}

/// Builds the plan file of a scan.
pub fn build(plans: &[Arc<RepoPlan>], now: i64, storage: &str, bytes_freed: u64) -> PlanFile {
    let repositories = plans
        .iter()
        .filter(|p| p.delete_count() > 0)
        .map(|p| {
            let tags = p.tags_by_digest();
            RepoEntry {
                name: p.name.to_string(),
                delete: p
                    .delete_decisions()
                    .map(|d| DeleteEntry {
                        digest: d.digest,
                        reason: reason_name(p, d),
                        tags: tags
                            .get(&d.digest)
                            .map(|v| v.iter().map(|t| (*t).to_owned()).collect())
                            .unwrap_or_default(),
                    })
                    .collect(),
            }
        })
        .collect();
    PlanFile {
        regsweep_plan: VERSION,
        now,
        storage: storage.to_owned(),
        bytes_freed,
        repositories,
    }
}

fn reason_name(p: &RepoPlan, d: &crate::plan::Decision) -> String {
    p.reason(d).name().to_owned()
}

/// Writes `file` to `path` atomically (a temporary file renamed over it).
pub fn write(path: &Path, file: &PlanFile) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("--out {}: {e}", path.display()))?;
    serde_json::to_writer_pretty(&mut tmp, file)
        .map_err(|e| format!("--out {}: {e}", path.display()))?;
    tmp.write_all(b"\n")
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| format!("--out {}: {e}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| format!("--out {}: {e}", path.display()))?;
    Ok(())
}

/// Reads and checks a plan file.
pub fn read(path: &Path) -> Result<PlanFile, String> {
    let body = std::fs::read(path).map_err(|e| format!("plan file {}: {e}", path.display()))?;
    let file: PlanFile = serde_json::from_slice(&body)
        .map_err(|e| format!("plan file {}: not a regsweep plan: {e}", path.display()))?;
    if file.regsweep_plan != VERSION {
        return Err(format!(
            "plan file {}: format version {} (this regsweep reads {VERSION})",
            path.display(),
            file.regsweep_plan
        ));
    }
    Ok(file)
}

/// Which planned entries `fresh` (a plan of the same repository made now, as of the plan
/// file's time) may delete, and why each other one is refused.
pub fn admit(entry: &RepoEntry, fresh: &RepoPlan) -> (Vec<Digest>, BTreeMap<Digest, String>) {
    let tags_now = fresh.tags_by_digest();
    let mut ok = Vec::new();
    let mut refused = BTreeMap::new();
    for e in &entry.delete {
        let now = tags_now.get(&e.digest).cloned().unwrap_or_default();
        let why = match fresh.decision(&e.digest) {
            None => Some("its revision link is gone since the plan".to_owned()),
            Some(_) if now.iter().copied().ne(e.tags.iter().map(String::as_str)) => Some(format!(
                "its tags changed since the plan (then {:?}, now {now:?})",
                e.tags
            )),
            Some(d) if d.verdict == crate::plan::Verdict::Keep => Some(format!(
                "a plan made now keeps it ({})",
                reason_name(fresh, d)
            )),
            Some(_) => None,
        };
        match why {
            Some(w) => {
                refused.insert(e.digest, w);
            }
            None => ok.push(e.digest),
        }
    }
    (ok, refused)
}
