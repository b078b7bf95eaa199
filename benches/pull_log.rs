//! Criterion benchmark of `--pull-log` parsing: 64 MB of registry log lines as 2.8 writes
//! them (the access log and the logrus JSON and text app lines; blob requests, pings and
//! manifest pulls mixed), parsed from memory; throughput in bytes (issue 22's target is
//! 200 MB/s). Under `cargo test` a smaller log is parsed once.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::io::Write;

use regsweep::evidence::pull_log::{Hit, parse_lines, read};

/// One request as the three kinds of line 2.8 writes for it.
fn request(i: usize, method: &str, uri: &str, status: u16) -> String {
    let (s, ns) = (i % 60, i % 1_000_000_000);
    format!(
        concat!(
            "{{\"go.version\":\"go1.19.8\",\"http.request.host\":\"registry:5000\",\"http.request.id\":\"6b894246-2c52-4953-b3d0-{i:012}\",",
            "\"http.request.method\":\"{m}\",\"http.request.remoteaddr\":\"10.0.0.7:35522\",\"http.request.uri\":\"{u}\",",
            "\"http.request.useragent\":\"containerd/v1.7.2\",\"http.response.contenttype\":\"application/octet-stream\",",
            "\"http.response.duration\":\"1.044111ms\",\"http.response.status\":{st},\"http.response.written\":2,",
            "\"level\":\"info\",\"msg\":\"response completed\",\"time\":\"2026-12-02T11:01:{s:02}.{ns:09}Z\"}}\n",
            "time=\"2026-12-02T11:01:{s:02}.{ns:09}Z\" level=info msg=\"response completed\" go.version=go1.19.8 ",
            "http.request.host=\"registry:5000\" http.request.id=60db29fa-04da-4e8e-8b88-{i:012} http.request.method={m} ",
            "http.request.remoteaddr=\"10.0.0.7:60884\" http.request.uri=\"{u}\" http.request.useragent=containerd/v1.7.2 ",
            "http.response.duration=\"940.882µs\" http.response.status={st} http.response.written=2\n",
            "10.0.0.7 - - [02/Dec/2026:11:01:{s:02} +0000] \"{m} {u} HTTP/1.1\" {st} 2 \"\" \"containerd/v1.7.2\"\n",
        ),
        i = i,
        m = method,
        u = uri,
        st = status,
        s = s,
        ns = ns
    )
}

/// About `bytes` of log: per manifest pull, a few blob reads and a ping, as a pull goes.
fn log(bytes: usize) -> Vec<u8> {
    let mut out = String::with_capacity(bytes + 4096);
    let mut i = 0;
    while out.len() < bytes {
        let repo = format!("team{}/app", i % 50);
        let uri = if i % 2 == 0 {
            format!("/v2/{repo}/manifests/v{}", i % 100)
        } else {
            format!("/v2/{repo}/manifests/sha256:{:064x}", i)
        };
        out.push_str(&request(i, "GET", "/v2/", 200));
        out.push_str(&request(i, "HEAD", &uri, 200));
        for b in 0..3 {
            let blob = format!("/v2/{repo}/blobs/sha256:{:064x}", i * 4 + b);
            out.push_str(&request(i, "GET", &blob, 200));
        }
        i += 1;
    }
    out.into_bytes()
}

fn bench(c: &mut Criterion) {
    let test = std::env::args().any(|a| a == "--test" || a == "--list");
    let data = log(if test { 1 << 20 } else { 64 << 20 });
    let mut g = c.benchmark_group("pull_log");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("parse_lines", |b| {
        b.iter(|| {
            let mut hits: Vec<Hit> = Vec::new();
            parse_lines(&data, &mut hits);
            assert!(!hits.is_empty());
            hits.len()
        })
    });
    // The whole read path: 1 MB chunks cut at line ends, plain and gzip.
    g.bench_function("read_plain", |b| {
        b.iter(|| read(&data[..]).map(|(h, _)| h.len()))
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let gz = gz
        .write_all(&data)
        .and_then(|()| gz.finish())
        .unwrap_or_default();
    g.bench_function("read_gzip", |b| {
        b.iter(|| read(flate2::bufread::MultiGzDecoder::new(&gz[..])).map(|(h, _)| h.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
