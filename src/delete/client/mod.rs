//! Registry HTTP client: TLS, basic and bearer-token auth, a rate limiter without bursts,
//! retries with backoff, a circuit breaker for a registry that stopped answering. It sends
//! what the deleter asks for; it decides nothing about which manifest goes. Its parts:
//! `errors` (what went wrong, by kind), `token` (bearer tokens per scope), `send` (the
//! rate limiter, retries and the circuit breaker around each request).

mod errors;
mod send;
#[cfg(test)]
mod tests;
mod token;

pub use errors::{ConnectError, SendError, TagsError, TokenError, TransportError, TransportKind};
pub use send::StillWanted;
pub use token::token_lifetime;

use send::{Breaker, V2As};
use token::TokenSlot;

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
}
