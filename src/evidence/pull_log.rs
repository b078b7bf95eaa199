//! `--pull-log` files: the registry's log, plain or gzip, with lines of any of the three
//! kinds distribution 2.8 writes: its HTTP access log (combined log format), and its
//! "response completed" app lines through the logrus JSON or text formatter. A `GET` or
//! `HEAD` of `/v2/<name>/manifests/<ref>` answered 200 is a pull at that line's time.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use chrono::DateTime;
use memchr::memmem;

use super::{Evidence, Pull, Source};
use crate::digest::Digest;

/// What a pull asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A digest.
    Digest(Digest),
    /// A tag (2.8 does not log the digest it served for one).
    Tag(String),
}

/// One pull found in a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Repository name.
    pub repo: String,
    /// What was pulled.
    pub reference: Reference,
    /// Unix seconds.
    pub at: i64,
}

/// The marker every manifest request's line holds.
const MANIFESTS: &[u8] = b"/manifests/";

/// Bytes read at once from a log.
const CHUNK: usize = 1 << 20;

/// Every pull in `buf` (whole lines), in order.
pub fn parse_lines(buf: &[u8], out: &mut Vec<Hit>) {
    let finder = memmem::Finder::new(MANIFESTS);
    let mut pos = 0;
    while let Some(i) = finder.find(&buf[pos..]) {
        let at = pos + i;
        let start = memchr::memrchr(b'\n', &buf[..at]).map_or(0, |n| n + 1);
        let end = memchr::memchr(b'\n', &buf[at..]).map_or(buf.len(), |n| at + n);
        if let Some(hit) = parse_line(&buf[start..end]) {
            out.push(hit);
        }
        pos = end;
    }
}

/// A pull in one line, if it is one.
pub fn parse_line(line: &[u8]) -> Option<Hit> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let req = if line.starts_with('{') {
        json_line(line)?
    } else if line.starts_with("time=") {
        text_line(line)?
    } else {
        combined_line(line)?
    };
    if req.status != 200 || !matches!(req.method, "GET" | "HEAD") {
        return None;
    }
    let (repo, reference) = manifest_path(&req.uri)?;
    Some(Hit {
        repo: repo.to_owned(),
        reference,
        at: req.at,
    })
}

/// The parts of a request line that matter.
struct Request<'a> {
    method: &'a str,
    uri: Cow<'a, str>,
    status: u16,
    at: i64,
}

/// `/v2/<name>/manifests/<ref>[?query]` into name and reference.
fn manifest_path(uri: &str) -> Option<(&str, Reference)> {
    let path = uri.split(['?', '#']).next()?;
    let rest = path.strip_prefix("/v2/")?;
    let (name, r) = rest.rsplit_once("/manifests/")?;
    if name.is_empty() || r.is_empty() || r.contains('/') {
        return None;
    }
    let reference = match r.strip_prefix("sha256:") {
        Some(_) => Reference::Digest(Digest::parse(r)?),
        None => Reference::Tag(r.to_owned()),
    };
    Some((name, reference))
}

/// The access log: `ip - user [02/Dec/2026:11:01:35 +0000] "GET /v2/… HTTP/1.1" 200 422 …`.
fn combined_line(line: &str) -> Option<Request<'_>> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let at = DateTime::parse_from_str(&line[open + 1..close], "%d/%b/%Y:%H:%M:%S %z")
        .ok()?
        .timestamp();
    let rest = line[close + 1..].trim_start().strip_prefix('"')?;
    let q = rest.find('"')?;
    let mut req = rest[..q].split(' ');
    let (method, uri) = (req.next()?, req.next()?);
    let status = rest[q + 1..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Request {
        method,
        uri: Cow::Borrowed(uri),
        status,
        at,
    })
}

/// The logrus JSON formatter's "response completed" line.
fn json_line(line: &str) -> Option<Request<'_>> {
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        #[serde(rename = "http.request.method", borrow)]
        method: &'a str,
        #[serde(rename = "http.request.uri", borrow)]
        uri: Cow<'a, str>,
        #[serde(rename = "http.response.status")]
        status: u16,
        #[serde(borrow)]
        time: &'a str,
    }
    // Go's encoder escapes `&`, `<` and `>` in strings: the URI may come unescaped, owned.
    let l: Line<'_> = serde_json::from_str(line).ok()?;
    Some(Request {
        method: l.method,
        uri: l.uri,
        status: l.status,
        at: DateTime::parse_from_rfc3339(l.time).ok()?.timestamp(),
    })
}

