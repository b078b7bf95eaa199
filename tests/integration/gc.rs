//! `regsweep gc` against the real registry's own collector: the same blobs go, the storage
//! it leaves serves every tag in full, and any doubt (an unparsable manifest anywhere)
//! stops it before the first delete; a fresh upload whose manifest is not pushed yet stays.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::standard::standard;
use common::{Contents, Registry, assert_same_contents, pull_all_tags, run_expecting};
use regsweep::digest::Digest;
use regsweep_testkit::scenario::{APP, BASE, OTHER};

/// Every path under `root`, relative, with each file's SHA-256 (see [`common::contents`]).
fn tree(root: &Path) -> Contents {
    common::contents(root)
}

/// Makes every blob look `ago` old.
fn age_blobs(root: &Path, ago: &str) {
    let blobs = root.join("docker/registry/v2/blobs");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find '{}' -exec touch -h -d '{ago}' {{}} +",
            blobs.display()
        ))
        .status()
        .expect("touch");
    assert!(st.success());
}

/// `regsweep gc` on `root` with `extra` settings, expected to exit with `code`: its stdout
/// and stderr.
fn gc(root: &Path, extra: &[(&str, &str)], code: i32) -> (String, String) {
    let root = root.to_string_lossy().into_owned();
    let mut env = vec![("REGISTRY_DIR", root.as_str())];
    env.extend_from_slice(extra);
    run_expecting(&env, &["gc"], code)
}

/// Restarts the registry on its storage and pulls every tag of every repository in full.
fn every_tag_pulls(reg: &Registry) {
    let url = reg.restart_with("", &[]);
    for repo in [APP, OTHER, BASE] {
        let tags: Vec<String> = reg.tags(repo).keys().cloned().collect();
        assert!(pull_all_tags(&url, repo, &tags) > tags.len(), "{repo}");
    }
}

/// The standard scenario, cleaned up through the API, the registry stopped, blobs aged.
fn cleaned() -> (Registry, regsweep_testkit::scenario::Named) {
    let (reg, named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    run_expecting(
        &[("REGISTRY_URL", &reg.url), ("REGISTRY_DIR", &root)],
        &[],
        0,
    );
    reg.stop();
    age_blobs(&reg.root(), "2 hours ago");
    (reg, named)
}

#[test]
fn gc_removes_what_the_registrys_collector_removes_and_every_tag_still_pulls() {
    let (reg, named) = cleaned();
    let copy = reg.copy_storage("registry-gc");
    let before = tree(&reg.root());

    // Without the confirmation: a usage error, nothing touched.
    gc(&reg.root(), &[], 2);
    assert_same_contents(&tree(&reg.root()), &before, "a usage error touches nothing");

    // A dry run lists what would go, with sizes, and deletes nothing.
    let (text, _) = gc(&reg.root(), &[("DRY_RUN", "true")], 0);
    assert_same_contents(&tree(&reg.root()), &before, "a dry run deletes nothing");
    let listed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("DRY_RUN: sha256:"))
        .collect();
    assert!(listed.len() > 10, "{text}");
    // B1 was deleted by the cleanup and is no manifest any more: its body goes.
    assert!(text.contains(&named["B1"].1.to_string()), "{text}");

    let (deleted, _) = gc(&reg.root(), &[("REGISTRY_STOPPED", "true")], 0);
    assert!(
        deleted.contains(&format!("Deleted {n} of {n} blobs", n = listed.len())),
        "{deleted}"
    );

    reg.garbage_collect_at(&copy);
    assert_same_contents(
        &tree(&reg.root()),
        &tree(&copy),
        "left by regsweep (left) and by the registry's collector (right)",
    );

    // The registry serves what regsweep left: every tag, in full.
    every_tag_pulls(&reg);
    // A second collection finds nothing.
    reg.stop();
    let (text, _) = gc(&reg.root(), &[("REGISTRY_STOPPED", "true")], 0);
    assert!(text.contains("Blobs to delete: 0 "), "{text}");
}

