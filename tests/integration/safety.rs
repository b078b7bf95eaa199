//! Never lose a live image: injected faults, interruption and resume, concurrent pushes.
//! Each test has its own registry (and proxy) on 127.0.0.1.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::{Fault, FaultProxy};
use common::running::deleted_so_far;
use common::standard::standard;
use common::{
    Registry, Running, dry_run_json, planned_deletes, planned_keeps, push_bulk, regsweep,
};
use regsweep::digest::Digest;
use regsweep_testkit::scenario::{APP, Named, OTHER};

const BULK: &str = "aaa/bulk";

/// The standard scenario plus `n` untagged manifests in [`BULK`], all aged past the grace period.
fn with_bulk(n: usize) -> (Registry, Named) {
    let (reg, named) = standard();
    push_bulk(&reg.url, BULK, n);
    reg.age_links("2 hours ago");
    (reg, named)
}

fn digest_of(path: &str) -> Option<Digest> {
    path.rsplit('/').next().and_then(Digest::parse)
}

fn assert_keeps(
    reg: &Registry,
    keeps: &std::collections::BTreeMap<String, std::collections::BTreeSet<Digest>>,
) {
    for (repo, keep) in keeps {
        assert_eq!(&reg.revisions(repo), keep, "revision links left in {repo}");
    }
}

#[test]
fn injected_faults_end_with_every_planned_delete_done_exactly_once() {
    let (reg, _named) = with_bulk(120);
    let root = reg.root().to_string_lossy().into_owned();
    let plan = dry_run_json(&reg.root(), &[]);
    let planned = planned_deletes(&plan);
    let keeps = planned_keeps(&plan);
    assert!(planned.len() > 120);
    let proxy = FaultProxy::start(
        &reg.url,
        Box::new(|n, method, _path| match (method, n % 20) {
            ("DELETE", 1) => Fault::Status(503, None),
            ("DELETE", 3) => Fault::Status(429, Some(1)),
            ("DELETE", 5) => Fault::Reset,
            ("DELETE", 7) => Fault::StatusAfter(502),
            ("DELETE", 9) => Fault::ResetAfter,
            ("DELETE", 11) => Fault::Slow(Duration::from_millis(2500)),
            ("DELETE", 13) => Fault::Status(500, None),
            ("GET", 0) => Fault::Status(500, None),
            _ => Fault::Pass,
        }),
    );
    let out = std::thread::scope(|s| {
        // Restart the registry once the run is well under way.
        s.spawn(|| {
            let t0 = Instant::now();
            while proxy.deletes().len() < 40 && t0.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(20));
            }
            reg.restart_with("", &[]);
        });
        regsweep(
            &[
                ("REGISTRY_URL", &proxy.url),
                ("REGISTRY_DIR", &root),
                ("MAX_ATTEMPTS", "10"),
                ("REQUEST_TIMEOUT", "1s"),
                ("CONCURRENCY", "4"),
            ],
            &[],
        )
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deletes = proxy.deletes();
    let faults = deletes.iter().filter(|s| s.fault != Fault::Pass).count();
    assert!(faults > 20, "faults were injected: {faults}");
    for s in &deletes {
        let d = digest_of(&s.path).expect("DELETE of a digest");
        let repo = s
            .path
            .trim_start_matches("/v2/")
            .split("/manifests/")
            .next()
            .unwrap_or("")
            .to_owned();
        assert!(
            planned.contains(&(repo, d)),
            "DELETE outside the plan: {}",
            s.path
        );
    }
    for (repo, d) in &planned {
        let path = format!("/v2/{repo}/manifests/{d}");
        let accepted = deletes
            .iter()
            .filter(|s| s.path == path && s.upstream == Some(202))
            .count();
        // Exactly once; or never answered 202 because the registry was stopped with the
        // request in flight (it may have done the delete without answering): then the
        // proxy saw the request cut off, and the revision is gone all the same.
        let cut_off = deletes.iter().any(|s| {
            s.path == path
                && s.upstream.is_none()
                && matches!(
                    s.fault,
                    Fault::Pass | Fault::Slow(_) | Fault::StatusAfter(_) | Fault::ResetAfter
                )
        });
        assert!(
            accepted == 1 || (accepted == 0 && cut_off && !reg.revisions(repo).contains(d)),
            "{path} deleted exactly once (accepted {accepted} times)"
        );
    }
    assert!(
        stdout.contains(&format!(
            "Job done, Cleaned {n} of {n} manifests.",
            n = planned.len()
        )),
        "{stdout}"
    );
    assert_keeps(&reg, &keeps);
}

