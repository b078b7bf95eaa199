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
use super::fs_at::{Dir, LinkError};
use super::fs_blobs::FsBlobs;
use super::{Batch, Batcher, RemoveError, RepoFilter, ScanStats, Storage};
use crate::digest::{Digest, DigestMap, DigestSet};
use crate::record::{Problem, ProblemKind, RepoRecord, Revision, TagLink};

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
    fn read_tags(&self, name: &str) -> (Vec<TagLink>, Vec<Problem>) {
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
    ) -> Vec<(Digest, Result<bool, RemoveError>)> {
        self.lister.remove_manifests(repo, digests)
    }
    fn read_repo_file(&self, repo: &str, rel: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.lister.repositories.join(repo).join(rel);
        match fs::read(&path) {
            Ok(body) => Ok(Some(body)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
}

/// A repository the walker found, with the problems of its shape it saw.
struct Found {
    name: String,
    problems: Vec<Problem>,
}

/// How many repository names the walker sends to the readers at once: one channel send
/// per 32 names instead of one per name, while the `threads` readers all get work early.
/// Chosen, not tuned: no other value was measured.
const WALKER_NAMES_PER_SEND: usize = 32;
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

    /// Walks every repository that `filter` admits and sends its record in batches to `out`.
    pub fn list(&self, filter: &RepoFilter, out: &Sender<Batch>) -> ScanStats {
        self.list_with(filter, out, |name| self.read_repo(name))
    }

    /// [`FsLister::list`], each repository read by `read`. A panic in the walker or in a
    /// reader is the caller's (resumed once every thread is joined): a record never sent
    /// must never pass for a repository that is not there (gc would sweep its blobs).
    fn list_with<R>(&self, filter: &RepoFilter, out: &Sender<Batch>, read: R) -> ScanStats
    where
        R: Fn(&str) -> RepoRecord + Sync,
    {
        let warnings = Mutex::new(Vec::new());
        let (names_tx, names_rx) = bounded::<Vec<Found>>(64);
        let mut repositories = 0;
        std::thread::scope(|s| {
            let warnings = &warnings;
            let read = &read;
            let walker = s.spawn(move || self.discover(filter, &names_tx, warnings));
            let readers: Vec<_> = (0..self.threads)
                .map(|_| {
                    let names_rx = names_rx.clone();
                    s.spawn(move || {
                        for found in names_rx.iter() {
                            if read_batch(found, read, out).is_err() {
                                return; // the planners are gone: the run is aborting
                            }
                        }
                    })
                })
                .collect();
            drop(names_rx);
            let walked = walker.join();
            let read: Vec<_> = readers.into_iter().map(|r| r.join()).collect();
            match walked {
                Ok(n) => repositories = n,
                Err(panic) => std::panic::resume_unwind(panic),
            }
            for r in read {
                if let Err(panic) = r {
                    std::panic::resume_unwind(panic);
                }
            }
        });
        ScanStats {
            repositories,
            warnings: warnings.into_inner().unwrap_or_default(),
        }
    }

    /// Finds repository names (directories holding `_manifests`) and sends them in batches,
    /// each with the problems of its shape seen on the way (from the directory entries'
    /// types: no system call of its own).
    ///
    /// A `_manifests` that is no directory (a regular file, say) is still a repository: its
    /// read fails it closed, naming the path (skipping it would leave its blobs unmarked).
    /// So is a `_layers` that is no directory beside a `_manifests`. What the registry's
    /// own collector does (2.8 `garbagecollect.go`: `registry.Enumerate` walks
    /// `repositories/` with the driver's `Walk`, `handleRepository` takes a repository from
    /// its `_layers` and skips every other `_` name, then the manifest enumerator walks
    /// `_manifests/revisions`), checked with `docker-registry garbage-collect --dry-run`
    /// 2.8.2: a `_manifests` or `_manifests/revisions` file fails its mark (`not a
    /// directory`); a `_manifests/tags` file fails it with `-m` only (tags are not read
    /// otherwise); a `_layers` file is worse: `ErrSkipDir` for a file ends the listing of
    /// that directory, so whatever sorts after `_layers` there, nested repositories among
    /// them, is never marked, and their blobs are listed for deletion. regsweep fails the
    /// repository closed in each case (and so stops gc).
    fn discover(
        &self,
        filter: &RepoFilter,
        tx: &Sender<Vec<Found>>,
        warnings: &Mutex<Vec<String>>,
    ) -> usize {
        self.discover_with(filter, tx, warnings, shape)
    }

    /// [`FsLister::discover`], each directory's entries sorted out by `shape`. A panic in
    /// `shape` is caught on jwalk's thread and resumed here once the walk has ended: left
    /// to unwind inside jwalk's rayon pool, it leaves the walk waiting forever on work that
    /// never comes (measured: a busy loop, never an abort and never an end).
    fn discover_with<P>(
        &self,
        filter: &RepoFilter,
        tx: &Sender<Vec<Found>>,
        warnings: &Mutex<Vec<String>>,
        shape: P,
    ) -> usize
    where
        P: Fn(&Path, &mut Vec<jwalk::Result<Entry>>) + Send + Sync + 'static,
    {
        let panicked: Arc<Mutex<Option<Panic>>> = Arc::default();
        let mut count = 0;
        let mut batch = Vec::with_capacity(WALKER_NAMES_PER_SEND);
        for entry in self.walk(shape, panicked.clone()) {
            let Some(found) = self.repository_at(entry, filter, warnings) else {
                continue;
            };
            count += 1;
            batch.push(found);
            if batch.len() == WALKER_NAMES_PER_SEND
                && tx
                    .send(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(WALKER_NAMES_PER_SEND),
                    ))
                    .is_err()
            {
                return count;
            }
        }
        if let Some(panic) = panicked.lock().ok().and_then(|mut p| p.take()) {
            std::panic::resume_unwind(panic);
        }
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
        count
    }

    /// The parallel walk below `repositories/`, never following symlinks, each directory's
    /// entries sorted out by `shape`; a panic in `shape` ends the walk and is kept in
    /// `panicked`.
    fn walk<P>(&self, shape: P, panicked: Arc<Mutex<Option<Panic>>>) -> Walk
    where
        P: Fn(&Path, &mut Vec<jwalk::Result<Entry>>) + Send + Sync + 'static,
    {
        WalkDirGeneric::<((), Vec<Problem>)>::new(&self.repositories)
            .skip_hidden(false)
            .follow_links(false)
            .parallelism(Parallelism::RayonNewPool(self.threads))
            .process_read_dir(move |_, dir, _, children| {
                let shaped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    shape(dir, children);
                }));
                if let Err(panic) = shaped {
                    children.clear(); // the walk winds down
                    if let Ok(mut p) = panicked.lock() {
                        p.get_or_insert(panic);
                    }
                }
            })
    }

    /// The repository a walked entry is (a `_manifests` whose directory `filter` admits),
    /// with the problems of its shape; what cannot be read, symlinks and odd names are
    /// warnings.
    fn repository_at(
        &self,
        entry: jwalk::Result<Entry>,
        filter: &RepoFilter,
        warnings: &Mutex<Vec<String>>,
    ) -> Option<Found> {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let at = error_path(&e, &self.repositories);
                push(warnings, format!("cannot read {at}: {e}"));
                return None;
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
            return None;
        }
        if entry.file_name != "_manifests" {
            return None;
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
                return None;
            }
        };
        filter.matches(&name).then(|| Found {
            name,
            problems: std::mem::take(&mut entry.client_state),
        })
    }

    /// Reads one repository's tags' current links only; problems are returned beside them.
    pub fn read_tags(&self, name: &str) -> (Vec<TagLink>, Vec<Problem>) {
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
    ) -> Vec<(Digest, Result<bool, RemoveError>)> {
        let manifests = self.repositories.join(repo).join("_manifests");
        let (tags, problems) = self.read_tags(repo);
        if let Some(p) = problems.first() {
            // Unsure which tags point where: remove nothing.
            let why = RemoveError::RepositoryUnread(format!("cannot read the tags of {repo}: {p}"));
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
                    return (*d, Err(RemoveError::Remove(e.clone())));
                }
                let link = manifests
                    .join("revisions/sha256")
                    .join(d.hex())
                    .join("link");
                let r = match std::fs::remove_file(&link) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(RemoveError::Remove(format!("{}: {e}", link.display()))),
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
                    (_, Err(e)) => Err(RemoveError::Remove(format!(
                        "{}: {e}",
                        layer_link.display()
                    ))),
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
        // A `_manifests` file fails both reads with the same line.
        rec.problems.dedup();
        rec
    }
}

