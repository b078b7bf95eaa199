//! A token issuer for the registry's `auth.token`, written for the test suite.
//! It signs tokens with a key made for the test and serves on 127.0.0.1 only.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The registry's allowance for clock skew on a token's `exp` (distribution's
/// `token.Leeway`, 60 s in 2.8): the issuer subtracts it, so that the registry refuses a
/// token once its stated `expires_in` (plus under a second) has passed.
const REGISTRY_LEEWAY: i64 = 60;

/// A user the issuer knows.
#[derive(Clone, Debug)]
pub struct TokenUser {
    /// Name (also the token's `sub`).
    pub name: String,
    /// Password.
    pub password: String,
    /// Actions granted on any repository; `None`: every action asked for.
    pub actions: Option<Vec<String>>,
}

impl TokenUser {
    /// A user granted every action asked for.
    pub fn full(name: &str, password: &str) -> TokenUser {
        TokenUser {
            name: name.to_owned(),
            password: password.to_owned(),
            actions: None,
        }
    }

    /// A user granted only `pull`.
    pub fn pull_only(name: &str, password: &str) -> TokenUser {
        TokenUser {
            actions: Some(vec!["pull".to_owned()]),
            ..TokenUser::full(name, password)
        }
    }
}

/// How the issuer behaves.
#[derive(Clone, Debug)]
pub struct TokenOptions {
    /// Who may ask, and what each is granted.
    pub users: Vec<TokenUser>,
    /// The `expires_in` of every token (the registry honours it, see [`REGISTRY_LEEWAY`]).
    pub expires_in: u64,
    /// How long each token request takes to answer.
    pub delay: Duration,
    /// Sign with a key the registry does not trust (as after a key rotation): the registry
    /// refuses every token with `error="invalid_token"`.
    pub untrusted: bool,
}

impl TokenOptions {
    /// One user granted everything, 300 s tokens, answered at once.
    pub fn one(user: &str, password: &str) -> TokenOptions {
        TokenOptions {
            users: vec![TokenUser::full(user, password)],
            expires_in: 300,
            delay: Duration::ZERO,
            untrusted: false,
        }
    }
}

/// One token request the issuer answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The user it authenticated (`None`: refused).
    pub user: Option<String>,
    /// The scope asked for, if any.
    pub scope: Option<String>,
    /// When it arrived.
    pub arrived: Instant,
    /// When it was answered.
    pub answered: Instant,
}

/// A token issuer for the registry's `auth.token`: checks basic credentials, signs RS256
/// JWTs whose x5c is the certificate the registry trusts, and records the scopes asked for.
pub struct TokenServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Every scope asked for.
    pub scopes: Arc<Mutex<Vec<String>>>,
    /// Every token issued.
    pub issued: Arc<Mutex<Vec<String>>>,
    /// Every request answered, in the order answered.
    pub requests: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenServer {
    /// The requests answered so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().expect("lock").clone()
    }

    /// How many requests asked for `scope`.
    pub fn count(&self, scope: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.scope.as_deref() == Some(scope))
            .count()
    }
}

/// What the issuer shares with its request threads.
struct Issuer {
    x5c: String,
    key: jsonwebtoken::EncodingKey,
    opts: TokenOptions,
    scopes: Arc<Mutex<Vec<String>>>,
    issued: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

/// Starts the issuer; it accepts only `user`:`password`.
pub fn start_token_server(
    cert_pem: &str,
    key_pem: &[u8],
    user: &str,
    password: &str,
) -> TokenServer {
    start_token_server_with(cert_pem, key_pem, TokenOptions::one(user, password))
}

/// Starts the issuer with `opts`; each request is answered on a thread of its own (after
/// `opts.delay`), so slow answers overlap as a real token service's do.
pub fn start_token_server_with(cert_pem: &str, key_pem: &[u8], opts: TokenOptions) -> TokenServer {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("token server");
    let port = server.server_addr().to_ip().expect("ip addr").port();
    let issuer = Arc::new(Issuer {
        x5c: cert_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect(),
        key: jsonwebtoken::EncodingKey::from_rsa_pem(key_pem).expect("rsa key"),
        opts,
        scopes: Arc::new(Mutex::new(Vec::new())),
        issued: Arc::new(Mutex::new(Vec::new())),
        requests: Arc::new(Mutex::new(Vec::new())),
    });
    let handle = TokenServer {
        port,
        scopes: issuer.scopes.clone(),
        issued: issuer.issued.clone(),
        requests: issuer.requests.clone(),
    };
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let issuer = issuer.clone();
            std::thread::spawn(move || issuer.answer(req));
        }
    });
    handle
}