#[test]
fn a_delete_that_keeps_failing_is_listed_and_exits_3() {
    let (reg, named) = standard();
    let root = reg.root().to_string_lossy().into_owned();
    let stuck = format!("/v2/{OTHER}/manifests/{}", named["A_OTHER"].1);
    let proxy = FaultProxy::start(
        &reg.url,
        Box::new(move |_, method, path| {
            if method == "DELETE" && path == stuck {
                Fault::Status(500, None)
            } else {
                Fault::Pass
            }
        }),
    );
    let out = regsweep(
        &[
            ("REGISTRY_URL", &proxy.url),
            ("REGISTRY_DIR", &root),
            ("MAX_ATTEMPTS", "2"),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&named["A_OTHER"].1.to_string()) && stderr.contains("500"),
        "{stderr}"
    );
    assert!(reg.revisions(OTHER).contains(&named["A_OTHER"].1));
    assert!(
        !reg.revisions(APP).contains(&named["B1"].1),
        "the other deletes went ahead"
    );
}

fn spawn_regsweep(env: &[(&str, &str)]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn regsweep")
}

/// Waits until the journal records at least `n` finished deletes.
fn wait_for_done(journal: &std::path::Path, n: usize) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        let done = std::fs::read_to_string(journal)
            .map(|s| s.matches("\"op\":\"done\"").count())
            .unwrap_or(0);
        if done >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the journal never reached {n} finished deletes");
}

fn journal_done(journal: &std::path::Path) -> Vec<(String, Digest)> {
    std::fs::read_to_string(journal)
        .expect("journal")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["op"] == "done")
        .map(|v| {
            (
                v["repo"].as_str().unwrap_or("").to_owned(),
                Digest::parse(v["digest"].as_str().unwrap_or("")).expect("digest"),
            )
        })
        .collect()
}

