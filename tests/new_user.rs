//! Found by trying regsweep as a new user would: credentials in REGISTRY_URL, an empty
//! hash-tag pattern, slow exits under a rate limit, bursts above the rate.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{Fault, FaultProxy};
use common::standard::standard;
use common::{Registry, push_bulk, regsweep};

#[test]
fn credentials_in_registry_url_are_refused_without_being_printed() {
    let (reg, _named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let host = reg.url.trim_start_matches("http://");
    for url in [
        format!("http://alice:hunter2secret@{host}"),
        format!("http://alice:hunter2secret@{host}:notaport"),
    ] {
        let out = regsweep(&[("REGISTRY_URL", &url), ("REGISTRY_DIR", &root)], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        let all = format!("{err}{}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(!all.contains("hunter2secret"), "the password leaks: {all}");
        assert!(err.contains("REGISTRY_URL"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // Not http(s): a usage error too.
    let out = regsweep(&[("REGISTRY_URL", "ftp://x"), ("REGISTRY_DIR", &root)], &[]);
    assert_eq!(out.status.code(), Some(2));
    // A trailing /v2/ is the API's path, not the registry's: taken off, with a warning.
    let v2 = format!("{}/v2/", reg.url);
    let out = regsweep(
        &[("REGISTRY_URL", &v2), ("REGISTRY_DIR", &root), ("OUTPUT_FORMAT", "json")],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("ends in /v2"), "{err}");
}

#[test]
fn an_empty_hash_tag_pattern_is_a_usage_error_wherever_it_comes_from() {
    let (reg, _named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, "[[rule]]\nrepos = [\"**\"]\nhash_tag_patterns = [\"\"]\n")
        .expect("write");
    let file_s = file.to_string_lossy().into_owned();
    let base = [("REGISTRY_DIR", root.as_str()), ("DRY_RUN", "true")];
    let runs: Vec<(Vec<(&str, &str)>, Vec<&str>)> = vec![
        ([&base[..], &[("HASH_TAG_PATTERN", "")]].concat(), vec![]),
        ([&base[..], &[("HASH_TAG_PATTERN", "  ")]].concat(), vec![]),
        (base.to_vec(), vec!["--hash-tag-pattern", ""]),
        ([&base[..], &[("POLICY_FILE", file_s.as_str())]].concat(), vec![]),
    ];
    for (env, args) in runs {
        let out = regsweep(&env, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?} {args:?}: {err}");
        assert!(err.contains("empty"), "{err}");
        assert!(out.stdout.is_empty(), "nothing planned");
    }
}

#[test]
fn a_fatal_405_under_a_rate_limit_exits_without_waiting_for_rate_slots() {
    let reg = Registry::start();
    push_bulk(&reg.url, "bulk/app", 300);
    let root = reg.root().to_string_lossy().into_owned();
    let proxy = FaultProxy::start(
        &reg.url,
        Box::new(|_, method, _| match method {
            "DELETE" => Fault::Status(405, None),
            _ => Fault::Pass,
        }),
    );
    let t0 = Instant::now();
    let out = regsweep(
        &[
            ("REGISTRY_URL", &proxy.url),
            ("REGISTRY_DIR", &root),
            ("MIN_AGE", "0"),
            ("RATE", "20"),
        ],
        &[],
    );
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("405"), "{err}");
    // Waiting for a slot per pending delete would take 300 / 20 = 15 s.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let deletes = proxy.deletes().len();
    assert!(deletes <= 8, "{deletes} DELETEs after the first 405");
}

#[test]
fn the_rate_limit_allows_no_burst_at_the_start() {
    let reg = Registry::start();
    push_bulk(&reg.url, "bulk/app", 60);
    let root = reg.root().to_string_lossy().into_owned();
    let proxy = FaultProxy::start(&reg.url, Box::new(|_, _, _| Fault::Pass));
    let out = regsweep(
        &[
            ("REGISTRY_URL", &proxy.url),
            ("REGISTRY_DIR", &root),
            ("MIN_AGE", "0"),
            ("RATE", "20"),
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = proxy.seen.lock().expect("lock").clone();
    // The first request is the unthrottled /v2/ check; every later one is rate-limited.
    let limited: Vec<Instant> = seen.iter().skip(1).map(|s| s.at).collect();
    assert!(limited.len() >= 60, "{} requests", limited.len());
    for (i, start) in limited.iter().enumerate() {
        let in_a_second = limited[i..]
            .iter()
            .take_while(|t| t.duration_since(*start) < Duration::from_secs(1))
            .count();
        assert!(in_a_second <= 21, "{in_a_second} requests within a second at RATE=20");
    }
}