/// The logrus text formatter's line: `time="…" level=info msg="response completed" k=v …`.
fn text_line(line: &str) -> Option<Request<'_>> {
    let at = DateTime::parse_from_rfc3339(text_field(line, "time=")?)
        .ok()?
        .timestamp();
    Some(Request {
        method: text_field(line, " http.request.method=")?,
        uri: Cow::Borrowed(text_field(line, " http.request.uri=")?),
        status: text_field(line, " http.response.status=")?.parse().ok()?,
        at,
    })
}

/// A text-formatter field's value, quoted (without escapes) or bare.
fn text_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let i = if line.starts_with(key) {
        0
    } else {
        line.find(key)?
    };
    let v = &line[i + key.len()..];
    match v.strip_prefix('"') {
        Some(q) => {
            let end = q.find('"')?;
            let s = &q[..end];
            (!s.contains('\\')).then_some(s)
        }
        None => Some(v.split(' ').next().unwrap_or(v)),
    }
}

/// The time of a line of any kind, for how far back a log reaches.
fn line_time(line: &str) -> Option<i64> {
    if line.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct T<'a> {
            #[serde(borrow)]
            time: &'a str,
        }
        let t: T<'_> = serde_json::from_str(line).ok()?;
        return Some(DateTime::parse_from_rfc3339(t.time).ok()?.timestamp());
    }
    if line.starts_with("time=") {
        return Some(
            DateTime::parse_from_rfc3339(text_field(line, "time=")?)
                .ok()?
                .timestamp(),
        );
    }
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    DateTime::parse_from_str(&line[open + 1..close], "%d/%b/%Y:%H:%M:%S %z")
        .ok()
        .map(|t| t.timestamp())
}

/// Reads every pull of a reader (gzip or plain) chunk by chunk; gives the hits and the
/// time of the first line that has one.
pub fn read(mut r: impl Read) -> std::io::Result<(Vec<Hit>, Option<i64>)> {
    let mut hits = Vec::new();
    let mut first: Option<i64> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK * 2);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = r.read(&mut chunk)?;
        if n > 0 {
            buf.extend_from_slice(&chunk[..n]);
        }
        let cut = if n == 0 {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', &buf) {
                Some(i) => i + 1,
                None => continue,
            }
        };
        if first.is_none() {
            first = first_time(&buf[..cut]);
        }
        parse_lines(&buf[..cut], &mut hits);
        buf.drain(..cut);
        if n == 0 {
            return Ok((hits, first));
        }
    }
}

