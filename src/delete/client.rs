//! Registry HTTP client: TLS, basic and bearer-token auth, a rate limiter without bursts,
//! retries with backoff, a circuit breaker for a registry that stopped answering. It sends
//! what the deleter asks for; it decides nothing about which manifest goes.

use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Client, ClientBuilder, Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::auth::{Challenge, Credentials, parse_challenge, parse_refusal};
use crate::digest::Digest;
use crate::meta::parse::ACCEPT_MANIFESTS;
use crate::outcome::{DeleteResult, Fatal, Refusal};

/// How to reach and authenticate to the registry, and how hard to push it.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Base URL, e.g. `https://registry.example:5000`.
    pub url: String,
    /// Credentials, if any.
    pub credentials: Option<Credentials>,
    /// Skip TLS verification (`SELF_SIGNED_CERT=true`).
    pub insecure: bool,
    /// Extra CA certificate (PEM) to trust.
    pub ca_cert: Option<PathBuf>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests per second over all connections; `None` for no limit.
    pub rate: Option<NonZeroU32>,
    /// Attempts per delete, the first included.
    pub max_attempts: usize,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// Why a URL did not parse.
type UrlError = <Url as std::str::FromStr>::Err;

/// What kind of failure a request that got no answer had; decided once, from the error's
/// causes, never from its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// The server's TLS certificate was not accepted (untrusted issuer, expired, wrong
    /// name, none presented): trying again changes nothing.
    Certificate,
    /// Anything else (refused, reset, timed out, a DNS failure): it may pass.
    Other,
}

/// A request that got no answer; reads as the error and its causes, `: `-joined.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{text}")]
pub struct TransportError {
    /// What kind of failure.
    pub kind: TransportKind,
    /// The error and its causes, for people.
    text: String,
}

impl TransportError {
    /// Classifies a reqwest error and keeps its text.
    fn of(e: &reqwest::Error) -> TransportError {
        let kind = if is_certificate_failure(e) {
            TransportKind::Certificate
        } else {
            TransportKind::Other
        };
        TransportError {
            kind,
            text: describe_error(e),
        }
    }

    /// What to check, after the error, when the registry's certificate was refused.
    fn hint(&self) -> &'static str {
        match self.kind {
            TransportKind::Certificate => {
                " (a self-signed certificate? set SELF_SIGNED_CERT=true or --ca-cert FILE)"
            }
            TransportKind::Other => "",
        }
    }
}

/// Whether rustls refused the peer's certificate somewhere in `e`'s causes (an
/// `io::Error` hides the error it wraps from `source()`, so each one is opened too).
fn is_certificate_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>()
            && matches!(
                tls,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::InvalidCertRevocationList(_)
            )
        {
            return true;
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && is_certificate_failure(inner)
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// The error and its causes, `: `-joined.
fn describe_error(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Why the client could not be built or the registry's `/v2/` check failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// REGISTRY_URL does not parse.
    #[error("REGISTRY_URL {url:?} is not a URL: {cause}")]
    NotAUrl {
        /// What was given.
        url: String,
        /// Why it does not parse.
        cause: UrlError,
    },
    /// The `--ca-cert` file cannot be read.
    #[error("--ca-cert {}: {cause}", path.display())]
    CaCertUnreadable {
        /// The file.
        path: PathBuf,
        /// What the system said.
        cause: std::io::Error,
    },
    /// The `--ca-cert` file is not PEM.
    #[error("--ca-cert {}: not a PEM certificate: {cause}", path.display())]
    CaCertNotPem {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        cause: reqwest::Error,
    },
    /// The `--ca-cert` file holds no certificate.
    #[error("--ca-cert {}: no certificate in it", path.display())]
    CaCertEmpty {
        /// The file.
        path: PathBuf,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {cause}")]
    HttpClient {
        /// What reqwest said.
        cause: reqwest::Error,
    },
    /// `GET /v2/` got no answer.
    #[error("cannot reach the registry at {url}: {cause}{}", .cause.hint())]
    Unreachable {
        /// The `/v2/` URL.
        url: String,
        /// Why, classified.
        cause: TransportError,
    },
    /// `GET /v2/` answered something no registry answers.
    #[error("GET {url} answered {status}: is this a Docker Registry v2?")]
    NotARegistry {
        /// The `/v2/` URL.
        url: String,
        /// Its answer.
        status: StatusCode,
    },
    /// A 401 without a challenge this client can answer.
    #[error("GET {url} answered 401 without a usable WWW-Authenticate challenge")]
    NoChallenge {
        /// The `/v2/` URL.
        url: String,
    },
    /// The registry wants credentials and none were given.
    #[error("the registry at {base} requires authentication: set REGISTRY_AUTH=user:password")]
    AuthRequired {
        /// The registry's base URL.
        base: Url,
    },
    /// The registry refused the basic credentials.
    #[error("the registry rejected {who} on /v2/ ({status})")]
    Rejected {
        /// Whose credentials, never the secret.
        who: String,
        /// Its answer.
        status: StatusCode,
    },
    /// The token service failed.
    #[error(transparent)]
    Token(TokenError),
}

/// Why no bearer token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The registry sent no Bearer challenge.
    #[error("no bearer challenge")]
    NoBearerChallenge,
    /// The challenge's realm does not parse.
    #[error("token realm {realm:?} is not a URL: {cause}")]
    RealmNotAUrl {
        /// The realm.
        realm: String,
        /// Why it does not parse.
        cause: UrlError,
    },
    /// The token service got no answer.
    #[error("cannot reach the token service {realm}: {cause}")]
    Unreachable {
        /// The realm.
        realm: String,
        /// Why, classified.
        cause: TransportError,
    },
    /// The token service refused.
    #[error("the token service {realm} rejected {who} for {scope} ({status})")]
    Rejected {
        /// The realm.
        realm: String,
        /// Whose credentials, never the secret.
        who: String,
        /// `the registry` or `repository <name>`.
        scope: String,
        /// Its answer.
        status: StatusCode,
    },
    /// The answer was not the token JSON.
    #[error("token service {realm} answered no token: {cause}")]
    NotJson {
        /// The realm.
        realm: String,
        /// What the decoder said.
        cause: reqwest::Error,
    },
    /// The answer held neither `token` nor `access_token`.
    #[error("token service {realm} answered no token")]
    NoToken {
        /// The realm.
        realm: String,
    },
}

/// Why a request was given up; reads as a read request reports it (a DELETE maps each
/// kind to its own [`DeleteResult`]).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Not sent: the run stopped first.
    #[error("cancelled")]
    Cancelled,
    /// The client's concurrency slots are closed.
    #[error("client shut down")]
    ShutDown,
    /// Every attempt failed; `last` is the last answer or error.
    #[error("{last} (gave up after {attempts} attempts)")]
    GaveUp {
        /// The last answer or error.
        last: String,
        /// Attempts made.
        attempts: usize,
    },
    /// An attempt was sent, and the run stopped before it could be retried.
    #[error("{last} (not retried: the run is stopping)")]
    Stopping {
        /// That attempt's answer or error.
        last: String,
    },
    /// The deadline passed before the request (or a retry of it) could go.
    #[error("deadline passed")]
    Stale {
        /// Whether an attempt was sent.
        sent: bool,
        /// Its answer or error.
        last: Option<String>,
    },
    /// The circuit breaker is open: the registry stopped answering.
    #[error("the registry stopped answering ({last})")]
    Unreachable {
        /// Whether an attempt was sent.
        sent: bool,
        /// The last connection error.
        last: String,
    },
}