/// Reads the repositories `found` with `read` and sends their records on in [`Batcher`]'s
/// batches, each with the problems the walker saw first. Fails only when the planners are
/// gone.
fn read_batch(
    found: Vec<Found>,
    read: &(impl Fn(&str) -> RepoRecord + Sync),
    out: &Sender<Batch>,
) -> Result<(), ()> {
    let mut batcher = Batcher::default();
    for f in found {
        let mut rec = read(&f.name);
        if !f.problems.is_empty() {
            rec.problems.splice(0..0, f.problems);
        }
        if let Some(batch) = batcher.push(rec) {
            out.send(batch).map_err(drop)?;
        }
    }
    if let Some(batch) = batcher.finish() {
        out.send(batch).map_err(drop)?;
    }
    Ok(())
}

/// A directory entry of the walk, with the problems of a repository's shape.
type Entry = jwalk::DirEntry<((), Vec<Problem>)>;

/// The walk over `repositories/`, each entry carrying the problems of a repository's shape.
type Walk = WalkDirGeneric<((), Vec<Problem>)>;

/// A panic caught on one of the walk's threads, resumed once the walk has ended.
type Panic = Box<dyn std::any::Any + Send>;

/// Sorts out one directory's entries for the walk: keeps directories (and symlinks, to
/// report them; and `_manifests` whatever it is), never enters `_manifests`, `_layers`,
/// `_uploads` or a symlink, and hands a `_layers` that is no directory to its repository.
fn shape(dir: &Path, children: &mut Vec<jwalk::Result<Entry>>) {
    let layers = children.iter().flatten().find_map(|e| {
        (e.file_name == "_layers" && !e.file_type.is_dir())
            .then(|| not_a_directory(&dir.join("_layers"), e.file_type))
    });
    children.retain(|c| match c {
        Ok(e) => {
            (e.file_type.is_dir() || e.file_type.is_symlink() || e.file_name == "_manifests")
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
        if e.file_name == "_manifests" {
            e.client_state.extend(layers.clone());
        }
    }
}

/// `<path>: not a directory (a regular file)`, from the type its directory entry gave.
fn not_a_directory(path: &Path, t: fs::FileType) -> Problem {
    use std::os::unix::fs::FileTypeExt;
    let what = if t.is_file() {
        "a regular file"
    } else if t.is_symlink() {
        "a symlink, which is not followed"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "of an unknown type"
    };
    Problem::new(
        ProblemKind::NotADirectory,
        format!("{}: not a directory ({what})", path.display()),
    )
}

/// Why listing `dir` failed with `e`, naming the path: for "not a directory", the first
/// component of `dir` that is no directory (a `_manifests` or `revisions` file, say), found
/// only on this error path.
fn cannot_list(dir: &Path, e: &io::Error) -> Problem {
    if e.kind() == io::ErrorKind::NotADirectory {
        let mut ancestors: Vec<&Path> = dir.ancestors().collect();
        ancestors.reverse();
        for a in ancestors {
            if let Ok(m) = fs::metadata(a)
                && !m.is_dir()
            {
                return not_a_directory(a, m.file_type());
            }
        }
    }
    Problem::new(
        ProblemKind::Unlistable,
        format!("cannot list {}: {e}", dir.display()),
    )
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
    Bad(Problem),
}

/// Reads every revision link below `dir` (`_manifests/revisions/sha256`) into `rec`,
/// counting each in `links`; a big repository's links are read in parallel.
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
            return rec.problems.push(cannot_list(dir, &e));
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
        return RevisionRead::Bad(Problem::new(
            ProblemKind::BadName,
            format!(
                "{}: not a sha256 revision directory",
                dir.join(name).display()
            ),
        ));
    };
    let rel = format!("{hex}/link");
    let path = || dir.join(&rel);
    match open.read_link(&rel) {
        Ok((digest, _)) if digest != expected => RevisionRead::Bad(Problem::new(
            ProblemKind::MisplacedLink,
            format!(
                "{}: link names {digest} but sits in the directory of {expected}",
                path().display()
            ),
        )),
        Ok((digest, linked_at)) => RevisionRead::Linked(Revision { digest, linked_at }),
        Err(e) if e.is_not_found() => RevisionRead::Gone,
        Err(e) => RevisionRead::Bad(link_problem(&path(), &e)),
    }
}

