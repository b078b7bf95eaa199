//! The bytes-freed estimate equals what the registry's own garbage-collect frees.
//! Runs the built binary and the collector on a registry of its own on 127.0.0.1.

use crate::common;

use common::standard::standard;
use common::{dry_run_json, regsweep};

#[test]
fn estimate_matches_garbage_collect() {
    let (reg, _named) = standard();
    let plan = dry_run_json(&reg.root(), &[]);
    let estimate = plan["totals"]["bytes_freed"].as_u64().expect("bytes_freed");
    assert!(estimate > 0, "the scenario frees something");
    let per_repo: u64 = plan["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .map(|r| {
            r["bytes_freed"]
                .as_u64()
                .expect("per-repository bytes_freed")
        })
        .sum();
    assert!(
        per_repo >= estimate,
        "the total also excludes blobs other repositories keep"
    );

    let root = reg.root().to_string_lossy().into_owned();
    let out = regsweep(
        &[
            ("REGISTRY_URL", reg.url.as_str()),
            ("REGISTRY_DIR", root.as_str()),
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("Estimated space it frees: ")
            && text.contains(&format!("({estimate} bytes)")),
        "{text}"
    );

    let before = reg.blob_bytes();
    reg.garbage_collect();
    let after = reg.blob_bytes();
    eprintln!(
        "estimate {estimate} bytes (per repository {per_repo}); garbage-collect freed {}",
        before - after
    );
    assert_eq!(
        before - after,
        estimate,
        "garbage-collect freed exactly the estimate"
    );
}
