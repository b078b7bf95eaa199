//! Upload purging, as the registry's own (`uploadpurging`): every `_uploads/<uuid>` under a
//! repository whose `startedat` time is older than a cutoff goes, directory and all. An
//! upload without a readable `startedat` is kept (the registry keeps it too) and reported.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use futures_util::stream::{self, StreamExt};
use rayon::prelude::*;

use crate::s3::S3Store;

/// One upload in progress (or abandoned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// `<repository>/_uploads/<uuid>`, relative to `repositories/`.
    pub shown: String,
    /// Its keys, on S3 (empty on a filesystem, where the directory goes whole).
    pub keys: Vec<String>,
    /// Its `startedat` time (unix seconds), or why that cannot be told.
    pub started_at: Result<i64, String>,
}

/// Whether `name` is an upload id as the registry writes them (a hyphenated UUID).
fn is_uuid(name: &str) -> bool {
    name.len() == 36
        && name.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Reads a `startedat` file's content: an RFC 3339 time.
fn started_at(body: &[u8]) -> Result<i64, String> {
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_owned())?;
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp())
        .map_err(|e| format!("{:?} is no RFC 3339 time: {e}", text.trim()))
}

/// The uploads to purge: started before `cutoff`. Those whose start cannot be told are
/// kept, with a warning naming them.
pub fn older_than(all: Vec<Upload>, cutoff: i64) -> Vec<Upload> {
    let mut old = Vec::new();
    for u in all {
        match &u.started_at {
            Ok(t) if *t < cutoff => old.push(u),
            Ok(_) => {}
            Err(why) => crate::logging::warn(format_args!(
                "upload {}: its startedat cannot be read ({why}): kept",
                u.shown
            )),
        }
    }
    old
}

/// The `repositories` directory of a registry rooted at `root`.
fn repositories(root: &Path) -> std::path::PathBuf {
    root.join("docker/registry/v2/repositories")
}

/// Lists every repository's uploads on a filesystem, never entering `_layers` or
/// `_manifests`.
pub fn list_fs(root: &Path) -> Result<Vec<Upload>, String> {
    let top = repositories(root);
    let mut out = walk_fs(&top, "")?;
    out.sort_by(|a, b| a.shown.cmp(&b.shown));
    Ok(out)
}

fn read_dir_names(dir: &Path) -> Result<Vec<(String, bool)>, String> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    let mut names = Vec::new();
    for e in rd {
        let e = e.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let is_dir = e
            .file_type()
            .map_err(|err| format!("{}: {err}", e.path().display()))?
            .is_dir();
        names.push((e.file_name().to_string_lossy().into_owned(), is_dir));
    }
    Ok(names)
}

