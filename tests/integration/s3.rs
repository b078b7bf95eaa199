//! S3 storage: the real registry on a local S3 server (moto), dry and real runs with the
//! filesystem tests' expectations, garbage-collect, and LIST/GET request counts at scale.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::s3::{BUCKET, Moto, ROOT, keys, put, registry_on, s3_env};
use common::standard::expected;
use common::{Verdicts, pull_all_tags, regsweep, verdicts};
use regsweep::digest::Digest;
use regsweep_testkit::scenario::{self, APP, BASE, OTHER};

fn repo_prefix(repo: &str) -> String {
    format!(
        "{}/docker/registry/v2/repositories/{repo}/_manifests/",
        ROOT.trim_matches('/')
    )
}

/// Revision digests linked in `repo`, straight from the bucket.
fn revisions(moto: &Moto, repo: &str) -> BTreeSet<Digest> {
    let p = format!("{}revisions/sha256/", repo_prefix(repo));
    keys(moto, &p)
        .iter()
        .filter_map(|k| {
            k.strip_prefix(&p)?
                .strip_suffix("/link")
                .and_then(Digest::from_hex)
        })
        .collect()
}

/// Tag names with a current link in `repo`, straight from the bucket.
fn tag_names(moto: &Moto, repo: &str) -> BTreeSet<String> {
    let p = format!("{}tags/", repo_prefix(repo));
    keys(moto, &p)
        .iter()
        .filter_map(|k| {
            k.strip_prefix(&p)?
                .strip_suffix("/current/link")
                .map(str::to_owned)
        })
        .collect()
}

/// Runs regsweep, asserts exit 0, and parses its JSON report.
fn run_json(env: &[(&str, &str)]) -> serde_json::Value {
    let (stdout, _) = common::run_expecting(env, &[], 0);
    serde_json::from_str(&stdout).expect("json report")
}

fn env<'a>(
    base: &'a [(&'static str, String)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
    v.extend_from_slice(extra);
    v
}

