//! Storage of unexpected shape, against the real registry (filesystem and S3 on moto): a
//! listing the server rolled up wrongly is cross-checked and walked instead; a repository
//! whose `_manifests`, `_manifests/revisions`, `_manifests/tags` or `_layers` is no
//! directory fails closed and stops gc; a blob's `data` where its digest does not put it
//! stops gc before the first delete; an upload written long ago and committed just now is
//! young.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use common::proxy::{Fault, FaultProxy};
use common::s3::{BUCKET, Moto, ROOT, keys, put, registry_on, s3_env};
use common::{Registry, run_expecting};
use regsweep::digest::Digest;
use regsweep_testkit::{ImageSpec, Pusher};

fn spec(seed: u64) -> ImageSpec {
    ImageSpec {
        os: "linux",
        arch: "amd64",
        created: Utc::now(),
        seed,
        oci: false,
    }
}

/// Pushes a tagged image to each of `repos` (seeds from `seed` on).
fn push_tagged(p: &Pusher, repos: &[&str], seed: u64) {
    for (i, repo) in repos.iter().enumerate() {
        let image = p.image(repo, &spec(seed + i as u64)).expect("push");
        p.tag(repo, "v1", &image).expect("tag");
    }
}

/// The `Marked N blobs referenced by M manifests in K repositories.` line.
fn marked_line(stdout: &str) -> String {
    stdout
        .lines()
        .find(|l| l.starts_with("Marked "))
        .unwrap_or_else(|| panic!("no Marked line in:\n{stdout}"))
        .to_owned()
}

/// The digests a gc dry run lists.
fn listed(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("DRY_RUN: "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Asserts stderr is one error line that names `path` and says nothing was deleted.
fn one_line_naming(stderr: &str, path: &str) {
    assert!(
        stderr.contains(path) && stderr.contains("nothing deleted"),
        "{path} not named:\n{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

// ---------------------------------------------------------------- S3 helpers

fn env<'a>(
    base: &'a [(&'static str, String)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
    v.extend_from_slice(extra);
    v
}

fn s3_env_via(moto: &Moto, url: &str) -> Vec<(&'static str, String)> {
    let mut s3 = s3_env(moto);
    for (k, v) in &mut s3 {
        if *k == "S3_ENDPOINT" {
            *v = url.to_owned();
        }
    }
    s3
}

fn v2() -> String {
    format!("{}/docker/registry/v2/", ROOT.trim_matches('/'))
}

fn delete(moto: &Moto, key: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let c = regsweep_testkit::s3fill::client(&moto.url).await;
        c.delete_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .expect("delete");
    });
}

fn bucket_blobs(moto: &Moto) -> BTreeSet<String> {
    keys(moto, &format!("{}blobs/", v2())).into_iter().collect()
}

/// A registry on moto with tagged images in three repositories (one nested in another)
/// and one unreferenced blob; the registry is stopped.
fn s3_registry(dir: &Path) -> (Moto, Registry, Digest) {
    let moto = Moto::start_moto(dir);
    let reg = registry_on(&moto);
    let p = reg.pusher();
    push_tagged(&p, &["team/app", "team/app/nested", "lib/base"], 10);
    let garbage = p
        .blob("team/app", b"a layer nobody references")
        .expect("blob");
    reg.stop();
    (moto, reg, garbage)
}

// ---------------------------------------------------------------- 1. S3 discovery

/// Answers a ListObjectsV2 with nothing: no keys, no common prefixes.
fn empty_listing(body: &[u8]) -> Vec<u8> {
    let mut s = String::from_utf8_lossy(body).into_owned();
    for tag in ["CommonPrefixes", "Contents"] {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        while let (Some(a), Some(b)) = (s.find(&open), s.find(&close)) {
            s.replace_range(a..b + close.len(), "");
        }
    }
    if let (Some(a), Some(b)) = (s.find("<KeyCount>"), s.find("</KeyCount>")) {
        s.replace_range(a..b, "<KeyCount>0");
    }
    s.into_bytes()
}

/// Rolls up at `/` where `/_` was asked: prefixes that end in `<name>/`.
fn rolled_up_at_slash(body: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(body)
        .replace("/_</Prefix>", "/</Prefix>")
        .into_bytes()
}