fn walk_fs(top: &Path, rel: &str) -> Result<Vec<Upload>, String> {
    let dir = top.join(rel);
    let children = read_dir_names(&dir)?;
    let parts: Vec<Result<Vec<Upload>, String>> = children
        .par_iter()
        .filter(|(_, is_dir)| *is_dir)
        .map(|(name, _)| {
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if name == "_uploads" {
                uploads_in(top, &child)
            } else if name.starts_with('_') {
                Ok(Vec::new())
            } else {
                walk_fs(top, &child)
            }
        })
        .collect();
    let mut out = Vec::new();
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

fn uploads_in(top: &Path, rel: &str) -> Result<Vec<Upload>, String> {
    let mut out = Vec::new();
    for (name, is_dir) in read_dir_names(&top.join(rel))? {
        if !is_dir || !is_uuid(&name) {
            continue; // what the registry cannot tell an upload of, it leaves too
        }
        let shown = format!("{rel}/{name}");
        let file = top.join(&shown).join("startedat");
        let started_at = fs::read(&file)
            .map_err(|e| format!("{}: {e}", file.display()))
            .and_then(|b| started_at(&b));
        out.push(Upload {
            shown,
            keys: Vec::new(),
            started_at,
        });
    }
    Ok(out)
}

/// Removes the uploads' directories; gives those that could not be removed, with why.
pub fn remove_fs(root: &Path, old: &[Upload]) -> Vec<(String, String)> {
    let top = repositories(root);
    old.par_iter()
        .filter_map(|u| {
            let dir = top.join(&u.shown);
            match fs::remove_dir_all(&dir) {
                Ok(()) => None,
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => Some((u.shown.clone(), format!("{}: {e}", dir.display()))),
            }
        })
        .collect()
}

/// Lists every repository's uploads in a bucket: delimiter listings level by level above
/// the repositories (never into `_layers` or `_manifests`), a full listing of each
/// `_uploads/`, and a GET of each `startedat`.
pub async fn list_s3(store: &S3Store) -> Result<Vec<Upload>, String> {
    let top = format!("{}repositories/", store.base);
    let mut upload_dirs = Vec::new();
    let mut level = vec![String::new()];
    while !level.is_empty() {
        let pages: Vec<_> = stream::iter(level.drain(..).map(|dir| {
            let prefix = format!("{top}{dir}");
            async move { store.list_all(&prefix, Some("/")).await }
        }))
        .buffer_unordered(store.concurrency.max(1))
        .collect()
        .await;
        for page in pages {
            let (_, prefixes) = page.map_err(|e| e.to_string())?;
            for p in prefixes {
                let child = p.strip_prefix(&top).unwrap_or(&p).to_owned();
                let leaf = child.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                if leaf == "_uploads" {
                    upload_dirs.push(child);
                } else if !leaf.starts_with('_') {
                    level.push(child);
                }
            }
        }
    }
    let listed: Vec<_> = stream::iter(upload_dirs.iter().map(|dir| {
        let prefix = format!("{top}{dir}");
        async move { store.list_all(&prefix, None).await }
    }))
    .buffer_unordered(store.concurrency.max(1))
    .collect()
    .await;
    // Per upload: its keys.
    let mut uploads: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for page in listed {
        let (objects, _) = page.map_err(|e| e.to_string())?;
        for o in objects {
            let Some(key) = o.key() else { continue };
            let rel = key.strip_prefix(&top).unwrap_or(key);
            let Some((repo, rest)) = rel.split_once("/_uploads/") else {
                continue;
            };
            let Some((id, _)) = rest.split_once('/') else {
                continue;
            };
            if is_uuid(id) {
                uploads
                    .entry(format!("{repo}/_uploads/{id}"))
                    .or_default()
                    .push(key.to_owned());
            }
        }
    }
    let out = stream::iter(uploads.into_iter().map(|(shown, keys)| {
        let key = format!("{top}{shown}/startedat");
        async move {
            let started_at = if keys.contains(&key) {
                match store.get(&key, crate::s3::GetKind::Link).await {
                    Ok(b) => started_at(&b),
                    Err(e) => Err(format!("s3://{}/{key}: {e}", store.bucket)),
                }
            } else {
                Err(format!("s3://{}/{key}: no such key", store.bucket))
            };
            Upload {
                shown,
                keys,
                started_at,
            }
        }
    }))
    .buffered(store.concurrency.max(1))
    .collect()
    .await;
    Ok(out)
}

/// Deletes the uploads' keys; gives those whose deletion failed, once each, with why.
pub async fn remove_s3(store: &S3Store, old: &[Upload]) -> Vec<(String, String)> {
    let keys: Vec<(String, String)> = old
        .iter()
        .flat_map(|u| u.keys.iter().map(|k| (u.shown.clone(), k.clone())))
        .collect();
    store.delete_owned(&keys).await.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_and_start_times_read_as_the_registry_writes_them() {
        assert!(is_uuid("0b0f6a6e-2f37-4d3b-9c51-5b6f1c1d2e3f"));
        assert!(!is_uuid("0b0f6a6e2f374d3b9c515b6f1c1d2e3f"));
        assert!(!is_uuid("0b0f6a6e-2f37-4d3b-9c51-5b6f1c1d2e3g"));
        assert_eq!(started_at(b"2026-11-01T10:00:00Z"), Ok(1_793_527_200));
        assert!(started_at(b"yesterday").is_err());
        let up = |shown: &str, t: Result<i64, String>| Upload {
            shown: shown.to_owned(),
            keys: Vec::new(),
            started_at: t,
        };
        let old = older_than(
            vec![
                up("a/_uploads/1", Ok(10)),
                up("a/_uploads/2", Ok(100)),
                up("a/_uploads/3", Err("gone".into())),
            ],
            50,
        );
        assert_eq!(old, vec![up("a/_uploads/1", Ok(10))]);
    }
}