#[test]
fn s3_dry_and_real_runs_garbage_collect_and_every_kept_tag_pulls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path());
    let reg = registry_on(&moto);
    let named = scenario::push_standard(&reg.pusher()).expect("push scenario");
    let s3 = s3_env(&moto);

    // Just pushed: the default grace period keeps everything.
    let report = run_json(&env(&s3, &[("DRY_RUN", "true"), ("OUTPUT_FORMAT", "json")]));
    assert_eq!(
        report["totals"]["delete"], 0,
        "young revisions are protected"
    );
    assert_eq!(
        report["s3_requests"]["get_link_requests"], 0,
        "every link resolved from the listing"
    );

    // With no grace period: exactly the filesystem plan (LastModified cannot be aged).
    let report = run_json(&env(
        &s3,
        &[
            ("DRY_RUN", "true"),
            ("OUTPUT_FORMAT", "json"),
            ("MIN_AGE", "0"),
        ],
    ));
    let mut named_young = named.clone();
    named_young.insert("YOUNG".into(), (APP.into(), Digest([0; 32])));
    let mut want: Verdicts = expected(&named_young);
    want.remove(&(APP.to_owned(), Digest([0; 32])));
    assert_eq!(verdicts(&report), want);
    let (text, _) =
        common::run_expecting(&env(&s3, &[("DRY_RUN", "true"), ("MIN_AGE", "0")]), &[], 0);
    assert!(text.contains("Running against S3 storage"), "{text}");

    let tags_before_offline = tag_names(&moto, APP);
    // Offline migration mode for demo/app: registry stopped, DeleteObjects straight in the
    // bucket; then the registry restarts and the API run does the other repositories.
    reg.stop();
    let offline = run_json(&env(
        &s3,
        &[
            ("MIN_AGE", "0"),
            ("DELETE_VIA", "storage"),
            ("REGISTRY_STOPPED", "true"),
            ("REPO_FILTER", APP),
            ("OUTPUT_FORMAT", "json"),
        ],
    ));
    assert_eq!(offline["outcome"]["deleted"], offline["totals"]["delete"]);
    assert_eq!(
        offline["s3_requests"]["delete_objects_requests"], 3,
        "per delete layer, one DeleteObjects for the tag directories (layer 0 only: the \
         expired hash tag and the signature tag) and one for the revision links (2 layers)"
    );
    let restarted = reg.restart_with(
        "",
        &[
            ("S3_TEST_ENDPOINT", &moto.url),
            ("S3_TEST_BUCKET", BUCKET),
            ("S3_TEST_ROOT", ROOT),
        ],
    );
    assert_eq!(restarted, reg.url);

    // Real run through the registry API.
    let tags_before: BTreeMap<&str, BTreeSet<String>> = [APP, OTHER, BASE]
        .iter()
        .map(|r| (*r, tag_names(&moto, r)))
        .collect();
    let out = regsweep(
        &env(&s3, &[("REGISTRY_URL", &reg.url), ("MIN_AGE", "0")]),
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for repo in [APP, OTHER, BASE] {
        let keep: BTreeSet<Digest> = want
            .iter()
            .filter(|((r, _), v)| r == repo && v.starts_with("keep"))
            .map(|((_, d), _)| *d)
            .collect();
        assert_eq!(revisions(&moto, repo), keep, "revisions left in {repo}");
        let mut tags = tags_before[repo].clone();
        if repo == APP {
            assert_eq!(
                tags,
                tags_before_offline
                    .iter()
                    .filter(|t| {
                        **t != scenario::hash_tag(10)
                            && **t != format!("sha256-{}.sig", named["B1"].1.hex())
                    })
                    .cloned()
                    .collect::<BTreeSet<String>>(),
                "offline removed exactly the doomed tags"
            );
            tags = tags_before_offline.clone();
            tags.remove(&scenario::hash_tag(10));
            tags.remove(&format!("sha256-{}.sig", named["B1"].1.hex()));
        }
        assert_eq!(tag_names(&moto, repo), tags, "tags left in {repo}");
    }
    let (again, _) = common::run_expecting(
        &env(&s3, &[("REGISTRY_URL", &reg.url), ("MIN_AGE", "0")]),
        &[],
        0,
    );
    assert!(again.contains("Nothing to do"), "{again}");

    // Two interrupted pushes: one from long ago (purged with PURGE_UPLOADS), one fresh.
    let pusher = regsweep_testkit::Pusher::new(&reg.url).expect("pusher");
    let uploads = format!(
        "{}/docker/registry/v2/repositories/{APP}/_uploads/",
        ROOT.trim_matches('/')
    );
    let old = pusher.start_upload(APP, b"half a layer").expect("upload");
    let fresh = pusher.start_upload(APP, b"half a layer").expect("upload");
    common::s3::put(
        &moto,
        &format!("{uploads}{old}/startedat"),
        b"2020-01-01T00:00:00Z",
    );
    assert!(!keys(&moto, &format!("{uploads}{old}/")).is_empty());
    // A small blob store is listed as one stream: what a dry run lists now...
    let (small, _) = common::run_expecting(
        &env(&s3, &[("MIN_AGE", "0"), ("DRY_RUN", "true")]),
        &["gc"],
        0,
    );
    let small: BTreeSet<String> = small
        .lines()
        .filter_map(|l| l.trim().strip_prefix("DRY_RUN: "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|d| d.starts_with("sha256:"))
        .map(str::to_owned)
        .collect();
    // ...then enough garbage under `00/` that regsweep estimates a large blob store and
    // lists the 256 prefixes in parallel: both ways are compared with the collector below.
    let mut extra = BTreeSet::new();
    for i in 0..70u32 {
        let hex = format!("00{}", &Digest::of(&i.to_le_bytes()).hex()[2..]);
        extra.insert(format!("sha256:{hex}"));
        common::s3::put(
            &moto,
            &format!(
                "{}/docker/registry/v2/blobs/sha256/00/{hex}/data",
                ROOT.trim_matches('/')
            ),
            b"garbage",
        );
    }
    // regsweep gc on the bucket removes exactly what the registry's collector lists in a
    // dry run; the collector then finds nothing left to remove.
    let want = reg.garbage_collect_dry_run();
    assert!(want.len() > 80, "{want:?}");
    assert_eq!(
        small,
        want.difference(&extra)
            .cloned()
            .collect::<BTreeSet<String>>(),
        "the one-stream listing finds what the collector finds"
    );
    let blobs_prefix = format!("{}/docker/registry/v2/blobs/", ROOT.trim_matches('/'));
    let before: BTreeSet<String> = keys(&moto, &blobs_prefix).into_iter().collect();
    let (text, _) = common::run_expecting(
        &env(
            &s3,
            &[
                ("MIN_AGE", "0"),
                ("REGISTRY_STOPPED", "true"),
                ("PURGE_UPLOADS", "168h"),
            ],
        ),
        &["gc"],
        0,
    );
    assert!(
        text.contains(&format!("Deleted {n} of {n} blobs", n = want.len()))
            && text.contains("Purged 1 of 1 uploads."),
        "{text}"
    );
    assert!(
        keys(&moto, &format!("{uploads}{old}/")).is_empty(),
        "the old upload went"
    );
    assert!(
        keys(&moto, &format!("{uploads}{fresh}/")).contains(&format!("{uploads}{fresh}/startedat")),
        "the fresh upload stays"
    );
    let after: BTreeSet<String> = keys(&moto, &blobs_prefix).into_iter().collect();
    let gone: BTreeSet<String> = before
        .difference(&after)
        .filter_map(|k| k.rsplit('/').nth(1).map(|hex| format!("sha256:{hex}")))
        .collect();
    assert_eq!(
        gone, want,
        "regsweep gc removed exactly the collector's list"
    );
    assert!(
        reg.garbage_collect_dry_run().is_empty(),
        "nothing left for the collector"
    );

    // garbage-collect with the registry stopped, restart, pull every kept tag in full.
    reg.garbage_collect();
    let url = reg.restart_with(
        "",
        &[
            ("S3_TEST_ENDPOINT", &moto.url),
            ("S3_TEST_BUCKET", BUCKET),
            ("S3_TEST_ROOT", ROOT),
        ],
    );
    for repo in [APP, OTHER, BASE] {
        let names: Vec<String> = tag_names(&moto, repo).into_iter().collect();
        assert!(pull_all_tags(&url, repo, &names) > names.len());
    }
    let b1 = named["B1"].1.hex();
    let blob = format!(
        "{}/docker/registry/v2/blobs/sha256/{}/{b1}/data",
        ROOT.trim_matches('/'),
        &b1[..2]
    );
    assert!(
        keys(&moto, &blob).is_empty(),
        "the deleted image's blob was collected"
    );
}

/// Writes `fill` into the bucket on `moto`; gives how many keys and tags it wrote.
fn fill_bucket(moto: &Moto, fill: &regsweep_testkit::s3fill::Fill) -> (usize, usize) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(regsweep_testkit::s3fill::fill(
        &moto.url, BUCKET, ROOT, fill,
    ))
    .expect("fill")
}

