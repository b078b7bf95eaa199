//! Real deletions through the real docker-registry API: exact end state, garbage-collect,
//! basic auth over TLS, token auth, and a registry with deletes disabled.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use common::standard::{expected, standard};
use common::token::token_registry;
use common::{Registry, ca_signed_cert, pull_all_tags, regsweep};
use regsweep::digest::Digest;
use regsweep_testkit::scenario::{self, APP, BASE, Named, OTHER};

const REPOS: [&str; 3] = [APP, OTHER, BASE];

/// The revisions each repository must keep, from the expected plan.
fn keep_sets(named: &Named) -> BTreeMap<String, BTreeSet<Digest>> {
    let mut out: BTreeMap<String, BTreeSet<Digest>> = REPOS
        .iter()
        .map(|r| (r.to_string(), BTreeSet::new()))
        .collect();
    for ((repo, d), v) in expected(named) {
        if v.starts_with("keep") {
            out.entry(repo).or_default().insert(d);
        }
    }
    out
}

/// Tags expected after a run: all but the expired hash tag and the signature of the deleted image.
fn tags_after(reg: &Registry, named: &Named) -> BTreeMap<String, BTreeMap<String, Digest>> {
    let mut out = BTreeMap::new();
    for repo in REPOS {
        let mut tags = reg.tags(repo);
        if repo == APP {
            tags.remove(&scenario::hash_tag(10));
            tags.remove(&format!("sha256-{}.sig", named["B1"].1.hex()));
        }
        out.insert(repo.to_owned(), tags);
    }
    out
}

fn assert_end_state(
    reg: &Registry,
    named: &Named,
    tags: &BTreeMap<String, BTreeMap<String, Digest>>,
) {
    for (repo, keep) in keep_sets(named) {
        assert_eq!(reg.revisions(&repo), keep, "revision links left in {repo}");
        assert_eq!(&reg.tags(&repo), &tags[&repo], "tags left in {repo}");
    }
}

fn run_ok(env: &[(&str, &str)]) -> String {
    common::run_expecting(env, &[], 0).0
}

#[test]
fn real_run_deletes_exactly_the_plan_and_garbage_collect_breaks_nothing() {
    let (reg, named) = standard();
    let tags = tags_after(&reg, &named);
    let root = reg.root().to_string_lossy().into_owned();
    let env = [
        ("REGISTRY_URL", reg.url.as_str()),
        ("REGISTRY_DIR", root.as_str()),
    ];
    let text = run_ok(&env);
    assert!(
        text.contains("Job done, Cleaned 10 of 10 manifests."),
        "{text}"
    );
    assert_end_state(&reg, &named, &tags);

    // A second run finds nothing to do.
    let again = run_ok(&[env[0], env[1], ("OUTPUT_FORMAT", "json")]);
    let report: serde_json::Value = serde_json::from_str(&again).expect("json");
    assert_eq!(report["totals"]["delete"], 0);
    assert_eq!(report["outcome"]["deleted"], 0);

    // Garbage-collect with the registry stopped, restart, and pull every tag in full.
    assert!(reg.blob_exists(&named["B1"].1));
    reg.garbage_collect();
    let url = reg.restart_with("", &[]);
    assert!(
        !reg.blob_exists(&named["B1"].1),
        "the deleted image's manifest blob was collected"
    );
    assert!(
        !reg.blob_exists(&named["I1"].1),
        "the deleted index's blob was collected"
    );
    for repo in REPOS {
        let names: Vec<String> = tags[repo].keys().cloned().collect();
        let checked = pull_all_tags(&url, repo, &names);
        assert!(checked > names.len(), "{repo}: pulled {checked} objects");
    }
    assert_end_state(&reg, &named, &tags);
}

