//! Issue 22 against the real docker-registry: digests pinned by workloads (`--keep-in-use`
//! with pod and Deployment JSON) and pulls in the registry's own log (`--pull-log`, both
//! logrus formatters) keep manifests the untagged cleanup would otherwise delete.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{TimeZone, Utc};
use common::{Registry, regsweep, run_expecting, verdicts};
use regsweep::digest::Digest;
use regsweep_testkit::push::{ImageSpec, Pushed, Pusher};

const REPO: &str = "team/app";

fn spec(seed: u64, arch: &'static str) -> ImageSpec {
    ImageSpec {
        os: "linux",
        arch,
        created: Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("date"),
        seed,
        oci: false,
    }
}

/// What the scenario pushed: a pinned index (two children), the image `prod` moved on
/// to, and two untagged images nobody uses.
struct Scene {
    pinned: Pushed,
    children: [Pushed; 2],
    current: Pushed,
    loose: [Pushed; 2],
}

/// Pushes the deployment-style scene: `prod` first on an index, then moved on.
fn push_scene(p: &Pusher) -> Scene {
    let a = p.image(REPO, &spec(1, "amd64")).expect("push");
    let b = p.image(REPO, &spec(2, "arm64")).expect("push");
    let pinned = p
        .index(
            REPO,
            &[(&a, "linux", "amd64"), (&b, "linux", "arm64")],
            false,
        )
        .expect("index");
    p.tag(REPO, "prod", &pinned).expect("tag");
    let current = p.image(REPO, &spec(3, "amd64")).expect("push");
    p.tag(REPO, "prod", &current).expect("tag moves on");
    let loose = [
        p.image(REPO, &spec(4, "amd64")).expect("push"),
        p.image(REPO, &spec(5, "amd64")).expect("push"),
    ];
    Scene {
        pinned,
        children: [a, b],
        current,
        loose,
    }
}

fn host(reg: &Registry) -> String {
    format!("127.0.0.1:{}", reg.port)
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write evidence");
    p.to_string_lossy().into_owned()
}

fn pod_list(reg: &Registry, d: &Digest) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"List","items":[{{"kind":"Pod","metadata":{{"name":"app-1"}},
        "spec":{{"containers":[{{"name":"app","image":"{h}/{REPO}:prod"}}],
                 "initContainers":[{{"name":"init","image":"busybox:1.36"}}]}},
        "status":{{"containerStatuses":[{{"name":"app","image":"{h}/{REPO}:prod",
                   "imageID":"docker-pullable://{h}/{REPO}@{d}"}}],
                 "initContainerStatuses":[{{"name":"init","image":"docker.io/library/busybox:1.36",
                   "imageID":"docker.io/library/busybox@sha256:{z}"}}]}}}}]}}"#,
        h = host(reg),
        z = "0".repeat(64)
    )
}

fn deployment_list(reg: &Registry, d: &Digest) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"List","items":[{{"apiVersion":"apps/v1","kind":"Deployment",
        "metadata":{{"name":"app"}},"spec":{{"template":{{"spec":{{"containers":[
        {{"name":"app","image":"{h}/{REPO}@{d}"}},{{"name":"side","image":"quay.io/x/y:1"}}]}}}}}}}}]}}"#,
        h = host(reg)
    )
}

fn env(reg: &Registry, root: &str, dry: bool) -> Vec<(&'static str, String)> {
    let mut e = vec![
        ("REGISTRY_URL", reg.url.clone()),
        ("REGISTRY_DIR", root.to_owned()),
        ("HASH_TAG_KEEP", "0".to_owned()),
    ];
    if dry {
        e.push(("DRY_RUN", "true".to_owned()));
        e.push(("OUTPUT_FORMAT", "json".to_owned()));
    }
    e
}

