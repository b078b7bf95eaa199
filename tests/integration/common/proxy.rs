//! A fault-injecting HTTP proxy in front of the real registry (one request per connection).
//! It listens on 127.0.0.1 only and forwards only to the registry it was given.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do with one request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Forward it untouched.
    Pass,
    /// Answer this status without forwarding (with `Retry-After: secs` when given).
    Status(u16, Option<u64>),
    /// Close the connection without answering, without forwarding.
    Reset,
    /// Forward it, then answer this status instead of the registry's.
    StatusAfter(u16),
    /// Forward it, then close the connection without answering.
    ResetAfter,
    /// Wait this long, then forward.
    Slow(Duration),
    /// Answer this status with this JSON body without forwarding.
    Body(u16, &'static str),
    /// Forward it, then pass the answer's body through this function.
    Rewrite(fn(&[u8]) -> Vec<u8>),
}

impl PartialEq for Fault {
    /// Same kind and values; any two rewrites are equal (functions have no identity).
    fn eq(&self, other: &Fault) -> bool {
        match (self, other) {
            (Fault::Rewrite(_), Fault::Rewrite(_)) => true,
            (Fault::Rewrite(_), _) | (_, Fault::Rewrite(_)) => false,
            _ => format!("{self:?}") == format!("{other:?}"),
        }
    }
}

/// One request the proxy saw.
#[derive(Clone, Debug)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The fault applied.
    pub fault: Fault,
    /// The registry's status, when forwarded and answered.
    pub upstream: Option<u16>,
    /// When the proxy received it.
    pub at: std::time::Instant,
}

/// Decides the fault for the n-th request (counting from 0) of a method and path.
pub type Schedule = dyn Fn(usize, &str, &str) -> Fault + Send + Sync;

/// A running proxy.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Every request seen, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` applying `schedule`; requests go on with `upstream`'s
    /// host in their `Host` header.
    pub fn start(upstream: &str, schedule: Box<Schedule>) -> FaultProxy {
        Self::start_with(upstream, schedule, false)
    }

    /// As [`FaultProxy::start`], but requests go on with the `Host` header the client sent
    /// (the proxy's address): a SigV4 signature covers it, so an S3 server that checks
    /// signatures (regsweep-s3d) accepts what passes through.
    pub fn start_keeping_host(upstream: &str, schedule: Box<Schedule>) -> FaultProxy {
        Self::start_with(upstream, schedule, true)
    }

    fn start_with(upstream: &str, schedule: Box<Schedule>, keep_host: bool) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicUsize::new(0));
        let schedule: Arc<Schedule> = Arc::from(schedule);
        let upstream = upstream.to_owned();
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, counter, schedule, upstream) = (
                    log.clone(),
                    counter.clone(),
                    schedule.clone(),
                    upstream.clone(),
                );
                std::thread::spawn(move || {
                    let to = Upstream {
                        url: &upstream,
                        keep_host,
                    };
                    handle(stream, &to, &*schedule, &counter, &log)
                });
            }
        });
        FaultProxy { url, seen }
    }

    /// DELETE requests seen, as (path, fault, upstream status).
    pub fn deletes(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.method == "DELETE")
            .cloned()
            .collect()
    }
}

/// Where a proxy forwards, and whether with the client's `Host` header.
struct Upstream<'a> {
    url: &'a str,
    keep_host: bool,
}

fn handle(
    mut stream: TcpStream,
    upstream: &Upstream,
    schedule: &Schedule,
    counter: &AtomicUsize,
    log: &Mutex<Vec<Seen>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut body = vec![0u8; len];
    let _ = reader.read_exact(&mut body);
    let n = counter.fetch_add(1, Ordering::SeqCst);
    let fault = schedule(n, &method, &path);
    let mut seen = Seen {
        method: method.clone(),
        path: path.clone(),
        fault: fault.clone(),
        upstream: None,
        at: std::time::Instant::now(),
    };
    match &fault {
        Fault::Status(code, retry) => {
            let extra = retry
                .map(|r| format!("Retry-After: {r}\r\n"))
                .unwrap_or_default();
            let _ = write!(
                stream,
                "HTTP/1.1 {code} Injected\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            log.lock().expect("lock").push(seen);
            return;
        }
        Fault::Body(code, body) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            log.lock().expect("lock").push(seen);
            return;
        }
        Fault::Reset => {
            log.lock().expect("lock").push(seen);
            return;
        }
        Fault::Slow(d) => std::thread::sleep(*d),
        _ => {}
    }
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut req = client
        .request(m, format!("{}{path}", upstream.url))
        .body(body);
    for (k, v) in &headers {
        let k_lower = k.to_ascii_lowercase();
        let host = k_lower == "host";
        if (upstream.keep_host || !host) && !["content-length", "connection"].contains(&&*k_lower) {
            req = req.header(k, v);
        }
    }
    let resp = match req.send() {
        Ok(r) => r,
        Err(_) => {
            // The registry is down (restarting): answer like a load balancer would.
            let _ = write!(
                stream,
                "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            log.lock().expect("lock").push(seen);
            return;
        }
    };
    seen.upstream = Some(resp.status().as_u16());
    let status = resp.status();
    let keep: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "content-length" | "connection" | "transfer-encoding"
            )
        })
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.to_string(), v.to_owned())))
        .collect();
    let mut body = resp.bytes().map(|b| b.to_vec()).unwrap_or_default();
    if let Fault::Rewrite(f) = &fault {
        body = f(&body);
    }
    log.lock().expect("lock").push(seen);
    match fault {
        Fault::ResetAfter => {}
        Fault::StatusAfter(code) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        _ => {
            let mut head = format!(
                "HTTP/1.1 {} {}\r\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("OK")
            );
            for (k, v) in keep {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            ));
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    }
}
