//! Attacks on `regsweep gc --online` against the real registry on 127.0.0.1: each test is a
//! way an online collection could lose an image a client was told was pushed, strand a blob
//! in quarantine, delete something referenced, or misreport.

use crate::common;

use common::images::{garbage_image, keep_image};

use common::quarantine::held;
use common::redis::Redis;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::Registry;
use regsweep::digest::Digest;
use serde_json::json;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn v2(reg: &Registry) -> PathBuf {
    reg.root().join("docker/registry/v2")
}

fn gc_env(reg: &Registry) -> Vec<(String, String)> {
    vec![
        (
            "REGISTRY_DIR".into(),
            reg.root().to_string_lossy().into_owned(),
        ),
        ("MIN_AGE".into(), "0".into()),
        ("QUIET".into(), "true".into()),
    ]
}

/// A running online collection whose stdout is gathered on a thread.
struct Running {
    child: Child,
    seen: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Waits for the end; gives the exit code, all of stdout, and stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        let st = self.child.wait().expect("wait");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let out = self.seen.lock().expect("lock").clone();
        (st.code(), out, err)
    }
}

/// Starts `regsweep gc --online --settle <settle>` (plus `extra_args`, `extra_env`) and
/// returns once a stdout line starting with `marker` was printed.
fn online_until(
    reg: &Registry,
    settle: &str,
    marker: &str,
    extra_env: &[(&str, &str)],
    extra_args: &[&str],
) -> Running {
    let mut c = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in gc_env(reg) {
        c.env(k, v);
    }
    c.envs(extra_env.iter().copied());
    c.args(["gc", "--online", "--settle", settle, "--registry-config"])
        .arg(reg.config())
        .args(extra_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let s2 = seen.clone();
    let m = marker.to_owned();
    let reader = std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let hit = line.starts_with(&m);
            {
                let mut s = s2.lock().expect("lock");
                s.push_str(&line);
                s.push('\n');
            }
            if hit && !sent {
                sent = true;
                let _ = tx.send(());
            }
        }
    });
    let mut r = Running {
        child,
        seen,
        reader: Some(reader),
    };
    if rx.recv_timeout(Duration::from_secs(15)).is_err() {
        let _ = r.child.kill();
        let (code, out, err) = r.finish();
        panic!("the collection ended ({code:?}) before printing {marker:?}:\n{out}{err}");
    }
    r
}

/// Runs regsweep to the end with the collection's environment plus `extra_env`.
fn run(reg: &Registry, extra_env: &[(&str, &str)], args: &[&str]) -> Output {
    let base = gc_env(reg);
    let mut env: Vec<(&str, &str)> = base.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend_from_slice(extra_env);
    common::regsweep(&env, args)
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An OCI image manifest over `config` and `layers` (bytes each), with an optional subject.
fn oci_manifest(config: &[u8], layers: &[&[u8]], subject: Option<(&Digest, usize)>) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": Digest::of(config).to_string()},
        "layers": layers.iter().map(|l| json!({"mediaType": OCI_LAYER, "size": l.len(), "digest": Digest::of(l).to_string()})).collect::<Vec<_>>(),
    });
    if let Some((d, size)) = subject {
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "size": size, "digest": d.to_string()});
    }
    serde_json::to_vec(&m).expect("json")
}

/// What the registry writes for a manifest PUT whose blob check passed before the
/// quarantine and whose writes land after it: the manifest's blob (if absent), its revision
/// link, and the tag (current and index links).
fn land_put(reg: &Registry, repo: &str, body: &[u8], tag: &str) -> Digest {
    let d = Digest::of(body);
    let data = reg.blob_path(&d);
    if !data.exists() {
        std::fs::create_dir_all(data.parent().expect("parent")).expect("mkdir");
        std::fs::write(&data, body).expect("blob");
    }
    let m = v2(reg).join("repositories").join(repo).join("_manifests");
    let rev = m.join("revisions/sha256").join(d.hex());
    std::fs::create_dir_all(&rev).expect("mkdir");
    std::fs::write(rev.join("link"), d.to_string()).expect("link");
    let t = m.join("tags").join(tag);
    std::fs::create_dir_all(t.join("current")).expect("mkdir");
    std::fs::write(t.join("current/link"), d.to_string()).expect("link");
    let idx = t.join("index/sha256").join(d.hex());
    std::fs::create_dir_all(&idx).expect("mkdir");
    std::fs::write(idx.join("link"), d.to_string()).expect("link");
    d
}