/// Why a read (a tag listing, a tag's digest) failed.
#[derive(Debug, thiserror::Error)]
pub enum TagsError {
    /// Stop the run.
    #[error("{0}")]
    Fatal(Fatal),
    /// The request was given up.
    #[error(transparent)]
    Send(SendError),
    /// A HEAD answered without the digest header.
    #[error("HEAD {path} answered no Docker-Content-Digest")]
    NoDigest {
        /// The request path.
        path: String,
    },
    /// A tag list that does not decode.
    #[error("GET {path}: {cause}")]
    Undecodable {
        /// The request path.
        path: String,
        /// What the decoder said.
        cause: reqwest::Error,
    },
    /// An answer other than 200, 404, 401 or 403.
    #[error("{method} {path} answered {status}")]
    Status {
        /// `GET` or `HEAD`.
        method: &'static str,
        /// The request path.
        path: String,
        /// The answer.
        status: StatusCode,
    },
}

/// Decides, once a request may go, whether the run still wants it sent (false once the
/// run is stopping); asked once a concurrency slot is free and again right before sending.
pub type StillWanted<'a> = dyn Fn() -> bool + Send + Sync + 'a;

/// Connection failures in a row (over all requests) after which the registry counts as gone.
const BREAKER_FAILURES: usize = 10;
/// ... provided the failures went on for at least this long (a restart is shorter).
const BREAKER_MIN_OUTAGE: Duration = Duration::from_secs(10);
/// The last error of a request the open circuit breaker held back.
const STOPPED_ANSWERING: &str = "the registry stopped answering";

/// The circuit breaker: consecutive connection failures, and since when.
#[derive(Default)]
struct Breaker {
    failures: usize,
    since: Option<Instant>,
    open: bool,
}

/// The circuit breaker's state for the next request.
enum BreakerState {
    /// Answers come: send.
    Closed,
    /// Connections keep failing: admit nothing new, let retries find out.
    Suspect,
    /// The registry stopped answering: send nothing.
    Open,
}

/// What one request got, for the circuit breaker.
#[derive(Clone, Copy)]
enum Contact {
    /// An answer, whatever its status.
    Answered,
    /// No answer: the connection failed.
    Failed,
}

/// How `/v2/` is asked.
#[derive(Clone, Copy)]
enum V2As {
    /// Without credentials (to learn the challenge).
    Anonymous,
    /// With the basic credentials.
    BasicAuth,
}

/// Which attempt of a request comes next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// The first: the circuit breaker must admit it.
    First,
    /// A retry of one admitted before.
    Retry,
}

