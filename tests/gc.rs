//! `regsweep gc` against the real registry's own collector: the same blobs go, the storage
//! it leaves serves every tag in full, and any doubt (an unparsable manifest anywhere)
//! stops it before the first delete; a fresh upload whose manifest is not pushed yet stays.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::standard::standard;
use common::{Registry, pull_all_tags, run_expecting};
use regsweep::digest::Digest;
use regsweep_testkit::scenario::{APP, BASE, OTHER};

/// Every path under `root`, relative, with each file's bytes (small files) or size.
fn tree(root: &Path) -> BTreeMap<PathBuf, (u64, Vec<u8>)> {
    common::snapshot(root)
        .into_iter()
        .map(|(p, (size, _, content))| {
            (
                p.strip_prefix(root).expect("under root").to_path_buf(),
                (size, content),
            )
        })
        .collect()
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
    assert_eq!(tree(&reg.root()), before);

    // A dry run lists what would go, with sizes, and deletes nothing.
    let (text, _) = gc(&reg.root(), &[("DRY_RUN", "true")], 0);
    assert_eq!(tree(&reg.root()), before);
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
    let ours = tree(&reg.root());
    let theirs = tree(&copy);
    let only_ours: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    let only_theirs: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "left by regsweep only: {only_ours:#?}\nleft by the registry only: {only_theirs:#?}"
    );
    assert_eq!(ours, theirs, "the same files with the same content");

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
    let before_damage = {
        let mut t = before.clone();
        let rel = reg
            .blob_path(&named["O"].1)
            .strip_prefix(reg.root())
            .expect("under root")
            .to_path_buf();
        t.insert(rel, (10, b"{ not json".to_vec()));
        t
    };
    let (_, err) = gc(&reg.root(), &[("REGISTRY_STOPPED", "true")], 1);
    assert!(
        err.contains("nothing deleted") && err.contains(&named["O"].1.hex()),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let after = tree(&reg.root());
    assert_eq!(after.len(), before_damage.len(), "nothing deleted anywhere");
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
    assert_eq!(tree(&reg.root()), tree(&copy));
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
