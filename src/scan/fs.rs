//! Filesystem lister: jwalk discovers repositories in parallel (never entering `_layers`
//! or `_uploads`, never following symlinks), rayon reads their links; offline mode removes
//! links as the registry's own delete does. Nothing else in storage is ever written.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Sender, bounded};
use jwalk::{Parallelism, WalkDirGeneric};
use rayon::prelude::*;

use super::BlobSource;
use super::fs_at::Dir;
use super::fs_blobs::FsBlobs;
use super::{Batch, Batcher, RepoFilter, RepoRecord, Revision, ScanStats, Storage, TagLink};
use crate::digest::{Digest, DigestMap, DigestSet};

/// A filesystem registry: the jwalk lister and blob reads under one root.
pub struct FsStorage {
    lister: FsLister,
    blobs: FsBlobs,
}

impl FsStorage {
    /// The registry whose `rootdirectory` is `root`, scanned with `threads` threads.
    pub fn new(root: &Path, threads: usize) -> FsStorage {
        FsStorage {
            lister: FsLister::new(root, threads),
            blobs: FsBlobs::new(root),
        }
    }

    /// Counts every revision link read into `links` (scan progress).
    pub fn with_progress(mut self, links: Arc<AtomicU64>) -> FsStorage {
        self.lister.links = links;
        self
    }
}

impl Storage for FsStorage {
    fn list(&self, filter: &RepoFilter, out: &Sender<Batch>) -> ScanStats {
        self.lister.list(filter, out)
    }
    fn read_repo(&self, name: &str) -> RepoRecord {
        self.lister.read_repo(name)
    }
    fn read_tags(&self, name: &str) -> (Vec<TagLink>, Vec<String>) {
        self.lister.read_tags(name)
    }
    fn blobs(&self) -> &dyn BlobSource {
        &self.blobs
    }
    fn kind(&self) -> &'static str {
        "local"
    }
    fn remove_manifests(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Vec<(Digest, Result<bool, String>)> {
        self.lister.remove_manifests(repo, digests)
    }
}

/// How many repository names travel together from the walker to the readers.
const BATCH: usize = 32;
/// Repositories with more revisions than this are read in parallel inside the repository.
const PAR_REVISIONS: usize = 512;

/// Lists a filesystem registry rooted at `<root>/docker/registry/v2`.
pub struct FsLister {
    repositories: PathBuf,
    threads: usize,
    /// Revision links read so far (scan progress inside big repositories).
    links: Arc<AtomicU64>,
}

impl FsLister {
    /// A lister over `root` (the registry's `rootdirectory`) using `threads` walker threads.
    pub fn new(root: &Path, threads: usize) -> FsLister {
        FsLister {
            repositories: root.join("docker/registry/v2/repositories"),
            threads: threads.max(1),
            links: Arc::default(),
        }
    }

    /// Where the repositories live (`<root>/docker/registry/v2/repositories`).
    pub fn repositories_dir(&self) -> &Path {
        &self.repositories
    }

    /// Walks every repository that `filter` admits and sends its record in batches to `out`.
    pub fn list(&self, filter: &RepoFilter, out: &Sender<Batch>) -> ScanStats {
        let warnings = Mutex::new(Vec::new());
        let (names_tx, names_rx) = bounded::<Vec<String>>(64);
        let mut repositories = 0;
        std::thread::scope(|s| {
            let warnings = &warnings;
            let walker = s.spawn(move || self.discover(filter, &names_tx, warnings));
            let readers: Vec<_> = (0..self.threads)
                .map(|_| {
                    let names_rx = names_rx.clone();
                    s.spawn(move || {
                        for names in names_rx.iter() {
                            if self.read_batch(&names, out).is_err() {
                                return; // the planners are gone: the run is aborting
                            }
                        }
                    })
                })
                .collect();
            drop(names_rx);
            repositories = walker.join().unwrap_or(0);
            for r in readers {
                let _ = r.join();
            }
        });
        ScanStats {
            repositories,
            warnings: warnings.into_inner().unwrap_or_default(),
        }
    }

    /// Reads the repositories `names` and sends their records on in [`Batcher`]'s
    /// batches. Fails only when the planners are gone.
    fn read_batch(&self, names: &[String], out: &Sender<Batch>) -> Result<(), ()> {
        let mut batcher = Batcher::default();
        for n in names {
            if let Some(batch) = batcher.push(self.read_repo(n)) {
                out.send(batch).map_err(drop)?;
            }
        }
        if let Some(batch) = batcher.finish() {
            out.send(batch).map_err(drop)?;
        }
        Ok(())
    }

