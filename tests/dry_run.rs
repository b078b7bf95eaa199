//! Dry runs against the real docker-registry: exact plans, and nothing on disk changes.

mod common;

use chrono::{TimeZone, Utc};
use common::{Registry, Verdicts, dry_run_json, regsweep, snapshot, verdicts};
use regsweep::testkit::scenario::{self, APP, BASE, OTHER};
use regsweep::testkit::{ImageSpec, Pusher};

/// Pushes the standard scenario, ages it, then pushes one young untagged image.
fn standard() -> (Registry, scenario::Named) {
    let reg = Registry::start();
    let mut named = scenario::push_standard(&reg.pusher()).expect("push scenario");
    reg.age_links("2 hours ago");
    let spec = ImageSpec {
        os: "linux",
        arch: "amd64",
        created: Utc
            .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
            .single()
            .expect("date"),
        seed: 9999,
        oci: false,
    };
    let y = reg.pusher().image(APP, &spec).expect("push young image");
    named.insert("YOUNG".into(), (APP.into(), y.digest));
    (reg, named)
}

/// The plan DESIGN section 4 prescribes for the standard scenario.
fn expected(named: &scenario::Named) -> Verdicts {
    let n = |k: &str| {
        named
            .get(k)
            .unwrap_or_else(|| panic!("{k} was not pushed"))
            .1
    };
    let mut want = Verdicts::new();
    let mut put = |repo: &str, k: &str, v: String| {
        want.insert((repo.to_owned(), n(k)), v);
    };
    put(APP, "A", "keep version-tag".into());
    put(APP, "B1", "delete untagged".into());
    put(APP, "B2", "keep version-tag".into());
    for i in 0..10 {
        put(
            APP,
            &format!("H{i}"),
            format!("keep hash-tag-kept rank={i}"),
        );
    }
    put(APP, "H10", "delete hash-tag-expired rank=10".into());
    put(APP, "H11", "keep version-tag".into()); // beyond N, but also tagged `stable`
    put(APP, "I1", "delete untagged".into());
    put(
        APP,
        "D1",
        format!("delete child-of-deleted parent={}", n("I1")),
    );
    put(
        APP,
        "D2",
        format!("delete child-of-deleted parent={}", n("I1")),
    );
    put(APP, "I2", "keep version-tag".into());
    put(APP, "C1", format!("keep child-of parent={}", n("I2")));
    put(APP, "C2", format!("keep child-of parent={}", n("I2")));
    put(APP, "N", "keep version-tag".into());
    put(APP, "M", format!("keep child-of parent={}", n("N")));
    put(APP, "E1", format!("keep child-of parent={}", n("M")));
    put(APP, "E2", format!("keep child-of parent={}", n("M")));
    put(APP, "E3", format!("keep child-of parent={}", n("N")));
    put(
        APP,
        "SIG_A",
        format!("keep attachment-of subject={}", n("A")),
    );
    put(
        APP,
        "SIG_B1",
        format!("delete attachment-of-deleted subject={}", n("B1")),
    );
    put(APP, "REF_A", format!("keep referrer-of subject={}", n("A")));
    put(APP, "YOUNG", "keep grace-period".into());
    put(OTHER, "A_OTHER", "delete untagged".into());
    put(OTHER, "O", "keep version-tag".into());
    put(BASE, "L1", "keep version-tag".into());
    put(BASE, "F1", "keep version-tag".into());
    put(BASE, "F2", format!("keep child-of parent={}", n("L1")));
    put(BASE, "L2", "delete untagged".into());
    put(
        BASE,
        "G1",
        format!("delete child-of-deleted parent={}", n("L2")),
    );
    put(
        BASE,
        "G2",
        format!("delete child-of-deleted parent={}", n("L2")),
    );
    want
}

fn position(report: &serde_json::Value, repo: &str, d: &regsweep::digest::Digest) -> usize {
    let r = report["repositories"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == repo))
        .expect("repository in report");
    r["delete_order"]
        .as_array()
        .and_then(|o| o.iter().position(|x| x.as_str() == Some(&d.to_string())))
        .unwrap_or_else(|| panic!("{d} not in {repo}'s delete order"))
}

