//! The GC mark set at scale: marking (with the duplicates shared layers bring), finishing and
//! looking every blob up, and the bytes it keeps per blob (goal: at most 48).
//! `GC_SIZES=10000000` picks other blob counts. Under `cargo test` (no `--bench`) a small
//! size runs once, as a smoke test.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use regsweep::digest::Digest;
use regsweep::gc::mark::MarkSet;

fn digests(n: u64) -> Vec<Digest> {
    (0..n).map(|i| Digest::of(&i.to_le_bytes())).collect()
}

fn mark_set(c: &mut Criterion) {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<u64> = match std::env::var("GC_SIZES") {
        Ok(v) => v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) if full => vec![1_000_000, 10_000_000],
        Err(_) => vec![10_000],
    };
    let mut group = c.benchmark_group("gc_mark_set");
    group.sample_size(10);
    for n in sizes {
        let all = digests(n);
        // Each blob marked twice, in an order unlike the sorted one.
        let marks: Vec<Digest> = all.iter().chain(all.iter().rev()).copied().collect();
        let mut set = MarkSet::default();
        set.extend(marks.iter().copied());
        set.finish();
        println!(
            "gc_mark_set/{n}: {:.1} bytes per blob",
            set.bytes() as f64 / n as f64
        );
        group.bench_with_input(
            BenchmarkId::new("mark_and_look_up", n),
            &marks,
            |b, marks| {
                b.iter(|| {
                    let mut set = MarkSet::default();
                    set.extend(marks.iter().copied());
                    set.finish();
                    all.iter().filter(|d| set.contains(d)).count()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, mark_set);
criterion_main!(benches);