#[test]
fn s3_discovery_cross_checks_the_rolled_up_listing_and_walks_when_it_cannot_be_believed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (moto, _reg, garbage) = s3_registry(dir.path());
    let s3 = s3_env(&moto);
    let (direct, _) = run_expecting(
        &env(&s3, &[("MIN_AGE", "0"), ("DRY_RUN", "true")]),
        &["gc"],
        0,
    );
    let marked = marked_line(&direct);
    assert!(marked.ends_with(" in 3 repositories."), "{marked}");
    assert_eq!(
        listed(&direct),
        [garbage.to_string()].into_iter().collect(),
        "{direct}"
    );
    type Rewrite = fn(&[u8]) -> Vec<u8>;
    let faults: [(&str, Rewrite); 2] = [
        ("answered with nothing", empty_listing),
        ("rolled up at /", rolled_up_at_slash),
    ];
    for (what, rewrite) in faults {
        let proxy = FaultProxy::start(
            &moto.url,
            Box::new(move |_, method, path| {
                if method == "GET" && path.contains("delimiter=%2F_") {
                    Fault::Rewrite(rewrite)
                } else {
                    Fault::Pass
                }
            }),
        );
        let via = s3_env_via(&moto, &proxy.url);
        // ALLOW_EMPTY_MARK: what is proved here is the listing's cross-check, not gc's
        // separate refusal of an empty mark over a non-empty blob store.
        let (text, _) = run_expecting(
            &env(
                &via,
                &[
                    ("MIN_AGE", "0"),
                    ("DRY_RUN", "true"),
                    ("ALLOW_EMPTY_MARK", "true"),
                ],
            ),
            &["gc"],
            0,
        );
        assert_eq!(marked_line(&text), marked, "{what}:\n{text}");
        assert_eq!(listed(&text), listed(&direct), "{what}:\n{text}");
        let rewritten = proxy
            .seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| matches!(s.fault, Fault::Rewrite(_)))
            .count();
        assert_eq!(
            rewritten, 1,
            "{what}: the rolled-up listing went through the proxy"
        );
    }
    // A real collection through a server that answers the rolled-up listing with nothing
    // deletes the one unreferenced blob and nothing else.
    let before = bucket_blobs(&moto);
    let proxy = FaultProxy::start(
        &moto.url,
        Box::new(|_, method, path| {
            if method == "GET" && path.contains("delimiter=%2F_") {
                Fault::Rewrite(empty_listing)
            } else {
                Fault::Pass
            }
        }),
    );
    let via = s3_env_via(&moto, &proxy.url);
    let (text, _) = run_expecting(
        &env(
            &via,
            &[
                ("MIN_AGE", "0"),
                ("REGISTRY_STOPPED", "true"),
                ("ALLOW_EMPTY_MARK", "true"),
            ],
        ),
        &["gc"],
        0,
    );
    assert_eq!(marked_line(&text), marked, "{text}");
    assert!(text.contains("Deleted 1 of 1 blobs"), "{text}");
    let gone: Vec<String> = before.difference(&bucket_blobs(&moto)).cloned().collect();
    assert_eq!(
        gone,
        [format!(
            "{}blobs/sha256/{}/{}/data",
            v2(),
            &garbage.hex()[..2],
            garbage.hex()
        )],
        "only the unreferenced blob went"
    );
}

// ---------------------------------------------------------------- 2. repository shapes

/// Every file under the blobs directory.
fn blob_files(reg: &Registry) -> BTreeSet<PathBuf> {
    common::snapshot(&reg.root().join("docker/registry/v2/blobs"))
        .into_keys()
        .collect()
}

/// `regsweep gc` on a filesystem registry, expected to exit with `code`.
fn gc_fs(root: &Path, extra: &[(&str, &str)], args: &[&str], code: i32) -> (String, String) {
    let root = root.to_string_lossy().into_owned();
    let mut env = vec![
        ("REGISTRY_DIR", root.as_str()),
        ("REGISTRY_STOPPED", "true"),
    ];
    env.extend_from_slice(extra);
    let mut all = vec!["gc"];
    all.extend_from_slice(args);
    run_expecting(&env, &all, code)
}

