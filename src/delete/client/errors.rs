//! What went wrong talking to the registry, by kind: the retry loop and the deleter
//! decide on these kinds, never on an error's text; `Display` is the message people read.

use super::*;

/// Why a URL did not parse.
pub(super) type UrlError = <Url as std::str::FromStr>::Err;

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
    pub(super) fn of(e: &reqwest::Error) -> TransportError {
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
    pub(super) fn hint(&self) -> &'static str {
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
pub(super) fn is_certificate_failure(e: &(dyn std::error::Error + 'static)) -> bool {
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
pub(super) fn describe_error(e: &reqwest::Error) -> String {
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
