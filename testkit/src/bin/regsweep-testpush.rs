//! Pushes test content to a registry: the standard scenario (default), or N untagged manifests.
//!
//! `regsweep-testpush URL` prints the scenario's digests as JSON;
//! `regsweep-testpush URL untagged REPO N` pushes N distinct untagged manifests to REPO;
//! `regsweep-testpush S3_ENDPOINT s3fill BUCKET ROOT REPOS REVISIONS TAGS [UNMATCHED_EVERY]`
//! writes storage keys straight into a bucket;
//! `regsweep-testpush S3_ENDPOINT s3put-dir BUCKET ROOT DIR` uploads a filesystem registry;
//! `regsweep-testpush S3_ENDPOINT s3list BUCKET ROOT` times regsweep's S3 lister and
//! `... s3stream BUCKET ROOT` one sequential listing of the same prefix.

use anyhow::{Context, Result, bail};

use regsweep_testkit::{Pusher, scenario};

/// One sequential ListObjectsV2 stream over `<root>/docker/registry/v2/repositories/`
/// with regsweep's own S3 client: the baseline the S3 lister is measured against.
fn s3stream(endpoint: &str, bucket: &str, root: &str) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let store = rt
        .block_on(regsweep::s3::S3Store::connect(&s3_options(
            endpoint, bucket, root,
        )))
        .map_err(anyhow::Error::msg)?;
    let t0 = std::time::Instant::now();
    let prefix = format!("{}repositories/", store.base);
    let (keys, _) = rt
        .block_on(store.list_all(&prefix, None))
        .map_err(anyhow::Error::msg)?;
    println!(
        "sequential ListObjectsV2 (regsweep's client): {} keys in {:.2} s; requests {}",
        keys.len(),
        t0.elapsed().as_secs_f64(),
        store.stats.to_json()
    );
    Ok(())
}

fn s3_options(endpoint: &str, bucket: &str, root: &str) -> regsweep::s3::S3Options {
    regsweep::s3::S3Options {
        bucket: bucket.to_owned(),
        region: Some("us-east-1".to_owned()),
        endpoint: Some(endpoint.to_owned()),
        path_style: true,
        credentials: Some(("test".to_owned(), secrecy::SecretString::from("test"))),
        root: root.to_owned(),
        concurrency: 32,
    }
}

fn s3list(endpoint: &str, bucket: &str, root: &str) -> Result<()> {
    use regsweep::storage::Storage;
    let rt = tokio::runtime::Runtime::new()?;
    let opts = s3_options(endpoint, bucket, root);
    let t0 = std::time::Instant::now();
    let store = std::sync::Arc::new(
        rt.block_on(regsweep::s3::S3Store::connect(&opts))
            .map_err(anyhow::Error::msg)?,
    );
    let storage = regsweep::storage::s3::S3Storage::new(store, rt.handle().clone());
    let (tx, rx) = crossbeam_channel::unbounded();
    let counter = std::thread::spawn(move || {
        let (mut repos, mut revisions, mut tags) = (0usize, 0usize, 0usize);
        for batch in rx {
            for r in batch {
                let r: regsweep::record::RepoRecord = r;
                repos += 1;
                revisions += r.revisions.len();
                tags += r.tags.len();
            }
        }
        (repos, revisions, tags)
    });
    storage.list(&regsweep::storage::RepoFilter::default(), &tx);
    drop(tx);
    let (repos, revisions, tags) = counter
        .join()
        .map_err(|_| anyhow::anyhow!("counter panicked"))?;
    println!(
        "regsweep S3 lister: {repos} repositories, {revisions} revisions, {tags} tags in {:.2} s; requests {}",
        t0.elapsed().as_secs_f64(),
        storage.requests().unwrap_or_default()
    );
    Ok(())
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
            regsweep_testkit::push::push_untagged(url, repo, n)
        }
        Some("s3fill") => {
            // regsweep-testpush ENDPOINT s3fill BUCKET ROOT REPOS REVISIONS TAGS [UNMATCHED_EVERY]
            let n = |i: usize| -> Result<usize> {
                args.get(i)
                    .context("s3fill needs BUCKET ROOT REPOS REVISIONS TAGS")?
                    .parse()
                    .context("a number")
            };
            let f = regsweep_testkit::s3fill::Fill {
                repos: n(4)?,
                revisions: n(5)?,
                tags: n(6)?,
                unmatched_every: if args.len() > 7 { n(7)? } else { 0 },
                blobs: std::env::var("S3FILL_NO_BLOBS").is_err(),
            };
            let bucket = args.get(2).context("s3fill needs BUCKET")?;
            let root = args.get(3).context("s3fill needs ROOT")?;
            let rt = tokio::runtime::Runtime::new()?;
            let (keys, tags) =
                rt.block_on(regsweep_testkit::s3fill::fill(url, bucket, root, &f))?;
            println!("{keys} keys, {tags} tags");
            Ok(())
        }
        Some("s3list") => {
            // regsweep-testpush ENDPOINT s3list BUCKET ROOT: regsweep's S3 lister alone, timed.
            let bucket = args.get(2).context("s3list needs BUCKET ROOT")?;
            let root = args.get(3).context("s3list needs BUCKET ROOT")?;
            s3list(url, bucket, root)
        }
        Some("s3stream") => {
            // regsweep-testpush ENDPOINT s3stream BUCKET ROOT: one sequential listing, timed.
            let bucket = args.get(2).context("s3stream needs BUCKET ROOT")?;
            let root = args.get(3).context("s3stream needs BUCKET ROOT")?;
            s3stream(url, bucket, root)
        }
        Some("s3put-dir") => {
            // regsweep-testpush ENDPOINT s3put-dir BUCKET ROOT DIR: a filesystem registry's
            // tree into the bucket, under ROOT.
            let bucket = args.get(2).context("s3put-dir needs BUCKET ROOT DIR")?;
            let root = args.get(3).context("s3put-dir needs BUCKET ROOT DIR")?;
            let dir = args.get(4).context("s3put-dir needs BUCKET ROOT DIR")?;
            let rt = tokio::runtime::Runtime::new()?;
            let n = rt.block_on(regsweep_testkit::s3fill::put_dir(
                url,
                bucket,
                root,
                std::path::Path::new(dir),
            ))?;
            println!("{n} keys");
            Ok(())
        }
        Some(other) => bail!(
            "unknown command {other:?}: usage: regsweep-testpush URL [untagged REPO N | s3fill ...]"
        ),
    }
}