#[test]
fn delete_disabled_is_a_clear_error_and_deletes_nothing() {
    let (reg, named) = standard();
    reg.restart_with("", &[("REGISTRY_STORAGE_DELETE_ENABLED", "false")]);
    let before: Vec<_> = REPOS.iter().map(|r| reg.revisions(r)).collect();
    let root = reg.root().to_string_lossy().into_owned();
    let out = regsweep(
        &[
            ("REGISTRY_URL", &reg.url),
            ("REGISTRY_DIR", &root),
            ("REPO_FILTER", OTHER),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("405") && err.contains("delete: enabled: true"),
        "{err}"
    );
    let after: Vec<_> = REPOS.iter().map(|r| reg.revisions(r)).collect();
    assert_eq!(before, after);
    assert!(reg.revisions(OTHER).contains(&named["A_OTHER"].1));
}

fn htpasswd(dir: &std::path::Path, user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-Bbn", "-C", "4", user, password])
        .output()
        .expect("htpasswd");
    assert!(out.status.success());
    let path = dir.join("htpasswd");
    std::fs::write(&path, &out.stdout).expect("write htpasswd");
    format!(
        "auth:\n  htpasswd:\n    realm: regsweep-test\n    path: {}\n",
        path.display()
    )
}

#[test]
fn basic_auth_over_tls_with_self_signed_and_ca_cert() {
    let (reg, named) = standard();
    let tags = tags_after(&reg, &named);
    let (ca, cert, key) = ca_signed_cert(reg.dir.path());
    let ca_s = ca.to_string_lossy().into_owned();
    let password = "pa:ss:w0rd";
    let extra = htpasswd(reg.dir.path(), "alice", password);
    let (cert_s, key_s) = (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let url = reg.restart_with(
        &extra,
        &[
            ("REGISTRY_HTTP_TLS_CERTIFICATE", &cert_s),
            ("REGISTRY_HTTP_TLS_KEY", &key_s),
        ],
    );
    assert!(url.starts_with("https://"));
    let root = reg.root().to_string_lossy().into_owned();
    let base = [
        ("REGISTRY_URL", url.as_str()),
        ("REGISTRY_DIR", root.as_str()),
    ];

    // Untrusted certificate: one clear error, nothing deleted.
    let auth = format!("alice:{password}");
    let out = regsweep(&[base[0], base[1], ("REGISTRY_AUTH", &auth)], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("SELF_SIGNED_CERT"), "{err}");
    // Wrong password: the error names the user and the source, never the secret.
    let out = regsweep(
        &[
            base[0],
            base[1],
            ("REGISTRY_AUTH", "alice:not:it"),
            ("SELF_SIGNED_CERT", "true"),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("alice") && err.contains("REGISTRY_AUTH") && !err.contains("not:it"),
        "{err}"
    );
    // No credentials at all.
    let out = regsweep(
        &[
            base[0],
            base[1],
            ("SELF_SIGNED_CERT", "true"),
            ("HOME", &root),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("requires authentication"));
    assert_eq!(reg.revisions(OTHER).len(), 2, "nothing deleted yet");

    // SELF_SIGNED_CERT with a password containing ':'.
    run_ok(&[
        base[0],
        base[1],
        ("REGISTRY_AUTH", &auth),
        ("SELF_SIGNED_CERT", "true"),
        ("REPO_FILTER", OTHER),
    ]);
    // --ca-cert with credentials from docker's config.json.
    let cfg_dir = reg.dir.path().join("docker");
    std::fs::create_dir_all(&cfg_dir).expect("mkdir");
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&auth);
    let host = url.trim_start_matches("https://");
    std::fs::write(
        cfg_dir.join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{encoded}"}}}}}}"#),
    )
    .expect("config.json");
    let cfg_s = cfg_dir.to_string_lossy().into_owned();
    run_ok(&[
        base[0],
        base[1],
        ("CA_CERT", &ca_s),
        ("DOCKER_CONFIG", &cfg_s),
        ("REPO_FILTER", BASE),
    ]);
    // --username with --password-stdin.
    let mut child = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .env_clear()
        .envs([
            base[0],
            base[1],
            ("CA_CERT", ca_s.as_str()),
            ("REPO_FILTER", APP),
        ])
        .args(["--username", "alice", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write password");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_end_state(&reg, &named, &tags);
}

#[test]
fn token_auth_fetches_a_scoped_token_per_repository() {
    let (reg, named) = standard();
    let tags = tags_after(&reg, &named);
    let tokens = token_registry(&reg, "alice", "s3cret:x");
    let root = reg.root().to_string_lossy().into_owned();
    let env = [
        ("REGISTRY_URL", reg.url.as_str()),
        ("REGISTRY_DIR", root.as_str()),
    ];
    let out = regsweep(&[env[0], env[1], ("REGISTRY_AUTH", "alice:wrong")], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token service"));
    run_ok(&[env[0], env[1], ("REGISTRY_AUTH", "alice:s3cret:x")]);
    assert_end_state(&reg, &named, &tags);
    let scopes = tokens.scopes.lock().expect("lock").clone();
    for repo in REPOS {
        assert!(
            scopes.contains(&format!("repository:{repo}:pull,delete")),
            "{scopes:?}"
        );
    }
}

#[test]
fn reverification_skips_what_changed_since_the_scan() {
    use regsweep::delete::Reverify;
    use regsweep::delete::verify::StorageReverify;
    use regsweep::plan::{DEFAULT_HASH_TAG_PATTERN, Policies, Policy};

    let (reg, named) = standard();
    let policy: Policies = Policy::new(
        regex::Regex::new(DEFAULT_HASH_TAG_PATTERN).expect("pattern"),
        10,
        3600,
        chrono::Utc::now().timestamp(),
    )
    .into();
    let planned = regsweep::pipeline::plan_filesystem(&reg.root(), &Default::default(), &policy, 2);
    let plan = |name: &str| {
        planned
            .plans
            .iter()
            .find(|p| &*p.name == name)
            .expect("plan")
            .clone()
    };
    let verify = StorageReverify {
        storage: std::sync::Arc::new(regsweep::storage::fs::FsStorage::new(&reg.root(), 2)),
        policy: policy.clone(),
    };
    let none = regsweep::digest::DigestSet::default();
    let changed = |name: &str| {
        let p = plan(name);
        let pending: Vec<Digest> = p.delete_digests().collect();
        verify
            .changed(&p, &pending, &none, &none)
            .expect("reverify")
    };
    assert!(changed(APP).is_empty(), "nothing changed yet");
    assert!(changed(BASE).is_empty(), "nothing changed yet");

    // After the scan, someone tags the untagged B1 again.
    let b1 = named["B1"].1;
    let body = reg.blob_body(&b1);
    reg.pusher()
        .manifest(
            APP,
            Some("rescued"),
            regsweep::meta::parse::DOCKER_MANIFEST,
            body,
        )
        .expect("tag B1");
    let now = changed(APP);
    let skipped: BTreeSet<Digest> = now.keys().copied().collect();
    assert_eq!(skipped, BTreeSet::from([b1, named["SIG_B1"].1]), "{now:?}");
    assert!(now[&b1].contains("now kept"));
    assert!(changed(OTHER).is_empty());

    // A doomed manifest pushed again since the scan (same digest, same tags, a fresh
    // revision link) falls under the grace period again.
    let a_other = named["A_OTHER"].1;
    let body = reg.blob_body(&a_other);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    reg.pusher()
        .manifest(OTHER, None, regsweep::meta::parse::DOCKER_MANIFEST, body)
        .expect("push A_OTHER again");
    let now = changed(OTHER);
    assert!(
        now.get(&a_other)
            .is_some_and(|w| w.contains("grace-period")),
        "{now:?}"
    );

    // An index whose tags changed but that is still doomed (an expired hash tag) is
    // skipped, and so are its children, though they are still doomed too.
    let i1 = named["I1"].1;
    // Written straight into storage: a push through the API would also rewrite I1's
    // revision link (and so put it under the grace period).
    let tag = reg
        .root()
        .join("docker/registry/v2/repositories")
        .join(APP)
        .join("_manifests/tags/deadbee");
    let index = tag.join("index/sha256").join(i1.hex());
    std::fs::create_dir_all(&index).expect("mkdir");
    std::fs::create_dir_all(tag.join("current")).expect("mkdir");
    std::fs::write(index.join("link"), i1.to_string()).expect("write");
    std::fs::write(tag.join("current/link"), i1.to_string()).expect("write");
    let now = changed(APP);
    assert!(now[&i1].contains("tags changed"), "{now:?}");
    for child in ["D1", "D2"] {
        assert!(
            now[&named[child].1].contains("refers to it was skipped"),
            "{child}: {now:?}"
        );
    }
    // Held from an earlier round, its children stay even if storage looks as scanned.
    let l2 = named["L2"].1;
    let p = plan(BASE);
    let pending: Vec<Digest> = [named["G1"].1, named["G2"].1].into();
    let held: regsweep::digest::DigestSet = [l2].into_iter().collect();
    let now = verify
        .changed(&p, &pending, &held, &none)
        .expect("reverify");
    assert_eq!(now.len(), 2, "{now:?}");
}

#[test]
fn storage_of_another_registry_never_drives_deletes() {
    let (reg, named) = standard();
    // A stale copy of the storage in which `1.0` was untagged: A looks deletable there.
    let copy = reg.copy_storage("stale-copy");
    let tag_dir = copy
        .join("docker/registry/v2/repositories")
        .join(APP)
        .join("_manifests/tags/1.0");
    std::fs::remove_dir_all(&tag_dir).expect("untag in the copy");
    let before = reg.revisions(APP);
    let copy_s = copy.to_string_lossy().into_owned();
    let out = regsweep(
        &[
            ("REGISTRY_URL", &reg.url),
            ("REGISTRY_DIR", &copy_s),
            ("REPO_FILTER", APP),
        ],
        &[],
    );
    common::assert_exit(&out, 4);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("is REGISTRY_DIR the storage of REGISTRY_URL"),
        "{stdout}"
    );
    assert_eq!(
        reg.revisions(APP),
        before,
        "nothing deleted in the live registry"
    );
    assert!(reg.revisions(APP).contains(&named["A"].1));
}

#[test]
fn offline_storage_deletes_match_the_api_and_the_registry_serves_what_is_kept() {
    let (reg, named) = standard();
    let tags = tags_after(&reg, &named);
    let root = reg.root().to_string_lossy().into_owned();
    let estimate = common::dry_run_json(&reg.root(), &[])["totals"]["bytes_freed"]
        .as_u64()
        .expect("bytes_freed");

    // Without the confirmation: a usage error, nothing touched.
    let before = common::snapshot(&reg.root());
    let out = regsweep(
        &[("REGISTRY_DIR", root.as_str()), ("DELETE_VIA", "storage")],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--registry-stopped"), "{err}");
    assert_eq!(common::snapshot(&reg.root()), before);

    reg.stop();
    let text = run_ok(&[
        ("REGISTRY_DIR", root.as_str()),
        ("DELETE_VIA", "storage"),
        ("REGISTRY_STOPPED", "true"),
    ]);
    assert!(
        text.contains("Job done, Cleaned 10 of 10 manifests."),
        "{text}"
    );
    assert_end_state(&reg, &named, &tags);

    // garbage-collect frees what the estimate says; the restarted registry serves every
    // kept tag in full.
    let before = reg.blob_bytes();
    reg.garbage_collect();
    assert_eq!(before - reg.blob_bytes(), estimate);
    let url = reg.restart_with("", &[]);
    for repo in REPOS {
        let names: Vec<String> = tags[repo].keys().cloned().collect();
        let checked = pull_all_tags(&url, repo, &names);
        assert!(checked > names.len(), "{repo}: pulled {checked} objects");
    }
    assert_end_state(&reg, &named, &tags);
    let again = run_ok(&[
        ("REGISTRY_URL", url.as_str()),
        ("REGISTRY_DIR", root.as_str()),
        ("OUTPUT_FORMAT", "json"),
    ]);
    let report: serde_json::Value = serde_json::from_str(&again).expect("json");
    assert_eq!(report["totals"]["delete"], 0, "nothing left to delete");
}
