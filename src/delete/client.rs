//! Registry HTTP client: TLS, basic and bearer-token auth, a rate limiter without bursts,
//! retries with backoff, a circuit breaker for a registry that stopped answering. It sends
//! what the deleter asks for; it decides nothing about which manifest goes.

use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::auth::{Challenge, Credentials, Refusal, parse_challenge, parse_refusal};
use crate::digest::Digest;
use crate::meta::parse::ACCEPT_MANIFESTS;

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

/// Why the run must stop: every further request would fail the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fatal {
    /// 405: the registry has deletes disabled.
    DeleteDisabled,
    /// 401/403 for a repository.
    Denied {
        /// The repository.
        repo: String,
        /// 401 or 403.
        status: u16,
        /// What the request needed: `delete` for a DELETE, `pull` for a read.
        action: &'static str,
        /// Why, as the registry's Bearer challenge says (`insufficient_scope`, ...).
        refusal: Option<Refusal>,
    },
}

impl std::fmt::Display for Fatal {
    /// The status as a person reads it: `405 Method Not Allowed`, `401 Unauthorized`, with
    /// the challenge's error when there is one: `401 Unauthorized (insufficient_scope)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (status, refusal) = match self {
            Fatal::DeleteDisabled => return f.write_str("405 Method Not Allowed"),
            Fatal::Denied {
                status, refusal, ..
            } => (*status, refusal),
        };
        match status {
            401 => f.write_str("401 Unauthorized")?,
            403 => f.write_str("403 Forbidden")?,
            s => write!(f, "{s}")?,
        }
        match refusal {
            Some(r) => write!(f, " ({})", r.code()),
            None => Ok(()),
        }
    }
}

/// The outcome of one DELETE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteResult {
    /// 202: deleted.
    Deleted,
    /// 404: already gone (another run, or a concurrent delete).
    AlreadyGone,
    /// Failed after retries, or a non-retryable error; the text says how.
    Failed(String),
    /// Stop the whole run.
    Fatal(Fatal),
    /// Not sent: the run stopped (a signal, or an answer that halted the client) before it
    /// could go.
    Cancelled,
    /// The registry stopped answering (connections fail again and again); nothing more is
    /// sent to it.
    Unreachable {
        /// Whether an attempt of this delete was sent (it counts as attempted and failed).
        sent: bool,
        /// The last connection error.
        last: String,
    },
    /// Not sent: the repository's re-verification is older than the deadline; re-verify,
    /// then send again.
    Stale {
        /// Whether an earlier attempt of this delete was sent (it counts as attempted).
        sent: bool,
        /// The answer of that attempt.
        last: Option<String>,
    },
}

/// Decides, once a request may go, whether it still should (false once the run is
/// stopping). Called with `true` for a request's first attempt and `false` for a retry,
/// once a concurrency slot is free and again right before the request is sent.
pub type Gate<'a> = dyn Fn(bool) -> bool + Send + Sync + 'a;

/// Connection failures in a row (over all requests) after which the registry counts as gone.
const BREAKER_FAILURES: usize = 10;
/// ... provided the failures went on for at least this long (a restart is shorter).
const BREAKER_SECONDS: Duration = Duration::from_secs(10);

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