    /// Finds repository names (directories holding `_manifests`) and sends them in batches.
    fn discover(
        &self,
        filter: &RepoFilter,
        tx: &Sender<Vec<String>>,
        warnings: &Mutex<Vec<String>>,
    ) -> usize {
        let walk = WalkDirGeneric::<((), ())>::new(&self.repositories)
            .skip_hidden(false)
            .follow_links(false)
            .parallelism(Parallelism::RayonNewPool(self.threads))
            .process_read_dir(|_, _, _, children| {
                children.retain(|c| match c {
                    Ok(e) => {
                        (e.file_type.is_dir() || e.file_type.is_symlink())
                            && e.file_name != "_layers"
                            && e.file_name != "_uploads"
                    }
                    Err(_) => true,
                });
                for e in children.iter_mut().flatten() {
                    // Symlinks are reported, never followed (loops, escapes from the root).
                    if e.file_name == "_manifests" || e.file_type.is_symlink() {
                        e.read_children_path = None;
                    }
                }
            });
        let mut count = 0;
        let mut batch = Vec::with_capacity(BATCH);
        for entry in walk {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    push(
                        warnings,
                        format!("cannot read {}: {e}", error_path(&e, &self.repositories)),
                    );
                    continue;
                }
            };
            if let Some(err) = &entry.read_children_error {
                push(
                    warnings,
                    format!("cannot read {}: {err}", entry.path().display()),
                );
            }
            if entry.file_type.is_symlink() {
                push(
                    warnings,
                    format!(
                        "skipping symlink {} (symlinks are not followed)",
                        entry.path().display()
                    ),
                );
                continue;
            }
            if entry.file_name != "_manifests" {
                continue;
            }
            let dir = entry.parent_path();
            let name = match dir
                .strip_prefix(&self.repositories)
                .ok()
                .and_then(Path::to_str)
            {
                Some(n) if !n.is_empty() => n.to_owned(),
                _ => {
                    push(
                        warnings,
                        format!(
                            "skipping repository with a non-UTF-8 or empty name: {}",
                            dir.display()
                        ),
                    );
                    continue;
                }
            };
            if !filter.matches(&name) {
                continue;
            }
            count += 1;
            batch.push(name);
            if batch.len() == BATCH
                && tx
                    .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                    .is_err()
            {
                return count;
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
        count
    }

    /// Reads one repository's tags' current links only; problems are returned beside them.
    pub fn read_tags(&self, name: &str) -> (Vec<TagLink>, Vec<String>) {
        let mut problems = Vec::new();
        let tags = read_tags(
            &self.repositories.join(name).join("_manifests/tags"),
            &mut problems,
        );
        (tags, problems)
    }

    /// See [`Storage::remove_manifests`]: tag directories first, so that a run cut off
    /// half way leaves an untagged revision (deleted by the next run), never a tag without
    /// its manifest.
    pub fn remove_manifests(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Vec<(Digest, Result<bool, String>)> {
        let manifests = self.repositories.join(repo).join("_manifests");
        let (tags, problems) = self.read_tags(repo);
        if let Some(p) = problems.first() {
            // Unsure which tags point where: remove nothing.
            let why = format!("cannot read the tags of {repo}: {p}");
            return digests.iter().map(|d| (*d, Err(why.clone()))).collect();
        }
        let doomed: DigestSet = digests.iter().copied().collect();
        let mut tag_errors: DigestMap<String> = DigestMap::default();
        for t in tags.iter().filter(|t| doomed.contains(&t.digest)) {
            let dir = manifests.join("tags").join(&t.name);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != io::ErrorKind::NotFound
            {
                tag_errors
                    .entry(t.digest)
                    .or_insert(format!("{}: {e}", dir.display()));
            }
        }
        digests
            .iter()
            .map(|d| {
                if let Some(e) = tag_errors.get(d) {
                    return (*d, Err(e.clone()));
                }
                let link = manifests
                    .join("revisions/sha256")
                    .join(d.hex())
                    .join("link");
                let r = match std::fs::remove_file(&link) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(format!("{}: {e}", link.display())),
                };
                // As the registry's delete does (its manifest link paths are the revision
                // link and, from distribution 2.1, `_layers/sha256/<hex>/link`): the file
                // only, its directory stays.
                let layer_link = self
                    .repositories
                    .join(repo)
                    .join("_layers/sha256")
                    .join(d.hex())
                    .join("link");
                let r = match (r, std::fs::remove_file(&layer_link)) {
                    (Err(e), _) => Err(e),
                    (r, Ok(())) => r.map(|_| true),
                    (r, Err(e)) if e.kind() == io::ErrorKind::NotFound => r,
                    (_, Err(e)) => Err(format!("{}: {e}", layer_link.display())),
                };
                (*d, r)
            })
            .collect()
    }