/// [`s3_env`] with the endpoint `url` instead (a proxy in front of the server).
fn s3_env_via(moto: &Moto, url: &str) -> Vec<(&'static str, String)> {
    let mut s3 = s3_env(moto);
    for (k, v) in &mut s3 {
        if *k == "S3_ENDPOINT" {
            *v = url.to_owned();
        }
    }
    s3
}

#[test]
fn s3_listing_stays_near_the_minimum_of_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path());
    let fill = regsweep_testkit::s3fill::Fill {
        repos: 1000,
        revisions: 2,
        tags: 2,
        unmatched_every: 200,
        blobs: true,
    };
    let (_, tags) = fill_bucket(&moto, &fill);
    let repositories = format!(
        "{}/docker/registry/v2/repositories/",
        ROOT.trim_matches('/')
    );
    // A repository nested inside another one (one revision, linking a manifest that is
    // there), and a directory with only `_uploads/`, which is no repository.
    let revision = keys(
        &moto,
        &format!("{repositories}fill/r00000/_manifests/revisions/"),
    )
    .into_iter()
    .next()
    .expect("a revision link");
    let nested = revision.replace("/r00000/", "/r00000/nested/");
    put(
        &moto,
        &nested,
        revision
            .rsplit('/')
            .nth(1)
            .map(|hex| format!("sha256:{hex}"))
            .expect("hex")
            .as_bytes(),
    );
    put(
        &moto,
        &format!("{repositories}fill/uploads-only/_uploads/u/startedat"),
        b"2020-01-01T00:00:00Z",
    );
    let manifest_keys = keys(&moto, &repositories).len();
    let s3 = s3_env(&moto);
    let report = run_json(&env(&s3, &[("DRY_RUN", "true"), ("OUTPUT_FORMAT", "json")]));
    assert_eq!(report["totals"]["repositories"], 1001);
    assert_eq!(report["totals"]["manifests"], 2001);
    assert!(
        report["repositories"]
            .as_array()
            .expect("repositories")
            .iter()
            .any(|r| r["name"] == "fill/r00000/nested"),
        "the nested repository is found"
    );
    let req = &report["s3_requests"];
    let lists = req["list_requests"].as_u64().expect("lists") as usize;
    let link_gets = req["get_link_requests"].as_u64().expect("gets") as usize;
    // One listing per repository (under 1000 keys each) and per candidate, every key
    // a thousand to a page, and a constant: discovery lists 1000 repositories a page
    // (rolled up at "/_"), plus the probe.
    let bound = fill.repos + 2 + manifest_keys / 1000 + 3;
    assert!(lists <= bound, "{lists} LIST requests > {bound}");
    assert!(
        link_gets * 100 <= tags,
        "{link_gets} tag-link GETs for {tags} tags"
    );
    assert!(link_gets > 0, "the unmatched tags needed GETs");
}

