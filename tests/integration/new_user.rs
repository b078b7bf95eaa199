//! Found by trying regsweep as a new user would: credentials in REGISTRY_URL, an empty
//! hash-tag pattern, slow exits under a rate limit, bursts above the rate.

use crate::common;

use std::time::{Duration, Instant};

use common::proxy::{Fault, FaultProxy};
use common::running::deleted_so_far;
use common::standard::standard;
use common::{Registry, Running, push_bulk, regsweep, run_expecting};
use regsweep_testkit::scenario::APP;

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
        &[
            ("REGISTRY_URL", &v2),
            ("REGISTRY_DIR", &root),
            ("OUTPUT_FORMAT", "json"),
        ],
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
    std::fs::write(
        &file,
        "[[rule]]\nrepos = [\"**\"]\nhash_tag_patterns = [\"\"]\n",
    )
    .expect("write");
    let file_s = file.to_string_lossy().into_owned();
    let base = [("REGISTRY_DIR", root.as_str()), ("DRY_RUN", "true")];
    type Run<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let runs: Vec<Run> = vec![
        ([&base[..], &[("HASH_TAG_PATTERN", "")]].concat(), vec![]),
        ([&base[..], &[("HASH_TAG_PATTERN", "  ")]].concat(), vec![]),
        (base.to_vec(), vec!["--hash-tag-pattern", ""]),
        (
            [&base[..], &[("POLICY_FILE", file_s.as_str())]].concat(),
            vec![],
        ),
    ];
    for (env, args) in runs {
        let out = regsweep(&env, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?} {args:?}: {err}");
        assert!(err.contains("empty"), "{err}");
        assert!(out.stdout.is_empty(), "nothing planned");
    }
}

/// A run deleting through `url` at RATE=20, with no grace period.
fn rate_limited<'a>(url: &'a str, root: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("REGISTRY_URL", url),
        ("REGISTRY_DIR", root),
        ("MIN_AGE", "0"),
        ("RATE", "20"),
    ]
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
    let (_, err) = run_expecting(&rate_limited(&proxy.url, &root), &[], 1);
    let took = t0.elapsed();
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
    run_expecting(&rate_limited(&proxy.url, &root), &[], 0);
    let seen = proxy.seen.lock().expect("lock").clone();
    // The first request is the unthrottled /v2/ check; every later one is rate-limited.
    let limited: Vec<Instant> = seen.iter().skip(1).map(|s| s.at).collect();
    assert!(limited.len() >= 60, "{} requests", limited.len());
    for (i, start) in limited.iter().enumerate() {
        let in_a_second = limited[i..]
            .iter()
            .take_while(|t| t.duration_since(*start) < Duration::from_secs(1))
            .count();
        assert!(
            in_a_second <= 21,
            "{in_a_second} requests within a second at RATE=20"
        );
    }
}

#[test]
fn a_registry_gone_mid_run_stops_the_run_and_counts_honestly() {
    let reg = Registry::start();
    push_bulk(&reg.url, "bulk/app", 200);
    let root = reg.root().to_string_lossy().into_owned();
    let t0 = Instant::now();
    let mut run = Running::start(
        &[
            ("REGISTRY_URL", &reg.url),
            ("REGISTRY_DIR", &root),
            ("MIN_AGE", "0"),
            ("RATE", "20"),
            ("CONCURRENCY", "4"),
            ("PROGRESS_INTERVAL", "500ms"),
        ],
        &[],
    );
    // Gone for good once the run is well under way: 20 of 200 deleted.
    run.wait_for("a `progress: deleted N` line with N >= 20", |l| {
        deleted_so_far(l).is_some_and(|n| n >= 20)
    });
    reg.stop();
    let out = run.finish();
    let took = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopped answering"), "{stderr}");
    // Retrying every pending delete six times would take minutes.
    assert!(took < Duration::from_secs(60), "took {took:?}");
    let deleted = stdout.matches("Deleted:").count();
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("Failed to clean manifest"))
        .collect();
    assert!(deleted > 10 && deleted < 190, "{deleted} deleted");
    assert!(failed.len() <= 20, "{} failures: {stdout}", failed.len());
    for line in &failed {
        let digest = line.split_whitespace().nth(4).expect("digest");
        let lines = stdout.lines().filter(|l| l.contains(digest)).count();
        assert_eq!(lines, 1, "printed once on stdout: {digest}");
    }
    assert!(
        stdout.contains(&format!("Job done, Cleaned {deleted} of ")),
        "{stdout}"
    );
    assert!(stdout.contains("Not attempted:"), "{stdout}");
    assert!(
        stdout.contains("at most"),
        "the estimate says it is an upper bound: {stdout}"
    );
    // Progress lines count deletes, not failures.
    let last = stderr
        .lines()
        .rfind(|l| l.starts_with("regsweep: progress: deleted"))
        .expect("progress lines");
    let shown = deleted_so_far(last).expect("a count");
    assert!(shown <= deleted, "{last} (deleted {deleted})");
}