fn layer(seed: &str) -> Vec<u8> {
    format!("layer {seed}\n").repeat(100).into_bytes()
}

fn config(seed: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"architecture": "amd64", "os": "linux", "config": {"Env": [seed]},
        "rootfs": {"type": "layers", "diff_ids": []}}),
    )
    .expect("json")
}

/// GETs every blob `manifest` names from `repo`; gives those that do not answer 200.
fn missing(reg: &Registry, repo: &str, blobs: &[&[u8]]) -> Vec<String> {
    let p = reg.pusher();
    blobs
        .iter()
        .map(|b| Digest::of(b))
        .filter(|d| p.get(repo, &format!("blobs/{d}")).expect("get").0 != 200)
        .map(|d| d.to_string())
        .collect()
}

/// A manifest whose digest some other manifest's `subject` names (an OCI referrer pushed
/// before its subject, which OCI allows and registry 2.8 accepts) is pushed during the
/// settle period, naming blobs that sit in quarantine (its PUT checked them before the
/// quarantine). The mark read the subject digest, found no blob, and recorded it as read:
/// every re-mark then skips the new revision, and its blobs are deleted. The control
/// image, pushed the same way but named by nothing, comes back.
#[test]
fn a_manifest_pushed_during_the_settle_whose_digest_a_referrer_named_keeps_its_blobs() {
    let reg = Registry::start();
    let p = reg.pusher();
    // Blobs uploaded (201), not yet referenced: what a push in progress leaves, MIN_AGE 0.
    let (la, ca) = (layer("subject"), config("subject"));
    let (lb, cb) = (layer("control"), config("control"));
    for b in [&la, &ca, &lb, &cb] {
        p.blob("att/app", b).expect("blob");
    }
    let subject_body = oci_manifest(&ca, &[&la], None);
    let control_body = oci_manifest(&cb, &[&lb], None);
    let subject = Digest::of(&subject_body);
    // The referrer (a signature, an SBOM) is pushed first, naming the subject.
    let (sl, sc) = (b"{\"sbom\":1}".to_vec(), b"{}".to_vec());
    p.blob("att/sig", &sl).expect("blob");
    p.blob("att/sig", &sc).expect("blob");
    let referrer = oci_manifest(&sc, &[&sl], Some((&subject, subject_body.len())));
    p.manifest("att/sig", Some("sbom"), OCI_MANIFEST, referrer)
        .expect("referrer PUT 201");
    let gc = online_until(&reg, "2s", "Quarantined", &[], &[]);
    let q = held(&reg.root());
    assert!(
        q.contains(&Digest::of(&la).hex().to_string())
            && q.contains(&Digest::of(&lb).hex().to_string()),
        "both layers quarantined: {q:?}"
    );
    // Both PUTs checked their blobs before the quarantine; their writes land now.
    land_put(&reg, "att/app", &subject_body, "subject");
    land_put(&reg, "att/app", &control_body, "control");
    let (code, out, err) = gc.finish();
    let lost_control = missing(&reg, "att/app", &[&lb, &cb]);
    let lost_subject = missing(&reg, "att/app", &[&la, &ca]);
    assert!(
        lost_control.is_empty(),
        "control: {lost_control:?}\nexit {code:?}\n{out}{err}"
    );
    assert!(
        lost_subject.is_empty(),
        "image att/app:subject (pushed, 201) lost {lost_subject:?}; the control image came back\nexit {code:?}\n{out}{err}"
    );
    assert_eq!(code, Some(0), "{out}{err}");
}