#[test]
fn a_repository_directory_that_is_a_file_stops_gc_and_fails_the_cleanup_closed() {
    let reg = Registry::start();
    let p = reg.pusher();
    let victims = [
        ("shapes/manifests-file", "_manifests"),
        ("shapes/revisions-file", "_manifests/revisions"),
        ("shapes/tags-file", "_manifests/tags"),
        ("shapes/layers-file", "_layers"),
    ];
    push_tagged(&p, &["shapes/ok"], 20);
    push_tagged(&p, &victims.map(|(r, _)| r), 30);
    // Something a collection that went ahead would delete.
    let garbage = p.blob("shapes/ok", b"unreferenced").expect("blob");
    reg.stop();
    let repos = reg.root().join("docker/registry/v2/repositories");
    let before = blob_files(&reg);
    for (repo, rel) in victims {
        let path = repos.join(repo).join(rel);
        let aside = path.with_extension("aside");
        std::fs::rename(&path, &aside).expect("move aside");
        std::fs::write(&path, b"not a directory").expect("write");
        let shown = path.to_string_lossy().into_owned();

        let (_, err) = gc_fs(&reg.root(), &[("MIN_AGE", "0")], &[], 1);
        one_line_naming(&err, &shown);
        assert!(err.contains("not a directory"), "{err}");
        assert_eq!(blob_files(&reg), before, "{rel}: nothing deleted");

        // The cleanup fails that repository closed, naming the path, and cleans the rest.
        let report = common::dry_run_json_expecting(&reg.root(), &[("MIN_AGE", "0")], 4);
        let r = report["repositories"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == repo))
            .unwrap_or_else(|| panic!("{repo} is not in the report: {report}"));
        assert_eq!(r["failed_closed"], true, "{rel}");
        let out = common::regsweep(
            &[
                ("REGISTRY_DIR", reg.root().to_str().expect("utf-8")),
                ("DRY_RUN", "true"),
                ("MIN_AGE", "0"),
            ],
            &[],
        );
        common::assert_exit(&out, 4);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("warning:") && l.contains(&shown)),
            "{rel}: a warning names {shown}:\n{stderr}"
        );

        std::fs::remove_file(&path).expect("rm");
        std::fs::rename(&aside, &path).expect("move back");
    }
    // Restored, the collection goes ahead.
    let (text, _) = gc_fs(&reg.root(), &[("MIN_AGE", "0")], &[], 0);
    assert!(text.contains("Deleted 1 of 1 blobs"), "{text}");
    assert!(!reg.blob_exists(&garbage));
}

#[test]
fn an_object_where_a_repository_directory_belongs_stops_gc_on_s3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (moto, _reg, garbage) = s3_registry(dir.path());
    let s3 = s3_env(&moto);
    let run = env(&s3, &[("MIN_AGE", "0"), ("REGISTRY_STOPPED", "true")]);
    let before = bucket_blobs(&moto);
    for rel in ["_manifests", "_manifests/revisions", "_manifests/tags"] {
        let key = format!("{}repositories/team/app/{rel}", v2());
        put(&moto, &key, b"not a directory");
        let (_, err) = run_expecting(&run, &["gc"], 1);
        one_line_naming(&err, &key);
        assert_eq!(bucket_blobs(&moto), before, "{rel}: nothing deleted");
        delete(&moto, &key);
    }
    let (text, _) = run_expecting(&run, &["gc"], 0);
    assert!(text.contains("Deleted 1 of 1 blobs"), "{text}");
    assert!(
        !bucket_blobs(&moto)
            .iter()
            .any(|k| k.contains(&garbage.hex()))
    );
}

// ---------------------------------------------------------------- 3. blob path shapes

#[test]
fn a_blob_where_its_digest_does_not_put_it_stops_gc_on_a_filesystem() {
    let reg = Registry::start();
    let p = reg.pusher();
    push_tagged(&p, &["paths/app"], 40);
    let garbage = p.blob("paths/app", b"unreferenced").expect("blob");
    reg.stop();
    let blobs = reg.root().join("docker/registry/v2/blobs");
    let stray = Digest::of(b"stray");
    let hex = stray.hex();
    let wrong = if hex.starts_with("00") { "01" } else { "00" };
    let cases = [
        format!("sha256/{wrong}/{hex}/data"),
        format!("sha256/{}/{}/data", &hex[..2], hex.to_uppercase()),
        format!("sha256/zz/{hex}/data"),
        format!("sha256/{}/data", &hex[..2]),
        format!("sha512/{}/{hex}{hex}/data", &hex[..2]),
    ];
    let before = blob_files(&reg);
    for rel in &cases {
        let path = blobs.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"stray").expect("write");
        let (_, err) = gc_fs(&reg.root(), &[("MIN_AGE", "0")], &[], 1);
        one_line_naming(&err, &path.to_string_lossy());
        assert!(reg.blob_exists(&garbage), "{rel}: nothing deleted");
        assert!(
            before.is_subset(&blob_files(&reg)),
            "{rel}: nothing deleted"
        );
        std::fs::remove_file(&path).expect("rm");
    }
    let (text, _) = gc_fs(&reg.root(), &[("MIN_AGE", "0")], &[], 0);
    assert!(text.contains("Deleted 1 of 1 blobs"), "{text}");
}