/// One request to send: method, path and the repository whose token it carries.
struct Call<'a> {
    method: Method,
    path: &'a str,
    repo: &'a str,
}

/// Where one request's attempts stand.
struct Attempts {
    delays: backon::ExponentialBackoff,
    /// The token a 401 refused: the next attempt fetches a fresh one.
    refused: Option<String>,
    /// A fresh token was fetched after a 401 already (once per request).
    renewed: bool,
    next: Attempt,
    /// An attempt reached the registry.
    sent: bool,
    /// The answer (or error) of the last attempt.
    last: Option<String>,
}

impl Attempts {
    /// Why nothing more is sent for a request the run no longer wants: an earlier
    /// attempt's answer when one was sent, else not sent at all.
    fn not_sent(&mut self) -> SendError {
        match self.last.take() {
            Some(last) if self.sent => SendError::Stopping { last },
            _ => SendError::Cancelled,
        }
    }
}

/// What one attempt came to.
enum Step {
    /// The answer to return (one a retry cannot change).
    Answer(Response),
    /// Worth a retry after the backoff: what the attempt got, and the `Retry-After`.
    Retry {
        last: String,
        retry_after: Option<Duration>,
    },
    /// Go again at once (a fresh token, or a wait for the circuit breaker).
    Again,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
    issued_at: Option<String>,
}

/// A bearer token and when to fetch the next one. Never printed.
struct Token {
    value: String,
    refresh_at: Instant,
}

/// One scope's cached token, locked only by the requests of that scope (while one of them
/// fetches it, the others wait for that fetch instead of fetching too).
type TokenSlot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// How long a token is used: until shortly before `expires_in` runs out, whatever its
/// length: a fifth of it early (at most 30 s), but at least a second (half of a lifetime
/// under 2 s), since a token service counts whole seconds and a request takes time to
/// arrive. `expires_in` defaults to 60 s (the token specification's default).
pub fn token_lifetime(expires_in: Option<u64>) -> Duration {
    let ttl = Duration::from_secs(expires_in.unwrap_or(60));
    let early = (ttl / 5)
        .min(Duration::from_secs(30))
        .max((ttl / 2).min(Duration::from_secs(1)));
    ttl - early
}

/// When a token's lifetime began, as the docker client reckons it: the response's
/// `issued_at` where given, else when it arrived; never before it was asked for (a token
/// service whose clock lags would otherwise hand out tokens that look stale at once).
fn issued(asked: Instant, issued_at: Option<&str>) -> Instant {
    let received = Instant::now();
    let Some(at) = issued_at.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()) else {
        return received;
    };
    let age = (chrono::Utc::now() - at.with_timezone(&chrono::Utc))
        .to_std()
        .unwrap_or(Duration::ZERO);
    received.checked_sub(age).unwrap_or(asked).max(asked)
}

/// The client; shared by every delete task.
pub struct RegistryClient {
    http: Client,
    base: Url,
    opts: ClientOptions,
    challenge: Option<Challenge>,
    /// A slot per repository (the scope of its tokens); the map's lock is never held
    /// across an await.
    tokens: std::sync::Mutex<HashMap<String, TokenSlot>>,
    permits: Semaphore,
    limiter: Option<DefaultDirectRateLimiter>,
    breaker: std::sync::Mutex<Breaker>,
    /// Set by an answer that fails every further request (405, 401, 403) before its
    /// concurrency slot is given back: nothing new is sent after it.
    halted: AtomicBool,
}

/// The HTTP client the options describe: timeout, pool, TLS trust.
fn http_client(opts: &ClientOptions) -> Result<Client, ConnectError> {
    let mut b = Client::builder()
        .timeout(opts.timeout)
        .pool_max_idle_per_host(opts.concurrency.max(1))
        .user_agent(concat!("regsweep/", env!("CARGO_PKG_VERSION")));
    if opts.insecure {
        b = b.danger_accept_invalid_certs(true);
    }
    if let Some(path) = &opts.ca_cert {
        b = trust_ca(b, path)?;
    }
    b.build()
        .map_err(|cause| ConnectError::HttpClient { cause })
}

