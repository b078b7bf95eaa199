//! Criterion benchmark of the pure planner over synthetic repositories.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use regex::Regex;
use regsweep::digest::Digest;
use regsweep::meta::{Child, ImageInfo, Kind, Manifest, Meta, Platform, Snapshot};
use regsweep::plan::{DEFAULT_HASH_TAG_PATTERN, Policy, plan_repository};
use regsweep::scan::{RepoRecord, Revision, TagLink};

const NOW: i64 = 1_800_000_000;

fn digest(i: u64) -> Digest {
    Digest::of(&i.to_le_bytes())
}

/// A repository of `n` manifests: a third tagged (half of those hash tags), every tenth an index.
fn snapshot(n: u64) -> Snapshot {
    let mut s = Snapshot {
        record: RepoRecord {
            name: Arc::from("bench/app"),
            ..RepoRecord::default()
        },
        ..Snapshot::default()
    };
    let platform = Some(Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
    });
    for i in 0..n {
        let d = digest(i);
        s.record.revisions.push(Revision {
            digest: d,
            linked_at: NOW - 86_400 - i as i64,
        });
        let m = if i % 10 == 9 {
            Manifest {
                kind: Kind::Index,
                children: (1..=2)
                    .map(|k| Child {
                        digest: digest(i - k),
                        platform: platform.clone(),
                    })
                    .collect(),
                subject: None,
                config: None,
                schema1: None,
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
            }
        };
        s.manifests.insert(d, Meta::Parsed(m));
        if i % 3 == 0 {
            let name = if i % 6 == 0 {
                format!("{:08x}", i)
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

fn bench(c: &mut Criterion) {
    let policy = Policy {
        hash_tag: Regex::new(DEFAULT_HASH_TAG_PATTERN).expect("pattern"),
        keep: 10,
        min_age_secs: 3600,
        now: NOW,
    };
    let mut g = c.benchmark_group("plan_repository");
    for n in [1_000u64, 100_000] {
        let snap = snapshot(n);
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::from_parameter(n), &snap, |b, s| {
            b.iter(|| plan_repository(black_box(s), &policy))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