#[test]
fn kill_9_mid_run_then_resume_with_the_journal() {
    let (reg, _named) = with_bulk(300);
    let root = reg.root().to_string_lossy().into_owned();
    let plan = dry_run_json(&reg.root(), &[]);
    let keeps = planned_keeps(&plan);
    let journal = reg.dir.path().join("journal.jsonl");
    let journal_s = journal.to_string_lossy().into_owned();
    let env = [
        ("REGISTRY_URL", reg.url.as_str()),
        ("REGISTRY_DIR", root.as_str()),
        ("JOURNAL", journal_s.as_str()),
    ];
    let mut child = spawn_regsweep(&[env[0], env[1], env[2], ("RATE", "60")]);
    wait_for_done(&journal, 40);
    child.kill().expect("kill -9");
    let _ = child.wait();
    // Every delete the journal calls done really happened.
    let done = journal_done(&journal);
    assert!(
        done.len() >= 40 && done.len() < 300,
        "{} done before the kill",
        done.len()
    );
    for (repo, d) in &done {
        assert!(
            !reg.revisions(repo).contains(d),
            "{repo}@{d} journaled done but still there"
        );
    }
    // Resume: the same end state as an uninterrupted run.
    let out = regsweep(&env, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("resuming"), "{stderr}");
    assert_keeps(&reg, &keeps);
    let last = std::fs::read_to_string(&journal).expect("journal");
    assert_eq!(last.lines().last(), Some(r#"{"op":"end"}"#));
    // A third run with the same journal starts afresh and finds nothing.
    let out = regsweep(&env, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Nothing to do"));
}

#[test]
fn sigint_stops_scheduling_flushes_the_journal_and_exits_130() {
    let (reg, _named) = with_bulk(200);
    let root = reg.root().to_string_lossy().into_owned();
    let keeps = planned_keeps(&dry_run_json(&reg.root(), &[]));
    let journal = reg.dir.path().join("journal.jsonl");
    let journal_s = journal.to_string_lossy().into_owned();
    let env = [
        ("REGISTRY_URL", reg.url.as_str()),
        ("REGISTRY_DIR", root.as_str()),
        ("JOURNAL", journal_s.as_str()),
    ];
    let child = spawn_regsweep(&[env[0], env[1], env[2], ("RATE", "40")]);
    wait_for_done(&journal, 20);
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(st.success());
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        stdout.contains("Not attempted:") && stdout.contains("Job done, Cleaned"),
        "{stdout}"
    );
    // The journal has every delete that finished before the exit.
    let done = journal_done(&journal);
    let deleted_lines = stdout
        .lines()
        .filter(|l| l.starts_with("  Deleted:"))
        .count();
    assert_eq!(done.len(), deleted_lines, "journal and output agree");
    let out = regsweep(&env, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_keeps(&reg, &keeps);
}

#[test]
fn concurrent_pushes_are_never_deleted() {
    let (reg, named) = with_bulk(150);
    let root = reg.root().to_string_lossy().into_owned();
    let mut run = Running::start(
        &[
            ("REGISTRY_URL", &reg.url),
            ("REGISTRY_DIR", &root),
            ("CONCURRENCY", "1"),
            ("RATE", "40"),
            ("PROGRESS_INTERVAL", "100ms"),
        ],
        &[],
    );
    // While regsweep works through aaa/bulk (one repository at a time, rate-limited: 150
    // deletes take it some 4 s), re-tag digests it planned to delete elsewhere and push new
    // images: from its first delete on, the plan is made and the other repositories wait.
    run.wait_for("a `progress: deleted N` line (N > 0)", |l| {
        deleted_so_far(l).is_some_and(|n| n > 0)
    });
    let (fresh, loose) = {
        let p = reg.pusher();
        let body = |d: &Digest| {
            std::fs::read(reg.root().join(format!(
                "docker/registry/v2/blobs/sha256/{}/{}/data",
                &d.hex()[..2],
                d.hex()
            )))
            .expect("manifest body")
        };
        let mt = regsweep::meta::parse::DOCKER_MANIFEST;
        p.manifest(APP, Some("rescued"), mt, body(&named["B1"].1))
            .expect("re-tag B1");
        p.manifest(OTHER, Some("back"), mt, body(&named["A_OTHER"].1))
            .expect("re-tag A in other");
        let spec = |seed| regsweep_testkit::ImageSpec {
            os: "linux",
            arch: "amd64",
            created: chrono::Utc::now(),
            seed,
            oci: true,
        };
        let fresh = p.image(APP, &spec(77_001)).expect("push");
        p.tag(APP, "fresh", &fresh).expect("tag");
        let loose = p.image(APP, &spec(77_002)).expect("push untagged");
        (fresh.digest, loose.digest)
    };
    // The pushes are done while the run is still in aaa/bulk (150 deletes).
    let progress = run.stderr_so_far();
    let shown = progress.lines().filter_map(deleted_so_far).max();
    assert!(
        shown.is_some_and(|n| n < 150),
        "the pushes took until the run left aaa/bulk: {progress}"
    );
    let out = run.finish();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(4),
        "skips make exit 4:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (repo, d) in [
        (APP, named["B1"].1),
        (APP, named["SIG_B1"].1),
        (OTHER, named["A_OTHER"].1),
        (APP, fresh),
        (APP, loose),
    ] {
        assert!(reg.revisions(repo).contains(&d), "{repo}@{d} must survive");
    }
    assert_eq!(reg.tags(APP)["rescued"], named["B1"].1);
    assert_eq!(reg.tags(OTHER)["back"], named["A_OTHER"].1);
    for d in [named["B1"].1, named["A_OTHER"].1] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("Skipped:") && l.contains(&d.to_string())),
            "{d} reported skipped:\n{stdout}"
        );
    }
    assert!(
        reg.revisions(BULK).is_empty(),
        "the bulk repository was cleaned"
    );
}
