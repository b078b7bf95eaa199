//! `--shard K/N`: N processes plan disjoint parts whose union is the unsharded plan.
//! Generated trees in temporary directories; no registry needed.

use crate::common;

use std::collections::BTreeSet;

use common::{dry_run_json, regsweep, verdicts};
use regsweep_testkit::generate::{GenSpec, generate};

#[test]
fn the_union_of_all_shards_is_the_unsharded_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = GenSpec {
        repos: 40,
        manifests: 1200,
        tags: 200,
        seed: 7,
    };
    let stats = generate(dir.path(), &spec).expect("generate");
    let whole = dry_run_json(dir.path(), &[]);
    let want = verdicts(&whole);
    assert_eq!(want.len(), 1200);

    let n = 4;
    let mut union = common::Verdicts::new();
    let mut seen_repos = BTreeSet::new();
    for k in 0..n {
        let shard = format!("{k}/{n}");
        let part = dry_run_json(dir.path(), &[("SHARD", shard.as_str())]);
        let repos: BTreeSet<String> = part["repositories"]
            .as_array()
            .expect("repositories")
            .iter()
            .map(|r| r["name"].as_str().expect("name").to_owned())
            .collect();
        assert!(!repos.is_empty(), "shard {shard} got no repository");
        for r in &repos {
            assert!(seen_repos.insert(r.clone()), "{r} is in two shards");
        }
        let v = verdicts(&part);
        for (key, verdict) in v {
            assert!(
                union.insert(key, verdict).is_none(),
                "a decision in two shards"
            );
        }
    }
    let all: BTreeSet<String> = stats.repos.iter().cloned().collect();
    assert_eq!(seen_repos, all, "every repository is in exactly one shard");
    assert_eq!(
        union, want,
        "shards together decide exactly what one run decides"
    );

    // Indexed Jobs: K from JOB_COMPLETION_INDEX.
    let root = dir.path().to_string_lossy().into_owned();
    let by_index = regsweep(
        &[
            ("REGISTRY_DIR", root.as_str()),
            ("DRY_RUN", "true"),
            ("OUTPUT_FORMAT", "json"),
            ("SHARD", "index/4"),
            ("JOB_COMPLETION_INDEX", "2"),
        ],
        &[],
    );
    let explicit = dry_run_json(dir.path(), &[("SHARD", "2/4")]);
    common::assert_exit(&by_index, 0);
    let by_index: serde_json::Value =
        serde_json::from_slice(&by_index.stdout).expect("JSON report");
    assert_eq!(verdicts(&by_index), verdicts(&explicit));
}

#[test]
fn a_bad_shard_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("docker/registry/v2/repositories")).expect("mkdir");
    let root = dir.path().to_string_lossy().into_owned();
    for (shard, says) in [
        ("4/4", "0 <= K < N"),
        ("x", "K/N"),
        ("1/0", "K/N"),
        ("index/4", "JOB_COMPLETION_INDEX is not set"),
    ] {
        let out = regsweep(
            &[
                ("REGISTRY_DIR", root.as_str()),
                ("DRY_RUN", "true"),
                ("SHARD", shard),
            ],
            &[],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{shard}: {err}");
        assert!(err.contains(says), "{shard}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