#[test]
fn standard_scenario_plan_is_exact_and_storage_untouched() {
    let (reg, named) = standard();
    let before = snapshot(&reg.root());
    let report = dry_run_json(&reg.root(), &[]);
    assert_eq!(
        before,
        snapshot(&reg.root()),
        "a dry run must not change storage"
    );

    let got = verdicts(&report);
    let want = expected(&named);
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "decision on {k:?}");
    }
    assert_eq!(
        got.len(),
        want.len(),
        "unexpected extra decisions: {got:#?}"
    );
    assert_eq!(report["totals"]["delete"], 10);
    assert_eq!(report["totals"]["repositories"], 3);
    assert_eq!(report["dry_run"], true);

    // Parents before children, attachments before their subject.
    let n = |k: &str| named[k].1;
    assert!(position(&report, APP, &n("I1")) < position(&report, APP, &n("D1")));
    assert!(position(&report, APP, &n("I1")) < position(&report, APP, &n("D2")));
    assert!(position(&report, APP, &n("SIG_B1")) < position(&report, APP, &n("B1")));
    assert!(position(&report, BASE, &n("L2")) < position(&report, BASE, &n("G1")));

    // Tags: the expired hash tag and the signature tag of the deleted image go.
    let app = report["repositories"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == APP))
        .expect("app");
    let gone: Vec<&str> = app["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter(|t| t["kept"] == false)
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        gone,
        vec![
            scenario::hash_tag(10),
            format!("sha256-{}.sig", n("B1").hex())
        ]
    );
}

