//! `regsweep events`: a receiver for the registry's notifications
//! (`notifications.endpoints`), storing pull events of manifests, the last time per
//! repository and digest, in a JSON-lines file that `--pull-events` reads. A request is
//! answered 200 only once its pulls are appended and fsynced; on start the store is
//! compacted (written to a temporary file, then renamed over it).

use crate::exit::Exit;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::{Evidence, Pull, Source};
use crate::digest::Digest;

/// The notification envelope's media type.
pub const ENVELOPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// Largest envelope accepted.
const MAX_BODY: usize = 16 << 20;

/// One line of the store: a pull, or (first line) since when the store records.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    /// A pull: repository, manifest digest, unix seconds.
    Pull {
        repository: String,
        digest: Digest,
        at: i64,
    },
    /// The store's creation time.
    Since { since: i64 },
}

/// The last pull per repository and digest, and since when the store records.
#[derive(Debug, Default)]
pub struct Store {
    /// (repository, digest) → unix seconds.
    pulls: HashMap<(String, Digest), i64>,
    /// When the store was created.
    since: Option<i64>,
}

impl Store {
    /// Reads a store file; a torn last line (a write cut short) is skipped, any other bad
    /// line is an error naming the file and line.
    pub fn read(path: &Path) -> Result<Store, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--pull-events {}: cannot read: {e}", path.display()))?;
        let mut s = Store::default();
        let complete = text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Line>(l) {
                Ok(line) => s.apply(line),
                Err(_) if i + 1 == lines.len() && !complete => {}
                Err(e) => {
                    return Err(format!(
                        "--pull-events {}:{}: not a stored event: {e}",
                        path.display(),
                        i + 1
                    ));
                }
            }
        }
        Ok(s)
    }

    fn apply(&mut self, line: Line) {
        match line {
            Line::Pull {
                repository,
                digest,
                at,
            } => {
                self.record(repository, digest, at);
            }
            Line::Since { since } => {
                self.since = Some(self.since.map_or(since, |s| s.min(since)));
            }
        }
    }

    /// Records a pull; whether it is newer than what the store held.
    fn record(&mut self, repo: String, d: Digest, at: i64) -> bool {
        let e = self.pulls.entry((repo, d)).or_insert(i64::MIN);
        let newer = at > *e;
        *e = (*e).max(at);
        newer
    }

    /// Adds the store's pulls to `ev`.
    pub fn add_to(&self, ev: &mut Evidence) {
        if let Some(s) = self.since {
            ev.cover(s);
        }
        for ((repo, d), at) in &self.pulls {
            let pull = Pull {
                at: *at,
                source: Source::PullEvents,
            };
            ev.add_pull(repo, *d, pull);
        }
    }

    /// Writes the whole store to `path` through a temporary file renamed over it.
    fn compact(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        let mut tmp = tempfile::NamedTempFile::new_in(dir.unwrap_or(Path::new(".")))?;
        {
            let mut w = std::io::BufWriter::new(tmp.as_file_mut());
            let since = self.since.unwrap_or_else(|| chrono::Utc::now().timestamp());
            writeln!(w, "{}", json_line(&Line::Since { since }))?;
            let mut pulls: Vec<_> = self.pulls.iter().collect();
            pulls.sort();
            for ((repo, d), at) in pulls {
                let line = Line::Pull {
                    repository: repo.clone(),
                    digest: *d,
                    at: *at,
                };
                writeln!(w, "{}", json_line(&line))?;
            }
            w.flush()?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        if let Some(d) = dir {
            std::fs::File::open(d)?.sync_all()?;
        }
        Ok(())
    }
}

fn json_line(l: &Line) -> String {
    serde_json::to_string(l).unwrap_or_default()
}

/// Reads a `--pull-events` store into `ev`; an unreadable or damaged one is an error.
pub fn load(path: &Path, ev: &mut Evidence) -> Result<(), String> {
    Store::read(path)?.add_to(ev);
    Ok(())
}

/// The envelope the registry posts.
#[derive(Deserialize)]
struct Envelope {
    events: Vec<Event>,
}

/// One notification event (only what a pull needs).
#[derive(Deserialize)]
struct Event {
    action: String,
    timestamp: String,
    target: Target,
}

/// An event's target.
#[derive(Deserialize)]
struct Target {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    digest: String,
}

/// The manifest pulls of an envelope: repository, digest, unix seconds.
pub fn pulls_of(body: &[u8]) -> Result<Vec<(String, Digest, i64)>, String> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| format!("not a notification envelope: {e}"))?;
    Ok(env
        .events
        .into_iter()
        .filter(|e| e.action == "pull" && is_manifest(&e.target.media_type))
        .filter_map(|e| {
            let at = chrono::DateTime::parse_from_rfc3339(&e.timestamp).ok()?;
            let d = Digest::parse(&e.target.digest)?;
            (!e.target.repository.is_empty()).then_some((e.target.repository, d, at.timestamp()))
        })
        .collect())
}

/// Whether a media type is a manifest's or an index's (blob pulls are events too).
fn is_manifest(mt: &str) -> bool {
    mt.contains("manifest") || mt.contains("image.index") || mt.is_empty()
}

/// The receiver's state: the store in memory and its file open for appending.
struct Receiver {
    store: Store,
    file: std::fs::File,
}