/// Why `send_retrying` gave up.
enum SendError {
    Cancelled,
    Failed(String),
    /// The deadline passed before the request (or a retry of it) could go.
    Stale {
        sent: bool,
        last: Option<String>,
    },
    /// The circuit breaker is open: the registry stopped answering.
    Unreachable {
        sent: bool,
        last: String,
    },
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

impl RegistryClient {
    /// Builds the client and checks `/v2/`: reachable, a registry, credentials accepted.
    pub async fn connect(opts: ClientOptions) -> Result<RegistryClient, String> {
        let base = Url::parse(&opts.url)
            .map_err(|e| format!("REGISTRY_URL {:?} is not a URL: {e}", opts.url))?;
        let mut b = Client::builder()
            .timeout(opts.timeout)
            .pool_max_idle_per_host(opts.concurrency.max(1))
            .user_agent(concat!("regsweep/", env!("CARGO_PKG_VERSION")));
        if opts.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &opts.ca_cert {
            let pem =
                std::fs::read(path).map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("--ca-cert {}: not a PEM certificate: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "--ca-cert {}: no certificate in it",
                    path.display()
                ));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
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
    fn breaker_count(&self, connected: bool) {
        if let Ok(mut b) = self.breaker.lock() {
            if connected {
                b.failures = 0;
                b.since = None;
                return;
            }
            b.failures += 1;
            let since = *b.since.get_or_insert_with(Instant::now);
            if b.failures >= BREAKER_FAILURES && since.elapsed() >= BREAKER_SECONDS {
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    fn who(&self) -> String {
        self.opts.credentials.as_ref().map_or_else(
            || "no credentials (set REGISTRY_AUTH=user:password)".to_owned(),
            Credentials::describe,
        )
    }

    /// `GET /v2/`, with basic credentials when `authed`; errors say what to check.
    async fn get_v2(&self, authed: bool) -> Result<Response, String> {
        let url = self.url("/v2/");
        let mut r = self.http.get(&url);
        if authed {
            r = self.authed_basic(r);
        }
        r.send().await.map_err(|e| {
            let text = describe_error(&e);
            let hint = if text.contains("certificate") {
                " (a self-signed certificate? set SELF_SIGNED_CERT=true or --ca-cert FILE)"
            } else {
                ""
            };
            format!("cannot reach the registry at {url}: {text}{hint}")
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

    async fn ping(&mut self) -> Result<(), String> {
        // The first contact retries what a retry can cure (5xx, 429, refused connections).
        let mut delays = self.backoff(Duration::from_secs(10));
        let r = loop {
            let attempt = self.get_v2(false).await;
            let retry = match &attempt {
                Ok(r) => {
                    r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS
                }
                Err(e) => !e.contains("certificate"),
            };
            match delays.next() {
                Some(d) if retry => tokio::time::sleep(d).await,
                _ => break attempt?,
            }
        };
        match r.status() {
            s if s.is_success() => return Ok(()),
            StatusCode::UNAUTHORIZED => {}
            s => {
                return Err(format!(
                    "GET {} answered {s}: is this a Docker Registry v2?",
                    self.url("/v2/")
                ));
            }
        }
        let challenge = r
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
            .ok_or_else(|| {
                format!(
                    "GET {} answered 401 without a usable WWW-Authenticate challenge",
                    self.url("/v2/")
                )
            })?;
        if self.opts.credentials.is_none() {
            return Err(format!(
                "the registry at {} requires authentication: set REGISTRY_AUTH=user:password",
                self.base
            ));
        }
        self.challenge = Some(challenge.clone());
        match challenge {
            Challenge::Basic => {
                let r = self.get_v2(true).await?;
                if !r.status().is_success() {
                    return Err(format!(
                        "the registry rejected {} on /v2/ ({})",
                        self.who(),
                        r.status()
                    ));
                }
            }
            Challenge::Bearer { .. } => {
                self.fetch_token(None).await?;
            }
        }
        Ok(())
    }

    fn authed_basic(&self, r: RequestBuilder) -> RequestBuilder {
        match &self.opts.credentials {
            Some(c) => r.basic_auth(&c.user, Some(c.password.expose_secret())),
            None => r,
        }
    }

    /// Fetches a token for `repository:<repo>:pull,delete` (or no scope for the ping).
    async fn fetch_token(&self, repo: Option<&str>) -> Result<Token, String> {
        let Some(Challenge::Bearer { realm, service }) = &self.challenge else {
            return Err("no bearer challenge".to_owned());
        };
        let mut url =
            Url::parse(realm).map_err(|e| format!("token realm {realm:?} is not a URL: {e}"))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            if let Some(repo) = repo {
                q.append_pair("scope", &format!("repository:{repo}:pull,delete"));
            }
        }
        let asked = Instant::now();
        let r = self
            .authed_basic(self.http.get(url))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot reach the token service {realm}: {}",
                    describe_error(&e)
                )
            })?;
        if !r.status().is_success() {
            return Err(format!(
                "the token service {realm} rejected {} for {} ({})",
                self.who(),
                repo.map_or_else(|| "the registry".to_owned(), |r| format!("repository {r}")),
                r.status()
            ));
        }
        let t: TokenResponse = r
            .json()
            .await
            .map_err(|e| format!("token service {realm} answered no token: {e}"))?;
        let value = t
            .token
            .or(t.access_token)
            .ok_or_else(|| format!("token service {realm} answered no token"))?;
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
    async fn token_for(&self, repo: &str, refused: Option<&str>) -> Result<String, String> {
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
        method: Method,
        path: &str,
        repo: &str,
        refused: Option<&str>,
    ) -> Result<(RequestBuilder, Option<String>), String> {
        let r = self
            .http
            .request(method, self.url(path))
            .header(reqwest::header::ACCEPT, ACCEPT_MANIFESTS);
        Ok(match &self.challenge {
            Some(Challenge::Bearer { .. }) => {
                let token = self.token_for(repo, refused).await?;
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
    /// limiter and before each retry), nor once the run stops (`gate`) or the client halted
    /// (checked again right before sending).
    async fn send_retrying(
        &self,
        method: Method,
        path: &str,
        repo: &str,
        gate: &Gate<'_>,
        deadline: Option<Instant>,
    ) -> Result<Response, SendError> {
        let mut delays = self.backoff(Duration::from_secs(30));
        let mut refused: Option<String> = None;
        let mut renewed = false;
        let mut first = true;
        let mut sent = false;
        let mut last: Option<String> = None;
        loop {
            if first && !self.breaker_admits().await {
                return Err(SendError::Unreachable {
                    sent: false,
                    last: "the registry stopped answering".to_owned(),
                });
            }
            let outcome = {
                let Ok(_permit) = self.permits.acquire().await else {
                    return Err(SendError::Failed("client shut down".to_owned()));
                };
                if deadline.is_some_and(|d| Instant::now() > d) {
                    return Err(SendError::Stale { sent, last });
                }
                match self.breaker_state() {
                    BreakerState::Open => {
                        return Err(SendError::Unreachable {
                            sent,
                            last: last
                                .unwrap_or_else(|| "the registry stopped answering".to_owned()),
                        });
                    }
                    // Admitted before the failures began, waiting for a slot since: wait again.
                    BreakerState::Suspect if first => continue,
                    _ => {}
                }
                // Checked once a slot is free and before waiting for the rate limiter: a
                // stopping run sends nothing new, retries nothing and waits for no rate slot.
                if self.halted() || !gate(first) {
                    return Err(not_sent(sent, last));
                }
                if let Some(l) = &self.limiter {
                    l.until_ready().await;
                }
                let built = self
                    .build(method.clone(), path, repo, refused.take().as_deref())
                    .await;
                // Again right before sending: the rate slot or the token may have taken long.
                if self.halted() || !gate(first) {
                    return Err(not_sent(sent, last));
                }
                first = false;
                match built {
                    // The token service failed: nothing was sent to the registry.
                    Err(e) => Err(e),
                    Ok((request, token)) => {
                        sent = true;
                        let r = request.send().await.map_err(|e| describe_error(&e));
                        self.breaker_count(r.is_ok());
                        if let Ok(answer) = &r
                            && self.renew_token(answer, renewed)
                        {
                            renewed = true;
                            refused = token;
                            last = Some(answer.status().to_string());
                            continue;
                        }
                        if let Ok(answer) = &r
                            && halts(&method, answer.status())
                        {
                            // Before the slot is given back: no request waiting for it goes.
                            self.halted.store(true, Ordering::SeqCst);
                        }
                        r
                    }
                }
            };
            let (last_now, retry_after) = match outcome {
                Ok(r)
                    if r.status() == StatusCode::TOO_MANY_REQUESTS
                        || r.status().is_server_error() =>
                {
                    (r.status().to_string(), retry_after_of(&r))
                }
                Ok(r) => return Ok(r),
                Err(e) => (e, None),
            };
            let Some(backoff) = delays.next() else {
                return Err(SendError::Failed(format!(
                    "{last_now} (gave up after {} attempts)",
                    self.opts.max_attempts
                )));
            };
            let wait = retry_after.map_or(backoff, |ra| ra.max(backoff));
            tracing::debug!(repo, path, ?wait, last = last_now, "retrying");
            last = Some(last_now);
            tokio::time::sleep(wait).await;
        }
    }

    /// Whether a 401 is worth one retry with a new token: token auth, not renewed yet, and
    /// a challenge that names no error (`insufficient_scope` and `invalid_token` are final:
    /// the first stops the run).
    fn renew_token(&self, answer: &Response, renewed: bool) -> bool {
        answer.status() == StatusCode::UNAUTHORIZED
            && !renewed
            && matches!(self.challenge, Some(Challenge::Bearer { .. }))
            && refusal_of(answer).is_none()
    }

    /// `DELETE /v2/<repo>/manifests/<digest>`, sent only if `gate()` still allows it once a
    /// concurrency slot and the rate limiter let it go.
    pub async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        gate: &Gate<'_>,
        deadline: Instant,
    ) -> DeleteResult {
        let path = format!("/v2/{repo}/manifests/{digest}");
        let r = match self
            .send_retrying(Method::DELETE, &path, repo, gate, Some(deadline))
            .await
        {
            Ok(r) => r,
            Err(SendError::Cancelled) => return DeleteResult::Cancelled,
            Err(SendError::Failed(e)) => return DeleteResult::Failed(e),
            Err(SendError::Stale { sent, last }) => return DeleteResult::Stale { sent, last },
            Err(SendError::Unreachable { sent, last }) => {
                return DeleteResult::Unreachable { sent, last };
            }
        };
        tracing::debug!(repo, %digest, status = r.status().as_u16(), "DELETE");
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

    /// A read request with retries and no gate or deadline.
    async fn send_checked(
        &self,
        method: Method,
        path: &str,
        repo: &str,
    ) -> Result<Response, TagsError> {
        match self
            .send_retrying(method, path, repo, &|_| true, None)
            .await
        {
            Ok(r) => Ok(r),
            Err(SendError::Cancelled) => Err(TagsError::Failed("cancelled".to_owned())),
            Err(SendError::Failed(e)) => Err(TagsError::Failed(e)),
            Err(SendError::Stale { .. }) => Err(TagsError::Failed("deadline passed".to_owned())),
            Err(SendError::Unreachable { last, .. }) => Err(TagsError::Failed(format!(
                "the registry stopped answering ({last})"
            ))),
        }
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
            .ok_or_else(|| {
                TagsError::Failed(format!("HEAD {path} answered no Docker-Content-Digest"))
            })
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
            let page: TagList = r
                .json()
                .await
                .map_err(|e| TagsError::Failed(format!("GET {path}: {e}")))?;
            out.extend(page.tags.unwrap_or_default());
            match next {
                Some(p) if p.starts_with("/v2/") => path = p,
                _ => return Ok(out),
            }
        }
    }
}

/// A read's answer: `Some` on 200, `None` on 404, a fatal error on 401/403 (the
/// credentials), a failure for this repository otherwise.
fn found(r: Response, repo: &str, method: &str, path: &str) -> Result<Option<Response>, TagsError> {
    match r.status().as_u16() {
        200 => Ok(Some(r)),
        404 => Ok(None),
        s @ (401 | 403) => Err(TagsError::Fatal(Fatal::Denied {
            repo: repo.to_owned(),
            status: s,
            action: "pull",
            refusal: refusal_of(&r),
        })),
        _ => Err(TagsError::Failed(format!(
            "{method} {path} answered {}",
            r.status()
        ))),
    }
}

/// Why nothing more is sent for a request the run no longer wants: an earlier attempt's
/// answer when one was sent, else not sent at all.
fn not_sent(sent: bool, last: Option<String>) -> SendError {
    match last {
        Some(l) if sent => SendError::Failed(format!("{l} (not retried: the run is stopping)")),
        _ => SendError::Cancelled,
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

/// Why a tag listing failed.
#[derive(Clone, Debug)]
pub enum TagsError {
    /// Stop the run.
    Fatal(Fatal),
    /// This repository only.
    Failed(String),
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
}