/// `<path>: <why>`, of the kind the link error makes.
fn link_problem(path: &Path, e: &LinkError) -> Problem {
    Problem::new(e.problem_kind(), format!("{}: {e}", path.display()))
}

/// Reads every tag's `current/link` below the tags directory `dir`; what cannot be read
/// goes to `problems`.
fn read_tags(dir: &Path, problems: &mut Vec<Problem>) -> Vec<TagLink> {
    let listed = fs::read_dir(dir).and_then(|rd| Ok((Dir::open(dir)?, rd)));
    let (open, rd) = match listed {
        Ok(v) => v,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(cannot_list(dir, &e));
            return Vec::new();
        }
    };
    let mut tags = Vec::new();
    for entry in rd {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                problems.push(Problem::new(
                    ProblemKind::Unlistable,
                    format!("cannot list {}: {e}", dir.display()),
                ));
                continue;
            }
        };
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            problems.push(Problem::new(
                ProblemKind::BadName,
                format!("{}: tag name is not UTF-8", entry.path().display()),
            ));
            continue;
        };
        let rel = format!("{name}/current/link");
        match open.read_link(&rel) {
            Ok((digest, linked_at)) => tags.push(TagLink {
                name,
                digest,
                linked_at,
            }),
            Err(e) => problems.push(link_problem(&dir.join(&rel), &e)),
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry root with repositories `a`, `b` and `c` (empty `_manifests`).
    fn three_repositories() -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        for r in ["a", "b", "c"] {
            fs::create_dir_all(
                root.path()
                    .join("docker/registry/v2/repositories")
                    .join(r)
                    .join("_manifests/revisions/sha256"),
            )
            .expect("mkdir");
        }
        root
    }

    #[test]
    fn a_reader_that_panics_aborts_the_listing_instead_of_shortening_it() {
        let root = three_repositories();
        let lister = FsLister::new(root.path(), 2);
        let (tx, rx) = crossbeam_channel::unbounded();
        let listed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lister.list_with(&RepoFilter::default(), &tx, |name| {
                assert!(name != "b", "reading {name} failed");
                lister.read_repo(name)
            })
        }));
        drop(tx);
        let sent: Vec<String> = rx.iter().flatten().map(|r| r.name.to_string()).collect();
        assert!(
            listed.is_err(),
            "the listing ended normally with {sent:?}: a repository went missing"
        );
        // And without a panic, all three.
        let (tx, rx) = crossbeam_channel::unbounded();
        let stats = lister.list(&RepoFilter::default(), &tx);
        drop(tx);
        assert_eq!(stats.repositories, 3);
        assert_eq!(rx.iter().flatten().count(), 3);
    }

    #[test]
    fn a_panic_while_walking_aborts_the_listing_instead_of_hanging_it() {
        let root = three_repositories();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let path = root.path().to_owned();
        std::thread::spawn(move || {
            let lister = FsLister::new(&path, 2);
            let (tx, rx) = bounded(64);
            let warnings = Mutex::new(Vec::new());
            let walked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                lister.discover_with(&RepoFilter::default(), &tx, &warnings, |dir, children| {
                    assert!(!dir.ends_with("b"), "sorting {} failed", dir.display());
                    shape(dir, children);
                })
            }));
            drop(tx);
            let found = rx.iter().flatten().count();
            let _ = done_tx.send((walked.is_err(), found));
        });
        // Left to jwalk's pool, the panic hangs the walk (a busy loop): give it 20 s.
        let (panicked, found) = done_rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the walk ended");
        assert!(
            panicked,
            "the walk ended normally, finding {found} repositories"
        );
    }
}
