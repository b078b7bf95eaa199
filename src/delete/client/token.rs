//! Bearer tokens: one per repository scope, fetched from the realm the registry's
//! challenge names, renewed before they expire, fetched afresh when refused.

use super::*;

#[derive(Deserialize)]
pub(super) struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
    issued_at: Option<String>,
}

/// A bearer token and when to fetch the next one. Never printed.
pub(super) struct Token {
    value: String,
    refresh_at: Instant,
}

/// One scope's cached token, locked only by the requests of that scope (while one of them
/// fetches it, the others wait for that fetch instead of fetching too).
pub(super) type TokenSlot = Arc<tokio::sync::Mutex<Option<Token>>>;

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
pub(super) fn issued(asked: Instant, issued_at: Option<&str>) -> Instant {
    let received = Instant::now();
    let Some(at) = issued_at.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()) else {
        return received;
    };
    let age = (chrono::Utc::now() - at.with_timezone(&chrono::Utc))
        .to_std()
        .unwrap_or(Duration::ZERO);
    received.checked_sub(age).unwrap_or(asked).max(asked)
}

impl RegistryClient {
    /// Fetches a token for `repository:<repo>:pull,delete` (or no scope for the ping).
    pub(super) async fn fetch_token(&self, repo: Option<&str>) -> Result<Token, TokenError> {
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
    pub(super) fn token_slot(&self, repo: &str) -> TokenSlot {
        let mut slots = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.entry(repo.to_owned()).or_default().clone()
    }

    /// A token for `repo`: the cached one while it is fresh and is not `refused`, else a
    /// new one. Only requests for the same repository wait for each other's fetch.
    pub(super) async fn token_for(
        &self,
        repo: &str,
        refused: Option<&str>,
    ) -> Result<String, TokenError> {
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
}

/// The token service URL for `repo`'s scope (none for the ping).
pub(super) fn token_url(
    realm: &str,
    service: Option<&str>,
    repo: Option<&str>,
) -> Result<Url, TokenError> {
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
