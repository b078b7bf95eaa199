//! The storage generator writes trees the real registry serves: catalog, tags, manifests,
//! index children, configs and layers all check out; the same seed gives the same tree.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Registry, dry_run_json, pull_all_tags};
use regsweep_testkit::generate::{GenSpec, generate};

fn contents(root: &Path) -> BTreeMap<String, Vec<u8>> {
    common::snapshot(root)
        .into_iter()
        .map(|(p, (_, _, body))| {
            (
                p.strip_prefix(root)
                    .map(|r| r.display().to_string())
                    .unwrap_or_default(),
                body,
            )
        })
        .collect()
}

#[test]
fn generated_tree_is_served_by_the_real_registry() {
    let reg = Registry::start();
    let spec = GenSpec {
        repos: 12,
        manifests: 400,
        tags: 60,
        seed: 3,
    };
    let stats = generate(&reg.root(), &spec).expect("generate");
    assert_eq!(stats.manifests, 400);
    assert!(stats.tags >= 50, "{} tags", stats.tags);

    let catalog: serde_json::Value =
        reqwest::blocking::get(format!("{}/v2/_catalog?n=1000", reg.url))
            .expect("catalog")
            .json()
            .expect("catalog json");
    let mut listed: Vec<String> = catalog["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    let mut want = stats.repos.clone();
    listed.sort();
    want.sort();
    assert_eq!(listed, want);

    let mut pulled = 0;
    for repo in &stats.repos {
        let tags: Vec<String> = reg.tags(repo).into_keys().collect();
        pulled += pull_all_tags(&reg.url, repo, &tags);
    }
    assert!(
        pulled > stats.tags * 3,
        "{pulled} objects pulled and checked"
    );

    let report = dry_run_json(&reg.root(), &[]);
    assert_eq!(report["totals"]["manifests"], 400);
    assert_eq!(report["totals"]["failed_closed_repositories"], 0);
    assert!(
        report["totals"]["delete"].as_u64().unwrap_or(0) > 0,
        "untagged revisions are planned"
    );
}

#[test]
fn the_same_seed_gives_the_same_tree() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let spec = GenSpec {
        repos: 5,
        manifests: 120,
        tags: 20,
        seed: 42,
    };
    generate(a.path(), &spec).expect("generate a");
    generate(b.path(), &spec).expect("generate b");
    assert_eq!(contents(a.path()), contents(b.path()));
}