/// Adds the certificates of the PEM file at `path` to what the client trusts.
fn trust_ca(mut b: ClientBuilder, path: &Path) -> Result<ClientBuilder, ConnectError> {
    let pem = std::fs::read(path).map_err(|cause| ConnectError::CaCertUnreadable {
        path: path.to_owned(),
        cause,
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|cause| {
        ConnectError::CaCertNotPem {
            path: path.to_owned(),
            cause,
        }
    })?;
    if certs.is_empty() {
        return Err(ConnectError::CaCertEmpty {
            path: path.to_owned(),
        });
    }
    for c in certs {
        b = b.add_root_certificate(c);
    }
    Ok(b)
}

/// Whether the first contact tries again after this attempt: 5xx, 429 and connection
/// failures can pass; a certificate the client refuses stays refused.
fn first_contact_retries(attempt: &Result<Response, ConnectError>) -> bool {
    match attempt {
        Ok(r) => r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS,
        Err(ConnectError::Unreachable { cause, .. }) => cause.kind != TransportKind::Certificate,
        Err(_) => true,
    }
}

impl RegistryClient {
    /// Builds the client and checks `/v2/`: reachable, a registry, credentials accepted.
    pub async fn connect(opts: ClientOptions) -> Result<RegistryClient, ConnectError> {
        let base = Url::parse(&opts.url).map_err(|cause| ConnectError::NotAUrl {
            url: opts.url.clone(),
            cause,
        })?;
        let http = http_client(&opts)?;
        let mut client = RegistryClient {
            http,
            base,
            // No burst: requests go evenly spaced, never above the rate, from the start.
            limiter: opts
                .rate
                .map(|r| RateLimiter::direct(Quota::per_second(r).allow_burst(NonZeroU32::MIN))),
            permits: Semaphore::new(opts.concurrency.max(1)),
            opts,
            challenge: None,
            tokens: std::sync::Mutex::new(HashMap::new()),
            breaker: std::sync::Mutex::new(Breaker::default()),
            halted: AtomicBool::new(false),
        };
        client.ping().await?;
        Ok(client)
    }

    /// Where the circuit breaker stands.
    fn breaker_state(&self) -> BreakerState {
        match self.breaker.lock() {
            Ok(b) if b.open => BreakerState::Open,
            Ok(b) if b.failures >= BREAKER_FAILURES => BreakerState::Suspect,
            Ok(_) => BreakerState::Closed,
            Err(_) => BreakerState::Open,
        }
    }

    /// Before a new request: while connections keep failing, wait until one answer comes
    /// (retries of requests already sent go on meanwhile) or the breaker opens; `false`
    /// when it is open.
    async fn breaker_admits(&self) -> bool {
        loop {
            match self.breaker_state() {
                BreakerState::Closed => return true,
                BreakerState::Open => return false,
                BreakerState::Suspect => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Counts one request's outcome into the circuit breaker: a connection failure, or any
    /// answer at all.
    fn breaker_count(&self, contact: Contact) {
        if let Ok(mut b) = self.breaker.lock() {
            if let Contact::Answered = contact {
                b.failures = 0;
                b.since = None;
                return;
            }
            b.failures += 1;
            let since = *b.since.get_or_insert_with(Instant::now);
            if b.failures >= BREAKER_FAILURES && since.elapsed() >= BREAKER_MIN_OUTAGE {
                b.open = true;
            }
        }
    }

    /// True once an answer said every further request would fail the same way (405, or
    /// 401/403 after the token was renewed where that can help): nothing more is sent.
    pub fn halted(&self) -> bool {
        self.halted.load(Ordering::SeqCst)
    }

    /// The registry's base URL (never with credentials: those are refused in it).
    pub fn base_url(&self) -> &str {
        self.opts.url.as_str()
    }

    /// Requests in flight at once.
    pub fn concurrency(&self) -> usize {
        self.opts.concurrency.max(1)
    }

    /// The full URL of `path`.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// Whose credentials these are, for error messages (never the secret).
    fn who(&self) -> String {
        self.opts.credentials.as_ref().map_or_else(
            || "no credentials (set REGISTRY_AUTH=user:password)".to_owned(),
            Credentials::describe,
        )
    }

    /// `GET /v2/`, anonymous or with the basic credentials; errors say what to check.
    async fn get_v2(&self, how: V2As) -> Result<Response, ConnectError> {
        let url = self.url("/v2/");
        let mut r = self.http.get(&url);
        if let V2As::BasicAuth = how {
            r = self.authed_basic(r);
        }
        r.send().await.map_err(|e| ConnectError::Unreachable {
            url,
            cause: TransportError::of(&e),
        })
    }

    /// Exponential backoff with jitter over the configured number of attempts.
    fn backoff(&self, max_delay: Duration) -> backon::ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(max_delay)
            .with_jitter()
            .with_max_times(self.opts.max_attempts.saturating_sub(1))
            .build()
    }

    /// The first contact: `GET /v2/`, retrying what a retry can cure (5xx, 429, refused
    /// connections), then the authentication its challenge asks for.
    async fn ping(&mut self) -> Result<(), ConnectError> {
        let mut delays = self.backoff(Duration::from_secs(10));
        let r = loop {
            let attempt = self.get_v2(V2As::Anonymous).await;
            match delays.next() {
                Some(d) if first_contact_retries(&attempt) => tokio::time::sleep(d).await,
                _ => break attempt?,
            }
        };
        match r.status() {
            s if s.is_success() => return Ok(()),
            StatusCode::UNAUTHORIZED => {}
            status => {
                return Err(ConnectError::NotARegistry {
                    url: self.url("/v2/"),
                    status,
                });
            }
        }
        let challenge = r
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
            .ok_or_else(|| ConnectError::NoChallenge {
                url: self.url("/v2/"),
            })?;
        self.authenticate(challenge).await
    }

    /// Answers the registry's challenge once: basic credentials, or a bearer token.
    async fn authenticate(&mut self, challenge: Challenge) -> Result<(), ConnectError> {
        if self.opts.credentials.is_none() {
            return Err(ConnectError::AuthRequired {
                base: self.base.clone(),
            });
        }
        self.challenge = Some(challenge.clone());
        match challenge {
            Challenge::Basic => {
                let r = self.get_v2(V2As::BasicAuth).await?;
                if !r.status().is_success() {
                    return Err(ConnectError::Rejected {
                        who: self.who(),
                        status: r.status(),
                    });
                }
            }
            Challenge::Bearer { .. } => {
                self.fetch_token(None).await.map_err(ConnectError::Token)?;
            }
        }
        Ok(())
    }

    /// The request with the basic credentials, if there are any.
    fn authed_basic(&self, r: RequestBuilder) -> RequestBuilder {
        match &self.opts.credentials {
            Some(c) => r.basic_auth(&c.user, Some(c.password.expose_secret())),
            None => r,
        }
    }

    /// Fetches a token for `repository:<repo>:pull,delete` (or no scope for the ping).
    async fn fetch_token(&self, repo: Option<&str>) -> Result<Token, TokenError> {
        let Some(Challenge::Bearer { realm, service }) = &self.challenge else {
            return Err(TokenError::NoBearerChallenge);
        };
        let url = token_url(realm, service.as_deref(), repo)?;
        let asked = Instant::now();
        let r = self
            .authed_basic(self.http.get(url))
            .send()
            .await
            .map_err(|e| TokenError::Unreachable {
                realm: realm.clone(),
                cause: TransportError::of(&e),
            })?;
        if !r.status().is_success() {
            return Err(TokenError::Rejected {
                realm: realm.clone(),
                who: self.who(),
                scope: repo
                    .map_or_else(|| "the registry".to_owned(), |r| format!("repository {r}")),
                status: r.status(),
            });
        }
        let t: TokenResponse = r.json().await.map_err(|cause| TokenError::NotJson {
            realm: realm.clone(),
            cause,
        })?;
        let value = t
            .token
            .or(t.access_token)
            .ok_or_else(|| TokenError::NoToken {
                realm: realm.clone(),
            })?;
        let lifetime = token_lifetime(t.expires_in);
        tracing::debug!(
            scope = repo.unwrap_or(""),
            expires_in = t.expires_in,
            refresh_after_ms = lifetime.as_millis() as u64,
            "fetched a bearer token"
        );
        Ok(Token {
            value,
            refresh_at: issued(asked, t.issued_at.as_deref()) + lifetime,
        })
    }

    /// The cache slot of `repo`'s tokens.
    fn token_slot(&self, repo: &str) -> TokenSlot {
        let mut slots = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.entry(repo.to_owned()).or_default().clone()
    }

    /// A token for `repo`: the cached one while it is fresh and is not `refused`, else a
    /// new one. Only requests for the same repository wait for each other's fetch.
    async fn token_for(&self, repo: &str, refused: Option<&str>) -> Result<String, TokenError> {
        let slot = self.token_slot(repo);
        let mut cached = slot.lock().await;
        if let Some(t) = cached.as_ref()
            && t.refresh_at > Instant::now()
            && refused != Some(t.value.as_str())
        {
            return Ok(t.value.clone());
        }
        let fresh = self.fetch_token(Some(repo)).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// A request with the Accept list and credentials (a bearer token for `repo`, renewed
    /// when it is `refused`); gives the token it carries.
    async fn build(
        &self,
        call: &Call<'_>,
        refused: Option<&str>,
    ) -> Result<(RequestBuilder, Option<String>), TokenError> {
        let r = self
            .http
            .request(call.method.clone(), self.url(call.path))
            .header(reqwest::header::ACCEPT, ACCEPT_MANIFESTS);
        Ok(match &self.challenge {
            Some(Challenge::Bearer { .. }) => {
                let token = self.token_for(call.repo, refused).await?;
                (r.bearer_auth(&token), Some(token))
            }
            Some(Challenge::Basic) => (self.authed_basic(r), None),
            None => (r, None),
        })
    }

    /// Sends a request, retrying 429, 5xx and connection errors with backoff (honouring
    /// `Retry-After`, at most 300 s) and a 401 under token auth whose challenge names no
    /// error once with a fresh token. Any other answer is returned as it is; `Err` says why
    /// it gave up. Nothing is sent once `deadline` has passed (checked before the rate
    /// limiter and before each retry), nor once the run stops (`still_wanted`) or the
    /// client halted (checked again right before sending).
    async fn send_retrying(
        &self,
        call: &Call<'_>,
        still_wanted: &StillWanted<'_>,
        deadline: Option<Instant>,
    ) -> Result<Response, SendError> {
        let mut at = Attempts {
            delays: self.backoff(Duration::from_secs(30)),
            refused: None,
            renewed: false,
            next: Attempt::First,
            sent: false,
            last: None,
        };
        loop {
            if at.next == Attempt::First && !self.breaker_admits().await {
                return Err(SendError::Unreachable {
                    sent: false,
                    last: STOPPED_ANSWERING.to_owned(),
                });
            }
            let (last, retry_after) =
                match self.attempt(call, &mut at, still_wanted, deadline).await? {
                    Step::Answer(r) => return Ok(r),
                    Step::Again => continue,
                    Step::Retry { last, retry_after } => (last, retry_after),
                };
            let Some(backoff) = at.delays.next() else {
                return Err(SendError::GaveUp {
                    last,
                    attempts: self.opts.max_attempts,
                });
            };
            let wait = retry_after.map_or(backoff, |ra| ra.max(backoff));
            tracing::debug!(repo = call.repo, path = call.path, ?wait, last, "retrying");
            at.last = Some(last);
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt, inside a concurrency slot: the deadline, the circuit breaker, the run
    /// (`still_wanted`) and the rate limiter let it go, or say why not; then it is sent.
    async fn attempt(
        &self,
        call: &Call<'_>,
        at: &mut Attempts,
        still_wanted: &StillWanted<'_>,
        deadline: Option<Instant>,
    ) -> Result<Step, SendError> {
        let Ok(_permit) = self.permits.acquire().await else {
            return Err(SendError::ShutDown);
        };
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(SendError::Stale {
                sent: at.sent,
                last: at.last.take(),
            });
        }
        match self.breaker_state() {
            BreakerState::Open => {
                return Err(SendError::Unreachable {
                    sent: at.sent,
                    last: at
                        .last
                        .take()
                        .unwrap_or_else(|| STOPPED_ANSWERING.to_owned()),
                });
            }
            // Admitted before the failures began, waiting for a slot since: wait again.
            BreakerState::Suspect if at.next == Attempt::First => return Ok(Step::Again),
            _ => {}
        }
        // Checked once a slot is free and before waiting for the rate limiter: a stopping
        // run sends nothing new, retries nothing and waits for no rate slot.
        if self.halted() || !still_wanted() {
            return Err(at.not_sent());
        }
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
        let built = self.build(call, at.refused.take().as_deref()).await;
        // Again right before sending: the rate slot or the token may have taken long.
        if self.halted() || !still_wanted() {
            return Err(at.not_sent());
        }
        at.next = Attempt::Retry;
        let (request, token) = match built {
            Ok(b) => b,
            // The token service failed: nothing was sent to the registry.
            Err(e) => {
                return Ok(Step::Retry {
                    last: e.to_string(),
                    retry_after: None,
                });
            }
        };
        at.sent = true;
        match request.send().await {
            Ok(answer) => {
                self.breaker_count(Contact::Answered);
                Ok(self.judge(&call.method, at, answer, token))
            }
            Err(e) => {
                self.breaker_count(Contact::Failed);
                Ok(Step::Retry {
                    last: TransportError::of(&e).to_string(),
                    retry_after: None,
                })
            }
        }
    }

    /// What an answer means for its request (decided while its slot is still held): a
    /// fresh token once, a halt of the client, a retry, or the answer to return.
    fn judge(
        &self,
        method: &Method,
        at: &mut Attempts,
        answer: Response,
        token: Option<String>,
    ) -> Step {
        if !at.renewed && self.fresh_token_may_help(&answer) {
            at.renewed = true;
            at.refused = token;
            at.last = Some(answer.status().to_string());
            return Step::Again;
        }
        let status = answer.status();
        if halts(method, status) {
            // Before the slot is given back: no request waiting for it goes.
            self.halted.store(true, Ordering::SeqCst);
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Step::Retry {
                last: status.to_string(),
                retry_after: retry_after_of(&answer),
            };
        }
        Step::Answer(answer)
    }

    /// Whether a 401 is worth one retry with a new token: token auth, and a challenge that
    /// names no error (`insufficient_scope` and `invalid_token` are final: the first stops
    /// the run).
    fn fresh_token_may_help(&self, answer: &Response) -> bool {
        answer.status() == StatusCode::UNAUTHORIZED
            && matches!(self.challenge, Some(Challenge::Bearer { .. }))
            && refusal_of(answer).is_none()
    }

    /// `DELETE /v2/<repo>/manifests/<digest>`, sent only if `still_wanted()` once a
    /// concurrency slot and the rate limiter let it go.
    pub async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        still_wanted: &StillWanted<'_>,
        deadline: Instant,
    ) -> DeleteResult {
        let path = format!("/v2/{repo}/manifests/{digest}");
        let call = Call {
            method: Method::DELETE,
            path: &path,
            repo,
        };
        let r = match self
            .send_retrying(&call, still_wanted, Some(deadline))
            .await
        {
            Ok(r) => r,
            Err(SendError::Cancelled) => return DeleteResult::Cancelled,
            Err(SendError::Stale { sent, last }) => return DeleteResult::Stale { sent, last },
            Err(SendError::Unreachable { sent, last }) => {
                return DeleteResult::Unreachable { sent, last };
            }
            Err(e) => return DeleteResult::Failed(e.to_string()),
        };
        tracing::debug!(repo, %digest, status = r.status().as_u16(), "DELETE");
        deleted(repo, r).await
    }

    /// A read request with retries, no deadline, and always wanted.
    async fn send_checked(
        &self,
        method: Method,
        path: &str,
        repo: &str,
    ) -> Result<Response, TagsError> {
        let call = Call { method, path, repo };
        self.send_retrying(&call, &|| true, None)
            .await
            .map_err(TagsError::Send)
    }

    /// The digest the registry serves for `repo:tag` now (`HEAD` with the full Accept
    /// list, `Docker-Content-Digest`); `None` when the registry does not know the tag.
    pub async fn tag_digest(&self, repo: &str, tag: &str) -> Result<Option<Digest>, TagsError> {
        let path = format!("/v2/{repo}/manifests/{tag}");
        let r = self.send_checked(Method::HEAD, &path, repo).await?;
        let Some(r) = found(r, repo, "HEAD", &path)? else {
            return Ok(None);
        };
        r.headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(Digest::parse)
            .map(Some)
            .ok_or(TagsError::NoDigest { path })
    }

    /// Every tag the registry lists for `repo` (`GET /v2/<repo>/tags/list`, paginated).
    pub async fn tag_names(&self, repo: &str) -> Result<Vec<String>, TagsError> {
        #[derive(Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let mut out = Vec::new();
        let mut path = format!("/v2/{repo}/tags/list?n=1000");
        loop {
            let r = self.send_checked(Method::GET, &path, repo).await?;
            // 404: no tags (2.8 answers NAME_UNKNOWN for a repository without tags).
            let Some(r) = found(r, repo, "GET", &path)? else {
                return Ok(out);
            };
            let next = r
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.split_once('<'))
                .and_then(|(_, rest)| rest.split_once('>'))
                .map(|(p, _)| p.to_owned());
            let page: TagList = match r.json().await {
                Ok(p) => p,
                Err(cause) => return Err(TagsError::Undecodable { path, cause }),
            };
            out.extend(page.tags.unwrap_or_default());
            match next {
                Some(p) if p.starts_with("/v2/") => path = p,
                _ => return Ok(out),
            }
        }
    }
}

/// The token service URL for `repo`'s scope (none for the ping).
fn token_url(realm: &str, service: Option<&str>, repo: Option<&str>) -> Result<Url, TokenError> {
    let mut url = Url::parse(realm).map_err(|cause| TokenError::RealmNotAUrl {
        realm: realm.to_owned(),
        cause,
    })?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = service {
            q.append_pair("service", s);
        }
        if let Some(repo) = repo {
            q.append_pair("scope", &format!("repository:{repo}:pull,delete"));
        }
    }
    Ok(url)
}

/// What the answer to a DELETE of a manifest in `repo` says happened.
async fn deleted(repo: &str, r: Response) -> DeleteResult {
    match r.status().as_u16() {
        200 | 202 | 204 => DeleteResult::Deleted,
        404 => {
            // MANIFEST_UNKNOWN: already gone. NAME_UNKNOWN: the registry does not know
            // the repository at all, so its storage is not the one scanned.
            let body = r.text().await.unwrap_or_default();
            if error_codes(&body).iter().any(|c| c == "NAME_UNKNOWN") {
                DeleteResult::Failed(format!(
                    "404 NAME_UNKNOWN: the registry does not know repository {repo}: is REGISTRY_DIR the storage of REGISTRY_URL?"
                ))
            } else {
                DeleteResult::AlreadyGone
            }
        }
        405 => DeleteResult::Fatal(Fatal::DeleteDisabled),
        s @ (401 | 403) => DeleteResult::Fatal(Fatal::Denied {
            repo: repo.to_owned(),
            status: s,
            action: "delete",
            refusal: refusal_of(&r),
        }),
        _ => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            DeleteResult::Failed(format!("{status}: {}", body.trim()))
        }
    }
}

/// A read's answer: `Some` on 200, `None` on 404, a fatal error on 401/403 (the
/// credentials), a failure for this repository otherwise.
fn found(
    r: Response,
    repo: &str,
    method: &'static str,
    path: &str,
) -> Result<Option<Response>, TagsError> {
    match r.status().as_u16() {
        200 => Ok(Some(r)),
        404 => Ok(None),
        s @ (401 | 403) => Err(TagsError::Fatal(Fatal::Denied {
            repo: repo.to_owned(),
            status: s,
            action: "pull",
            refusal: refusal_of(&r),
        })),
        _ => Err(TagsError::Status {
            method,
            path: path.to_owned(),
            status: r.status(),
        }),
    }
}

/// An answer after which every further request fails the same way: 401 or 403 (the
/// credentials), 405 to a DELETE (deletes disabled).
fn halts(method: &Method, status: StatusCode) -> bool {
    matches!(status.as_u16(), 401 | 403)
        || (status == StatusCode::METHOD_NOT_ALLOWED && *method == Method::DELETE)
}

/// Why the registry's challenge says a token was refused, if it says.
fn refusal_of(r: &Response) -> Option<Refusal> {
    r.headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_refusal)
}