#[test]
fn one_unparsable_manifest_anywhere_stops_the_whole_collection() {
    let (reg, named) = cleaned();
    let before = tree(&reg.root());
    // O's manifest (in `other`) becomes garbage; demo/app and lib/base are intact.
    std::fs::write(reg.blob_path(&named["O"].1), b"{ not json").expect("damage");
    let damaged = tree(&reg.root());
    assert_eq!(damaged.len(), before.len(), "the damage replaced one file");
    assert_ne!(damaged, before, "the damage changed that file's bytes");
    let (_, err) = gc(&reg.root(), &[("REGISTRY_STOPPED", "true")], 1);
    assert!(
        err.contains("nothing deleted") && err.contains(&named["O"].1.hex()),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_same_contents(&tree(&reg.root()), &damaged, "nothing deleted anywhere");
}

#[test]
fn a_fresh_upload_without_its_manifest_is_kept() {
    let (reg, _named) = cleaned();
    // An upload that completed just now, its manifest not pushed yet.
    let url = reg.restart_with("", &[]);
    let fresh: Digest = regsweep_testkit::Pusher::new(&url)
        .expect("pusher")
        .blob(APP, b"a layer whose manifest is on its way")
        .expect("upload");
    reg.stop();
    let (text, _) = gc(&reg.root(), &[("REGISTRY_STOPPED", "true")], 0);
    assert!(text.contains("1 younger than MIN_AGE"), "{text}");
    assert!(reg.blob_exists(&fresh), "the fresh upload stays");
    // With no grace at all it would go: the age is what keeps it.
    gc(
        &reg.root(),
        &[("REGISTRY_STOPPED", "true"), ("MIN_AGE", "0")],
        0,
    );
    assert!(!reg.blob_exists(&fresh));
}

#[test]
fn an_offline_cleanup_with_gc_leaves_what_cleanup_and_the_registrys_collector_leave() {
    let (reg, _named) = standard();
    reg.stop();
    age_blobs(&reg.root(), "2 hours ago");
    let copy = reg.copy_storage("registry-gc");
    let offline = [("DELETE_VIA", "storage"), ("REGISTRY_STOPPED", "true")];
    let root = reg.root().to_string_lossy().into_owned();
    // A dry run plans the cleanup and says why it collects nothing.
    let before = tree(&reg.root());
    let (_, err) = run_expecting(
        &[
            &[
                ("REGISTRY_DIR", root.as_str()),
                ("GC", "true"),
                ("DRY_RUN", "true"),
            ][..],
            &offline,
        ]
        .concat(),
        &[],
        0,
    );
    assert!(err.contains("no collection in a dry run"), "{err}");
    assert_same_contents(&tree(&reg.root()), &before, "a dry run touches nothing");
    let (text, _) = run_expecting(
        &[
            &[("REGISTRY_DIR", root.as_str()), ("GC", "true")][..],
            &offline,
        ]
        .concat(),
        &[],
        0,
    );
    assert!(
        text.contains("Job done, Cleaned 10 of 10 manifests.")
            && text.contains("Garbage collection"),
        "{text}"
    );
    // The same cleanup without --gc, then the registry's collector, on the copy.
    let copy_s = copy.to_string_lossy().into_owned();
    run_expecting(
        &[&[("REGISTRY_DIR", copy_s.as_str())][..], &offline].concat(),
        &[],
        0,
    );
    reg.garbage_collect_at(&copy);
    assert_same_contents(
        &tree(&reg.root()),
        &tree(&copy),
        "regsweep (left) and the registry (right)",
    );
    // --gc without offline deletes is a usage error.
    run_expecting(
        &[
            ("REGISTRY_DIR", root.as_str()),
            ("GC", "true"),
            ("DRY_RUN", "true"),
        ],
        &[],
        2,
    );
    every_tag_pulls(&reg);
}

/// `--gc` after an offline cleanup: the run's exit is the worse of the two steps, so a
/// collection that stops after a clean cleanup fails the run (exit 1), naming why.
#[test]
fn a_collection_that_stops_after_a_clean_cleanup_fails_the_run() {
    let (reg, _named) = standard();
    reg.stop();
    age_blobs(&reg.root(), "2 hours ago");
    // A `data` file where no digest puts it: the sweep's listing refuses to go on.
    let junk = reg.root().join("docker/registry/v2/blobs/sha256/zz/notes");
    std::fs::create_dir_all(&junk).expect("mkdir");
    std::fs::write(junk.join("data"), b"not a blob").expect("write");
    let before_blobs = tree(&reg.root().join("docker/registry/v2/blobs"));
    let root = reg.root().to_string_lossy().into_owned();
    let (text, err) = run_expecting(
        &[
            ("REGISTRY_DIR", root.as_str()),
            ("GC", "true"),
            ("DELETE_VIA", "storage"),
            ("REGISTRY_STOPPED", "true"),
        ],
        &[],
        1,
    );
    assert!(
        text.contains("Job done, Cleaned 10 of 10 manifests."),
        "{text}"
    );
    assert!(
        err.contains("garbage collection aborted, nothing deleted")
            && err.contains("zz/notes/data"),
        "{err}"
    );
    assert_same_contents(
        &tree(&reg.root().join("docker/registry/v2/blobs")),
        &before_blobs,
        "the stopped collection deleted no blob",
    );
}

/// The digests a dry-run collection of `root` lists.
fn dry_run_list(root: &Path) -> Vec<Digest> {
    let (text, _) = gc(root, &[("DRY_RUN", "true")], 0);
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(Digest::parse)
        .collect()
}

#[test]
fn an_interrupted_collection_resumes_its_own_plan_and_a_rerun_finishes_the_rest() {
    let (reg, _named) = cleaned();
    let copy = reg.copy_storage("registry-gc");
    let doomed = dry_run_list(&reg.root());
    assert!(doomed.len() > 3, "{doomed:?}");
    // What a collection killed after its first batch leaves: a journal that planned all
    // but the last blob and finished the first, whose directory is gone.
    let journal = reg
        .root()
        .parent()
        .expect("parent")
        .join("gc-journal.jsonl");
    let now = chrono::Utc::now().timestamp() - 60;
    let planned: Vec<String> = doomed[..doomed.len() - 1]
        .iter()
        .map(|d| d.to_string())
        .collect();
    let lines = [
        serde_json::json!({"op": "gc-begin", "now": now, "resumed": false}),
        serde_json::json!({"op": "gc-plan", "digests": planned}),
        serde_json::json!({"op": "gc-done", "digests": [doomed[0].to_string()]}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&journal, text + "{\"op\":\"gc-do").expect("journal");
    std::fs::remove_dir_all(reg.blob_path(&doomed[0]).parent().expect("blob dir"))
        .expect("first batch");

    let j = journal.to_string_lossy().into_owned();
    let stopped = [("REGISTRY_STOPPED", "true"), ("JOURNAL", j.as_str())];
    let (text, err) = gc(&reg.root(), &stopped, 0);
    assert!(
        err.contains(&format!(
            "resuming the collection recorded in {j}: {} of {} planned blob deletions remain",
            doomed.len() - 2,
            doomed.len() - 1
        )) && err.contains("torn lines [4] ignored"),
        "{err}"
    );
    assert!(
        text.contains(&format!("Deleted {n} of {n} blobs", n = doomed.len() - 2))
            && text.contains("Left for a fresh collection: 1 unreferenced blobs"),
        "{text}"
    );
    let last = doomed[doomed.len() - 1];
    assert!(reg.blob_exists(&last), "not in the interrupted plan: kept");
    assert!(
        doomed[..doomed.len() - 1]
            .iter()
            .all(|d| !reg.blob_exists(d))
    );
    let recorded = std::fs::read_to_string(&journal).expect("journal");
    assert!(
        recorded.trim_end().ends_with("{\"op\":\"gc-end\"}"),
        "{recorded}"
    );

    // The collection ended: the next one is a fresh one, and it takes the rest.
    let (text, err) = gc(&reg.root(), &stopped, 0);
    assert!(!err.contains("resuming"), "{err}");
    assert!(text.contains("Deleted 1 of 1 blobs"), "{text}");
    reg.garbage_collect_at(&copy);
    assert_same_contents(
        &tree(&reg.root()),
        &tree(&copy),
        "the same end state as the registry's collector (right)",
    );
    every_tag_pulls(&reg);
}

/// Sets an upload's `startedat` to `at`, as if it had started then.
fn started(root: &Path, repo: &str, id: &str, at: &str) -> PathBuf {
    let dir = root
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_uploads")
        .join(id);
    std::fs::write(dir.join("startedat"), at).expect("startedat");
    dir
}

#[test]
fn old_uploads_are_purged_as_the_registry_purges_them_and_nothing_else() {
    let (reg, _named) = cleaned();
    let url = reg.restart_with("", &[]);
    let p = regsweep_testkit::Pusher::new(&url).expect("pusher");
    // Interrupted pushes: two long ago (one into a repository that has nothing else), one
    // just now, one whose start time is damaged.
    let ids: Vec<String> = [APP, "abandoned/push", APP, OTHER]
        .iter()
        .map(|repo| p.start_upload(repo, b"half a layer").expect("upload"))
        .collect();
    reg.stop();
    let root = reg.root();
    let old_app = started(&root, APP, &ids[0], "2020-01-01T00:00:00Z");
    let old_abandoned = started(&root, "abandoned/push", &ids[1], "2020-01-01T00:00:00Z");
    let fresh = root
        .join("docker/registry/v2/repositories")
        .join(APP)
        .join("_uploads")
        .join(&ids[2]);
    let damaged = started(&root, OTHER, &ids[3], "last tuesday");
    let before = tree(&root);

    // Only with a collection.
    let r = root.to_string_lossy().into_owned();
    let (_, err) = run_expecting(
        &[
            ("REGISTRY_DIR", r.as_str()),
            ("DRY_RUN", "true"),
            ("PURGE_UPLOADS", "168h"),
        ],
        &[],
        2,
    );
    assert!(err.contains("PURGE_UPLOADS"), "{err}");

    let purge = [("PURGE_UPLOADS", "168h")];
    let (text, err) = gc(&root, &[&purge[..], &[("DRY_RUN", "true")]].concat(), 0);
    assert_same_contents(&tree(&root), &before, "a dry run deletes nothing");
    assert!(
        text.contains("Uploads to purge (started over 7days ago): 2.")
            && text.contains(&format!("DRY_RUN: upload {APP}/_uploads/{}", ids[0]))
            && text.contains(&format!(
                "DRY_RUN: upload abandoned/push/_uploads/{}",
                ids[1]
            )),
        "{text}"
    );
    assert!(
        err.contains(&format!("upload {OTHER}/_uploads/{}", ids[3])) && err.contains("kept"),
        "{err}"
    );

    let (text, _) = gc(
        &root,
        &[&purge[..], &[("REGISTRY_STOPPED", "true")]].concat(),
        0,
    );
    assert!(text.contains("Purged 2 of 2 uploads."), "{text}");
    assert!(!old_app.exists() && !old_abandoned.exists());
    assert!(fresh.join("startedat").exists() && damaged.join("startedat").exists());
    assert!(
        old_app.parent().is_some_and(Path::is_dir),
        "the _uploads directory stays, as the registry leaves it"
    );
    // Without PURGE_UPLOADS a collection leaves uploads alone.
    let (text, _) = gc(&root, &[("REGISTRY_STOPPED", "true")], 0);
    assert!(!text.contains("upload"), "{text}");
    assert!(fresh.exists() && damaged.exists());
    every_tag_pulls(&reg);
}

#[test]
fn a_collection_shows_its_marking_and_a_signal_while_marking_deletes_nothing() {
    let (reg, named) = cleaned();
    // A manifest blob that is a FIFO: reading it blocks, so marking is surely running.
    common::make_fifo(&reg.blob_path(&named["O"].1));
    let before = tree(&reg.root());
    let root = reg.root().to_string_lossy().into_owned();
    // Signalled once blocked on the FIFO and once a progress line shows the marking.
    let marking = |l: &str| l.starts_with("regsweep: progress: marking: read ");
    let out = common::signalled(
        &[
            ("REGISTRY_DIR", root.as_str()),
            ("REGISTRY_STOPPED", "true"),
            ("PROGRESS_INTERVAL", "100ms"),
        ],
        &["gc"],
        &reg.blob_path(&named["O"].1),
        Some(("a `progress: marking: read` line", &marking)),
        "INT",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.lines().any(marking), "{err}");
    assert!(err.contains("nothing was deleted"), "{err}");
    assert_same_contents(
        &tree(&reg.root()),
        &before,
        "a signal while marking deletes nothing",
    );
}

#[test]
fn an_empty_mark_over_a_store_with_blobs_stops_unless_the_user_says_so() {
    let (reg, _named) = cleaned();
    // Every repository gone (or a listing that found none): the mark finds nothing.
    let repos = reg.root().join("docker/registry/v2/repositories");
    std::fs::rename(&repos, reg.root().join("elsewhere")).expect("move repositories away");
    std::fs::create_dir(&repos).expect("empty repositories");
    let before = tree(&reg.root());
    let (_, err) = gc(&reg.root(), &[("REGISTRY_STOPPED", "true")], 1);
    assert!(
        err.contains("nothing deleted")
            && err.contains("found no manifest in 0 repositories")
            && err.contains("--allow-empty-mark"),
        "{err}"
    );
    assert_same_contents(&tree(&reg.root()), &before, "nothing deleted anywhere");
    // Said explicitly, the store is swept.
    let (text, _) = gc(
        &reg.root(),
        &[("REGISTRY_STOPPED", "true"), ("ALLOW_EMPTY_MARK", "true")],
        0,
    );
    assert!(text.contains("Marked 0 blobs"), "{text}");
    let left = std::fs::read_dir(reg.root().join("docker/registry/v2/blobs/sha256"))
        .map(|d| {
            d.flat_map(|e| e.ok())
                .flat_map(|e| std::fs::read_dir(e.path()))
                .flatten()
                .count()
        })
        .unwrap_or(0);
    assert_eq!(left, 0, "every blob swept");
}