impl Receiver {
    /// Opens (and compacts) the store at `path`, creating it if absent.
    fn open(path: &Path) -> Result<Receiver, String> {
        let name = path.display();
        let store = if path.exists() {
            Store::read(path)?
        } else {
            Store::default()
        };
        store
            .compact(path)
            .map_err(|e| format!("--store {name}: cannot write: {e}"))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| format!("--store {name}: cannot open: {e}"))?;
        let mut store = store;
        if store.since.is_none() {
            store.since = Some(chrono::Utc::now().timestamp());
        }
        Ok(Receiver { store, file })
    }

    /// Appends the pulls newer than the store's and fsyncs; how many were new.
    fn store(&mut self, pulls: Vec<(String, Digest, i64)>) -> std::io::Result<usize> {
        let mut buf = String::new();
        for (repo, d, at) in pulls {
            if self.store.record(repo.clone(), d, at) {
                let line = Line::Pull {
                    repository: repo,
                    digest: d,
                    at,
                };
                buf.push_str(&json_line(&line));
                buf.push('\n');
            }
        }
        if buf.is_empty() {
            return Ok(0);
        }
        self.file.write_all(buf.as_bytes())?;
        self.file.sync_data()?;
        Ok(buf.lines().count())
    }
}

/// Answers one request: a POST of an envelope is stored, then 200.
async fn handle(
    req: Request<Incoming>,
    rx: Arc<Mutex<Receiver>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |code: StatusCode, msg: &str| {
        let mut r = Response::new(Full::new(Bytes::from(format!("{msg}\n"))));
        *r.status_mut() = code;
        Ok(r)
    };
    if req.method() != hyper::Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST notification envelopes here",
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, &format!("reading the body: {e}")),
    };
    let pulls = match pulls_of(&body) {
        Ok(p) => p,
        Err(e) => return reply(StatusCode::BAD_REQUEST, &e),
    };
    let stored = tokio::task::spawn_blocking(move || match rx.lock() {
        Ok(mut r) => r.store(pulls).map_err(|e| e.to_string()),
        Err(_) => Err("the store is unusable after a failed write".to_owned()),
    })
    .await;
    match stored {
        Ok(Ok(_)) => reply(StatusCode::OK, "stored"),
        Ok(Err(e)) => {
            crate::logging::error(format_args!("events: storing failed: {e}"));
            reply(StatusCode::SERVICE_UNAVAILABLE, "not stored")
        }
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Options of `regsweep events`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The store file.
    pub store: PathBuf,
}

/// Runs the receiver until SIGINT or SIGTERM; says how it ended.
pub fn serve(opts: &Options) -> Exit {
    let rx = match Receiver::open(&opts.store) {
        Ok(r) => Arc::new(Mutex::new(r)),
        Err(e) => {
            crate::logging::error(e);
            return Exit::Usage;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::logging::error(format_args!("events: starting the runtime: {e}"));
            return Exit::Fatal;
        }
    };
    match rt.block_on(accept(opts.listen, rx)) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            crate::logging::error(format_args!("events: {e}"));
            Exit::Fatal
        }
    }
}

/// Accepts connections until a signal.
async fn accept(addr: SocketAddr, rx: Arc<Mutex<Receiver>>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("regsweep events: listening on {}", listener.local_addr()?);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            c = listener.accept() => c?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        };
        let rx = rx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, rx.clone()));
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:8a87db0fc3cbd7a2b8f7b385f33cd57c7a2d4227773499d2f03bff98e3ab9ac8";

    #[test]
    fn envelopes_give_manifest_pulls_only() {
        let body = format!(
            r#"{{"events":[
            {{"id":"1","timestamp":"2026-12-02T11:01:35.1Z","action":"pull","target":{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{D}","repository":"team/app","tag":"v1"}}}},
            {{"id":"2","timestamp":"2026-12-02T11:01:35Z","action":"pull","target":{{"mediaType":"application/octet-stream","digest":"{D}","repository":"team/app"}}}},
            {{"id":"3","timestamp":"2026-12-02T11:01:35Z","action":"push","target":{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{D}","repository":"team/app"}}}}]}}"#
        );
        let p = pulls_of(body.as_bytes()).expect("envelope");
        assert_eq!(
            p,
            vec![(
                "team/app".to_owned(),
                Digest::parse(D).expect("d"),
                1_796_209_295
            )]
        );
        assert!(pulls_of(b"not json").is_err());
    }

    #[test]
    fn the_store_survives_reopening_and_a_torn_line() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("pulls.jsonl");
        let d = Digest::parse(D).expect("d");
        {
            let mut r = Receiver::open(&path).expect("open");
            assert_eq!(
                r.store(vec![("a".into(), d, 10), ("a".into(), d, 5)])
                    .expect("store"),
                1
            );
            assert_eq!(r.store(vec![("a".into(), d, 20)]).expect("store"), 1);
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(b"{\"repository\":\"a\",\"dig").expect("torn");
        let s = Store::read(&path).expect("reads");
        assert_eq!(s.pulls.get(&("a".to_owned(), d)), Some(&20));
        let r = Receiver::open(&path).expect("reopens");
        assert_eq!(r.store.pulls.len(), 1);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 2, "compacted: {text}");
        std::fs::write(&path, "garbage\n{}\n").expect("write");
        assert!(Store::read(&path).expect_err("bad").contains(":1:"));
    }
}
