//! Token auth against the real docker-registry and a real RS256 token issuer: every planned
//! delete accounted for (text, JSON, journal) when a token lacks `delete` and when SIGTERM
//! stops the run, the first `insufficient_scope` or `invalid_token` stops the run naming its
//! cause, short-lived tokens renewed before they expire, and tokens of different
//! repositories fetched concurrently while one repository's token is fetched once at a time.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::proxy::{Fault, FaultProxy};
use common::token::{TokenOptions, TokenRequest, TokenUser, token_registry_with};
use common::{Registry, planned_deletes, push_bulk, regsweep};
use regsweep::digest::Digest;

const CONCURRENCY: usize = 4;

/// A proxy that forwards everything, so the test sees every request and answer.
fn watching(reg: &Registry) -> FaultProxy {
    FaultProxy::start(&reg.url, Box::new(|_, _, _| Fault::Pass))
}

/// 401 answers the registry gave to anything but the unauthenticated `/v2/` check.
fn unauthorized(proxy: &FaultProxy) -> Vec<String> {
    proxy
        .seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| s.upstream == Some(401) && s.path != "/v2/")
        .map(|s| format!("{} {}", s.method, s.path))
        .collect()
}

/// Every planned delete's result in the JSON report's `outcome.deletions`, checked to hold
/// each planned delete exactly once and to agree with the counts.
fn results_of(report: &serde_json::Value) -> BTreeMap<(String, Digest), String> {
    let planned = planned_deletes(report);
    let outcome = &report["outcome"];
    let mut results = BTreeMap::new();
    for d in outcome["deletions"].as_array().expect("deletions") {
        let key = (
            d["repository"].as_str().expect("repository").to_owned(),
            Digest::parse(d["digest"].as_str().expect("digest")).expect("digest"),
        );
        let result = d["result"].as_str().expect("result").to_owned();
        assert!(results.insert(key, result).is_none(), "listed twice: {d}");
    }
    assert_eq!(
        results
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        planned,
        "every planned delete, and nothing else"
    );
    let count = |r: &str| results.values().filter(|v| *v == r).count();
    let n = |k: &str| outcome[k].as_u64().expect(k) as usize;
    let len = |k: &str| outcome[k].as_array().expect(k).len();
    assert_eq!(n("planned"), planned.len());
    assert_eq!(n("deleted"), count("deleted"));
    assert_eq!(n("already_gone"), count("already-gone"));
    assert_eq!(len("failed"), count("failed"));
    assert_eq!(len("skipped"), count("skipped"));
    assert_eq!(n("not_attempted"), count("not-attempted"));
    assert_eq!(
        n("deleted") + n("already_gone") + len("failed") + len("skipped") + n("not_attempted"),
        planned.len(),
        "the outcomes add up to the plan: {outcome:#}"
    );
    results
}

