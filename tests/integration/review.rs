//! The safety review's findings, each against the real registry: signatures kept in another
//! repository, unreadable configs, stale storage, offline deletes matching the registry's
//! own, link times that cannot be trusted, signals during the scan.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{TimeZone, Utc};
use common::standard::standard;
use common::{Registry, dry_run_json, planned_deletes, pull_all_tags, regsweep, verdicts};
use regsweep::digest::Digest;
use regsweep_testkit::ImageSpec;
use regsweep_testkit::scenario::{APP, BASE, OTHER};

fn spec(seed: u64, day: u32) -> ImageSpec {
    ImageSpec {
        os: "linux",
        arch: "amd64",
        created: Utc
            .with_ymd_and_hms(2026, 3, day, 0, 0, 0)
            .single()
            .expect("date"),
        seed,
        oci: false,
    }
}

/// A dry run in JSON that ends with exit 4 (something failed closed): stderr and report.
fn dry_run_closed(root: &str) -> (String, serde_json::Value) {
    let out = regsweep(
        &[
            ("REGISTRY_DIR", root),
            ("DRY_RUN", "true"),
            ("OUTPUT_FORMAT", "json"),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(4), "{err}");
    let report = serde_json::from_slice(&out.stdout).expect("json");
    (err, report)
}

fn run_ok(env: &[(&str, &str)]) -> String {
    common::run_expecting(env, &[], 0).0
}

#[test]
fn signatures_kept_in_another_repository_survive_a_real_cleanup() {
    const SIGS: &str = "signatures/app";
    let reg = Registry::start();
    let p = reg.pusher();
    // Two live images in `app`, one image deleted by the run; their signatures and an
    // OCI referrers-tag index live in `signatures/app` (cosign's COSIGN_REPOSITORY).
    let live = p.image("app", &spec(1, 1)).expect("push");
    p.tag("app", "v1", &live).expect("tag");
    let doomed = p.image("app", &spec(2, 2)).expect("push");
    let sig_live = p.signature(SIGS, &live).expect("sign");
    let sig_doomed = p.signature(SIGS, &doomed).expect("sign");
    let sbom = p.referrer(SIGS, &live, "sbom").expect("referrer");
    let referrers = p
        .index(SIGS, &[(&sbom, "unknown", "unknown")], true)
        .expect("index");
    p.tag(SIGS, &format!("sha256-{}", live.digest.hex()), &referrers)
        .expect("tag referrers index");
    let stray = p.image(SIGS, &spec(3, 3)).expect("push untagged");
    reg.age_links("2 hours ago");

    let report = dry_run_json(&reg.root(), &[]);
    let v = verdicts(&report);
    let sigs = |d: &Digest| v[&(SIGS.to_owned(), *d)].clone();
    assert!(
        sigs(&sig_live.digest).starts_with("keep foreign-attachment"),
        "{v:?}"
    );
    assert!(
        sigs(&sig_doomed.digest).starts_with("keep foreign-attachment"),
        "{v:?}"
    );
    assert!(
        sigs(&referrers.digest).starts_with("keep foreign-attachment"),
        "{v:?}"
    );
    assert!(sigs(&sbom.digest).starts_with("keep child-of"), "{v:?}");
    assert_eq!(
        planned_deletes(&report),
        BTreeSet::from([
            ("app".to_owned(), doomed.digest),
            (SIGS.to_owned(), stray.digest)
        ])
    );

    let root = reg.root().to_string_lossy().into_owned();
    run_ok(&[("REGISTRY_URL", &reg.url), ("REGISTRY_DIR", &root)]);
    let tags: Vec<String> = reg.tags(SIGS).keys().cloned().collect();
    assert_eq!(tags.len(), 3, "{tags:?}");
    assert!(pull_all_tags(&reg.url, SIGS, &tags) > tags.len());
    assert!(reg.revisions("app").contains(&live.digest));
}

#[test]
fn an_unreadable_config_of_a_hash_tagged_image_fails_its_repository_closed() {
    let (reg, named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    // H0 is the newest hash-tagged image: without its config it would rank by push time.
    let h0 = named["H0"].1;
    let body = reg.blob_body(&h0);
    let m: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let config = Digest::parse(m["config"]["digest"].as_str().expect("config")).expect("digest");
    let config_path = reg.blob_path(&config);
    for (what, damage) in [("missing", None), ("not JSON", Some(b"not json".to_vec()))] {
        let saved = std::fs::read(&config_path).expect("config");
        match &damage {
            None => std::fs::remove_file(&config_path).expect("remove config"),
            Some(b) => std::fs::write(&config_path, b).expect("damage config"),
        }
        let (err, report) = dry_run_closed(&root);
        let line = err
            .lines()
            .find(|l| l.contains("fails closed"))
            .unwrap_or_else(|| panic!("{what}: no warning: {err}"));
        assert!(
            line.contains(APP) && line.contains(&config.hex()),
            "{what}: {line}"
        );
        let deletes = planned_deletes(&report);
        assert!(deletes.iter().all(|(r, _)| r != APP), "{what}: {deletes:?}");
        assert!(
            deletes.iter().any(|(r, _)| r == BASE),
            "other repositories go on"
        );
        std::fs::write(&config_path, saved).expect("restore config");
    }
}

#[test]
fn a_stale_copy_with_a_moved_tag_never_drives_deletes() {
    let (reg, named) = standard();
    let copy = reg.copy_storage("stale-copy");
    // After the copy, `latest` moves back to B1 in the live registry: the copy still has
    // the same tag names, but calls B1 untagged.
    let b1 = named["B1"].1;
    let body = reg.blob_body(&b1);
    reg.pusher()
        .manifest(
            APP,
            Some("latest"),
            regsweep::meta::parse::DOCKER_MANIFEST,
            body,
        )
        .expect("move latest");
    let copy_s = copy.to_string_lossy().into_owned();
    let out = regsweep(
        &[
            ("REGISTRY_URL", &reg.url),
            ("REGISTRY_DIR", &copy_s),
            ("REPO_FILTER", APP),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let all = format!("{err}{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        all.contains("tag latest") && all.contains(&b1.to_string()),
        "{all}"
    );
    assert!(
        reg.revisions(APP).contains(&b1),
        "B1 is live in the registry"
    );
    assert_eq!(reg.tags(APP)["latest"], b1);
}

#[test]
fn a_link_dated_before_1970_fails_its_repository_closed() {
    let (reg, named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let a_other = named["A_OTHER"].1;
    let link = reg.root().join(format!(
        "docker/registry/v2/repositories/{OTHER}/_manifests/revisions/sha256/{}/link",
        a_other.hex()
    ));
    let st = Command::new("touch")
        .args(["-h", "-d", "1969-07-20 20:17:00 UTC"])
        .arg(&link)
        .status()
        .expect("touch");
    assert!(st.success());
    let (err, report) = dry_run_closed(&root);
    assert!(err.contains(&link.display().to_string()), "{err}");
    assert!(planned_deletes(&report).iter().all(|(r, _)| r != OTHER));
}

/// Every path under `root` (relative) with the content of each file.
fn tree(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    common::snapshot(root)
        .into_iter()
        .map(|(p, (_, _, content))| {
            let rel = p.strip_prefix(root).expect("under root").to_path_buf();
            let is_dir = p.is_dir();
            (rel, (!is_dir).then_some(content))
        })
        .collect()
}

#[test]
fn offline_deletes_leave_the_tree_the_registry_api_leaves() {
    let (reg, named) = standard();
    // Manifests linked into `_layers` too (as distribution 2.1 did): the registry's delete
    // removes that link as well.
    let b1 = named["B1"].1;
    let layers = reg.root().join(format!(
        "docker/registry/v2/repositories/{APP}/_layers/sha256/{}",
        b1.hex()
    ));
    std::fs::create_dir_all(&layers).expect("mkdir");
    std::fs::write(layers.join("link"), b1.to_string()).expect("write link");
    let copy = reg.copy_storage("offline-copy");
    let root = reg.root().to_string_lossy().into_owned();
    let copy_s = copy.to_string_lossy().into_owned();
    let planned = planned_deletes(&dry_run_json(&reg.root(), &[]));
    run_ok(&[("REGISTRY_URL", &reg.url), ("REGISTRY_DIR", &root)]);
    run_ok(&[
        ("REGISTRY_DIR", &copy_s),
        ("DELETE_VIA", "storage"),
        ("REGISTRY_STOPPED", "true"),
    ]);
    assert_eq!(planned_deletes(&dry_run_json(&copy, &[])).len(), 0);
    assert!(planned.len() >= 10);
    let api = tree(&reg.root());
    let offline = tree(&copy);
    let only_api: Vec<_> = api.keys().filter(|k| !offline.contains_key(*k)).collect();
    let only_offline: Vec<_> = offline.keys().filter(|k| !api.contains_key(*k)).collect();
    assert!(
        only_api.is_empty() && only_offline.is_empty(),
        "only after the API run: {only_api:#?}\nonly after the offline run: {only_offline:#?}"
    );
    assert_eq!(api, offline);
    assert!(!layers.join("link").exists());
}

#[test]
fn a_signal_during_the_scan_exits_130_with_a_closing_line() {
    let (reg, named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    // A manifest blob that is a FIFO: the scan blocks reading it, and is signalled there.
    common::make_fifo(&reg.blob_path(&named["O"].1));
    for signal in ["INT", "TERM"] {
        let out = common::signalled(
            &[("REGISTRY_DIR", root.as_str()), ("DRY_RUN", "true")],
            &[],
            &reg.blob_path(&named["O"].1),
            None,
            signal,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "SIG{signal}: {err}");
        assert!(err.contains("interrupted"), "SIG{signal}: {err}");
        assert!(err.contains("nothing was deleted"), "SIG{signal}: {err}");
    }
}

#[test]
fn brace_globs_plan_files_from_the_future_and_a_zero_timeout() {
    let (reg, _named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    // `{a,b}` is one glob, not two broken ones; a comma outside braces still separates.
    for globs in [format!("{{{APP},{OTHER}}}"), format!("{APP},{OTHER}")] {
        let report = dry_run_json(&reg.root(), &[("REPO_GLOB", globs.as_str())]);
        let names: Vec<&str> = report["repositories"]
            .as_array()
            .expect("repositories")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert_eq!(names, vec![APP, OTHER], "{globs}");
    }
    for timeout in ["0s", "0ms"] {
        let out = regsweep(
            &[
                ("REGISTRY_DIR", &root),
                ("REGISTRY_URL", &reg.url),
                ("REQUEST_TIMEOUT", timeout),
            ],
            &[],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{timeout}: {err}");
        assert!(err.contains("REQUEST_TIMEOUT"), "{err}");
    }
    // A plan file whose time lies in the future would turn the grace period off.
    let plan = reg.dir.path().join("plan.json");
    let plan_s = plan.to_string_lossy().into_owned();
    let out = regsweep(&[("REGISTRY_DIR", &root)], &["plan", "--out", &plan_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&plan).expect("plan")).expect("json");
    file["now"] = serde_json::json!(4_000_000_000i64);
    std::fs::write(&plan, serde_json::to_vec(&file).expect("json")).expect("write");
    let before = common::snapshot(&reg.root());
    let out = regsweep(
        &[("REGISTRY_DIR", &root), ("REGISTRY_URL", &reg.url)],
        &["apply", &plan_s],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not a past time"), "{err}");
    assert_eq!(common::snapshot(&reg.root()), before, "nothing touched");
}

#[test]
fn name_unknown_on_delete_is_a_failure_not_already_gone() {
    use common::proxy::{Fault, FaultProxy};
    let (reg, _named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let proxy = FaultProxy::start(
        &reg.url,
        Box::new(|_, method, _| match method {
            "DELETE" => Fault::Body(
                404,
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
            ),
            _ => Fault::Pass,
        }),
    );
    let out = regsweep(
        &[
            ("REGISTRY_URL", &proxy.url),
            ("REGISTRY_DIR", &root),
            ("REPO_FILTER", OTHER),
            ("OUTPUT_FORMAT", "json"),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("NAME_UNKNOWN") && err.contains(OTHER), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["outcome"]["already_gone"], 0);
    assert_eq!(
        report["outcome"]["failed"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn a_retry_after_a_long_back_off_is_re_verified_first() {
    use common::proxy::{Fault, FaultProxy};
    use std::sync::atomic::{AtomicBool, Ordering};
    let (reg, named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let a_other = named["A_OTHER"].1;
    let body = reg.blob_body(&a_other);
    let (registry, once) = (reg.url.clone(), AtomicBool::new(false));
    // The first DELETE is answered 503 with Retry-After: 2; meanwhile somebody tags the
    // manifest. With a 1 s window, the retry must wait for a re-read, which keeps it.
    let proxy = FaultProxy::start(
        &reg.url,
        Box::new(move |_, method, _| {
            if method != "DELETE" || once.swap(true, Ordering::SeqCst) {
                return Fault::Pass;
            }
            regsweep_testkit::Pusher::new(&registry)
                .expect("pusher")
                .manifest(
                    OTHER,
                    Some("rescued"),
                    regsweep::meta::parse::DOCKER_MANIFEST,
                    body.clone(),
                )
                .expect("tag A_OTHER");
            Fault::Status(503, Some(2))
        }),
    );
    let out = regsweep(
        &[
            ("REGISTRY_URL", &proxy.url),
            ("REGISTRY_DIR", &root),
            ("REPO_FILTER", OTHER),
            ("REVERIFY_WINDOW", "1s"),
            ("OUTPUT_FORMAT", "json"),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["outcome"]["deleted"], 0, "{report:#}");
    assert_eq!(
        report["outcome"]["skipped"].as_array().map(Vec::len),
        Some(1)
    );
    let deletes = proxy
        .seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| s.method == "DELETE")
        .count();
    assert_eq!(deletes, 1, "the retry never went out");
    assert_eq!(reg.tags(OTHER)["rescued"], a_other);
    assert!(reg.revisions(OTHER).contains(&a_other));
}