/// The `errors[].code` values of a registry error body.
fn error_codes(body: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct Errors {
        errors: Option<Vec<Code>>,
    }
    #[derive(Deserialize)]
    struct Code {
        code: Option<String>,
    }
    serde_json::from_str::<Errors>(body)
        .ok()
        .and_then(|e| e.errors)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.code)
        .collect()
}

/// `Retry-After` in seconds or as an HTTP date, capped at 5 minutes.
fn retry_after_of(r: &Response) -> Option<Duration> {
    let v = r
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(d.min(Duration::from_secs(300)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_before_expires_in_whatever_its_length() {
        let ms = |secs: Option<u64>| token_lifetime(secs).as_millis();
        assert_eq!(ms(Some(2)), 1000, "no 10 s floor: 2 s tokens are used 1 s");
        assert_eq!(ms(Some(1)), 500);
        assert_eq!(
            ms(Some(0)),
            0,
            "a token said to expire at once is not reused"
        );
        assert_eq!(ms(Some(4)), 3000, "a second early");
        assert_eq!(ms(Some(10)), 8000, "a fifth early");
        assert_eq!(ms(Some(300)), 270_000, "at most 30 s early");
        let asked = Instant::now() - Duration::from_secs(5);
        assert!(
            issued(asked, None) > asked + Duration::from_secs(4),
            "on arrival"
        );
        let ago = (chrono::Utc::now() - chrono::TimeDelta::seconds(2)).to_rfc3339();
        let at = issued(asked, Some(&ago));
        assert!(
            at > asked + Duration::from_millis(2500) && at < asked + Duration::from_millis(3500)
        );
        let lagging = (chrono::Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339();
        assert_eq!(
            issued(asked, Some(&lagging)),
            asked,
            "never before it was asked for"
        );
        let ahead = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
        assert!(
            issued(asked, Some(&ahead)) > asked + Duration::from_secs(4),
            "not in the future"
        );
        assert_eq!(ms(None), 48_000, "60 s when the token service says nothing");
    }

    /// A local port nothing listens on (connections to it are refused).
    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    fn options(url: String, max_attempts: usize) -> ClientOptions {
        ClientOptions {
            url,
            credentials: None,
            insecure: false,
            ca_cert: None,
            concurrency: 1,
            rate: None,
            max_attempts,
            timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_and_gets_no_certificate_hint() {
        let url = format!("http://127.0.0.1:{}", free_port());
        let started = Instant::now();
        let Err(e) = RegistryClient::connect(options(url, 2)).await else {
            panic!("nothing listens there");
        };
        let ConnectError::Unreachable { cause, .. } = &e else {
            panic!("not a connection failure: {e}");
        };
        assert_eq!(cause.kind, TransportKind::Other, "{e}");
        assert!(!e.to_string().contains("SELF_SIGNED_CERT"), "{e}");
        // Two attempts with a backoff of at least 200 ms between them.
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "not retried: {e}"
        );
    }

    /// A TLS server (`openssl s_server`) with a self-signed certificate for 127.0.0.1,
    /// killed on drop.
    struct UntrustedTls {
        server: std::process::Child,
        port: u16,
        _dir: tempfile::TempDir,
    }

    impl UntrustedTls {
        fn start() -> UntrustedTls {
            use std::process::{Command, Stdio};
            let dir = tempfile::tempdir().expect("tempdir");
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let made = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
                .args(["-subj", "/CN=127.0.0.1", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .stderr(Stdio::null())
                .status()
                .expect("openssl req");
            assert!(made.success(), "openssl req failed");
            let port = free_port();
            let server = Command::new("openssl")
                .args(["s_server", "-www", "-quiet", "-accept"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("-cert")
                .arg(&cert)
                .arg("-key")
                .arg(&key)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("openssl s_server");
            let up = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    up.elapsed() < Duration::from_secs(10),
                    "s_server never listened"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            UntrustedTls {
                server,
                port,
                _dir: dir,
            }
        }
    }

    impl Drop for UntrustedTls {
        fn drop(&mut self) {
            let _ = self.server.kill();
            let _ = self.server.wait();
        }
    }

    /// Forwards every connection to `port` and counts them; gives its own port.
    fn counting_proxy(port: u16, count: Arc<std::sync::atomic::AtomicUsize>) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let own = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for down in listener.incoming().map_while(Result::ok) {
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
                if let (Ok(d2), Ok(u2)) = (down.try_clone(), up.try_clone()) {
                    pipe(down, u2);
                    pipe(up, d2);
                }
            }
        });
        own
    }

    #[tokio::test]
    async fn a_refused_certificate_is_not_retried_and_gets_the_hint() {
        let tls = UntrustedTls::start();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let port = counting_proxy(tls.port, count.clone());
        let url = format!("https://127.0.0.1:{port}");
        let Err(e) = RegistryClient::connect(options(url, 3)).await else {
            panic!("a self-signed certificate is not trusted");
        };
        let ConnectError::Unreachable { cause, .. } = &e else {
            panic!("not a connection failure: {e}");
        };
        assert_eq!(cause.kind, TransportKind::Certificate, "{e}");
        assert!(
            e.to_string().ends_with(
                " (a self-signed certificate? set SELF_SIGNED_CERT=true or --ca-cert FILE)"
            ),
            "{e}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 1, "retried: {e}");
    }
}
