//! Hostile storage: every oddity gives one warning naming the path, its repository fails
//! closed, the rest of the registry is still cleaned, and the exit code says so.

use crate::common;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use common::standard::standard;
use common::{Registry, regsweep};
use regsweep::digest::Digest;
use regsweep_testkit::scenario::{APP, BASE, OTHER};
use regsweep_testkit::{ImageSpec, Pushed, Pusher};

fn spec(seed: u64) -> ImageSpec {
    ImageSpec {
        os: "linux",
        arch: "amd64",
        created: Utc::now(),
        seed,
        oci: false,
    }
}

/// Pushes a tagged and an untagged image to `repo`; returns (tagged, untagged).
fn pair(p: &Pusher, repo: &str, seed: u64) -> (Pushed, Pushed) {
    let t = p.image(repo, &spec(seed)).expect("push");
    p.tag(repo, "v1", &t).expect("tag");
    let u = p.image(repo, &spec(seed + 1)).expect("push");
    (t, u)
}

fn repo_dir(reg: &Registry, repo: &str) -> PathBuf {
    reg.root()
        .join("docker/registry/v2/repositories")
        .join(repo)
}

fn revision_link(reg: &Registry, repo: &str, d: &Digest) -> PathBuf {
    repo_dir(reg, repo)
        .join("_manifests/revisions/sha256")
        .join(d.hex())
        .join("link")
}

/// Writes a blob and a revision link for `body` by hand, as if pushed.
fn write_manifest(reg: &Registry, repo: &str, body: &[u8]) -> Digest {
    let d = Digest::of(body);
    let blob = reg.root().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{}",
        &d.hex()[..2],
        d.hex()
    ));
    std::fs::create_dir_all(&blob).expect("mkdir blob");
    std::fs::write(blob.join("data"), body).expect("write blob");
    let link = revision_link(reg, repo, &d);
    std::fs::create_dir_all(link.parent().expect("parent")).expect("mkdir revision");
    std::fs::write(&link, d.to_string()).expect("write link");
    d
}

fn repo_report<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["repositories"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("{name} not in the report"))
}