    /// Reads one repository's revision links and tags' current links.
    pub fn read_repo(&self, name: &str) -> RepoRecord {
        let manifests = self.repositories.join(name).join("_manifests");
        let mut rec = RepoRecord {
            name: Arc::from(name),
            ..RepoRecord::default()
        };
        read_revisions(&manifests.join("revisions/sha256"), &mut rec, &self.links);
        rec.tags = read_tags(&manifests.join("tags"), &mut rec.problems);
        rec
    }
}

fn push(warnings: &Mutex<Vec<String>>, w: String) {
    if let Ok(mut v) = warnings.lock() {
        v.push(w);
    }
}

fn error_path(e: &jwalk::Error, fallback: &Path) -> String {
    e.path().unwrap_or(fallback).display().to_string()
}

/// Outcome of reading one revision directory.
enum RevisionRead {
    Linked(Revision),
    /// The directory has no link: left behind by the registry's own delete.
    Gone,
    Bad(String),
}

fn read_revisions(dir: &Path, rec: &mut RepoRecord, links: &AtomicU64) {
    let listed = fs::read_dir(dir).and_then(|rd| {
        let names = rd
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<Vec<_>>>()?;
        Ok((Dir::open(dir)?, names))
    });
    let (open, names) = match listed {
        Ok(v) => v,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            return rec
                .problems
                .push(format!("cannot list {}: {e}", dir.display()));
        }
    };
    let read = |name: &OsString| {
        links.fetch_add(1, Ordering::Relaxed);
        read_revision(dir, &open, name)
    };
    let results: Vec<RevisionRead> = if names.len() > PAR_REVISIONS {
        names.par_iter().map(read).collect()
    } else {
        names.iter().map(read).collect()
    };
    rec.revisions.reserve(results.len());
    for r in results {
        match r {
            RevisionRead::Linked(rev) => rec.revisions.push(rev),
            RevisionRead::Gone => {}
            RevisionRead::Bad(p) => rec.problems.push(p),
        }
    }
}

/// Reads `<name>/link` below the revisions directory `dir` (open as `open`).
fn read_revision(dir: &Path, open: &Dir, name: &OsStr) -> RevisionRead {
    let Some((hex, expected)) = name
        .to_str()
        .and_then(|hex| Some((hex, Digest::from_hex(hex)?)))
    else {
        return RevisionRead::Bad(format!(
            "{}: not a sha256 revision directory",
            dir.join(name).display()
        ));
    };
    let rel = format!("{hex}/link");
    let path = || dir.join(&rel);
    match open.read_link(&rel) {
        Ok((digest, _)) if digest != expected => RevisionRead::Bad(format!(
            "{}: link names {digest} but sits in the directory of {expected}",
            path().display()
        )),
        Ok((digest, linked_at)) => RevisionRead::Linked(Revision { digest, linked_at }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => RevisionRead::Gone,
        Err(e) => RevisionRead::Bad(format!("{}: {e}", path().display())),
    }
}

fn read_tags(dir: &Path, problems: &mut Vec<String>) -> Vec<TagLink> {
    let listed = fs::read_dir(dir).and_then(|rd| Ok((Dir::open(dir)?, rd)));
    let (open, rd) = match listed {
        Ok(v) => v,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(format!("cannot list {}: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut tags = Vec::new();
    for entry in rd {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("cannot list {}: {e}", dir.display()));
                continue;
            }
        };
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            problems.push(format!("{}: tag name is not UTF-8", entry.path().display()));
            continue;
        };
        let rel = format!("{name}/current/link");
        match open.read_link(&rel) {
            Ok((digest, linked_at)) => tags.push(TagLink {
                name,
                digest,
                linked_at,
            }),
            Err(e) => problems.push(format!("{}: {e}", dir.join(&rel).display())),
        }
    }
    tags
}