#[test]
fn a_pull_only_token_stops_at_the_first_insufficient_scope_and_every_delete_is_accounted_for() {
    let reg = Registry::start();
    push_bulk(&reg.url, "bulk/app", 40);
    let before = reg.revisions("bulk/app");
    let _tokens = token_registry_with(
        &reg,
        TokenOptions {
            users: vec![TokenUser::pull_only("bob", "pw:pull")],
            ..TokenOptions::one("unused", "unused")
        },
    );
    let root = reg.root().to_string_lossy().into_owned();
    let concurrency = CONCURRENCY.to_string();
    for format in ["json", "text"] {
        let proxy = watching(&reg);
        let journal = reg.dir.path().join(format!("journal-{format}.jsonl"));
        let out = regsweep(
            &[
                ("REGISTRY_URL", &proxy.url),
                ("REGISTRY_DIR", &root),
                ("REGISTRY_AUTH", "bob:pw:pull"),
                ("MIN_AGE", "0"),
                ("CONCURRENCY", &concurrency),
                ("OUTPUT_FORMAT", format),
                ("JOURNAL", &journal.to_string_lossy()),
            ],
            &[],
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{format}: {stderr}\n{stdout}");
        // One line naming the refusal, the missing action, the repository and the user.
        let error = stderr
            .lines()
            .find(|l| l.starts_with("regsweep: error:"))
            .unwrap_or_else(|| panic!("an error line: {stderr}"));
        for word in ["insufficient_scope", "`delete`", "bulk/app", "\"bob\""] {
            assert!(error.contains(word), "{word} in {error}");
        }
        assert!(!error.contains("no longer accepted"), "{error}");
        assert!(!stderr.contains("pw:pull"), "the password is never printed");
        // The first refusal stops the run: only DELETEs already in flight may follow it.
        let sent: Vec<String> = proxy.deletes().iter().map(|s| s.path.clone()).collect();
        assert!(!sent.is_empty(), "the first delete was sent");
        assert!(
            sent.len() <= CONCURRENCY,
            "{} DELETEs with CONCURRENCY={CONCURRENCY}: {sent:?}",
            sent.len()
        );
        assert!(
            proxy.deletes().iter().all(|s| s.upstream == Some(401)),
            "each refused"
        );
        let sent_digests: Vec<String> = sent
            .iter()
            .map(|p| p.rsplit('/').next().expect("digest").to_owned())
            .collect();
        if format == "json" {
            let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
            let results = results_of(&report);
            let planned = results.len();
            assert!(planned > 40, "{planned} planned");
            // Exactly the DELETEs sent failed, each with its status; nothing was deleted.
            let failed: Vec<&serde_json::Value> = report["outcome"]["deletions"]
                .as_array()
                .expect("deletions")
                .iter()
                .filter(|d| d["result"] == "failed")
                .collect();
            assert_eq!(failed.len(), sent.len(), "{:#}", report["outcome"]);
            for f in failed {
                assert_eq!(f["status"], 401, "{f}");
                assert!(
                    sent_digests.iter().any(|d| f["digest"] == d.as_str()),
                    "{f}"
                );
                assert!(
                    f["why"]
                        .as_str()
                        .is_some_and(|w| w.contains("insufficient_scope")),
                    "{f}"
                );
            }
            assert_eq!(
                results.values().filter(|r| *r == "not-attempted").count(),
                planned - sent.len()
            );
            assert!(report["outcome"]["fatal"].as_str().is_some());
            assert_eq!(
                journal_outcomes(&journal),
                as_journaled(&results),
                "the journal agrees"
            );
        } else {
            check_text_accounting(&stdout, &sent_digests);
        }
        assert_eq!(reg.revisions("bulk/app"), before, "nothing deleted");
    }
}

/// The text summary accounts for every planned delete: the cleaned count, a `Failed to
/// clean manifest` line per DELETE sent, a listed line per delete not attempted, and the
/// sum line; each planned digest appears in exactly one of them.
fn check_text_accounting(stdout: &str, sent: &[String]) {
    let total: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Job done, Cleaned 0 of "))
        .and_then(|r| r.strip_suffix(" manifests."))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("nothing cleaned: {stdout}"));
    let failed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Failed to clean manifest "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(failed.len(), sent.len(), "{stdout}");
    for d in sent {
        assert!(failed.contains(&d.as_str()), "{d} listed failed: {stdout}");
    }
    assert!(
        stdout.contains(&format!("Failed deletions: {} ", sent.len())),
        "{stdout}"
    );
    let not_attempted = total - sent.len();
    assert!(
        stdout.contains(&format!("Not attempted: {not_attempted} ")),
        "{stdout}"
    );
    let listed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("  sha256:") && l.contains("repo=bulk/app"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(listed.len(), not_attempted, "{stdout}");
    let mut all: Vec<&str> = listed.iter().chain(failed.iter()).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), total, "each planned digest once: {stdout}");
    assert!(
        stdout.contains(&format!(
            "Of the {total} planned deletions: 0 cleaned, {} failed, 0 skipped, {not_attempted} not attempted.",
            sent.len()
        )),
        "{stdout}"
    );
}

/// Whether two token requests were being answered at the same time.
fn overlap(a: &TokenRequest, b: &TokenRequest) -> bool {
    a.arrived < b.answered && b.arrived < a.answered
}

