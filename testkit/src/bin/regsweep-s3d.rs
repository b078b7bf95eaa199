//! `regsweep-s3d [--latency=DURATION] ADDR ACCESS_KEY SECRET_KEY [BUCKET...]`: serves the
//! in-memory S3 of `regsweep_testkit::s3d` on ADDR (a loopback address, e.g.
//! 127.0.0.1:9000; port 0 picks one) with the BUCKETs made empty, path-style, SigV4 with
//! the one key pair given; with `--latency=20ms` every answer comes that much later, as
//! from a real S3 across a network. Prints `http://<addr>` once it accepts connections;
//! runs until killed.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;

use regsweep_testkit::s3d::Server;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut latency = std::time::Duration::ZERO;
    if let Some(v) = args.first().and_then(|a| a.strip_prefix("--latency=")) {
        latency = humantime::parse_duration(v).with_context(|| format!("--latency={v}"))?;
        args.remove(0);
    }
    let [addr, access, secret, buckets @ ..] = args.as_slice() else {
        bail!("usage: regsweep-s3d [--latency=DURATION] ADDR ACCESS_KEY SECRET_KEY [BUCKET...]");
    };
    let addr: SocketAddr = addr.parse().with_context(|| format!("address {addr:?}"))?;
    if !addr.ip().is_loopback() {
        bail!("{addr}: regsweep-s3d serves loopback addresses only");
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!("http://{}", listener.local_addr()?);
    let buckets: Vec<&str> = buckets.iter().map(String::as_str).collect();
    Server::with_buckets(&buckets)
        .with_latency(latency)
        .serve(listener, access, secret)
        .await;
    Ok(())
}
