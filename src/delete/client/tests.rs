//! Unit tests of the registry client: token lifetimes, challenges, the retry decision on
//! certificate and connection failures.

use super::token::issued;
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
    assert!(at > asked + Duration::from_millis(2500) && at < asked + Duration::from_millis(3500));
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
        e.to_string()
            .ends_with(" (a self-signed certificate? set SELF_SIGNED_CERT=true or --ca-cert FILE)"),
        "{e}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1, "retried: {e}");
}