#[test]
fn short_lived_tokens_are_renewed_before_they_expire_one_fetch_at_a_time() {
    let reg = Registry::start();
    push_bulk(&reg.url, "bulk/app", 79);
    let tokens = token_registry_with(
        &reg,
        TokenOptions {
            expires_in: 2,
            delay: Duration::from_secs(1),
            ..TokenOptions::one("alice", "s3cret")
        },
    );
    let proxy = watching(&reg);
    let root = reg.root().to_string_lossy().into_owned();
    let t0 = Instant::now();
    let out = regsweep(
        &[
            ("REGISTRY_URL", &proxy.url),
            ("REGISTRY_DIR", &root),
            ("REGISTRY_AUTH", "alice:s3cret"),
            ("MIN_AGE", "0"),
            ("CONCURRENCY", "8"),
            ("RATE", "4"),
        ],
        &[],
    );
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(took > Duration::from_secs(18), "a long run: {took:?}");
    assert!(reg.revisions("bulk/app").is_empty(), "all deleted");
    // No token was used past its lifetime: the registry refused none.
    let refused = unauthorized(&proxy);
    assert!(refused.is_empty(), "401 answers: {refused:?}");
    // Renewed all along (tokens live 2 s; a fetch takes 1 s), one fetch at a time even
    // though eight deletes wanted the token whenever it ran out.
    let scope = "repository:bulk/app:pull,delete";
    let fetches: Vec<TokenRequest> = tokens
        .requests()
        .into_iter()
        .filter(|r| r.scope.as_deref() == Some(scope))
        .collect();
    assert!(
        fetches.len() >= 6,
        "{} fetches in {took:?}: {fetches:?}",
        fetches.len()
    );
    // Yet never a fetch per request: a token is used from when it arrives.
    assert!(
        fetches.len() as u64 <= took.as_secs(),
        "{} fetches in {took:?}",
        fetches.len()
    );
    for (i, a) in fetches.iter().enumerate() {
        for b in &fetches[i + 1..] {
            assert!(
                !overlap(a, b),
                "two fetches of one scope at once: {a:?} {b:?}"
            );
        }
    }
}

