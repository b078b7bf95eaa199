//! `regsweep-stress URL SECONDS -- GC_COMMAND...`: blows a push storm (see
//! `regsweep_testkit::stress`) at the registry at URL (loopback only) for SECONDS, running
//! GC_COMMAND again and again meanwhile and once after, then pulls every manifest pushed
//! and not deleted in full. Prints the counts; exits 1 when any image is broken.

use std::process::Command;

use anyhow::{Context, Result, bail};

use regsweep_testkit::stress::{StormConfig, run};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, secs, sep, gc @ ..] = args.as_slice() else {
        bail!("usage: regsweep-stress URL SECONDS -- GC_COMMAND...");
    };
    if sep != "--" || gc.is_empty() {
        bail!("usage: regsweep-stress URL SECONDS -- GC_COMMAND...");
    }
    if !url.starts_with("http://127.0.0.1:") && !url.starts_with("http://[::1]:") {
        bail!("{url}: regsweep-stress pushes to loopback registries only");
    }
    let secs: u64 = secs.parse().with_context(|| format!("SECONDS {secs:?}"))?;
    let cfg = StormConfig {
        url: url.clone(),
        pushers: 4,
        pullers: 2,
        pool: 12,
        seed: std::process::id().into(),
    };
    let report = run(&cfg, std::time::Duration::from_secs(secs), || {
        Command::new(&gc[0])
            .args(&gc[1..])
            .status()
            .ok()
            .and_then(|s| s.code())
            .unwrap_or(-1)
    })?;
    let c = &report.counts;
    println!(
        "pushed {} (refused {}), deleted {}, pulls {} ({} transient 404s); collections {} (exit codes {:?}); pulled in full {}, broken {}",
        c.pushed,
        c.push_errors,
        c.deleted,
        c.pulls,
        c.transient_404,
        report.gc_codes.len(),
        report.gc_codes,
        report.checked,
        report.broken.len()
    );
    for b in &report.broken {
        println!("broken: {b}");
    }
    if !report.broken.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
