//! Criterion benchmark of the pure planner: one large repository, and whole registries of
//! 1M and 10M manifests (100 per repository), on one thread and on every core (as the
//! pipeline plans), with the bytes each planned manifest keeps.
//! Under `cargo test` (no `--bench`) only small sizes run, once, as a smoke test.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use regex::Regex;
use regsweep::digest::Digest;
use regsweep::evidence::{Evidence, Pull, Source};
use regsweep::meta::{Child, ImageInfo, Kind, Manifest, Meta, Platform, Snapshot};
use regsweep::plan::{DEFAULT_HASH_TAG_PATTERN, Policy, RepoPlan, plan_repository};
use regsweep::record::{RepoRecord, Revision, TagLink};

/// Counts live heap bytes, to measure what plans keep; allocates with the allocator the
/// regsweep binary uses (mimalloc, unless built without its default features).
struct Counting;

#[cfg(feature = "mimalloc")]
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(not(feature = "mimalloc"))]
static INNER: std::alloc::System = std::alloc::System;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the inner allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { INNER.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { INNER.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `p` came from `alloc` with layout `l`, as the caller promises.
        let out = unsafe { INNER.realloc(p, l, new_size) };
        if !out.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        }
        out
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const NOW: i64 = 1_800_000_000;

fn digest(repo: u64, i: u64) -> Digest {
    Digest::of(&[repo.to_le_bytes(), i.to_le_bytes()].concat())
}

/// A repository of `n` manifests: a third tagged (half of those hash tags), every tenth an index.
fn snapshot(repo: u64, n: u64) -> Snapshot {
    let mut s = Snapshot {
        record: RepoRecord {
            name: Arc::from(format!("bench/app{repo}")),
            ..RepoRecord::default()
        },
        ..Snapshot::default()
    };
    let platform = Some(Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
    });
    for i in 0..n {
        let d = digest(repo, i);
        s.record.revisions.push(Revision {
            digest: d,
            linked_at: NOW - 86_400 - i as i64,
        });
        let m = if i % 10 == 9 {
            Manifest {
                kind: Kind::Index,
                children: (1..=2)
                    .map(|k| Child {
                        digest: digest(repo, i - k),
                        platform: platform.clone(),
                    })
                    .collect(),
                subject: None,
                config: None,
                schema1: None,
                blobs: vec![],
                foreign_blobs: vec![],
                mentions: vec![],
                foreign_mentions: vec![],
                doubt: None,
                size: 0,
            }
        } else {
            s.images.insert(
                d,
                ImageInfo {
                    created: Some(NOW - 1000 * i as i64),
                    platform: platform.clone(),
                },
            );
            Manifest {
                kind: Kind::Image,
                children: vec![],
                subject: None,
                config: Some(d),
                schema1: None,
                blobs: vec![],
                foreign_blobs: vec![],
                mentions: vec![],
                foreign_mentions: vec![],
                doubt: None,
                size: 0,
            }
        };
        s.manifests.insert(d, Meta::Parsed(Box::new(m)));
        if i % 3 == 0 {
            let name = if i % 6 == 0 {
                format!("{i:08x}")
            } else {
                format!("v{i}")
            };
            s.record.tags.push(TagLink {
                name,
                digest: d,
                linked_at: NOW - 86_400,
            });
        }
    }
    s
}

fn policy() -> Policy {
    Policy::new(
        Regex::new(DEFAULT_HASH_TAG_PATTERN).expect("pattern"),
        10,
        3600,
        NOW,
    )
}

/// Under `cargo bench` criterion gets `--bench`; under `cargo test` it does not.
fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn one_repository(c: &mut Criterion) {
    let policy = policy();
    let mut g = c.benchmark_group("plan_repository");
    for n in [1_000u64, 100_000] {
        let snap = snapshot(0, n);
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &snap, |b, s| {
            b.iter(|| plan_repository(black_box(s), &policy))
        });
    }
    g.finish();
}

fn whole_registry(c: &mut Criterion) {
    let policy = policy();
    // PLANNER_SIZES=1000000,5000000 picks other registry sizes.
    let sizes: Vec<u64> = match std::env::var("PLANNER_SIZES") {
        Ok(v) => v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) if full() => vec![1_000_000, 10_000_000],
        Err(_) => vec![10_000],
    };
    let mut g = c.benchmark_group("plan_registry");
    g.sample_size(10);
    for &n in &sizes {
        let repos = n / 100;
        let snaps: Vec<Snapshot> = (0..repos).map(|r| snapshot(r, 100)).collect();
        // What the plans keep, per manifest (everything the report and deleter need).
        let before = LIVE.load(Ordering::Relaxed);
        let plans: Vec<RepoPlan> = snaps.iter().map(|s| plan_repository(s, &policy)).collect();
        let kept = LIVE.load(Ordering::Relaxed).saturating_sub(before);
        eprintln!(
            "plan_registry/{n}: plans keep {:.1} bytes per manifest",
            kept as f64 / n as f64
        );
        drop(plans);
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::new("one_thread", n), &snaps, |b, snaps| {
            b.iter(|| {
                snaps
                    .iter()
                    .map(|s| plan_repository(black_box(s), &policy).delete_count())
                    .sum::<usize>()
            })
        });
        // As the pipeline plans: repositories on every core at once.
        g.bench_with_input(BenchmarkId::new("all_cores", n), &snaps, |b, snaps| {
            b.iter(|| {
                snaps
                    .par_iter()
                    .map(|s| plan_repository(black_box(s), &policy).delete_count())
                    .sum::<usize>()
            })
        });
    }
    g.finish();
}

/// The plan of a registry with one pull record per manifest (half inside the window),
/// against `plan_registry/one_thread` of the same size (issue 22: within 1.2x).
fn with_evidence(c: &mut Criterion) {
    let n: u64 = std::env::var("PLANNER_SIZES")
        .ok()
        .and_then(|v| v.split(',').next().and_then(|x| x.trim().parse().ok()))
        .unwrap_or(if full() { 1_000_000 } else { 10_000 });
    let repos = n / 100;
    let snaps: Vec<Snapshot> = (0..repos).map(|r| snapshot(r, 100)).collect();
    let mut ev = Evidence::default();
    ev.window_secs = 86_400;
    for s in &snaps {
        for (i, rev) in s.record.revisions.iter().enumerate() {
            let at = if i % 2 == 0 {
                NOW - 60
            } else {
                NOW - 10 * 86_400
            };
            let pull = Pull {
                at,
                source: Source::PullLog,
            };
            ev.add_pull(&s.record.name, rev.digest, pull);
        }
    }
    let policy = Policy {
        evidence: Arc::new(ev),
        ..policy()
    };
    let mut g = c.benchmark_group("plan_registry_evidence");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_with_input(BenchmarkId::new("one_thread", n), &snaps, |b, snaps| {
        b.iter(|| {
            snaps
                .iter()
                .map(|s| plan_repository(black_box(s), &policy).delete_count())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, one_repository, whole_registry, with_evidence);
criterion_main!(benches);