impl Issuer {
    /// The user whose basic credentials the request carries, if any is known.
    fn user_of(&self, req: &tiny_http::Request) -> Option<&TokenUser> {
        use base64::Engine;
        let auth = req
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))?
            .value
            .to_string();
        self.opts.users.iter().find(|u| {
            auth == format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", u.name, u.password))
            )
        })
    }

    /// Answers one token request: 401 for unknown credentials, else a signed token granting
    /// the actions asked for that the user has.
    fn answer(&self, req: tiny_http::Request) {
        let arrived = Instant::now();
        std::thread::sleep(self.opts.delay);
        let url = reqwest::Url::parse(&format!("http://x{}", req.url())).expect("url");
        let scope = url
            .query_pairs()
            .find(|(k, _)| k == "scope")
            .map(|(_, v)| v.to_string());
        let user = self.user_of(&req).cloned();
        let response = match &user {
            None => tiny_http::Response::from_string("denied").with_status_code(401),
            Some(u) => tiny_http::Response::from_string(self.token(u, scope.as_deref())),
        };
        if let Some(s) = &scope {
            self.scopes.lock().expect("lock").push(s.clone());
        }
        self.requests.lock().expect("lock").push(TokenRequest {
            user: user.map(|u| u.name),
            scope,
            arrived,
            answered: Instant::now(),
        });
        let _ = req.respond(response);
    }

    /// The token response body for `user` asking for `scope`.
    fn token(&self, user: &TokenUser, scope: Option<&str>) -> String {
        let mut access = Vec::new();
        if let Some(v) = scope {
            let (kind, rest) = v.split_once(':').unwrap_or(("", ""));
            let (name, actions) = rest.rsplit_once(':').unwrap_or(("", ""));
            let granted: Vec<&str> = actions
                .split(',')
                .filter(|a| {
                    user.actions
                        .as_ref()
                        .is_none_or(|g| g.iter().any(|x| x == a))
                })
                .collect();
            access.push(serde_json::json!({"type": kind, "name": name, "actions": granted}));
        }
        let now = chrono::Utc::now().timestamp();
        // Whole seconds: valid from now for expires_in plus the part of this second left.
        let exp = now + 1 + self.opts.expires_in as i64 - REGISTRY_LEEWAY;
        let claims = serde_json::json!({"iss": "regsweep-test-issuer", "sub": user.name, "aud": "regsweep-test",
            "exp": exp, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", rand_jti()), "access": access});
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.x5c = Some(vec![self.x5c.clone()]);
        let token = jsonwebtoken::encode(&header, &claims, &self.key).expect("sign");
        self.issued.lock().expect("lock").push(token.clone());
        serde_json::json!({"token": token, "expires_in": self.opts.expires_in}).to_string()
    }
}

/// A token id unique within the test process.
fn rand_jti() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// Restarts `reg` with token auth issued by a new [`TokenServer`] for `user`:`password`.
pub fn token_registry(reg: &super::Registry, user: &str, password: &str) -> TokenServer {
    token_registry_with(reg, TokenOptions::one(user, password))
}

/// Restarts `reg` with token auth issued by a new [`TokenServer`] with `opts`.
pub fn token_registry_with(reg: &super::Registry, opts: TokenOptions) -> TokenServer {
    let (cert, key) = super::self_signed_cert(reg.dir.path(), "regsweep-test-issuer");
    let (signing_cert, signing_key) = if opts.untrusted {
        let other = reg.dir.path().join("untrusted-issuer");
        std::fs::create_dir_all(&other).expect("mkdir");
        super::self_signed_cert(&other, "regsweep-test-issuer")
    } else {
        (cert.clone(), key)
    };
    let tokens = start_token_server_with(
        &std::fs::read_to_string(&signing_cert).expect("cert"),
        &std::fs::read(&signing_key).expect("key"),
        opts,
    );
    let extra = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: regsweep-test\n    issuer: regsweep-test-issuer\n    rootcertbundle: {}\n",
        tokens.port,
        cert.display()
    );
    reg.restart_with(&extra, &[]);
    tokens
}
