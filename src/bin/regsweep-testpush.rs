//! Pushes the standard test scenario to a registry and prints the pushed digests as JSON.

use anyhow::{Context, Result};
use regsweep::testkit::{Pusher, scenario};

fn main() -> Result<()> {
    let url = std::env::args()
        .nth(1)
        .context("usage: regsweep-testpush REGISTRY_URL")?;
    let named = scenario::push_standard(&Pusher::new(&url)?)?;
    let out: serde_json::Map<String, serde_json::Value> = named
        .into_iter()
        .map(|(k, (repo, d))| {
            (
                k,
                serde_json::json!({"repository": repo, "digest": d.to_string()}),
            )
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
