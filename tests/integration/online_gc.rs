//! `regsweep gc --online` against the real registry while it serves: push storms (filesystem,
//! S3, a Redis blob descriptor cache) that break no image, a control that proves the storm
//! sees broken images, crashes at each step, the refusals, and the Redis cache cleared.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::images::{garbage_image, keep_image, spec};
use common::quarantine::held;
use common::redis::Redis;
use common::s3::{Moto, keys, registry_on, s3_env};
use common::{Registry, regsweep};
use regsweep::digest::Digest;
use regsweep_testkit::stress::{self, StormConfig};

/// The settle period of the storms' collections: long against a manifest PUT on loopback.
const SETTLE: &str = "1500ms";

/// Runs one online collection of the registry's filesystem; gives its exit code and output.
fn online_gc(reg: &Registry, extra_env: &[(&str, &str)], extra: &[&str]) -> (i32, String, String) {
    let root = reg.root().to_string_lossy().into_owned();
    let config = reg.config().to_string_lossy().into_owned();
    let mut env = vec![
        ("REGISTRY_DIR", root.as_str()),
        ("MIN_AGE", "0"),
        ("QUIET", "true"),
    ];
    env.extend_from_slice(extra_env);
    let mut args = vec![
        "gc",
        "--online",
        "--settle",
        SETTLE,
        "--registry-config",
        &config,
    ];
    args.extend_from_slice(extra);
    let out = regsweep(&env, &args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sums `<n> quarantined blobs they name put back` over a collection's report.
fn put_back(stdout: &str) -> usize {
    stdout
        .lines()
        .filter_map(|l| l.split("; ").nth(1))
        .filter_map(|t| t.strip_suffix(" quarantined blobs they name put back."))
        .filter_map(|n| n.parse::<usize>().ok())
        .sum()
}

/// `Deleted <n> of` from a collection's closing line.
fn deleted(stdout: &str) -> usize {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Deleted "))
        .filter_map(|t| t.split(' ').next()?.parse::<usize>().ok())
        .sum()
}

fn storm(url: &str, seed: u64) -> StormConfig {
    StormConfig {
        url: url.to_owned(),
        pushers: 3,
        pullers: 1,
        pool: 16,
        seed,
    }
}

#[test]
fn a_push_storm_during_online_collections_breaks_no_image_on_a_filesystem() {
    let reg = Registry::start();
    let (mut total_deleted, mut total_put_back, mut outputs) = (0, 0, Vec::new());
    let report = stress::run(&storm(&reg.url, 1), Duration::from_secs(12), || {
        let (code, out, err) = online_gc(&reg, &[], &[]);
        total_deleted += deleted(&out);
        total_put_back += put_back(&out);
        outputs.push(format!("exit {code}\n{out}{err}"));
        code
    })
    .expect("storm");
    eprintln!(
        "storm: {:?}; collections {:?}; deleted {total_deleted}, put back {total_put_back}",
        report.counts, report.gc_codes
    );
    assert!(
        report.broken.is_empty(),
        "broken images after online collections: {:?}\n{}",
        report.broken,
        outputs.join("\n")
    );
    assert!(
        report.gc_codes.iter().all(|c| *c == 0),
        "every collection exits 0: {}",
        outputs.join("\n")
    );
    assert!(
        report.counts.pushed > 30 && report.counts.deleted > 10,
        "{:?}",
        report.counts
    );
    assert!(report.gc_codes.len() >= 3, "{:?}", report.gc_codes);
    assert!(
        total_deleted > 0,
        "the collections deleted garbage: {}",
        outputs.join("\n")
    );
    assert!(
        held(&reg.root()).is_empty(),
        "the quarantine is empty at the end"
    );
}

#[test]
fn the_storm_sees_the_images_the_registrys_collector_breaks_while_the_registry_serves() {
    // The registry's collector run while the registry serves, with the registry's default
    // (Debian's config) in-memory blob descriptor cache: the harness must see broken images,
    // or its zero above would prove nothing.
    let reg = Registry::start_with("", &[("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "inmemory")]);
    let config = reg.config();
    let report = stress::run(&storm(&reg.url, 2), Duration::from_secs(10), || {
        let st = Command::new("docker-registry")
            .arg("garbage-collect")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("docker-registry garbage-collect");
        std::thread::sleep(Duration::from_millis(200));
        st.code().unwrap_or(-1)
    })
    .expect("storm");
    eprintln!(
        "control storm: {:?}, broken {}",
        report.counts,
        report.broken.len()
    );
    assert!(
        !report.broken.is_empty(),
        "the registry's collector run while serving broke nothing the harness could see: {:?}",
        report.counts
    );
    // And regsweep refuses to collect online beside that cache, naming it.
    let (code, _, err) = online_gc(
        &reg,
        &[("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "inmemory")],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("inmemory") && err.contains("config.yml"),
        "{err}"
    );
}

#[test]
fn online_collection_refuses_without_a_cache_it_can_clear() {
    let reg = Registry::start();
    keepers(&reg, "refuse/keep", 1);
    let root = reg.root().to_string_lossy().into_owned();
    let env = [("REGISTRY_DIR", root.as_str())];
    // No registry configuration at all.
    let out = regsweep(&env, &["gc", "--online"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--registry-config"));
    // A cache type regsweep does not know.
    let (code, _, err) = online_gc(
        &reg,
        &[("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "memcached")],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("memcached"), "{err}");
    // A configuration file that is not the registry's YAML.
    let bad = reg.dir.path().join("bad.yml");
    std::fs::write(&bad, "storage: [1, 2").expect("write");
    let out = regsweep(
        &env,
        &[
            "gc",
            "--online",
            "--registry-config",
            &bad.to_string_lossy(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yml"));
    // --online with --registry-stopped is a contradiction.
    let out = regsweep(
        &env,
        &[
            "gc",
            "--online",
            "--registry-stopped",
            "--registry-config",
            &reg.config().to_string_lossy(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
}

/// Pushes `n` images to `repo` and deletes them: their blobs are garbage.
fn garbage(reg: &Registry, repo: &str, n: u64) {
    for seed in 0..n {
        garbage_image(reg, repo, 10_000 + seed);
    }
}

/// Pushes `n` tagged images to `repo`: what must survive.
fn keepers(reg: &Registry, repo: &str, n: u64) -> Vec<String> {
    (0..n).map(|seed| keep_image(reg, repo, seed)).collect()
}

/// Starts an online collection with stdout piped; gives the child once a stdout line
/// starting with `marker` was read (the step it names has happened).
fn started_until(reg: &Registry, settle: &str, marker: &str) -> Child {
    let root = reg.root().to_string_lossy().into_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .env_clear()
        .envs([
            ("REGISTRY_DIR", root.as_str()),
            ("MIN_AGE", "0"),
            ("QUIET", "true"),
        ])
        .args(["gc", "--online", "--settle", settle, "--registry-config"])
        .arg(reg.config())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut seen = String::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("line");
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with(marker) {
            // Keep reading, so that the run never writes into a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return child;
        }
    }
    let out = child.wait_with_output().expect("wait");
    panic!(
        "the collection ended ({:?}) before printing {marker:?}:\n{seen}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kill9(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_collection_killed_at_any_step_loses_nothing_and_the_next_run_puts_back_or_finishes() {
    let reg = Registry::start();
    let tags = keepers(&reg, "crash/keep", 3);
    garbage(&reg, "crash/gone", 40);
    let blob_count = || {
        common::snapshot(&reg.root().join("docker/registry/v2/blobs"))
            .keys()
            .filter(|p| p.file_name().is_some_and(|n| n == "data"))
            .count()
    };
    let before = blob_count();
    // 1. Killed right after the quarantine: the garbage sits in quarantine.
    kill9(started_until(&reg, "1h", "Quarantined"));
    let in_quarantine = held(&reg.root()).len();
    assert!(in_quarantine >= 80, "{in_quarantine} blobs in quarantine");
    assert_eq!(
        blob_count() + in_quarantine,
        before,
        "every blob is in one place or the other"
    );
    // A pull of what is kept works meanwhile.
    common::pull_all_tags(&reg.url, "crash/keep", &tags);
    // 2. --restore-quarantine killed at once, then again to the end: all back.
    let root = reg.root().to_string_lossy().into_owned();
    let config = reg.config().to_string_lossy().into_owned();
    let env = [("REGISTRY_DIR", root.as_str()), ("QUIET", "true")];
    let child = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .env_clear()
        .envs(env)
        .args(["gc", "--restore-quarantine"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(30));
    kill9(child);
    let (out, _) = common::run_expecting(&env, &["gc", "--restore-quarantine"], 0);
    assert!(
        out.contains("Put back") || out.contains("is empty"),
        "{out}"
    );
    assert!(held(&reg.root()).is_empty());
    assert_eq!(blob_count(), before, "every blob is back");
    // 3. Quarantined again, then killed while deleting the quarantine: the next collection
    //    puts back what is left and collects it again to the end.
    kill9(started_until(&reg, "300ms", "Settled: deleting"));
    let (out, err) = common::run_expecting(
        &[
            ("REGISTRY_DIR", root.as_str()),
            ("MIN_AGE", "0"),
            ("QUIET", "true"),
        ],
        &[
            "gc",
            "--online",
            "--settle",
            "300ms",
            "--registry-config",
            &config,
        ],
        0,
    );
    assert!(held(&reg.root()).is_empty(), "{out}{err}");
    // What is kept pulls in full; the garbage is gone (its blobs, nothing else).
    common::pull_all_tags(&reg.url, "crash/keep", &tags);
    assert_eq!(blob_count(), before - in_quarantine, "{out}{err}");
    // 4. A signal while settling puts everything back and exits 130.
    garbage(&reg, "crash/gone", 5);
    let child = started_until(&reg, "1h", "Quarantined");
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    assert!(held(&reg.root()).is_empty(), "SIGTERM puts everything back");
    common::pull_all_tags(&reg.url, "crash/keep", &tags);
}

#[test]
fn a_manifest_pushed_while_its_blobs_sit_in_quarantine_brings_them_back() {
    let reg = Registry::start();
    let p = reg.pusher();
    let spec = regsweep_testkit::ImageSpec {
        os: "linux",
        arch: "amd64",
        created: chrono::Utc::now(),
        seed: 77,
        oci: true,
    };
    keepers(&reg, "back/keep", 1);
    let img = p.image("back/a", &spec).expect("push");
    assert_eq!(p.delete("back/a", &img.digest).expect("delete"), 202);
    // The collection quarantines the image's blobs and settles for a while.
    let child = started_until(&reg, "3s", "Quarantined");
    assert!(!held(&reg.root()).is_empty());
    // The image's manifest is pushed again without its blobs (the registry's links in
    // another repository and a stale client: written straight into storage as a
    // manifest PUT that checked its blobs before the quarantine would have written them).
    let repo = reg
        .root()
        .join("docker/registry/v2/repositories/back/a/_manifests");
    let link = repo.join("revisions/sha256").join(img.digest.hex());
    std::fs::create_dir_all(&link).expect("mkdir");
    std::fs::write(link.join("link"), img.digest.to_string()).expect("link");
    let tag = repo.join("tags/again");
    std::fs::create_dir_all(tag.join("current")).expect("mkdir");
    std::fs::write(tag.join("current/link"), img.digest.to_string()).expect("tag link");
    std::fs::create_dir_all(tag.join("index/sha256").join(img.digest.hex())).expect("mkdir");
    std::fs::write(
        tag.join("index/sha256").join(img.digest.hex()).join("link"),
        img.digest.to_string(),
    )
    .expect("index link");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Everything the manifest names came back, the manifest's own blob included.
    assert!(held(&reg.root()).is_empty());
    common::pull_all_tags(&reg.url, "back/a", &["again".to_owned()]);
}

/// Pushes an image, deletes it; gives it.
fn pushed_and_deleted(reg: &Registry, repo: &str, seed: u64) -> regsweep_testkit::Pushed {
    garbage_image(reg, repo, seed).0
}

/// Pushes `img` again as a client does (each blob HEADed, skipped when the registry says it
/// has it) under `tag`; gives whether it then pulls in full.
fn repush_pulls(reg: &Registry, repo: &str, img: &regsweep_testkit::Pushed, seed: u64) -> bool {
    let p = reg.pusher();
    let again = p.image(repo, &spec(seed)).expect("push again");
    assert_eq!(again.digest, img.digest);
    p.tag(repo, "again", &again).expect("tag");
    let v: serde_json::Value = serde_json::from_slice(&again.body).expect("json");
    let blobs = v["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(v.get("config"));
    blobs.into_iter().all(|b| {
        let d = b["digest"]
            .as_str()
            .and_then(Digest::parse)
            .expect("digest");
        matches!(p.get(repo, &format!("blobs/{d}")), Ok((200, body)) if Digest::of(&body) == d)
    })
}

#[test]
fn with_a_redis_cache_a_collection_clears_what_it_deleted_so_a_push_uploads_it_again() {
    let redis = Redis::start();
    let addr = redis.addr();
    let cache = [
        ("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "redis"),
        ("REGISTRY_REDIS_ADDR", addr.as_str()),
    ];
    let reg = Registry::start_with("", &cache);
    keepers(&reg, "cache/keep", 1);
    let root = reg.root().to_string_lossy().into_owned();
    let config = reg.config().to_string_lossy().into_owned();
    let mut env = vec![
        ("REGISTRY_DIR", root.as_str()),
        ("MIN_AGE", "0"),
        ("QUIET", "true"),
    ];
    env.extend_from_slice(&cache);
    // Control: the registry stopped, an offline collection without the registry's
    // configuration, the registry started again: Redis still claims the blobs, a push
    // skips them, and the image does not pull.
    let first = pushed_and_deleted(&reg, "cache/a", 1);
    reg.stop();
    common::run_expecting(&env, &["gc", "--registry-stopped"], 0);
    reg.restart_with("", &cache);
    assert!(
        !repush_pulls(&reg, "cache/a", &first, 1),
        "the stale cache breaks the push"
    );
    // So broken that its manifest's own blob is missing (the registry skipped writing it
    // too): a collection would stop on it. Out of the way.
    std::fs::remove_dir_all(reg.root().join("docker/registry/v2/repositories/cache/a"))
        .expect("rm cache/a");
    // Offline, with the registry's configuration: the entries go with the blobs.
    let second = pushed_and_deleted(&reg, "cache/b", 2);
    reg.stop();
    let (out, _) = common::run_expecting(
        &env,
        &["gc", "--registry-stopped", "--registry-config", &config],
        0,
    );
    assert!(out.contains("Redis blob descriptor cache"), "{out}");
    reg.restart_with("", &cache);
    assert!(
        repush_pulls(&reg, "cache/b", &second, 2),
        "pushed again, it pulls in full"
    );
    // Online: the same, the registry serving throughout.
    let third = pushed_and_deleted(&reg, "cache/c", 3);
    let (code, out, err) = online_gc(&reg, &cache, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        repush_pulls(&reg, "cache/c", &third, 3),
        "pushed again, it pulls in full"
    );
    // And a storm with online collections beside the Redis cache breaks nothing.
    let mut outputs = Vec::new();
    let report = stress::run(&storm(&reg.url, 3), Duration::from_secs(8), || {
        let (code, out, err) = online_gc(&reg, &cache, &[]);
        outputs.push(format!("exit {code}\n{out}{err}"));
        code
    })
    .expect("storm");
    eprintln!("redis storm: {:?} {:?}", report.counts, report.gc_codes);
    assert!(report.broken.is_empty(), "{:?}", report.broken);
    assert!(
        report.gc_codes.iter().all(|c| *c == 0),
        "{}",
        outputs.join("\n")
    );
}

#[test]
fn a_push_storm_during_online_collections_breaks_no_image_on_s3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path());
    let reg = registry_on(&moto);
    let s3 = s3_env(&moto);
    let mut env: Vec<(&str, &str)> = s3.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([("MIN_AGE", "0"), ("QUIET", "true")]);
    let config = reg.config().to_string_lossy().into_owned();
    let mut outputs = Vec::new();
    let mut total_deleted = 0;
    let report = stress::run(&storm(&reg.url, 4), Duration::from_secs(10), || {
        let out = regsweep(
            &env,
            &[
                "gc",
                "--online",
                "--settle",
                SETTLE,
                "--registry-config",
                &config,
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        total_deleted += deleted(&stdout);
        outputs.push(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
        out.status.code().unwrap_or(-1)
    })
    .expect("storm");
    eprintln!("s3 storm: {:?} {:?}", report.counts, report.gc_codes);
    assert!(
        report.broken.is_empty(),
        "{:?}\n{}",
        report.broken,
        outputs.join("\n")
    );
    assert!(
        report.gc_codes.iter().all(|c| *c == 0),
        "{}",
        outputs.join("\n")
    );
    assert!(total_deleted > 0, "{}", outputs.join("\n"));
    let left = keys(&moto, "registry/regsweep-quarantine/");
    assert!(
        left.is_empty(),
        "the quarantine is empty at the end: {left:?}"
    );
}