/// The time of the first line in `buf` that has one.
fn first_time(buf: &[u8]) -> Option<i64> {
    buf.split(|b| *b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .find_map(line_time)
}

/// Reads one `--pull-log` file (`-`: stdin; gzip when it starts with gzip's magic) into
/// `ev`; the error names the file.
pub fn load(path: &Path, ev: &mut Evidence) -> Result<(), String> {
    let err = |e: std::io::Error| format!("--pull-log {}: cannot read: {e}", path.display());
    let input: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path).map_err(err)?)
    };
    let mut input = std::io::BufReader::new(input);
    let magic = std::io::BufRead::fill_buf(&mut input).map_err(err)?;
    let (hits, first) = if magic.starts_with(&[0x1f, 0x8b]) {
        read(flate2::bufread::MultiGzDecoder::new(input)).map_err(err)?
    } else {
        read(input).map_err(err)?
    };
    if let Some(t) = first {
        ev.cover(t);
    }
    for h in hits {
        let pull = Pull {
            at: h.at,
            source: Source::PullLog,
        };
        match h.reference {
            Reference::Digest(d) => ev.add_pull(&h.repo, d, pull),
            Reference::Tag(t) => ev.add_tag_pull(&h.repo, &t, pull),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:8a87db0fc3cbd7a2b8f7b385f33cd57c7a2d4227773499d2f03bff98e3ab9ac8";

    fn digest() -> Reference {
        Reference::Digest(Digest::parse(D).expect("digest"))
    }

    #[test]
    fn access_log_lines() {
        let l = format!(
            r#"127.0.0.1 - - [02/Dec/2026:11:01:35 +0000] "GET /v2/team/app/manifests/{D} HTTP/1.1" 200 422 "" "curl/7.88.1""#
        );
        let h = parse_line(l.as_bytes()).expect("hit");
        assert_eq!(h.repo, "team/app");
        assert_eq!(h.reference, digest());
        assert_eq!(h.at, 1_796_209_295);
        let head = r#"10.0.0.1 - - [02/Dec/2026:12:01:35 +0100] "HEAD /v2/app/manifests/v1 HTTP/1.1" 200 422 "" "x""#;
        let h = parse_line(head.as_bytes()).expect("hit");
        assert_eq!(
            (h.reference, h.at),
            (Reference::Tag("v1".into()), 1_796_209_295)
        );
        for miss in [
            r#"1 - - [02/Dec/2026:11:01:35 +0000] "HEAD /v2/app/manifests/nope HTTP/1.1" 404 94 "" "x""#,
            r#"1 - - [02/Dec/2026:11:01:35 +0000] "PUT /v2/app/manifests/v1 HTTP/1.1" 200 0 "" "x""#,
            r#"1 - - [02/Dec/2026:11:01:35 +0000] "GET /v2/app/blobs/x HTTP/1.1" 200 0 "" "x""#,
            r#"1 - - [garbage] "GET /v2/app/manifests/v1 HTTP/1.1" 200 0 "" "x""#,
        ] {
            assert_eq!(parse_line(miss.as_bytes()), None, "{miss}");
        }
    }

    #[test]
    fn logrus_json_lines() {
        let l = format!(
            r#"{{"go.version":"go1.19.8","http.request.host":"127.0.0.1:5731","http.request.method":"GET","http.request.uri":"/v2/app/manifests/{D}","http.response.status":200,"http.response.written":422,"level":"info","msg":"response completed","time":"2026-12-02T11:01:35.194765349Z"}}"#
        );
        let h = parse_line(l.as_bytes()).expect("hit");
        assert_eq!(
            (h.repo.as_str(), h.reference, h.at),
            ("app", digest(), 1_796_209_295)
        );
        let err = r#"{"http.request.method":"HEAD","http.request.uri":"/v2/app/manifests/nope","http.response.status":404,"time":"2026-12-02T11:01:35Z","vars.reference":"nope"}"#;
        let escaped = r#"{"http.request.method":"GET","http.request.uri":"/v2/app/manifests/v1?a=1\u0026b=2","http.response.status":200,"time":"2026-12-02T11:01:35Z"}"#;
        let h = parse_line(escaped.as_bytes()).expect("hit");
        assert_eq!(h.reference, Reference::Tag("v1".into()));
        assert_eq!(parse_line(err.as_bytes()), None);
    }

    #[test]
    fn logrus_text_lines() {
        let l = r#"time="2026-12-02T11:01:35.272544101Z" level=info msg="response completed" go.version=go1.19.8 http.request.host="127.0.0.1:5732" http.request.method=HEAD http.request.remoteaddr="127.0.0.1:60322" http.request.uri=/v2/app/manifests/v1 http.request.useragent=curl/7.88.1 http.response.duration=1.647093ms http.response.status=200 http.response.written=422"#;
        let h = parse_line(l.as_bytes()).expect("hit");
        assert_eq!(
            (h.repo.as_str(), h.reference, h.at),
            ("app", Reference::Tag("v1".into()), 1_796_209_295)
        );
        let q = format!(
            r#"time="2026-12-02T11:01:35Z" level=info msg="response completed" http.request.method=GET http.request.uri="/v2/a/b/manifests/{D}" http.response.status=200"#
        );
        assert_eq!(parse_line(q.as_bytes()).map(|h| h.repo), Some("a/b".into()));
    }

    #[test]
    fn gzip_and_chunks_give_every_hit_and_the_first_time() {
        use std::io::Write;
        let mut text = String::from(
            "127.0.0.1 - - [01/Dec/2026:00:00:00 +0000] \"GET /v2/ HTTP/1.1\" 200 2 \"\" \"x\"\n",
        );
        for i in 0..50_000 {
            text.push_str(&format!(
                "127.0.0.1 - - [02/Dec/2026:11:01:35 +0000] \"GET /v2/r{}/manifests/v1 HTTP/1.1\" 200 1 \"\" \"x\"\n",
                i % 7
            ));
        }
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("log.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).expect("gz");
        std::fs::write(&p, gz.finish().expect("gz")).expect("write");
        let mut ev = Evidence::default();
        load(&p, &mut ev).expect("loads");
        assert_eq!(ev.counts(), (0, 0, 7));
        assert_eq!(ev.covered_from, Some(1_796_083_200));
        let (hits, _) = read(text.as_bytes()).expect("reads");
        assert_eq!(hits.len(), 50_000);
    }

    #[test]
    fn an_unreadable_log_is_an_error_naming_it() {
        let mut ev = Evidence::default();
        let e = load(Path::new("/nonexistent/registry.log"), &mut ev).expect_err("error");
        assert!(e.contains("/nonexistent/registry.log"), "{e}");
    }
}