#[test]
fn slow_token_fetches_of_two_repositories_overlap() {
    let reg = Registry::start();
    push_bulk(&reg.url, "slow/a", 5);
    push_bulk(&reg.url, "slow/b", 5);
    let delay = Duration::from_secs(2);
    let tokens = token_registry_with(
        &reg,
        TokenOptions {
            delay,
            ..TokenOptions::one("alice", "s3cret")
        },
    );
    let root = reg.root().to_string_lossy().into_owned();
    let out = regsweep(
        &[
            ("REGISTRY_URL", &reg.url),
            ("REGISTRY_DIR", &root),
            ("REGISTRY_AUTH", "alice:s3cret"),
            ("MIN_AGE", "0"),
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(reg.revisions("slow/a").is_empty() && reg.revisions("slow/b").is_empty());
    let scoped = |repo: &str| -> Vec<TokenRequest> {
        let scope = format!("repository:{repo}:pull,delete");
        tokens
            .requests()
            .into_iter()
            .filter(|r| r.scope.as_deref() == Some(scope.as_str()))
            .collect()
    };
    let (a, b) = (scoped("slow/a"), scoped("slow/b"));
    // Each repository's token once (it lives 300 s), however many requests wanted it.
    assert_eq!((a.len(), b.len()), (1, 1), "{a:?} {b:?}");
    // Fetched at the same time, not one after the other behind a lock.
    assert!(overlap(&a[0], &b[0]), "{a:?} {b:?}");
    let first = a[0].arrived.min(b[0].arrived);
    let last = a[0].answered.max(b[0].answered);
    assert!(
        last - first < delay * 3 / 2,
        "both fetched in {:?} (one after the other: {:?})",
        last - first,
        delay * 2
    );
}

/// The last run's outcome per planned delete in a journal (`done` with its result,
/// `missed` for failed or skipped, `not-attempted`), checked to hold each planned delete
/// exactly once.
fn journal_outcomes(path: &std::path::Path) -> BTreeMap<(String, Digest), String> {
    let text = std::fs::read_to_string(path).expect("journal");
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a whole journal line"))
        .collect();
    let begin = records
        .iter()
        .rposition(|r| r["op"] == "begin")
        .expect("a begin record");
    let key = |r: &serde_json::Value| {
        (
            r["repo"].as_str().expect("repo").to_owned(),
            Digest::parse(r["digest"].as_str().expect("digest")).expect("digest"),
        )
    };
    let mut planned = std::collections::BTreeSet::new();
    let mut out = BTreeMap::new();
    for r in &records[begin..] {
        let result = match r["op"].as_str().expect("op") {
            "plan" => {
                planned.insert(key(r));
                continue;
            }
            "done" => r["result"].as_str().expect("result").to_owned(),
            "missed" => "missed".to_owned(),
            "not-attempted" => "not-attempted".to_owned(),
            _ => continue,
        };
        assert!(out.insert(key(r), result).is_none(), "settled twice: {r}");
    }
    assert_eq!(
        out.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        planned,
        "one record per planned delete"
    );
    out
}

#[test]
fn sigterm_mid_run_accounts_for_every_planned_delete() {
    let reg = Registry::start();
    push_bulk(&reg.url, "bulk/app", 150);
    let _tokens = token_registry_with(&reg, TokenOptions::one("alice", "s3cret"));
    let root = reg.root().to_string_lossy().into_owned();
    let journal = reg.dir.path().join("journal.jsonl");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .env_clear()
        .envs([
            ("REGISTRY_URL", reg.url.as_str()),
            ("REGISTRY_DIR", root.as_str()),
            ("REGISTRY_AUTH", "alice:s3cret"),
            ("MIN_AGE", "0"),
            ("RATE", "20"),
            ("CONCURRENCY", "4"),
            ("OUTPUT_FORMAT", "json"),
            ("JOURNAL", &journal.to_string_lossy()),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    while std::fs::read_to_string(&journal)
        .unwrap_or_default()
        .matches(r#""op":"done""#)
        .count()
        < 20
    {
        assert!(t0.elapsed() < Duration::from_secs(60), "no deletes in 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(st.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let results = results_of(&report);
    let not = results.values().filter(|r| *r == "not-attempted").count();
    assert!(not > 0 && not <= results.len() - 20, "{not} not attempted");
    assert_eq!(report["outcome"]["interrupted"], true);
    let deleted: Vec<&(String, Digest)> = results
        .iter()
        .filter(|(_, r)| *r == "deleted")
        .map(|(k, _)| k)
        .collect();
    for (repo, d) in &deleted {
        assert!(!reg.revisions(repo).contains(d), "{d} reported deleted");
    }
    assert_eq!(
        reg.revisions("bulk/app").len(),
        results.len() - deleted.len(),
        "what is not reported deleted is still there"
    );
    assert_eq!(
        journal_outcomes(&journal),
        as_journaled(&results),
        "the journal agrees"
    );
}

#[test]
fn a_token_the_registry_does_not_trust_is_named_invalid_token() {
    let reg = Registry::start();
    push_bulk(&reg.url, "bulk/app", 10);
    let _tokens = token_registry_with(
        &reg,
        TokenOptions {
            untrusted: true,
            ..TokenOptions::one("alice", "s3cret")
        },
    );
    let proxy = watching(&reg);
    let root = reg.root().to_string_lossy().into_owned();
    let out = regsweep(
        &[
            ("REGISTRY_URL", &proxy.url),
            ("REGISTRY_DIR", &root),
            ("REGISTRY_AUTH", "alice:s3cret"),
            ("MIN_AGE", "0"),
            ("OUTPUT_FORMAT", "json"),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("regsweep: error:"))
        .unwrap_or_else(|| panic!("an error line: {stderr}"));
    for words in [
        "invalid_token",
        "expired or revoked",
        "bulk/app",
        "\"alice\"",
    ] {
        assert!(error.contains(words), "{words} in {error}");
    }
    // Refused on the first read, before any delete; nothing retried with a new token.
    assert!(proxy.deletes().is_empty(), "no DELETE sent");
    assert_eq!(unauthorized(&proxy).len(), 1, "{:?}", unauthorized(&proxy));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let results = results_of(&report);
    assert!(
        results.values().all(|r| r == "not-attempted"),
        "{results:?}"
    );
}

/// Report results as the journal records them (failed and skipped are both `missed`).
fn as_journaled(
    results: &BTreeMap<(String, Digest), String>,
) -> BTreeMap<(String, Digest), String> {
    results
        .iter()
        .map(|(k, r)| {
            let r = match r.as_str() {
                "failed" | "skipped" => "missed",
                r => r,
            };
            (k.clone(), r.to_owned())
        })
        .collect()
}