#[test]
fn hostile_storage_fails_closed_per_repository_and_the_rest_is_cleaned() {
    let (reg, named) = standard();
    let p = reg.pusher();
    let mut expect_warning: Vec<(String, PathBuf)> = Vec::new(); // (repository or "", path)

    // Truncated revision link.
    let (_, u) = pair(&p, "hostile/truncated", 100);
    let link = revision_link(&reg, "hostile/truncated", &u.digest);
    std::fs::write(&link, "sha256:0123").expect("truncate");
    expect_warning.push(("hostile/truncated".into(), link));
    // Garbage tag link.
    pair(&p, "hostile/garbage-tag", 110);
    let link = repo_dir(&reg, "hostile/garbage-tag").join("_manifests/tags/v1/current/link");
    std::fs::write(&link, "\u{0}\u{1}garbage\n").expect("garbage");
    expect_warning.push(("hostile/garbage-tag".into(), link));
    // A revision whose blob is missing.
    let (_, u) = pair(&p, "hostile/missing-blob", 120);
    let blob = reg.root().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{}/data",
        &u.digest.hex()[..2],
        u.digest.hex()
    ));
    std::fs::remove_file(&blob).expect("remove blob");
    expect_warning.push(("hostile/missing-blob".into(), blob));
    // Unparsable manifest JSON (that matches its digest).
    pair(&p, "hostile/unparsable", 130);
    let d = write_manifest(
        &reg,
        "hostile/unparsable",
        b"{\"schemaVersion\": 2, \"mediaType\": ",
    );
    expect_warning.push(("hostile/unparsable".into(), PathBuf::from(d.hex())));
    // A symlink loop as a revision link.
    let (_, u) = pair(&p, "hostile/symlink-loop", 140);
    let link = revision_link(&reg, "hostile/symlink-loop", &u.digest);
    std::fs::remove_file(&link).expect("rm link");
    std::os::unix::fs::symlink(&link, &link).expect("symlink loop");
    expect_warning.push(("hostile/symlink-loop".into(), link));
    // A tag directory without current/link.
    pair(&p, "hostile/no-current", 150);
    let cur = repo_dir(&reg, "hostile/no-current").join("_manifests/tags/v1/current");
    std::fs::remove_dir_all(&cur).expect("rm current");
    expect_warning.push(("hostile/no-current".into(), cur.join("link")));
    // A non-UTF-8 tag name.
    pair(&p, "hostile/bad-tag-name", 160);
    let bad_tag = repo_dir(&reg, "hostile/bad-tag-name")
        .join("_manifests/tags")
        .join(std::ffi::OsStr::from_bytes(b"t\xff"));
    std::fs::create_dir_all(bad_tag.join("current")).expect("mkdir");
    expect_warning.push(("hostile/bad-tag-name".into(), bad_tag));
    // A non-UTF-8 repository name, and a directory symlink loop among repositories.
    let bad_repo = reg
        .root()
        .join("docker/registry/v2/repositories")
        .join(std::ffi::OsStr::from_bytes(b"bad\xfe"));
    std::fs::create_dir_all(bad_repo.join("_manifests/revisions/sha256")).expect("mkdir");
    expect_warning.push((String::new(), bad_repo));
    let loop_dir = reg
        .root()
        .join("docker/registry/v2/repositories/hostile/loop");
    std::os::unix::fs::symlink("..", &loop_dir).expect("symlink");
    expect_warning.push((String::new(), loop_dir));

    // Odd but legal: an unknown media type (kept, with what it names), empty revision
    // directories (left by the registry's own deletes), odd names, deep nesting.
    let (t, u) = pair(&p, "hostile/unknown-type", 170);
    let body = format!(
        r#"{{"mediaType":"application/vnd.example.future+json","refs":["{}"]}}"#,
        u.digest
    );
    let unknown = write_manifest(&reg, "hostile/unknown-type", body.as_bytes());
    let (_, gone) = pair(&p, "hostile/empty-revision", 180);
    std::fs::remove_file(revision_link(&reg, "hostile/empty-revision", &gone.digest))
        .expect("rm link");
    let odd = "odd.name/with-dashes/and_underscores/a/b/c/d/e/deep.er";
    let (odd_t, odd_u) = pair(&p, odd, 190);
    reg.age_links("2 hours ago");

    let root = reg.root().to_string_lossy().into_owned();
    let out = regsweep(
        &[
            ("REGISTRY_URL", &reg.url),
            ("REGISTRY_DIR", &root),
            ("OUTPUT_FORMAT", "json"),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(4),
        "something was skipped: exit 4\n{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    eprintln!("{stderr}");
    for (repo, path) in &expect_warning {
        let needle = path.to_string_lossy().into_owned();
        let shown = needle.replace('\u{fffd}', "");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| {
                l.starts_with("warning:")
                    && l.contains(shown.split('\u{fffd}').next().unwrap_or(&shown))
            })
            .collect();
        assert!(!lines.is_empty(), "a warning names {needle}:\n{stderr}");
        if !repo.is_empty() {
            let r = repo_report(&report, repo);
            assert_eq!(r["failed_closed"], true, "{repo} fails closed");
            assert_eq!(r["delete"], 0, "{repo} deletes nothing");
        }
    }
    // Nothing in a failed-closed repository was touched.
    assert!(reg.revisions("hostile/truncated").len() >= 2);
    // The unknown media type is kept with what it names; the tagged image stays.
    let kept = reg.revisions("hostile/unknown-type");
    assert!(kept.contains(&unknown) && kept.contains(&u.digest) && kept.contains(&t.digest));
    // Empty revision directories and odd names are simply normal.
    assert_eq!(
        repo_report(&report, "hostile/empty-revision")["failed_closed"],
        false
    );
    assert_eq!(
        reg.revisions(odd),
        [odd_t.digest].into_iter().collect(),
        "{odd}: {}",
        odd_u.digest
    );
    // The rest of the registry was cleaned as usual.
    assert!(!reg.revisions(APP).contains(&named["B1"].1));
    assert!(!reg.revisions(OTHER).contains(&named["A_OTHER"].1));
    assert!(!reg.revisions(BASE).contains(&named["L2"].1));
}

#[test]
fn permission_denied_fails_only_that_repository_closed() {
    let reg = Registry::start();
    let p = reg.pusher();
    pair(&p, "ok/repo", 300);
    pair(&p, "denied/repo", 310);
    reg.age_links("2 hours ago");
    // regsweep runs as nobody: storage readable by all, one tags directory by nobody.
    let st = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(reg.dir.path())
        .status()
        .expect("chmod");
    assert!(st.success());
    let tags = repo_dir(&reg, "denied/repo").join("_manifests/tags");
    let st = Command::new("chmod")
        .arg("000")
        .arg(&tags)
        .status()
        .expect("chmod");
    assert!(st.success());
    let exe = Path::new(env!("CARGO_BIN_EXE_regsweep"));
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(exe)
        .env_clear()
        .env("REGISTRY_DIR", reg.root())
        .env("DRY_RUN", "true")
        .env("OUTPUT_FORMAT", "json")
        .output()
        .expect("setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&tags.to_string_lossy().into_owned())
            && stderr.contains("ermission denied"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(repo_report(&report, "denied/repo")["failed_closed"], true);
    assert_eq!(repo_report(&report, "ok/repo")["delete"], 1);
    let _ = Command::new("chmod").arg("755").arg(&tags).status();
}