#[test]
fn text_report_has_the_original_sections() {
    let (reg, named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let out = regsweep(&[("REGISTRY_DIR", &root), ("DRY_RUN", "true")], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let a = named["A"].1.short();
    let l1 = named["L1"].1.short();
    let h10 = named["H10"].1.short();
    let expected_lines = [
        "Running in dry-run mode. No changes will be made.".to_owned(),
        "Version-tagged manifests (always kept):".to_owned(),
        format!("  [keep] sha256:{a}  repo={APP:<30}  tag={:<20}  created=2026-01-01 12:00:00  linux/amd64", "1.0"),
        format!(
            "  [keep] sha256:{l1}  repo={BASE:<30}  tag={:<20}  created=2026-01-08 12:00:00  index [linux/amd64, linux/arm64]",
            "3.16"
        ),
        "Hash-tagged manifests (keeping 10 most recent per repo):".to_owned(),
        "Hash-tagged manifests to delete (beyond 10 most recent per repo):".to_owned(),
        format!("  DRY_RUN: sha256:{h10}  repo={APP:<30}  created=2026-04-01 12:00:00  linux/amd64"),
        "Untagged manifests to delete (9 in registry):".to_owned(),
        "  Cleaning 1 of 9 ..not really, due to dry-run mode".to_owned(),
        "  Cleaning 9 of 9 ..not really, due to dry-run mode".to_owned(),
        "Please run a garbage-collect on the registry now to free up disk space (docker-registry garbage-collect <config.yml>, with the registry read-only or stopped).".to_owned(),
    ];
    for line in expected_lines {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }
}

#[test]
fn filters_limit_the_run_to_named_repositories() {
    let reg = Registry::start();
    scenario::push_standard(&reg.pusher()).expect("push");
    reg.age_links("2 hours ago");
    let names = |r: &serde_json::Value| -> Vec<String> {
        r["repositories"]
            .as_array()
            .expect("repos")
            .iter()
            .filter_map(|x| x["name"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        names(&dry_run_json(&reg.root(), &[("REPO_FILTER", BASE)])),
        vec![BASE]
    );
    assert_eq!(
        names(&dry_run_json(&reg.root(), &[("REPO_GLOB", "demo/*")])),
        vec![APP]
    );
    assert_eq!(
        names(&dry_run_json(&reg.root(), &[("REPO_GLOB", "*")])),
        vec![OTHER]
    );
    assert_eq!(
        names(&dry_run_json(&reg.root(), &[("REPO_GLOB", "lib/*,other")])),
        vec![BASE, OTHER]
    );
}

#[test]
fn min_age_zero_and_keep_override() {
    let (reg, named) = standard();
    let report = dry_run_json(&reg.root(), &[("MIN_AGE", "0"), ("HASH_TAG_KEEP", "3")]);
    let got = verdicts(&report);
    assert_eq!(got[&(APP.to_owned(), named["YOUNG"].1)], "delete untagged");
    assert_eq!(
        got[&(APP.to_owned(), named["H2"].1)],
        "keep hash-tag-kept rank=2"
    );
    assert_eq!(
        got[&(APP.to_owned(), named["H3"].1)],
        "delete hash-tag-expired rank=3"
    );
    let pattern = dry_run_json(&reg.root(), &[("HASH_TAG_PATTERN", "^nomatch$")]);
    assert_eq!(
        verdicts(&pattern)[&(APP.to_owned(), named["H10"].1)],
        "keep version-tag"
    );
}

#[test]
fn malformed_link_fails_its_repository_closed_and_the_run_goes_on() {
    let reg = Registry::start();
    let named = scenario::push_standard(&reg.pusher()).expect("push");
    reg.age_links("2 hours ago");
    let l2 = named["L2"].1;
    let link = reg
        .root()
        .join("docker/registry/v2/repositories")
        .join(BASE)
        .join("_manifests/revisions/sha256")
        .join(l2.hex())
        .join("link");
    std::fs::write(&link, "sha256:short").expect("corrupt link");
    let root = reg.root().to_string_lossy().into_owned();
    let out = regsweep(
        &[
            ("REGISTRY_DIR", &root),
            ("DRY_RUN", "true"),
            ("OUTPUT_FORMAT", "json"),
        ],
        &[],
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&link.display().to_string()),
        "warning names the path: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let base = report["repositories"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == BASE))
        .expect("base");
    assert_eq!(base["failed_closed"], true);
    assert_eq!(base["delete"], 0);
    assert!(
        base["decisions"]
            .as_array()
            .expect("decisions")
            .iter()
            .all(|d| d["reason"] == "fail-closed")
    );
    let got = verdicts(&report);
    assert_eq!(
        got[&(OTHER.to_owned(), named["A_OTHER"].1)],
        "delete untagged",
        "other repositories still planned"
    );
}

#[test]
fn missing_manifest_blob_fails_closed() {
    let reg = Registry::start();
    let p = Pusher::new(&reg.url).expect("pusher");
    let named = scenario::push_standard(&p).expect("push");
    reg.age_links("2 hours ago");
    let b1 = named["B1"].1;
    let blob = reg.root().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{}/data",
        &b1.hex()[..2],
        b1.hex()
    ));
    std::fs::remove_file(&blob).expect("remove blob");
    let report = dry_run_json(&reg.root(), &[]);
    let app = report["repositories"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == APP))
        .expect("app");
    assert_eq!(app["failed_closed"], true);
    assert_eq!(app["delete"], 0);
    assert!(
        app["problems"][0]
            .as_str()
            .unwrap_or("")
            .contains(&b1.to_string())
    );
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let reg = Registry::start();
    scenario::push_standard(&reg.pusher()).expect("push");
    let root = reg.root().to_string_lossy().into_owned();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("HASH_TAG_PATTERN", "([")], "HASH_TAG_PATTERN"),
        (vec![("HASH_TAG_KEEP", "ten")], "HASH_TAG_KEEP"),
        (vec![("HASH_TAG_KEEP", "-1")], "HASH_TAG_KEEP"),
        (vec![("MIN_AGE", "soon")], "MIN_AGE"),
        (vec![("REPO_FILTER", "nope/none")], "nope/none"),
        (vec![("REPO_GLOB", "[")], "--repo"),
        (vec![("DRY_RUN", "maybe")], "DRY_RUN"),
    ];
    for (extra, needle) in cases {
        let mut env = vec![("REGISTRY_DIR", root.as_str()), ("DRY_RUN", "true")];
        env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        env.extend(extra.iter().copied());
        let out = regsweep(&env, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(
            err.contains(needle),
            "{extra:?}: error should name {needle}: {err}"
        );
        assert!(out.stdout.is_empty(), "{extra:?}: nothing on stdout");
    }
    let out = regsweep(
        &[
            ("REGISTRY_DIR", "/nonexistent/registry"),
            ("DRY_RUN", "true"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/registry") && err.lines().count() == 1,
        "{err}"
    );
}