/// Environment overrides, the exit code they must give, and what stderr must say.
type ErrorCase<'a> = (Vec<(&'a str, &'a str)>, i32, &'a str);

#[test]
fn s3_configuration_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path());
    let s3 = s3_env(&moto);
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let cases: Vec<ErrorCase> = vec![
        (
            vec![("BUCKET", "no-such-bucket")],
            1,
            "bucket \"no-such-bucket\" does not exist",
        ),
        (
            vec![("S3_ENDPOINT", &dead)],
            1,
            "cannot reach the S3 endpoint",
        ),
        (vec![("REGISTRY_DIR", "/elsewhere")], 1, "is empty"),
        (vec![("BUCKET", "")], 2, "needs BUCKET"), // empty: left out of the environment
        (vec![("REGISTRY_STORAGE", "gcs")], 2, "REGISTRY_STORAGE"),
    ];
    for (extra, code, needle) in cases {
        let mut e: Vec<(&str, &str)> = env(&s3, &[("DRY_RUN", "true")]);
        e.retain(|(k, _)| !extra.iter().any(|(x, _)| x == k));
        e.extend(extra.iter().copied().filter(|(_, v)| !v.is_empty()));
        let out = regsweep(&e, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{extra:?}: {err}");
        assert!(
            err.contains(needle) && err.trim().lines().count() == 1,
            "{extra:?}: {err}"
        );
        assert!(
            out.stdout.is_empty(),
            "{extra:?}: nothing planned or printed"
        );
    }
    // ACCESS_KEY without SECRET_KEY is a usage error.
    let mut e: Vec<(&str, &str)> = env(&s3, &[("DRY_RUN", "true")]);
    e.retain(|(k, _)| *k != "SECRET_KEY");
    let out = regsweep(&e, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("SECRET_KEY"), "{err}");
}

/// Drops `<NextContinuationToken>` from a ListObjectsV2 answer (IsTruncated stays true).
fn drop_token(body: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(body);
    match (
        s.find("<NextContinuationToken>"),
        s.find("</NextContinuationToken>"),
    ) {
        (Some(a), Some(b)) => {
            format!("{}{}", &s[..a], &s[b + "</NextContinuationToken>".len()..]).into_bytes()
        }
        _ => body.to_vec(),
    }
}

/// Says IsTruncated false while keeping the continuation token.
fn deny_truncation(body: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(body)
        .replace(
            "<IsTruncated>true</IsTruncated>",
            "<IsTruncated>false</IsTruncated>",
        )
        .into_bytes()
}

