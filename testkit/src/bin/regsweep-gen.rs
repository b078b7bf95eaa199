//! Writes a synthetic distribution storage tree for benchmarks:
//! `regsweep-gen ROOT REPOS MANIFESTS TAGS [SEED]`.

use anyhow::{Context, Result};
use regsweep_testkit::generate::{GenSpec, generate};

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: regsweep-gen ROOT REPOS MANIFESTS TAGS [SEED]";
    let n = |i: usize| -> Result<usize> { a.get(i).context(usage)?.parse().context(usage) };
    let root = std::path::PathBuf::from(a.first().context(usage)?);
    let spec = GenSpec {
        repos: n(1)?,
        manifests: n(2)?,
        tags: n(3)?,
        seed: if a.len() > 4 { n(4)? as u64 } else { 1 },
    };
    let t0 = std::time::Instant::now();
    let s = generate(&root, &spec).with_context(|| format!("writing under {}", root.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{} repositories, {} manifests, {} tags, {} files in {secs:.1} s ({:.0} manifests/s)",
        s.repos.len(),
        s.manifests,
        s.tags,
        s.files,
        s.manifests as f64 / secs
    );
    Ok(())
}