#[test]
fn a_blob_key_where_its_digest_does_not_put_it_stops_gc_on_s3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (moto, _reg, garbage) = s3_registry(dir.path());
    let s3 = s3_env(&moto);
    let run = env(&s3, &[("MIN_AGE", "0"), ("REGISTRY_STOPPED", "true")]);
    let blobs = format!("{}blobs/", v2());
    let stray = Digest::of(b"stray");
    let hex = stray.hex();
    let wrong = if hex.starts_with("00") { "01" } else { "00" };
    let small = [
        format!("sha256/{wrong}/{hex}/data"),
        format!("sha256/{}/{}/data", &hex[..2], hex.to_uppercase()),
        format!("sha256/{}/{}/data", &hex[..2], &hex[..40]),
        format!("sha256/{}/data", &hex[..2]),
        format!("sha256/zz/{hex}/data"),
        format!("sha512/{}/{hex}{hex}/data", &hex[..2]),
    ];
    let before = bucket_blobs(&moto);
    let check = |rel: &str| {
        let key = format!("{blobs}{rel}");
        put(&moto, &key, b"stray");
        let (_, err) = run_expecting(&run, &["gc"], 1);
        one_line_naming(&err, &key);
        let mut now = bucket_blobs(&moto);
        now.remove(&key);
        assert!(before.is_subset(&now), "{rel}: nothing deleted");
        delete(&moto, &key);
    };
    for rel in &small {
        check(rel);
    }
    // A large blob store is listed by its 256 prefixes: what lies beside them is found
    // by two delimiter listings.
    for i in 0..70u32 {
        let h = format!("00{}", &Digest::of(&i.to_le_bytes()).hex()[2..]);
        put(&moto, &format!("{blobs}sha256/00/{h}/data"), b"garbage");
    }
    let before = bucket_blobs(&moto);
    for rel in [&small[0], &small[4], &small[5]] {
        check(rel);
    }
    assert_eq!(bucket_blobs(&moto), before);
    let (text, _) = run_expecting(&run, &["gc"], 0);
    assert!(text.contains("Deleted 71 of 71 blobs"), "{text}");
    assert!(
        !bucket_blobs(&moto)
            .iter()
            .any(|k| k.contains(&garbage.hex()))
    );
}

// ---------------------------------------------------------------- 4. the commit clock

#[test]
fn an_upload_written_long_ago_and_committed_just_now_is_young() {
    let reg = Registry::start();
    let p = reg.pusher();
    push_tagged(&p, &["clock/app"], 50);
    let aged = p
        .blob("clock/app", b"unreferenced, long committed")
        .expect("blob");
    reg.stop();
    let root = reg.root();
    // The whole blob store aged on purpose, as the other gc tests do (`touch -d` sets the
    // change time to now: such blobs must still be collectable).
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find '{}' -exec touch -h -d '2 hours ago' {{}} +",
            root.join("docker/registry/v2/blobs").display()
        ))
        .status()
        .expect("touch");
    assert!(st.success());
    // An upload whose last byte was written two hours ago, committed now as the registry
    // commits it: a rename from `_uploads/<id>/data` into `blobs/sha256/<2>/<hex>/`.
    let body = b"uploaded slowly, committed just now";
    let late = Digest::of(body);
    let upload = root.join("docker/registry/v2/repositories/clock/app/_uploads/0f1e2d3c/data");
    std::fs::create_dir_all(upload.parent().expect("parent")).expect("mkdir");
    std::fs::write(&upload, body).expect("write");
    let st = Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&upload)
        .status()
        .expect("touch");
    assert!(st.success());
    let blob = reg.blob_path(&late);
    std::fs::create_dir_all(blob.parent().expect("parent")).expect("mkdir");
    std::fs::rename(&upload, &blob).expect("commit");
    let written = std::fs::metadata(&blob)
        .expect("stat")
        .modified()
        .expect("mtime");
    assert!(
        written.elapsed().expect("past").as_secs() > 3600,
        "the data looks written 2 h ago"
    );

    let (text, _) = gc_fs(&root, &[], &["--min-age", "1h"], 0);
    assert!(text.contains("1 younger than MIN_AGE"), "{text}");
    assert!(text.contains("Deleted 1 of 1 blobs"), "{text}");
    assert!(
        reg.blob_exists(&late),
        "the upload committed just now stays"
    );
    assert!(!reg.blob_exists(&aged), "the blob aged on purpose goes");
}