/// The same loss with nothing written by hand: the registry's own race. A manifest whose
/// config is garbage (uploaded, unreferenced) is PUT with 25 000 layer entries, so that the
/// registry checks its config first and spends most of a second checking the rest before
/// it writes its links; the online collection starts meanwhile and quarantines the config.
/// Without a referrer naming the manifest, the re-mark puts the config back (the design
/// works); with one (pushed earlier to another repository, naming the manifest as its
/// subject), the PUT answers 201 and the config is deleted.
#[test]
fn a_real_put_racing_the_quarantine_keeps_its_config_even_when_a_referrer_named_it_first() {
    let reg = Registry::start();
    let p = reg.pusher();
    let x = b"shared layer".to_vec();
    let kc = config("keep");
    p.blob("race/app", &x).expect("blob");
    p.blob("race/app", &kc).expect("blob");
    p.manifest(
        "race/app",
        Some("keep"),
        OCI_MANIFEST,
        oci_manifest(&kc, &[&x], None),
    )
    .expect("keep");
    let layers: Vec<&[u8]> = vec![&x; 25_000];
    let mut verdicts = Vec::new();
    let trials = [250u64, 400, 550, 700, 850]
        .into_iter()
        .flat_map(|ms| [(ms, false), (ms, true)])
        .enumerate();
    for (trial, (delay, with_referrer)) in trials {
        if verdicts.iter().any(|(w, _, _)| *w) && verdicts.iter().any(|(w, _, _)| !*w) {
            break;
        }
        let c = config(&format!("race {trial}"));
        p.blob("race/app", &c).expect("blob");
        let body = oci_manifest(&c, &layers, None);
        let d = Digest::of(&body);
        if with_referrer {
            let (sl, sc) = (format!("{{\"sbom\":{trial}}}").into_bytes(), b"{}".to_vec());
            p.blob("race/sig", &sl).expect("blob");
            p.blob("race/sig", &sc).expect("blob");
            p.manifest(
                "race/sig",
                Some(&format!("sbom{trial}")),
                OCI_MANIFEST,
                oci_manifest(&sc, &[&sl], Some((&d, body.len()))),
            )
            .expect("referrer");
        }
        let url = reg.url.clone();
        let tag = format!("big{trial}");
        let put = std::thread::spawn(move || {
            regsweep_testkit::Pusher::new(&url)
                .expect("pusher")
                .manifest("race/app", Some(&tag), OCI_MANIFEST, body)
                .map_err(|e| eprintln!("PUT: {e:#}"))
                .is_ok()
        });
        let started = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(delay));
        let config_path = reg.config().to_string_lossy().into_owned();
        let o = run(
            &reg,
            &[],
            &[
                "gc",
                "--online",
                "--settle",
                "1s",
                "--registry-config",
                &config_path,
            ],
        );
        let created = put.join().expect("put thread");
        eprintln!(
            "trial {trial}: delay {delay} ms, PUT and collection done after {:?}",
            started.elapsed()
        );
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let planned = out.contains(&format!("[delete] {}", Digest::of(&c)));
        if !(created && planned) {
            eprintln!(
                "trial {trial}: inconclusive (PUT 201: {created}, config planned: {planned})"
            );
            continue;
        }
        let lost = missing(&reg, "race/app", &[&c]);
        verdicts.push((with_referrer, lost, text(&o)));
    }
    assert!(
        verdicts.iter().any(|(w, _, _)| !*w),
        "no conclusive control trial"
    );
    for (with_referrer, lost, o) in &verdicts {
        assert!(
            lost.is_empty(),
            "PUT answered 201, yet its config {lost:?} was deleted (referrer naming it first: {with_referrer})\n{o}"
        );
    }
    assert!(
        verdicts.iter().any(|(w, _, _)| *w),
        "no conclusive trial with a referrer"
    );
}

