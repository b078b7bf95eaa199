//! A token issuer for the registry's `auth.token`, written for the test suite.
//! It signs tokens with a key made for the test and serves on 127.0.0.1 only.

use std::sync::{Arc, Mutex};

/// A token issuer for the registry's `auth.token`: checks basic credentials, signs RS256
/// JWTs whose x5c is the certificate the registry trusts, and records the scopes asked for.
pub struct TokenServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Every scope asked for.
    pub scopes: Arc<Mutex<Vec<String>>>,
    /// Every token issued.
    pub issued: Arc<Mutex<Vec<String>>>,
}

/// Starts the issuer; it accepts only `user`:`password`.
pub fn start_token_server(
    cert_pem: &str,
    key_pem: &[u8],
    user: &str,
    password: &str,
) -> TokenServer {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("token server");
    let port = server.server_addr().to_ip().expect("ip addr").port();
    let x5c: String = cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem).expect("rsa key");
    use base64::Engine;
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let scopes = Arc::new(Mutex::new(Vec::new()));
    let issued = Arc::new(Mutex::new(Vec::new()));
    let seen = scopes.clone();
    let given = issued.clone();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let authorized = req
                .headers()
                .iter()
                .any(|h| h.field.equiv("Authorization") && h.value.as_str() == expected_auth);
            if !authorized {
                let _ =
                    req.respond(tiny_http::Response::from_string("denied").with_status_code(401));
                continue;
            }
            let url = reqwest::Url::parse(&format!("http://x{}", req.url())).expect("url");
            let mut access = Vec::new();
            for (k, v) in url.query_pairs() {
                if k == "scope" {
                    seen.lock().expect("lock").push(v.to_string());
                    let (kind, rest) = v.split_once(':').unwrap_or(("", ""));
                    let (name, actions) = rest.rsplit_once(':').unwrap_or(("", ""));
                    access.push(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}));
                }
            }
            let now = chrono::Utc::now().timestamp();
            let claims = serde_json::json!({"iss": "regsweep-test-issuer", "sub": "alice", "aud": "regsweep-test",
                "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()), "access": access});
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            header.x5c = Some(vec![x5c.clone()]);
            let token = jsonwebtoken::encode(&header, &claims, &key).expect("sign");
            given.lock().expect("lock").push(token.clone());
            let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
            let _ = req.respond(tiny_http::Response::from_string(body));
        }
    });
    TokenServer {
        port,
        scopes,
        issued,
    }
}

/// Restarts `reg` with token auth issued by a new [`TokenServer`] for `user`:`password`.
pub fn token_registry(reg: &super::Registry, user: &str, password: &str) -> TokenServer {
    let (cert, key) = super::self_signed_cert(reg.dir.path(), "regsweep-test-issuer");
    let tokens = start_token_server(
        &std::fs::read_to_string(&cert).expect("cert"),
        &std::fs::read(&key).expect("key"),
        user,
        password,
    );
    let extra = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: regsweep-test\n    issuer: regsweep-test-issuer\n    rootcertbundle: {}\n",
        tokens.port,
        cert.display()
    );
    reg.restart_with(&extra, &[]);
    tokens
}
