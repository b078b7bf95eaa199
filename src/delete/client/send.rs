//! Sending a request: the concurrency slots, the rate limiter, retries with backoff on
//! 429, 5xx and lost connections, the circuit breaker for a registry that stopped
//! answering, and the requests the deleter makes (DELETE, tag lookups).

use super::*;

/// Decides, once a request may go, whether the run still wants it sent (false once the
/// run is stopping); asked once a concurrency slot is free and again right before sending.
pub type StillWanted<'a> = dyn Fn() -> bool + Send + Sync + 'a;

/// Connection failures in a row (over all requests) after which the registry counts as gone.
pub(super) const BREAKER_FAILURES: usize = 10;
/// ... provided the failures went on for at least this long (a restart is shorter).
pub(super) const BREAKER_MIN_OUTAGE: Duration = Duration::from_secs(10);
/// The last error of a request the open circuit breaker held back.
pub(super) const STOPPED_ANSWERING: &str = "the registry stopped answering";

/// The circuit breaker: consecutive connection failures, and since when.
#[derive(Default)]
pub(super) struct Breaker {
    failures: usize,
    since: Option<Instant>,
    open: bool,
}

/// The circuit breaker's state for the next request.
pub(super) enum BreakerState {
    /// Answers come: send.
    Closed,
    /// Connections keep failing: admit nothing new, let retries find out.
    Suspect,
    /// The registry stopped answering: send nothing.
    Open,
}

/// What one request got, for the circuit breaker.
#[derive(Clone, Copy)]
pub(super) enum Contact {
    /// An answer, whatever its status.
    Answered,
    /// No answer: the connection failed.
    Failed,
}

/// How `/v2/` is asked.
#[derive(Clone, Copy)]
pub(super) enum V2As {
    /// Without credentials (to learn the challenge).
    Anonymous,
    /// With the basic credentials.
    BasicAuth,
}

/// Which attempt of a request comes next.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempt {
    /// The first: the circuit breaker must admit it.
    First,
    /// A retry of one admitted before.
    Retry,
}

/// One request to send: method, path and the repository whose token it carries.
pub(super) struct Call<'a> {
    method: Method,
    path: &'a str,
    repo: &'a str,
}

/// Where one request's attempts stand.
pub(super) struct Attempts {
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
pub(super) enum Step {
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

impl RegistryClient {
    /// Where the circuit breaker stands.
    pub(super) fn breaker_state(&self) -> BreakerState {
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
    pub(super) async fn breaker_admits(&self) -> bool {
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
    pub(super) fn breaker_count(&self, contact: Contact) {
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

    /// A request with the Accept list and credentials (a bearer token for `repo`, renewed
    /// when it is `refused`); gives the token it carries.
    pub(super) async fn build(
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
    pub(super) async fn send_retrying(
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
    pub(super) async fn attempt(
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
    pub(super) fn judge(
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
    pub(super) fn fresh_token_may_help(&self, answer: &Response) -> bool {
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
    pub(super) async fn send_checked(
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

/// What the answer to a DELETE of a manifest in `repo` says happened.
pub(super) async fn deleted(repo: &str, r: Response) -> DeleteResult {
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
pub(super) fn found(
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
pub(super) fn halts(method: &Method, status: StatusCode) -> bool {
    matches!(status.as_u16(), 401 | 403)
        || (status == StatusCode::METHOD_NOT_ALLOWED && *method == Method::DELETE)
}

/// Why the registry's challenge says a token was refused, if it says.
pub(super) fn refusal_of(r: &Response) -> Option<Refusal> {
    r.headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_refusal)
}

/// The `errors[].code` values of a registry error body.
pub(super) fn error_codes(body: &str) -> Vec<String> {
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
pub(super) fn retry_after_of(r: &Response) -> Option<Duration> {
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