/// Makes every blob (data and directories) look `ago` old.
fn age_blobs(reg: &Registry, ago: &str) {
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find '{}' -exec touch -h -d '{ago}' {{}} +",
            v2(reg).join("blobs").display()
        ))
        .status()
        .expect("touch");
    assert!(st.success());
}

/// A second collection (an offline one, `--registry-stopped`) started while an online one
/// settles: it must not take the online collection's quarantine from under it (the
/// quarantine's lock), or at least the online collection must not report as deleted blobs
/// that the other put back and that are still there.
#[test]
fn an_offline_collection_during_an_online_one_neither_steals_the_quarantine_nor_misreports() {
    let reg = Registry::start();
    let tag = keep_image(&reg, "two/keep", 1);
    let gone = garbage_image(&reg, "two/gone", 2).1;
    age_blobs(&reg, "2 hours ago");
    let gc = online_until(&reg, "3s", "Quarantined", &[("MIN_AGE", "1h")], &[]);
    assert_eq!(held(&reg.root()).len(), gone.len());
    let offline = run(&reg, &[("MIN_AGE", "1h")], &["gc", "--registry-stopped"]);
    let (code, out, err) = gc.finish();
    let still_there: Vec<_> = gone.iter().filter(|d| reg.blob_exists(d)).collect();
    let claims_all_deleted = out.contains(&format!("Deleted {} of {}", gone.len(), gone.len()));
    common::pull_all_tags(&reg.url, "two/keep", &[tag]);
    assert!(
        !claims_all_deleted || still_there.is_empty(),
        "the online collection reports {} blobs deleted, yet {still_there:?} are in the registry's tree \
         (the offline collection put the quarantine back without its lock)\nonline: exit {code:?}\n{out}{err}\noffline: {}",
        gone.len(),
        text(&offline)
    );
}