/// Drops every `<LastModified>` of a listing.
fn drop_times(body: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(s.len());
    let mut rest: &str = &s;
    while let Some(a) = rest.find("<LastModified>") {
        out.push_str(&rest[..a]);
        match rest[a..].find("</LastModified>") {
            Some(b) => rest = &rest[a + b + "</LastModified>".len()..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.into_bytes()
}

#[test]
fn a_truncated_s3_listing_or_one_without_times_fails_its_repository_closed() {
    use common::proxy::{Fault, FaultProxy};
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path());
    // One repository with more than 1000 keys under `_manifests/`: its listing has pages.
    let fill = regsweep_testkit::s3fill::Fill {
        repos: 1,
        revisions: 700,
        tags: 300,
        unmatched_every: 0,
        blobs: true,
    };
    fill_bucket(&moto, &fill);
    let honest = {
        let s3 = s3_env(&moto);
        let mut env: Vec<(&str, &str)> = s3.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend([
            ("DRY_RUN", "true"),
            ("OUTPUT_FORMAT", "json"),
            ("MIN_AGE", "0"),
        ]);
        run_json(&env)
    };
    assert_eq!(honest["totals"]["failed_closed_repositories"], 0);
    assert_eq!(honest["totals"]["manifests"], 700);
    type Rewrite = fn(&[u8]) -> Vec<u8>;
    let rewrites: [(&str, Rewrite, &str); 3] = [
        ("no token", drop_token, "gives no continuation token"),
        (
            "token, not truncated",
            deny_truncation,
            "without IsTruncated",
        ),
        // Not truncation, but as dangerous: no link time turns the grace period off.
        ("no LastModified", drop_times, "gives no LastModified"),
    ];
    for (what, rewrite, says) in rewrites {
        let proxy = FaultProxy::start_keeping_host(
            &moto.url,
            Box::new(move |_, method, path| {
                let first_manifests_page = method == "GET"
                    && path.contains("list-type=2")
                    && path.contains("_manifests")
                    && !path.contains("continuation-token");
                if first_manifests_page {
                    Fault::Rewrite(rewrite)
                } else {
                    Fault::Pass
                }
            }),
        );
        let s3 = s3_env_via(&moto, &proxy.url);
        let mut env: Vec<(&str, &str)> = s3.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.extend([
            ("DRY_RUN", "true"),
            ("OUTPUT_FORMAT", "json"),
            ("MIN_AGE", "0"),
        ]);
        let out = regsweep(&env, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{what}: {err}");
        assert!(err.contains(says), "{what}: {err}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(report["totals"]["delete"], 0, "{what}");
        assert_eq!(report["totals"]["failed_closed_repositories"], 1, "{what}");
    }
}

#[test]
fn a_server_that_refuses_the_rolled_up_discovery_is_walked_level_by_level() {
    use common::proxy::{Fault, FaultProxy};
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path());
    let fill = regsweep_testkit::s3fill::Fill {
        repos: 3,
        revisions: 2,
        tags: 1,
        unmatched_every: 0,
        blobs: true,
    };
    fill_bucket(&moto, &fill);
    let direct = run_json(&env(
        &s3_env(&moto),
        &[("DRY_RUN", "true"), ("OUTPUT_FORMAT", "json")],
    ));
    // MinIO refuses any delimiter but "/".
    let proxy = FaultProxy::start_keeping_host(
        &moto.url,
        Box::new(|_, method, path| {
            if method == "GET" && path.contains("delimiter=%2F_") {
                Fault::Status(400, None)
            } else {
                Fault::Pass
            }
        }),
    );
    let s3 = s3_env_via(&moto, &proxy.url);
    let walked = run_json(&env(&s3, &[("DRY_RUN", "true"), ("OUTPUT_FORMAT", "json")]));
    assert_eq!(walked["totals"], direct["totals"]);
    assert_eq!(walked["totals"]["repositories"], 3);
    let names = |r: &serde_json::Value| -> Vec<String> {
        r["repositories"]
            .as_array()
            .expect("repositories")
            .iter()
            .map(|x| x["name"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(names(&walked), names(&direct));
    // The walk lists each directory level: more LISTs than the rolled-up discovery.
    let lists = |r: &serde_json::Value| r["s3_requests"]["list_requests"].as_u64().unwrap_or(0);
    assert!(
        lists(&walked) > lists(&direct),
        "{} LISTs walked, {} rolled up",
        lists(&walked),
        lists(&direct)
    );
}