#[test]
fn durations_need_units_and_empty_selections_warn() {
    let (reg, named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let base = [("REGISTRY_DIR", root.as_str()), ("DRY_RUN", "true")];
    for (var, value) in [
        ("MIN_AGE", "5"),
        ("OLDER_THAN", "30"),
        ("MIN_AGE", "1M"),
        ("PROGRESS_INTERVAL", "10"),
        ("REQUEST_TIMEOUT", "0"),
    ] {
        let out = regsweep(&[&base[..], &[(var, value)]].concat(), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(err.contains(var), "{err}");
    }
    // 0 needs no unit: a clean dry run (nothing skipped, no warning) that takes the young
    // untagged image the default grace period keeps.
    let (report, err) = run_expecting(
        &[&base[..], &[("MIN_AGE", "0"), ("OUTPUT_FORMAT", "json")]].concat(),
        &[],
        0,
    );
    assert_eq!(err, "", "no warning");
    let report: serde_json::Value = serde_json::from_str(&report).expect("JSON report");
    let young = (APP.to_owned(), named["YOUNG"].1);
    assert_eq!(
        common::verdicts(&report).get(&young).map(String::as_str),
        Some("delete untagged"),
        "MIN_AGE=0 took effect"
    );
    for globs in ["", ",", "nothing/*"] {
        let out = regsweep(&[&base[..], &[("REPO_GLOB", globs)]].concat(), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{globs:?}: {err}");
        assert!(err.contains("selects no repository"), "{globs:?}: {err}");
    }
    // A CA file that holds no certificate is a usage error, before anything runs.
    let bad = reg.dir.path().join("not-a-cert.pem");
    std::fs::write(&bad, "hello\n").expect("write");
    let out = regsweep(
        &[("REGISTRY_DIR", root.as_str()), ("REGISTRY_URL", &reg.url)],
        &["--ca-cert", &bad.to_string_lossy()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not-a-cert.pem"), "{err}");
}

#[test]
fn help_and_clap_errors_say_what_a_user_needs() {
    let out = regsweep(&[], &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Exit codes:") && help.contains("Examples:"),
        "{help}"
    );
    let out = regsweep(&[], &["plan", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Deleting (not used by `plan`"), "{help}");
    // `-o json` is not a short form of --out: no file named `json` appears.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .current_dir(dir.path())
        .args(["plan", "-o", "json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("json").exists());
}

#[test]
fn statuses_read_as_statuses_and_hints_come_once() {
    let (reg, _named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    for (status, says, never) in [
        (405, "405 Method Not Allowed", "DeleteDisabled"),
        (401, "401 Unauthorized", "lack delete rights"),
    ] {
        let proxy = FaultProxy::start(
            &reg.url,
            Box::new(move |_, method, _| match method {
                "DELETE" => Fault::Status(status, None),
                _ => Fault::Pass,
            }),
        );
        let out = regsweep(
            &[("REGISTRY_URL", &proxy.url), ("REGISTRY_DIR", &root)],
            &[],
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains(says), "{status}: {all}");
        assert!(!all.contains(never), "{status}: {all}");
        assert!(!all.contains("Denied {"), "{status}: {all}");
        if status == 405 {
            assert_eq!(
                all.matches("delete: enabled").count(),
                1,
                "the hint once: {all}"
            );
        }
    }
}

#[test]
fn offline_deletes_warn_when_the_registry_answers() {
    let (reg, _named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let out = regsweep(
        &[
            ("REGISTRY_DIR", &root),
            ("REGISTRY_URL", &reg.url),
            ("REPO_FILTER", "other"),
            ("DELETE_VIA", "storage"),
            ("REGISTRY_STOPPED", "true"),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("answers") && err.contains("stopped or read-only"),
        "{err}"
    );
}

#[test]
fn scan_progress_counts_links_before_a_repository_is_done() {
    let (reg, named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    // demo/app's newest image manifest is a FIFO: its repository never finishes planning.
    let d = named["YOUNG"].1;
    common::make_fifo(&reg.blob_path(&d));
    // Blocked on the FIFO, the count stands still: signalled once a progress line shows
    // more than demo/app's 30 revision links (a count kept only per finished repository
    // never gets there, and the wait fails).
    let past_30 = |l: &str| {
        l.strip_prefix("regsweep: progress: read ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n > 30)
    };
    let out = common::signalled(
        &[
            ("REGISTRY_DIR", root.as_str()),
            ("DRY_RUN", "true"),
            ("PROGRESS_INTERVAL", "200ms"),
            ("SCAN_THREADS", "1"),
        ],
        &[],
        &reg.blob_path(&d),
        Some(("a `progress: read N` line with N > 30", &past_30)),
        "TERM",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let last = err
        .lines()
        .rfind(|l| l.starts_with("regsweep: progress: read "))
        .unwrap_or_else(|| panic!("no scan progress: {err}"));
    let read: usize = last
        .trim_start_matches("regsweep: progress: read ")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    // demo/app alone has more than 30 revision links.
    assert!(read > 30, "{last}");
}

#[test]
fn an_unreadable_registry_dir_says_permission_denied() {
    // As another user (the tests run as root, whom no permission stops).
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("docker/registry/v2/repositories")).expect("mkdir");
    let st = std::process::Command::new("chmod")
        .arg("755")
        .arg(dir.path())
        .status()
        .expect("chmod");
    assert!(st.success());
    let st = std::process::Command::new("chmod")
        .arg("700")
        .arg(dir.path().join("docker"))
        .status()
        .expect("chmod");
    assert!(st.success());
    // A copy of the binary nobody may run: the build directory can be private (a clone
    // in `mktemp -d` is 0700).
    let bin = dir.path().join("regsweep");
    std::fs::copy(env!("CARGO_BIN_EXE_regsweep"), &bin).expect("copy the binary");
    let out = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(&bin)
        .arg("--dry-run")
        .arg("--registry-dir")
        .arg(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("runuser");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("permission denied"), "{err}");
}
