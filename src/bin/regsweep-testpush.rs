//! Pushes test content to a registry: the standard scenario (default), or N untagged manifests.
//!
//! `regsweep-testpush URL` prints the scenario's digests as JSON;
//! `regsweep-testpush URL untagged REPO N` pushes N distinct untagged manifests to REPO;
//! `regsweep-testpush S3_ENDPOINT s3fill BUCKET ROOT REPOS REVISIONS TAGS [UNMATCHED_EVERY]`
//! writes storage keys straight into a bucket.

use anyhow::{Context, Result, bail};
use chrono::Utc;
use regsweep::testkit::{ImageSpec, Pusher, scenario};

fn untagged(url: &str, repo: &str, n: usize) -> Result<()> {
    let p = Pusher::new(url)?;
    let spec = ImageSpec {
        os: "linux",
        arch: "amd64",
        created: Utc::now(),
        seed: 1,
        oci: true,
    };
    let base = p.image(repo, &spec)?;
    let template: serde_json::Value = serde_json::from_slice(&base.body)?;
    let threads = 8;
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let template = template.clone();
                s.spawn(move || -> Result<()> {
                    let p = Pusher::new(url)?;
                    for i in (t..n).step_by(threads) {
                        let mut m = template.clone();
                        m["annotations"] = serde_json::json!({"org.example.n": i.to_string()});
                        p.manifest(repo, None, base.media_type, serde_json::to_vec(&m)?)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("pusher thread panicked"))??;
        }
        Ok(())
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .context("usage: regsweep-testpush URL [untagged REPO N]")?;
    match args.get(1).map(String::as_str) {
        None => {
            let named = scenario::push_standard(&Pusher::new(url)?)?;
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
        Some("untagged") => {
            let repo = args.get(2).context("untagged needs REPO N")?;
            let n: usize = args
                .get(3)
                .context("untagged needs REPO N")?
                .parse()
                .context("N must be a number")?;
            untagged(url, repo, n)
        }
        Some("s3fill") => {
            // regsweep-testpush ENDPOINT s3fill BUCKET ROOT REPOS REVISIONS TAGS [UNMATCHED_EVERY]
            let n = |i: usize| -> Result<usize> {
                args.get(i)
                    .context("s3fill needs BUCKET ROOT REPOS REVISIONS TAGS")?
                    .parse()
                    .context("a number")
            };
            let f = regsweep::testkit::s3fill::Fill {
                repos: n(4)?,
                revisions: n(5)?,
                tags: n(6)?,
                unmatched_every: if args.len() > 7 { n(7)? } else { 0 },
            };
            let bucket = args.get(2).context("s3fill needs BUCKET")?;
            let root = args.get(3).context("s3fill needs ROOT")?;
            let rt = tokio::runtime::Runtime::new()?;
            let (keys, tags) =
                rt.block_on(regsweep::testkit::s3fill::fill(url, bucket, root, &f))?;
            println!("{keys} keys, {tags} tags");
            Ok(())
        }
        Some(other) => bail!(
            "unknown command {other:?}: usage: regsweep-testpush URL [untagged REPO N | s3fill ...]"
        ),
    }
}
