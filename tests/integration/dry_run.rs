//! Dry runs against the real docker-registry: exact plans, and nothing on disk changes.
//! Each test has its own registry on 127.0.0.1; only the tests' own trees are written.

use crate::common;

use common::standard::{expected, standard};
use common::{Registry, dry_run_json, regsweep, snapshot, verdicts};
use regsweep_testkit::Pusher;
use regsweep_testkit::scenario::{self, APP, BASE, OTHER};

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
        format!(
            "  DRY_RUN: sha256:{h10}  repo={APP:<30}  tag={:<20}  created=2026-04-01 12:00:00  linux/amd64",
            scenario::hash_tag(10)
        ),
        // Untagged: B1, I1, A_OTHER, L2; what goes with them has a section of its own.
        "Untagged manifests to delete (4 in registry):".to_owned(),
        "  Cleaning 1 of 4 ..not really, due to dry-run mode".to_owned(),
        "  Cleaning 4 of 4 ..not really, due to dry-run mode".to_owned(),
        "Deleted with them (children of deleted indexes, signatures and referrers of deleted images) (5):".to_owned(),
        format!(
            "  DRY_RUN: sha256:{}  repo={APP:<30}  created=2026-01-04 12:00:00  linux/amd64  (child-of-deleted sha256:{})",
            named["D1"].1.short(),
            named["I1"].1.short()
        ),
        "Per repository:".to_owned(),
        format!("  {:<40} {:>10} {:>10} {:>10} {:>12}", "other", 2, 1, 1, "2.05 KiB"),
        "Job done, Cleaned 0 of 10 manifests.".to_owned(),
        "Please run a garbage-collect on the registry now to free up disk space: regsweep gc --registry-stopped with the registry stopped or read-only (the same storage options as this run), or regsweep gc --online --registry-config <config.yml> while it serves.".to_owned(),
    ];
    for line in expected_lines {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }
    let sig = text
        .lines()
        .find(|l| l.contains(&named["SIG_B1"].1.short()))
        .expect("the signature of B1 is listed");
    assert!(
        sig.contains(&format!("tag=sha256-{}.sig", named["B1"].1.hex()))
            && sig.contains("(attachment-of-deleted"),
        "{sig}"
    );

    // A digest with many tags is one line, its tags counted; --summary-only leaves out
    // the lines per manifest and keeps the counts and the table.
    let tags = reg
        .root()
        .join("docker/registry/v2/repositories")
        .join(APP)
        .join("_manifests/tags");
    for i in 0..50 {
        let dir = tags.join(format!("t{i:02}"));
        std::fs::create_dir_all(dir.join("current")).expect("mkdir");
        std::fs::write(dir.join("current/link"), named["A"].1.to_string()).expect("tag A");
    }
    let out = regsweep(&[("REGISTRY_DIR", &root), ("DRY_RUN", "true")], &[]);
    common::assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&a) && l.contains("[keep]"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("tag=1.0,t00,t01 +48 more"),
        "{}",
        lines[0]
    );
    let out = regsweep(
        &[
            ("REGISTRY_DIR", &root),
            ("DRY_RUN", "true"),
            ("SUMMARY_ONLY", "true"),
        ],
        &[],
    );
    common::assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("sha256:"), "{text}");
    assert!(
        text.contains("Untagged manifests to delete (4 in registry):"),
        "{text}"
    );
    assert!(text.contains("Per repository:"), "{text}");
    assert!(
        text.contains("Dry run: 10 manifests would be deleted."),
        "{text}"
    );
    assert!(text.lines().count() < 40, "{text}");
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
    assert_eq!(
        out.status.code(),
        Some(4),
        "a repository failed closed: exit 4"
    );
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
    // A repository failed closed: something was skipped (4).
    let report = common::dry_run_json_expecting(&reg.root(), &[], 4);
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
        // One line, or clap's message with its detail or tip: never a usage dump.
        assert!(
            err.trim().lines().count() <= 2 && !err.contains("Usage:"),
            "{extra:?}: short: {err}"
        );
        assert!(out.stdout.is_empty(), "{extra:?}: nothing on stdout");
    }
    // Settings of what this run does not use are not read: a shared environment may carry
    // S3 settings (even empty) for a filesystem registry, or GC_SETTLE for a cleanup.
    for (k, v) in [
        ("S3_ENDPOINT", ""),
        ("S3_CONCURRENCY", "0"),
        ("GC_SETTLE", "soon"),
    ] {
        let out = regsweep(
            &[("REGISTRY_DIR", root.as_str()), ("DRY_RUN", "true"), (k, v)],
            &[],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{k}={v:?}: {err}");
    }
    let out = regsweep(&[("REGISTRY_DIR", root.as_str())], &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("regsweep: error: unexpected argument '--no-such-flag'"),
        "{err}"
    );
    assert!(!err.contains("Usage:"), "{err}");
    // clap's message stays whole: what is missing, and the tip.
    let out = regsweep(&[], &["plan"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("--out"), "names the missing argument: {err}");
    let out = regsweep(&[], &["--hash-tag-patern", "x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("tip: a similar argument exists: '--hash-tag-pattern'"),
        "{err}"
    );
    assert!(!err.contains("Usage:"), "{err}");
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

#[test]
fn keep_tags_older_than_extra_patterns_and_a_policy_file() {
    let (reg, named) = standard();
    let app = |k: &str| (APP.to_owned(), named[k].1);
    let h5 = regsweep_testkit::scenario::hash_tag(5);
    let keep_re = format!("^{h5}$");
    let report = dry_run_json(
        &reg.root(),
        &[("HASH_TAG_KEEP", "3"), ("KEEP_TAGS", keep_re.as_str())],
    );
    let got = verdicts(&report);
    assert_eq!(got[&app("H5")], "keep keep-tag");
    assert_eq!(got[&app("H4")], "delete hash-tag-expired rank=4");
    assert_eq!(report["policy"]["keep_tags"], keep_re.as_str());

    // Every hash-tagged image is younger than 100 years: none beyond N goes.
    let got = verdicts(&dry_run_json(
        &reg.root(),
        &[("HASH_TAG_KEEP", "3"), ("OLDER_THAN", "36500d")],
    ));
    assert_eq!(got[&app("H3")], "keep hash-tag-recent rank=3");
    assert_eq!(got[&app("H10")], "keep hash-tag-recent rank=10");
    assert_eq!(got[&app("B1")], "delete untagged", "untagged still goes");

    // Extra patterns: `stable` becomes a hash tag too, so H11 is ranked like the others.
    let root = reg.root().to_string_lossy().into_owned();
    let out = common::regsweep(
        &[
            ("REGISTRY_DIR", root.as_str()),
            ("DRY_RUN", "true"),
            ("OUTPUT_FORMAT", "json"),
        ],
        &[
            "--hash-tag-pattern",
            "^[0-9a-f]{7}$",
            "--hash-tag-pattern",
            "^stable$",
        ],
    );
    common::assert_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        verdicts(&report)[&app("H11")],
        "delete hash-tag-expired rank=11"
    );

    // A policy file: demo/app keeps one hash-tagged image, everything else the default.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.toml");
    std::fs::write(
        &file,
        format!("[[rule]]\nrepos = [\"{APP}\"]\nhash_tag_keep = 1\nmin_age = \"0\"\n"),
    )
    .expect("write policy");
    let file_s = file.to_string_lossy().into_owned();
    let report = dry_run_json(&reg.root(), &[("POLICY_FILE", file_s.as_str())]);
    let got = verdicts(&report);
    assert_eq!(got[&app("H0")], "keep hash-tag-kept rank=0");
    assert_eq!(got[&app("H1")], "delete hash-tag-expired rank=1");
    assert_eq!(
        got[&app("YOUNG")],
        "delete untagged",
        "min_age 0 in the rule"
    );
    assert_eq!(report["policy"]["rules"][0][0], APP);
    // Each repository states the policy that planned it.
    let repo = |name: &str| {
        report["repositories"]
            .as_array()
            .expect("repositories")
            .iter()
            .find(|r| r["name"] == name)
            .expect("repository")
            .clone()
    };
    assert_eq!(repo(APP)["policy"]["rule"], 0);
    assert_eq!(repo(APP)["policy"]["hash_tag_keep"], 1);
    assert_eq!(repo(APP)["policy"]["min_age_seconds"], 0);
    assert!(repo(OTHER)["policy"].get("rule").is_none());
    assert_eq!(repo(OTHER)["policy"]["hash_tag_keep"], 10);
    // So does the text header.
    let out = common::regsweep(
        &[
            ("REGISTRY_DIR", root.as_str()),
            ("DRY_RUN", "true"),
            ("POLICY_FILE", file_s.as_str()),
        ],
        &[],
    );
    common::assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "Hash-tagged manifests (keeping 10 most recent per repo; 1 in {APP} by policy-file rules):"
        )),
        "{text}"
    );

    std::fs::write(&file, "[[rule]]\nrepos = [\"x\"]\nhash_tag_keep = \"3\"\n").expect("write");
    let out = common::regsweep(
        &[
            ("REGISTRY_DIR", root.as_str()),
            ("DRY_RUN", "true"),
            ("POLICY_FILE", file_s.as_str()),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("policy file {file_s}: line 3")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