fn as_refs<'a>(e: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    e.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn verdict(report: &serde_json::Value, d: &Digest) -> String {
    verdicts(report)
        .get(&(REPO.to_owned(), *d))
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_pinned_digest_stays_with_its_children_and_the_rest_goes() {
    let reg = Registry::start();
    let s = push_scene(&reg.pusher());
    reg.age_links("2 hours ago");
    let root = reg.root().to_string_lossy().into_owned();
    let dir = tempfile::tempdir().expect("dir");

    // Deployment-list JSON, dry run: the pin is kept as in-use, its children as child-of.
    let deploy = write(
        dir.path(),
        "deploy.json",
        &deployment_list(&reg, &s.pinned.digest),
    );
    let out = regsweep(
        &as_refs(&env(&reg, &root, true)),
        &["--keep-in-use", &deploy],
    );
    common::assert_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(verdict(&report, &s.pinned.digest), "keep in-use");
    for c in &s.children {
        assert!(verdict(&report, &c.digest).starts_with("keep child-of"));
    }
    for l in &s.loose {
        assert_eq!(verdict(&report, &l.digest), "delete untagged");
    }
    assert_eq!(report["evidence"]["pinned_digests"], 1);
    assert_eq!(report["evidence"]["references_ignored"], 1);

    // Pod-list JSON, for real: what is left is the pin, its children and the tagged image.
    let pods = write(dir.path(), "pods.json", &pod_list(&reg, &s.pinned.digest));
    let (text, _) = run_expecting(
        &as_refs(&env(&reg, &root, false)),
        &["--keep-in-use", &pods],
        0,
    );
    assert!(text.contains("Kept as in use or pulled recently"), "{text}");
    assert!(text.contains("(in-use)"), "{text}");
    assert!(
        text.contains("3 references to other registries ignored"),
        "{text}"
    );
    let left: BTreeSet<Digest> = [&s.pinned, &s.children[0], &s.children[1], &s.current]
        .iter()
        .map(|p| p.digest)
        .collect();
    assert_eq!(reg.revisions(REPO), left);
}

#[test]
fn plain_reference_lines_and_a_bad_line() {
    let reg = Registry::start();
    let s = push_scene(&reg.pusher());
    reg.age_links("2 hours ago");
    let root = reg.root().to_string_lossy().into_owned();
    let dir = tempfile::tempdir().expect("dir");
    let list = write(
        dir.path(),
        "refs.txt",
        &format!(
            "# pinned\n{}/{REPO}@{}\nghcr.io/o/r@{}\n",
            host(&reg),
            s.loose[0].digest,
            s.loose[1].digest
        ),
    );
    let out = regsweep(&as_refs(&env(&reg, &root, true)), &["--keep-in-use", &list]);
    common::assert_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(verdict(&report, &s.loose[0].digest), "keep in-use");
    assert_eq!(verdict(&report, &s.loose[1].digest), "delete untagged");

    let bad = write(
        dir.path(),
        "bad.txt",
        "127.0.0.1:1/ok:v1\nthis is not an image\n",
    );
    let (_, err) = run_expecting(
        &as_refs(&env(&reg, &root, true)),
        &["--keep-in-use", &bad],
        2,
    );
    assert!(err.contains("bad.txt:2:"), "{err}");
    let (_, err) = run_expecting(
        &as_refs(&env(&reg, &root, true)),
        &[
            "--keep-pulled-within",
            "1d",
            "--pull-log",
            "/nonexistent/registry.log",
        ],
        2,
    );
    assert!(err.contains("/nonexistent/registry.log"), "{err}");
}

/// Pulls by tag and by digest through the registry, whose log records them; then a
/// cleanup with the log as evidence keeps what was pulled and deletes the rest.
fn pulls_in_the_log_are_kept(formatter: &str) {
    let reg = Registry::start_with(
        "",
        &[
            ("REGISTRY_LOG_FORMATTER", formatter),
            ("REGISTRY_LOG_ACCESSLOG_DISABLED", "false"),
            ("REGISTRY_LOG_LEVEL", "info"),
        ],
    );
    let p = reg.pusher();
    let s = push_scene(&p);
    // A hash tag beyond HASH_TAG_KEEP=0, pulled by tag: the tag's current target is what a
    // pull by tag protects (2.8 logs no digest for it).
    let pulled_by_tag = p.image(REPO, &spec(6, "amd64")).expect("push");
    p.tag(REPO, "abc1234", &pulled_by_tag).expect("tag");
    let expired = p.image(REPO, &spec(7, "amd64")).expect("push");
    p.tag(REPO, "def5678", &expired).expect("tag");
    let accept = "application/vnd.docker.distribution.manifest.v2+json";
    let client = reqwest::blocking::Client::new();
    let get = |method: reqwest::Method, r: &str| {
        let st = client
            .request(method, format!("{}/v2/{REPO}/manifests/{r}", reg.url))
            .header("Accept", accept)
            .send()
            .expect("pull")
            .status();
        assert_eq!(st.as_u16(), 200, "{r}");
    };
    get(reqwest::Method::GET, &s.loose[0].digest.to_string());
    get(reqwest::Method::HEAD, "abc1234");
    reg.age_links("2 hours ago");
    let root = reg.root().to_string_lossy().into_owned();
    let log = reg.dir.path().join("registry.log");
    let text = std::fs::read_to_string(&log).expect("registry log");
    assert!(text.contains("response completed"), "{text}");

    let log = log.to_string_lossy().into_owned();
    let args = ["--keep-pulled-within", "1h", "--pull-log", &log];
    let out = regsweep(&as_refs(&env(&reg, &root, true)), &args);
    common::assert_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let v = verdict(&report, &s.loose[0].digest);
    assert_eq!(v, "keep pulled-recently", "{formatter}");
    assert_eq!(
        verdict(&report, &pulled_by_tag.digest),
        "keep pulled-recently"
    );
    assert!(verdict(&report, &expired.digest).starts_with("delete hash-tag-expired"));
    assert_eq!(verdict(&report, &s.loose[1].digest), "delete untagged");
    // Never pulled (the pusher reads nothing back): the old index goes.
    assert_eq!(verdict(&report, &s.pinned.digest), "delete untagged");

    // The registry started moments ago: its log covers less than the hour asked for, a
    // warning (exit 4) that says from when evidence exists; the deletes still happen.
    let (text, err) = run_expecting(&as_refs(&env(&reg, &root, false)), &args, 0);
    assert!(text.contains("pulled-recently"), "{text}");
    assert!(err.contains("pull evidence exists only from 20"), "{err}");
    let left = reg.revisions(REPO);
    assert!(left.contains(&s.loose[0].digest));
    assert!(left.contains(&pulled_by_tag.digest));
    assert!(!left.contains(&s.loose[1].digest));
    assert!(!left.contains(&expired.digest));
}

