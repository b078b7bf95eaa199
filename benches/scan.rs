//! Criterion benchmark of the filesystem scan (scan, manifest reads, planning) over a
//! generated tree: 1M revisions and 200k tags under `cargo bench` (generated once into
//! `target/bench-tree-1000000`, or `REGSWEEP_SCAN_TREE` to name one), warm cache.
//! Under `cargo test` a 2,000-revision tree is scanned once as a smoke test.

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use regex::Regex;
use regsweep::pipeline::plan_filesystem;
use regsweep::plan::{DEFAULT_HASH_TAG_PATTERN, Policies, Policy};
use regsweep::storage::RepoFilter;
use regsweep_testkit::generate::{GenSpec, generate};

fn tree(manifests: usize, tags: usize) -> PathBuf {
    if let Some(p) = std::env::var_os("REGSWEEP_SCAN_TREE") {
        return PathBuf::from(p);
    }
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-tree-{manifests}"));
    if !root.join("docker/registry/v2/repositories").is_dir() {
        let spec = GenSpec {
            repos: (manifests / 5000).max(2),
            manifests,
            tags,
            seed: 1,
        };
        let _ = std::fs::remove_dir_all(&root);
        if let Err(e) = generate(&root, &spec) {
            panic!("generating {}: {e}", root.display());
        }
    }
    root
}

fn scan(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let (manifests, tags) = if full {
        (1_000_000, 200_000)
    } else {
        (2_000, 400)
    };
    let root = tree(manifests, tags);
    let policy: Policies = Policy::new(
        Regex::new(DEFAULT_HASH_TAG_PATTERN).expect("pattern"),
        10,
        3600,
        chrono::Utc::now().timestamp(),
    )
    .into();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut g = c.benchmark_group("scan_filesystem");
    g.sample_size(10);
    g.throughput(Throughput::Elements(manifests as u64));
    g.bench_function(format!("{manifests}"), |b| {
        b.iter(|| {
            plan_filesystem(&root, &RepoFilter::default(), &policy, threads)
                .plans
                .len()
        })
    });
    g.finish();
}

criterion_group!(benches, scan);
criterion_main!(benches);