/// `--restore-quarantine` after a fresh upload put one of the quarantined blobs back: both
/// copies hold the same bytes; the restore must succeed, leave the quarantine empty, and
/// the image pushed again must pull.
#[test]
fn restore_quarantine_after_a_fresh_upload_put_a_blob_back() {
    let reg = Registry::start();
    keep_image(&reg, "fresh/keep", 1);
    let p = reg.pusher();
    let spec = regsweep_testkit::ImageSpec {
        os: "linux",
        arch: "amd64",
        created: chrono::Utc::now(),
        seed: 5,
        oci: true,
    };
    let img = p.image("fresh/a", &spec).expect("push");
    assert_eq!(p.delete("fresh/a", &img.digest).expect("delete"), 202);
    let gc = online_until(&reg, "1h", "Quarantined", &[], &[]);
    let mut child = gc.child;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(held(&reg.root()).len(), 3);
    // The same image pushed again: its blobs are uploaded afresh (HEAD answers 404).
    let again = p.image("fresh/a", &spec).expect("push again");
    p.tag("fresh/a", "again", &again).expect("tag");
    let o = run(&reg, &[], &["gc", "--restore-quarantine"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(held(&reg.root()).is_empty(), "{}", text(&o));
    common::pull_all_tags(&reg.url, "fresh/a", &["again".to_owned()]);
    // And an online collection now keeps the image and exits 0.
    let config = reg.config().to_string_lossy().into_owned();
    let o = run(
        &reg,
        &[],
        &[
            "gc",
            "--online",
            "--settle",
            "300ms",
            "--registry-config",
            &config,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    common::pull_all_tags(&reg.url, "fresh/a", &["again".to_owned()]);
}

/// `--dry-run --online` moves nothing, takes no lock, and leaves a quarantine left by a
/// killed collection where it is (warning about it).
#[test]
fn dry_run_online_moves_nothing() {
    let reg = Registry::start();
    keep_image(&reg, "dry/keep", 1);
    let gone = garbage_image(&reg, "dry/gone", 2).1;
    let before = common::snapshot(&reg.root());
    let config = reg.config().to_string_lossy().into_owned();
    let o = run(
        &reg,
        &[("DRY_RUN", "true")],
        &[
            "gc",
            "--online",
            "--settle",
            "300ms",
            "--registry-config",
            &config,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(before, common::snapshot(&reg.root()), "{}", text(&o));
    assert!(gone.iter().all(|d| reg.blob_exists(d)));
    // A quarantine left behind stays put under a dry run, with a warning.
    let gc = online_until(&reg, "1h", "Quarantined", &[], &[]);
    let mut child = gc.child;
    let _ = child.kill();
    let _ = child.wait();
    let q = held(&reg.root());
    assert_eq!(q.len(), gone.len());
    let o = run(
        &reg,
        &[("DRY_RUN", "true")],
        &[
            "gc",
            "--online",
            "--settle",
            "300ms",
            "--registry-config",
            &config,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(held(&reg.root()), q, "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("quarantine"),
        "{}",
        text(&o)
    );
}

/// Uploads `data` to `repo` under its sha512 digest (the registry stores it under its
/// sha256 and links `_layers/sha512/<hex>`); gives the `sha512:` digest.
fn upload_sha512(reg: &Registry, repo: &str, data: &[u8]) -> String {
    use sha2::Digest as _;
    let d = format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)));
    let c = reqwest::blocking::Client::new();
    let r = c
        .post(format!("{}/v2/{repo}/blobs/uploads/", reg.url))
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 202);
    let loc = r.headers()["location"].to_str().expect("loc").to_owned();
    let loc = if loc.starts_with('/') {
        format!("{}{loc}", reg.url)
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={d}"))
        .header("Content-Type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text());
    d
}

/// A manifest naming its layer by a sha512 digest lands during the settle period while
/// that layer (stored under its sha256) sits in quarantine: the re-mark resolves the
/// digest through the repository's link and puts the layer back.
#[test]
fn a_sha512_layer_named_by_a_manifest_landing_during_the_settle_comes_back() {
    let reg = Registry::start();
    keep_image(&reg, "s512/keep", 1);
    let p = reg.pusher();
    let l = layer("sha512 layer");
    let c = config("sha512");
    let l512 = upload_sha512(&reg, "s512/app", &l);
    p.blob("s512/app", &c).expect("blob");
    let gc = online_until(&reg, "2s", "Quarantined", &[], &[]);
    let q = held(&reg.root());
    assert!(q.contains(&Digest::of(&l).hex().to_string()), "{q:?}");
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": c.len(), "digest": Digest::of(&c).to_string()},
        "layers": [{"mediaType": OCI_LAYER, "size": l.len(), "digest": l512}],
    }))
    .expect("json");
    land_put(&reg, "s512/app", &body, "v1");
    let (code, out, err) = gc.finish();
    let (status, got) = p.get("s512/app", &format!("blobs/{l512}")).expect("get");
    assert_eq!(
        status, 200,
        "layer by sha512 after the collection\n{out}{err}"
    );
    assert_eq!(got, l);
    assert!(missing(&reg, "s512/app", &[&c]).is_empty(), "{out}{err}");
    assert_eq!(code, Some(0), "{out}{err}");
}

/// A quarantine holding a `data` under a digest's path whose bytes are not that digest's
/// (junk, a torn copy): putting it back must not replace the good copy a fresh upload
/// already put back, nor serve wrong bytes under the digest.
#[test]
fn restore_quarantine_never_replaces_a_good_blob_with_wrong_bytes() {
    let reg = Registry::start();
    keep_image(&reg, "junk/keep", 1);
    let p = reg.pusher();
    let l = layer("junk");
    let d = p.blob("junk/app", &l).expect("blob");
    let held_data = common::quarantine::path_of(&reg.root(), &d.hex());
    std::fs::create_dir_all(held_data.parent().expect("parent")).expect("mkdir");
    std::fs::write(&held_data, b"not the layer").expect("junk");
    let o = run(&reg, &[], &["gc", "--restore-quarantine"]);
    let (status, got) = p.get("junk/app", &format!("blobs/{d}")).expect("get");
    assert_eq!(status, 200, "{}", text(&o));
    assert!(
        got == l,
        "the registry now serves {:?} under {d}\n{}",
        String::from_utf8_lossy(&got),
        text(&o)
    );
}

fn head(reg: &Registry, repo: &str, digest: &str) -> u16 {
    reqwest::blocking::Client::new()
        .head(format!("{}/v2/{repo}/blobs/{digest}", reg.url))
        .send()
        .expect("HEAD")
        .status()
        .as_u16()
}

/// With the registry's Redis blob descriptor cache warm for a blob by its sha256 and by a
/// sha512 alias (in two repositories, one a cross-repository mount), the quarantine must
/// make every one of those HEADs answer 404 (else a push skips the blob and its manifest is
/// accepted against a cache entry), during the settle and after the deletion.
#[test]
fn redis_entries_of_a_quarantined_blob_by_every_alias_and_repository_are_cleared() {
    let redis = Redis::start();
    let addr = format!("127.0.0.1:{}", redis.port);
    let cache = [
        ("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "redis"),
        ("REGISTRY_REDIS_ADDR", addr.as_str()),
    ];
    let reg = Registry::start_with("", &cache);
    keep_image(&reg, "rc/keep", 1);
    let l = layer("cached");
    let l512 = upload_sha512(&reg, "rc/a", &l);
    let l256 = Digest::of(&l).to_string();
    // Mounted into another repository.
    let r = reqwest::blocking::Client::new()
        .post(format!(
            "{}/v2/rc/b/blobs/uploads/?mount={l256}&from=rc/a",
            reg.url
        ))
        .send()
        .expect("mount");
    assert_eq!(r.status().as_u16(), 201, "cross-repository mount");
    let probes = [
        ("rc/a", l256.as_str()),
        ("rc/a", l512.as_str()),
        ("rc/b", l256.as_str()),
    ];
    for (repo, d) in probes {
        assert_eq!(head(&reg, repo, d), 200, "{repo} {d} before");
    }
    let gc = online_until(&reg, "2s", "Quarantined", &cache, &[]);
    let during: Vec<_> = probes
        .iter()
        .map(|(repo, d)| (repo, &d[..13], head(&reg, repo, d)))
        .collect();
    let (code, out, err) = gc.finish();
    let after: Vec<_> = probes
        .iter()
        .map(|(repo, d)| (repo, &d[..13], head(&reg, repo, d)))
        .collect();
    assert!(
        during.iter().chain(&after).all(|(_, _, s)| *s == 404),
        "HEAD during the settle {during:?}, after {after:?}\nexit {code:?}\n{out}{err}"
    );
    assert_eq!(code, Some(0), "{out}{err}");
}

/// Two online collections at once: the second refuses (the quarantine's lock) and touches
/// nothing; SIGTERM to the first then puts everything back.
#[test]
fn a_second_online_collection_refuses_and_the_first_puts_back_on_sigterm() {
    let reg = Registry::start();
    let tag = keep_image(&reg, "lock/keep", 1);
    let gone = garbage_image(&reg, "lock/gone", 2).1;
    let gc = online_until(&reg, "1h", "Quarantined", &[], &[]);
    let q = held(&reg.root());
    assert_eq!(q.len(), gone.len());
    let config = reg.config().to_string_lossy().into_owned();
    let second = run(
        &reg,
        &[],
        &[
            "gc",
            "--online",
            "--settle",
            "300ms",
            "--registry-config",
            &config,
        ],
    );
    assert_ne!(second.status.code(), Some(0), "{}", text(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another regsweep gc"),
        "{}",
        text(&second)
    );
    assert_eq!(held(&reg.root()), q, "{}", text(&second));
    let st = Command::new("kill")
        .args(["-TERM", &gc.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let (code, out, err) = gc.finish();
    assert_eq!(code, Some(130), "{out}{err}");
    assert!(held(&reg.root()).is_empty(), "{out}{err}");
    assert!(gone.iter().all(|d| reg.blob_exists(d)), "{out}{err}");
    common::pull_all_tags(&reg.url, "lock/keep", &[tag]);
}