#[test]
fn pulls_in_the_json_log_are_kept() {
    pulls_in_the_log_are_kept("json");
}

#[test]
fn pulls_in_the_text_log_are_kept() {
    pulls_in_the_log_are_kept("text");
}

/// `regsweep events` on `addr`, storing into `store`, once it accepts connections.
fn start_events(addr: &str, store: &Path) -> std::process::Child {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .args(["events", "--listen", addr, "--store"])
        .arg(store)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start regsweep events");
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("regsweep events did not come up on {addr}");
}

/// Waits until the store names `d` (the registry posts asynchronously).
fn wait_stored(store: &Path, d: &Digest) {
    for _ in 0..200 {
        if std::fs::read_to_string(store).is_ok_and(|t| t.contains(&d.to_string())) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "pull of {d} never stored: {:?}",
        std::fs::read_to_string(store)
    );
}

#[test]
fn notifications_from_the_registry_survive_a_kill_and_keep_what_was_pulled() {
    let dir = tempfile::tempdir().expect("dir");
    let store = dir.path().join("pulls.jsonl");
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut events = start_events(&addr, &store);
    let extra = format!(
        "notifications:\n  endpoints:\n    - name: regsweep\n      url: http://{addr}/events\n      timeout: 2s\n      threshold: 3\n      backoff: 200ms\n"
    );
    let reg = Registry::start_with(&extra, &[]);
    let p = reg.pusher();
    let s = push_scene(&p);
    let pull = |r: &str| {
        let (code, _) = p.get(REPO, &format!("manifests/{r}")).expect("pull");
        assert_eq!(code, 200, "{r}");
    };
    pull(&s.loose[0].digest.to_string());
    wait_stored(&store, &s.loose[0].digest);

    // Killed outright, then started again: what was stored stays, new pulls are stored.
    events.kill().expect("kill -9");
    let _ = events.wait();
    let mut events = start_events(&addr, &store);
    assert!(
        std::fs::read_to_string(&store)
            .expect("store")
            .contains(&s.loose[0].digest.to_string())
    );
    pull(&s.children[0].digest.to_string());
    wait_stored(&store, &s.children[0].digest);
    events.kill().expect("kill");
    let _ = events.wait();

    reg.age_links("2 hours ago");
    let root = reg.root().to_string_lossy().into_owned();
    let store = store.to_string_lossy().into_owned();
    let args = ["--keep-pulled-within", "1h", "--pull-events", &store];
    let out = regsweep(&as_refs(&env(&reg, &root, true)), &args);
    common::assert_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(verdict(&report, &s.loose[0].digest), "keep pulled-recently");
    assert_eq!(
        verdict(&report, &s.children[0].digest),
        "keep pulled-recently"
    );
    assert_eq!(verdict(&report, &s.loose[1].digest), "delete untagged");
    let decisions = report["repositories"][0]["decisions"]
        .as_array()
        .expect("decisions");
    let kept = decisions
        .iter()
        .find(|d| d["digest"] == s.loose[0].digest.to_string())
        .expect("decision");
    assert_eq!(kept["source"], "pull-events");

    // The store began moments ago, less than the hour asked for: a warning (exit 4).
    let (text, err) = run_expecting(&as_refs(&env(&reg, &root, false)), &args, 0);
    assert!(text.contains("(pull-events)"), "{text}");
    assert!(err.contains("pull evidence exists only from"), "{err}");
    let left = reg.revisions(REPO);
    assert!(left.contains(&s.loose[0].digest) && left.contains(&s.children[0].digest));
    assert!(!left.contains(&s.loose[1].digest));
}
