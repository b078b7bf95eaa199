//! Manifests the real registry (Go's `encoding/json`) accepts and serves but a reader that
//! matches keys exactly does not understand (DESIGN.md section 9), and a push between
//! mark and sweep (section 10). Every image is pushed through the registry's HTTP API, so
//! the registry itself vouches for it (a negative probe shows it reads the odd key: the
//! same manifest naming a blob that was never uploaded is refused), pulled in full before,
//! and pulled in full again after regsweep ran and the registry restarted. Each test also
//! runs the registry's own collector (`docker-registry garbage-collect`) on a copy of the
//! storage: regsweep must keep every blob that collector keeps (and in case c more, where
//! 2.8's collector itself loses a live layer), and must still collect the ordinary garbage
//! beside the odd images, so no test passes by deleting nothing. Case f needs a test hook
//! in `regsweep gc` (`REGSWEEP_TEST_PAUSE_BEFORE_SWEEP`, see below); without it the test
//! fails within seconds instead of hanging.

use crate::common;

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::Registry;
use common::s3::{BUCKET, Moto, ROOT, keys, registry_on, s3_env};
use regsweep::digest::Digest;
use regsweep::meta::parse::{
    ACCEPT_MANIFESTS, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, OCI_INDEX, OCI_MANIFEST,
};
use regsweep_testkit::{ImageSpec, Pushed};
use reqwest::blocking::Client;
use serde_json::Value;
use sha2::Digest as _;

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const SCHEMA1_ON: &str = "compatibility:\n  schema1:\n    enabled: true\n";

// ---------------------------------------------------------------------------------------
// The registry's HTTP API, without the testkit's conveniences (which only speak sha256).

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Uploads `data` (POST, then PUT with `?digest=reference`): `reference` may be a sha512
/// digest; the registry checks it.
fn upload(url: &str, repo: &str, data: &[u8], reference: &str) {
    let c = client();
    let start = c
        .post(format!("{url}/v2/{repo}/blobs/uploads/"))
        .send()
        .expect("POST upload");
    assert_eq!(start.status().as_u16(), 202, "POST upload to {repo}");
    let loc = start
        .headers()
        .get("Location")
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_owned();
    let loc = if loc.starts_with('/') {
        format!("{url}{loc}")
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let put = c
        .put(format!("{loc}{sep}digest={reference}"))
        .header("Content-Type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .expect("PUT upload");
    let status = put.status().as_u16();
    assert_eq!(
        status,
        201,
        "upload {reference} to {repo}: {}",
        put.text().unwrap_or_default()
    );
}

/// Uploads `data` as sha256; its digest.
fn blob(url: &str, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::of(data);
    upload(url, repo, data, &d.to_string());
    d
}

/// PUTs a manifest body as it is; the status and the error body (or the digest header).
fn put_manifest(
    url: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> (u16, String) {
    let r = client()
        .put(format!("{url}/v2/{repo}/manifests/{reference}"))
        .header("Content-Type", media_type)
        .body(body.to_vec())
        .send()
        .expect("PUT manifest");
    let status = r.status().as_u16();
    let digest = r
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = r.text().unwrap_or_default();
    (status, digest.unwrap_or(text))
}

/// PUTs a manifest the registry must accept; the digest it reports.
fn push_manifest(url: &str, repo: &str, tag: &str, media_type: &str, body: &[u8]) -> Digest {
    let (status, said) = put_manifest(url, repo, tag, media_type, body);
    assert_eq!(
        status,
        201,
        "the registry refused {repo}:{tag}: {said}\n{}",
        String::from_utf8_lossy(body)
    );
    Digest::parse(&said).expect("Docker-Content-Digest")
}

/// PUTs a manifest naming a blob that was never uploaded: the registry must refuse it with
/// MANIFEST_BLOB_UNKNOWN naming `missing`, which shows that Go reads the odd key.
fn registry_reads_it(url: &str, repo: &str, media_type: &str, body: &[u8], missing: &str) {
    let (status, said) = put_manifest(url, repo, "probe", media_type, body);
    assert!(
        status == 400 && said.contains("MANIFEST_BLOB_UNKNOWN") && said.contains(missing),
        "the registry does not read the manifest as Go should (expected 400 \
         MANIFEST_BLOB_UNKNOWN {missing}): {status} {said}\n{}",
        String::from_utf8_lossy(body)
    );
}

fn delete_manifest(url: &str, repo: &str, d: &Digest) {
    let r = client()
        .delete(format!("{url}/v2/{repo}/manifests/{d}"))
        .send()
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 202, "DELETE {repo}@{d}");
}

fn desc(media_type: &str, size: usize, reference: &str) -> String {
    format!(r#"{{"mediaType":"{media_type}","size":{size},"digest":"{reference}"}}"#)
}

/// `sha512:<hex>` of `data`.
fn sha512_ref(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

/// A digest of something nobody uploaded.
fn never_uploaded(what: &str) -> Digest {
    Digest::of(format!("never uploaded: {what}").as_bytes())
}

// ---------------------------------------------------------------------------------------
// What a tag needs, pulled as a client that reads as Go does.

/// A blob a tag needs: the reference a client GETs (`sha256:` or `sha512:`) and the
/// sha256 the registry stores its data under.
#[derive(Clone, Debug)]
struct Blob {
    reference: String,
    stored: Digest,
}

impl Blob {
    fn sha256(data: &[u8]) -> Blob {
        let d = Digest::of(data);
        Blob {
            reference: d.to_string(),
            stored: d,
        }
    }
}

/// A tag and everything a pull of it fetches: its manifest, child manifests, blobs.
#[derive(Clone, Debug)]
struct Tagged {
    repo: String,
    tag: String,
    /// The tag's manifest first, then its children.
    manifests: Vec<Digest>,
    blobs: Vec<Blob>,
    /// Schema 1: the registry serves the body signed again with its own key, so only the
    /// digest header can be compared.
    schema1: bool,
}

impl Tagged {
    /// Every blob the registry stores for this tag (manifests included).
    fn stored(&self) -> Vec<Digest> {
        self.manifests
            .iter()
            .copied()
            .chain(self.blobs.iter().map(|b| b.stored))
            .collect()
    }
}

/// The config and layers of a manifest the testkit pushed (plain keys).
fn blobs_of(body: &[u8]) -> Vec<Blob> {
    let v: Value = serde_json::from_slice(body).expect("manifest JSON");
    v["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(v.get("config"))
        .map(|d| {
            let s = d["digest"].as_str().expect("digest");
            Blob {
                reference: s.to_owned(),
                stored: Digest::parse(s).expect("sha256"),
            }
        })
        .collect()
}

fn image_tagged(repo: &str, tag: &str, p: &Pushed) -> Tagged {
    Tagged {
        repo: repo.to_owned(),
        tag: tag.to_owned(),
        manifests: vec![p.digest],
        blobs: blobs_of(&p.body),
        schema1: false,
    }
}

/// Pulls a tag in full; `Err` names every GET that failed or served the wrong bytes.
fn pull(url: &str, t: &Tagged) -> Result<usize, String> {
    let c = client();
    let accept = format!("{ACCEPT_MANIFESTS}, {DOCKER_SCHEMA1_SIGNED}");
    let mut bad = Vec::new();
    let mut fetched = 0;
    let mut get = |path: String| -> Option<(Option<String>, Vec<u8>)> {
        let r = match c
            .get(format!("{url}/v2/{}/{path}", t.repo))
            .header("Accept", &accept)
            .send()
        {
            Ok(r) => r,
            Err(e) => {
                bad.push(format!("GET {}/{path}: {e}", t.repo));
                return None;
            }
        };
        if !r.status().is_success() {
            bad.push(format!("GET {}/{path}: {}", t.repo, r.status()));
            return None;
        }
        fetched += 1;
        let header = r
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Some((header, r.bytes().expect("body").to_vec()))
    };
    let mut wrong = Vec::new();
    let references =
        std::iter::once(t.tag.clone()).chain(t.manifests.iter().map(|d| d.to_string()));
    for (i, reference) in references.enumerate() {
        let want = t.manifests[i.saturating_sub(1)];
        if let Some((header, body)) = get(format!("manifests/{reference}")) {
            if header.as_deref() != Some(want.to_string().as_str()) {
                wrong.push(format!(
                    "{}:{reference} served as {header:?}, pushed as {want}",
                    t.repo
                ));
            }
            if !t.schema1 && Digest::of(&body) != want {
                wrong.push(format!("{}:{reference}: the body is not {want}", t.repo));
            }
        }
    }
    for b in &t.blobs {
        if let Some((_, body)) = get(format!("blobs/{}", b.reference)) {
            let ok = match b.reference.split_once(':') {
                Some(("sha512", hex)) => sha512_ref(&body) == format!("sha512:{hex}"),
                _ => Digest::of(&body).to_string() == b.reference,
            };
            if !ok {
                wrong.push(format!(
                    "{}: blob {} served other bytes",
                    t.repo, b.reference
                ));
            }
        }
    }
    bad.extend(wrong);
    if bad.is_empty() {
        Ok(fetched)
    } else {
        Err(bad.join("\n"))
    }
}

fn pull_all(url: &str, tags: &[Tagged], when: &str) -> Vec<String> {
    tags.iter()
        .filter_map(|t| pull(url, t).err())
        .map(|e| format!("{when}: {e}"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Ordinary images beside the odd ones: one that must stay, garbage that must go.

fn spec(seed: u64, oci: bool) -> ImageSpec {
    ImageSpec {
        os: "linux",
        arch: "amd64",
        created: Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, seed as u32 % 60)
            .single()
            .expect("date"),
        seed,
        oci,
    }
}

/// Pushes an ordinary tagged image (`stable`, kept) and garbage: an image pushed, tagged and
/// deleted through the API, and a blob nothing references. Gives the kept tag and the
/// garbage blobs.
fn ordinary(reg: &Registry, repo: &str, seed: u64) -> (Tagged, Vec<Digest>) {
    let p = reg.pusher();
    let stable = p.image(repo, &spec(seed, false)).expect("push stable");
    p.tag(repo, "stable", &stable).expect("tag stable");
    let junk = p.image(repo, &spec(seed + 1, true)).expect("push junk");
    p.tag(repo, "junk", &junk).expect("tag junk");
    delete_manifest(&reg.url, repo, &junk.digest);
    let orphan = blob(
        &reg.url,
        repo,
        format!("an upload no manifest ever named {seed}").as_bytes(),
    );
    let mut garbage: Vec<Digest> = std::iter::once(junk.digest)
        .chain(blobs_of(&junk.body).iter().map(|b| b.stored))
        .collect();
    garbage.push(orphan);
    (image_tagged(repo, "stable", &stable), garbage)
}

/// Uploads a config for an image of the odd kind; its descriptor and blob.
fn config(url: &str, repo: &str, what: &str) -> (String, Blob) {
    let body =
        format!(r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["WHAT={what}"]}}}}"#);
    let d = blob(url, repo, body.as_bytes());
    (
        desc(DOCKER_CONFIG, body.len(), &d.to_string()),
        Blob::sha256(body.as_bytes()),
    )
}

/// Uploads a layer; its bytes.
fn layer(url: &str, repo: &str, what: &str) -> Vec<u8> {
    let data = format!("layer of {what}\n").repeat(50).into_bytes();
    blob(url, repo, &data);
    data
}

/// A schema 2 image manifest whose layers part is `layers_json` (a `"key": [...]` text).
fn schema2(config: &str, layers_json: &str) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{config},{layers_json}}}"#
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------------
// Storage, regsweep, the registry's collector.

/// The blobs whose data a filesystem storage holds.
fn fs_blobs(root: &Path) -> BTreeSet<Digest> {
    let dir = root.join("docker/registry/v2/blobs/sha256");
    let mut out = BTreeSet::new();
    for prefix in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        for b in std::fs::read_dir(prefix.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if b.path().join("data").is_file() {
                out.extend(Digest::from_hex(&b.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// The blobs whose data the bucket holds.
fn s3_blobs(moto: &Moto) -> BTreeSet<Digest> {
    let prefix = format!(
        "{}/docker/registry/v2/blobs/sha256/",
        ROOT.trim_matches('/')
    );
    keys(moto, &prefix)
        .iter()
        .filter_map(|k| {
            let rest = k.strip_prefix(&prefix)?.strip_suffix("/data")?;
            Digest::from_hex(rest.split('/').nth(1)?)
        })
        .collect()
}

/// What the registry's collector leaves on a copy of the registry's storage (taken now).
fn registry_collector_keeps(reg: &Registry, name: &str) -> BTreeSet<Digest> {
    let copy = reg.copy_storage(name);
    reg.garbage_collect_at(&copy);
    fs_blobs(&copy)
}

/// `regsweep gc` with no grace period on a filesystem storage (the registry stopped).
fn gc_fs(root: &Path) {
    let root = root.to_string_lossy().into_owned();
    common::run_expecting(
        &[
            ("REGISTRY_DIR", root.as_str()),
            ("REGISTRY_STOPPED", "true"),
            ("MIN_AGE", "0"),
        ],
        &["gc"],
        0,
    );
}

/// What the storage must hold after regsweep: everything the live tags need, everything
/// the registry's collector keeps (`theirs`), and none of the garbage. Gives the problems.
fn judge(
    ours: &BTreeSet<Digest>,
    theirs: &BTreeSet<Digest>,
    live: &[Tagged],
    garbage: &[Digest],
) -> Vec<String> {
    let mut problems = Vec::new();
    for t in live {
        for d in t.stored() {
            if !ours.contains(&d) {
                let what = t.blobs.iter().find(|b| b.stored == d).map_or_else(
                    || "manifest".to_owned(),
                    |b| format!("blob {}", b.reference),
                );
                problems.push(format!(
                    "regsweep deleted {d} ({what}) that live tag {}:{} needs",
                    t.repo, t.tag
                ));
            }
        }
    }
    let lost: Vec<_> = theirs.difference(ours).collect();
    if !lost.is_empty() {
        problems.push(format!(
            "regsweep deleted blobs the registry's collector keeps: {lost:?}"
        ));
    }
    let left: Vec<_> = garbage.iter().filter(|d| ours.contains(d)).collect();
    if !left.is_empty() {
        problems.push(format!("garbage regsweep did not collect: {left:?}"));
    }
    problems
}

fn verdict(problems: Vec<String>) {
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The usual course of a gc test: pull every live tag, stop the registry, run its collector
/// on a copy (checked by `collector`), run `regsweep gc`, judge what is left, restart and
/// pull every live tag again.
fn gc_course(
    reg: &Registry,
    extra: &str,
    live: &[Tagged],
    garbage: &[Digest],
    collector: impl FnOnce(&BTreeSet<Digest>),
) {
    let before = pull_all(&reg.url, live, "before regsweep");
    assert!(before.is_empty(), "the registry must serve it: {before:?}");
    reg.stop();
    let all = fs_blobs(&reg.root());
    assert!(garbage.iter().all(|d| all.contains(d)), "garbage in place");
    let theirs = registry_collector_keeps(reg, "registry-gc");
    assert!(
        garbage.iter().all(|d| !theirs.contains(d)),
        "the registry's collector takes the ordinary garbage"
    );
    collector(&theirs);
    gc_fs(&reg.root());
    let mut problems = judge(&fs_blobs(&reg.root()), &theirs, live, garbage);
    let url = reg.restart_with(extra, &[]);
    problems.extend(pull_all(&url, live, "after regsweep gc and a restart"));
    verdict(problems);
}

// ---------------------------------------------------------------------------------------
// a. "Layers"

#[test]
fn gc_keeps_a_layer_listed_under_capitalised_layers() {
    let reg = Registry::start();
    let repo = "go/layers-key";
    let (stable, garbage) = ordinary(&reg, repo, 100);
    let (cfg, cfg_blob) = config(&reg.url, repo, "Layers");
    let l = layer(&reg.url, repo, "Layers");
    let missing = never_uploaded("Layers");
    registry_reads_it(
        &reg.url,
        repo,
        DOCKER_MANIFEST,
        &schema2(
            &cfg,
            &format!(
                r#""Layers":[{}]"#,
                desc(DOCKER_LAYER, 4, &missing.to_string())
            ),
        ),
        &missing.to_string(),
    );
    let body = schema2(
        &cfg,
        &format!(
            r#""Layers":[{}]"#,
            desc(DOCKER_LAYER, l.len(), &Digest::of(&l).to_string())
        ),
    );
    let d = push_manifest(&reg.url, repo, "capital", DOCKER_MANIFEST, &body);
    assert_eq!(d, Digest::of(&body), "stored as pushed");
    let capital = Tagged {
        repo: repo.into(),
        tag: "capital".into(),
        manifests: vec![d],
        blobs: vec![cfg_blob, Blob::sha256(&l)],
        schema1: false,
    };
    gc_course(&reg, "", &[stable, capital], &garbage, |theirs| {
        assert!(
            theirs.contains(&Digest::of(&l)),
            "the registry's collector reads \"Layers\" and keeps the layer"
        );
    });
}

// ---------------------------------------------------------------------------------------
// b. Duplicate keys (the last wins), "Digest" after "digest", "layerſ" (U+017F folds to s)

#[test]
fn gc_reads_duplicate_and_unicode_folded_keys_as_go_does() {
    let reg = Registry::start();
    let repo = "go/duplicates";
    let (stable, garbage) = ordinary(&reg, repo, 200);
    let mut live = vec![stable];
    let x = never_uploaded("the first digest of a descriptor").to_string();
    // Each variant: its tag, and its layers part given a layer's digest and size.
    type Layers = fn(&str, usize, &str) -> String;
    let variants: [(&str, Layers); 3] = [
        ("last-key-wins", |l, n, _| {
            format!(r#""layers":[],"Layers":[{}]"#, desc(DOCKER_LAYER, n, l))
        }),
        ("last-digest-wins", |l, n, x| {
            format!(
                r#""layers":[{{"mediaType":"{DOCKER_LAYER}","size":{n},"digest":"{x}","Digest":"{l}"}}]"#
            )
        }),
        ("long-s", |l, n, _| {
            format!("\"layer\u{17f}\":[{}]", desc(DOCKER_LAYER, n, l))
        }),
    ];
    for (tag, layers) in variants {
        let (cfg, cfg_blob) = config(&reg.url, repo, tag);
        let missing = never_uploaded(tag).to_string();
        registry_reads_it(
            &reg.url,
            repo,
            DOCKER_MANIFEST,
            &schema2(&cfg, &layers(&missing, 4, &x)),
            &missing,
        );
        let l = layer(&reg.url, repo, tag);
        let body = schema2(&cfg, &layers(&Digest::of(&l).to_string(), l.len(), &x));
        let d = push_manifest(&reg.url, repo, tag, DOCKER_MANIFEST, &body);
        assert_eq!(d, Digest::of(&body));
        live.push(Tagged {
            repo: repo.into(),
            tag: tag.into(),
            manifests: vec![d],
            blobs: vec![cfg_blob, Blob::sha256(&l)],
            schema1: false,
        });
    }
    let layers: Vec<Digest> = live[1..].iter().map(|t| t.blobs[1].stored).collect();
    gc_course(&reg, "", &live, &garbage, |theirs| {
        assert!(
            layers.iter().all(|l| theirs.contains(l)),
            "the registry's collector reads each as Go does and keeps the layer"
        );
    });
}

// ---------------------------------------------------------------------------------------
// c. A layer uploaded and referenced as sha512

/// Pushes an image whose layer is uploaded and referenced as `sha512:`; the tag, and the
/// layer's sha256 (where the registry stores its data).
fn push_sha512_image(url: &str, repo: &str, tag: &str) -> (Tagged, Digest) {
    let (cfg, cfg_blob) = config(url, repo, "sha512");
    let data = format!("a layer pushed as sha512 to {repo}\n")
        .repeat(40)
        .into_bytes();
    let l512 = sha512_ref(&data);
    upload(url, repo, &data, &l512);
    let missing = sha512_ref(b"never uploaded");
    registry_reads_it(
        url,
        repo,
        DOCKER_MANIFEST,
        &schema2(
            &cfg,
            &format!(r#""layers":[{}]"#, desc(DOCKER_LAYER, 14, &missing)),
        ),
        &missing,
    );
    let body = schema2(
        &cfg,
        &format!(r#""layers":[{}]"#, desc(DOCKER_LAYER, data.len(), &l512)),
    );
    let d = push_manifest(url, repo, tag, DOCKER_MANIFEST, &body);
    let stored = Digest::of(&data);
    (
        Tagged {
            repo: repo.into(),
            tag: tag.into(),
            manifests: vec![d],
            blobs: vec![
                cfg_blob,
                Blob {
                    reference: l512,
                    stored,
                },
            ],
            schema1: false,
        },
        stored,
    )
}

#[test]
fn gc_keeps_the_data_of_a_layer_referenced_by_sha512() {
    let reg = Registry::start();
    let repo = "go/sha512";
    let (stable, garbage) = ordinary(&reg, repo, 300);
    let (t, stored) = push_sha512_image(&reg.url, repo, "sha512");
    // The registry keeps the data under its sha256 and links the sha512 to it.
    let hex512 = t.blobs[1]
        .reference
        .trim_start_matches("sha512:")
        .to_owned();
    let link = reg
        .root()
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_layers/sha512")
        .join(&hex512)
        .join("link");
    assert_eq!(
        std::fs::read_to_string(&link).expect("the sha512 link"),
        stored.to_string()
    );
    assert!(reg.blob_exists(&stored));
    gc_course(&reg, "", &[stable, t], &garbage, |theirs| {
        // Documented, not wanted: 2.8 marks `sha512:…` and sweeps by sha256, so its own
        // collector deletes the data of a layer a live tag needs. regsweep must do better.
        assert!(
            !theirs.contains(&stored),
            "the registry's collector was expected to delete {stored} (the data of sha512 layer)"
        );
    });
}

// ---------------------------------------------------------------------------------------
// d. A tagged OCI index listing its children under "Manifests"

#[test]
fn offline_cleanup_keeps_the_children_an_index_lists_under_capitalised_manifests() {
    let reg = Registry::start();
    let repo = "go/index-key";
    let (stable, mut garbage) = ordinary(&reg, repo, 400);
    let p = reg.pusher();
    let amd = p.image(repo, &spec(410, true)).expect("child amd64");
    let arm = p
        .image(
            repo,
            &ImageSpec {
                arch: "arm64",
                ..spec(411, true)
            },
        )
        .expect("child arm64");
    // An ordinary untagged image: the cleanup deletes it and the collection takes its blobs.
    let untagged = p.image(repo, &spec(420, false)).expect("untagged");
    let untagged_blobs: Vec<Digest> = std::iter::once(untagged.digest)
        .chain(blobs_of(&untagged.body).iter().map(|b| b.stored))
        .collect();
    garbage.extend(&untagged_blobs);
    let entry = |c: &Pushed, arch: &str| {
        format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","size":{},"digest":"{}","platform":{{"os":"linux","architecture":"{arch}"}}}}"#,
            c.body.len(),
            c.digest
        )
    };
    let index = |entries: &str| {
        format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","Manifests":[{entries}]}}"#)
            .into_bytes()
    };
    let missing = never_uploaded("index child");
    registry_reads_it(
        &reg.url,
        repo,
        OCI_INDEX,
        &index(&format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","size":2,"digest":"{missing}"}}"#
        )),
        &missing.to_string(),
    );
    let body = index(&format!(
        "{},{}",
        entry(&amd, "amd64"),
        entry(&arm, "arm64")
    ));
    let d = push_manifest(&reg.url, repo, "multi", OCI_INDEX, &body);
    assert_eq!(d, Digest::of(&body));
    let multi = Tagged {
        repo: repo.into(),
        tag: "multi".into(),
        manifests: vec![d, amd.digest, arm.digest],
        blobs: blobs_of(&amd.body)
            .into_iter()
            .chain(blobs_of(&arm.body))
            .collect(),
        schema1: false,
    };
    let live = [stable, multi];
    let before = pull_all(&reg.url, &live, "before regsweep");
    assert!(before.is_empty(), "the registry must serve it: {before:?}");
    reg.stop();
    // The registry's collector (no -m) keeps every revision: all but the untagged image's
    // blobs is what regsweep must keep too.
    let theirs = registry_collector_keeps(&reg, "registry-gc");
    assert!(
        amd.digest != arm.digest
            && [amd.digest, arm.digest].iter().all(|c| theirs.contains(c))
            && blobs_of(&amd.body)
                .iter()
                .all(|b| theirs.contains(&b.stored)),
        "the registry's collector keeps the children"
    );
    let theirs_needed: BTreeSet<Digest> = theirs
        .iter()
        .filter(|d| !untagged_blobs.contains(d))
        .copied()
        .collect();

    let root = reg.root().to_string_lossy().into_owned();
    let (text, _) = common::run_expecting(
        &[
            ("REGISTRY_DIR", root.as_str()),
            ("DELETE_VIA", "storage"),
            ("REGISTRY_STOPPED", "true"),
            ("GC", "true"),
            ("MIN_AGE", "0"),
        ],
        &[],
        0,
    );
    let mut problems = Vec::new();
    let revisions = reg.revisions(repo);
    for (c, arch) in [(&amd, "amd64"), (&arm, "arm64")] {
        if !revisions.contains(&c.digest) {
            problems.push(format!(
                "the cleanup deleted the {arch} child {} of the tagged index {d}",
                c.digest
            ));
        }
    }
    if revisions.contains(&untagged.digest) {
        problems.push(format!(
            "the cleanup kept the untagged image {}:\n{text}",
            untagged.digest
        ));
    }
    problems.extend(judge(
        &fs_blobs(&reg.root()),
        &theirs_needed,
        &live,
        &garbage,
    ));
    let url = reg.restart_with("", &[]);
    problems.extend(pull_all(
        &url,
        &live,
        "after the cleanup with gc and a restart",
    ));
    verdict(problems);
}

// ---------------------------------------------------------------------------------------
// e. Schema 1 with "FSLayers" / "BlobSum"

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The two 32-byte integers of a DER ECDSA signature, concatenated (JWS ES256).
fn der_to_jws(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30, "DER sequence");
    let mut i = if der[1] < 0x80 { 2 } else { 3 };
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 2, "DER integer");
        let n = der[i + 1] as usize;
        let v = &der[i + 2..i + 2 + n];
        let v = &v[v.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0u8, 32 - v.len()));
        out.extend_from_slice(v);
        i += 2 + n;
    }
    out
}

fn openssl(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut c = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    if let Some(data) = stdin {
        use std::io::Write as _;
        c.stdin
            .take()
            .expect("stdin")
            .write_all(data)
            .expect("write");
    }
    drop(c.stdin.take());
    let out = c.wait_with_output().expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Signs a schema 1 manifest as libtrust does (a JWS in "pretty" form, ES256, the key in
/// the header): the registry refuses schema 1 without a signature ("missing signature
/// key"). `content` must be compact JSON ending in `]}`. The registry stores `content`.
fn schema1_signed(dir: &Path, content: &[u8]) -> Vec<u8> {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "k.pem",
        ],
        None,
    );
    let public = openssl(
        dir,
        &["ec", "-in", "k.pem", "-pubout", "-outform", "DER"],
        None,
    );
    let point = &public[public.len() - 65..];
    assert_eq!(point[0], 4, "uncompressed point");
    let format_length = content.len() - 1;
    let protected = b64url(
        serde_json::json!({
            "formatLength": format_length,
            "formatTail": b64url(&content[format_length..]),
            "time": Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        })
        .to_string()
        .as_bytes(),
    );
    let signing_input = format!("{protected}.{}", b64url(content));
    let der = openssl(
        dir,
        &["dgst", "-sha256", "-sign", "k.pem"],
        Some(signing_input.as_bytes()),
    );
    let signature = serde_json::json!([{
        "header": {"jwk": {"crv": "P-256", "kty": "EC", "x": b64url(&point[1..33]), "y": b64url(&point[33..])}, "alg": "ES256"},
        "signature": b64url(&der_to_jws(&der)),
        "protected": protected,
    }]);
    let mut out = content[..format_length].to_vec();
    out.extend_from_slice(format!(r#","signatures":{signature}}}"#).as_bytes());
    out
}

fn schema1_body(repo: &str, tag: &str, layer: &str) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":1,"name":"{repo}","tag":"{tag}","architecture":"amd64","FSLayers":[{{"BlobSum":"{layer}"}}],"history":[{{"v1Compatibility":"{{\"id\":\"{}\",\"created\":\"2026-01-01T00:00:00Z\",\"os\":\"linux\",\"architecture\":\"amd64\"}}"}}]}}"#,
        Digest::of(layer.as_bytes()).hex()
    )
    .into_bytes()
}

#[test]
fn gc_keeps_schema1_layers_listed_under_fslayers_and_blobsum() {
    // 2.8.2 refuses schema 1 pushes unless `compatibility.schema1.enabled` (500 UNKNOWN),
    // and then only signed ones (400 MANIFEST_INVALID, "missing signature key"): signed
    // with a throwaway key, as docker 1.x clients did, it accepts them and stores the
    // unsigned payload (the digest is that payload's).
    let reg = Registry::start_with(SCHEMA1_ON, &[]);
    let repo = "go/schema1";
    let (stable, garbage) = ordinary(&reg, repo, 500);
    let keydir = tempfile::tempdir().expect("tempdir");
    let unsigned = schema1_body(repo, "old", &Digest::of(b"x").to_string());
    let (status, said) = put_manifest(&reg.url, repo, "old", DOCKER_SCHEMA1_SIGNED, &unsigned);
    assert_eq!(status, 400, "unsigned schema 1 is refused: {said}");
    let missing = never_uploaded("schema 1 layer").to_string();
    registry_reads_it(
        &reg.url,
        repo,
        DOCKER_SCHEMA1_SIGNED,
        &schema1_signed(keydir.path(), &schema1_body(repo, "probe", &missing)),
        &missing,
    );
    let l = layer(&reg.url, repo, "schema 1");
    let content = schema1_body(repo, "old", &Digest::of(&l).to_string());
    let d = push_manifest(
        &reg.url,
        repo,
        "old",
        DOCKER_SCHEMA1_SIGNED,
        &schema1_signed(keydir.path(), &content),
    );
    assert_eq!(
        d,
        Digest::of(&content),
        "the digest is the unsigned payload's"
    );
    assert_eq!(
        reg.blob_body(&d),
        content,
        "the registry stores the payload"
    );
    let old = Tagged {
        repo: repo.into(),
        tag: "old".into(),
        manifests: vec![d],
        blobs: vec![Blob::sha256(&l)],
        schema1: true,
    };
    gc_course(&reg, SCHEMA1_ON, &[stable, old], &garbage, |theirs| {
        assert!(
            theirs.contains(&Digest::of(&l)),
            "the registry's collector reads \"FSLayers\"/\"BlobSum\" and keeps the layer"
        );
    });
}

// ---------------------------------------------------------------------------------------
// f. A push between mark and sweep

fn read_file(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// Unreferenced blobs written straight into storage: enough of them that gc's plan (a
/// line each) overflows a pipe (64 KiB) many times over.
fn plant_garbage(root: &Path, n: usize) {
    for i in 0..n {
        let data = format!("planted garbage {i}");
        let d = Digest::of(data.as_bytes());
        let dir = root.join(format!(
            "docker/registry/v2/blobs/sha256/{}/{}",
            &d.hex()[..2],
            d.hex()
        ));
        std::fs::create_dir_all(&dir).expect("mkdir garbage");
        std::fs::write(dir.join("data"), data).expect("write garbage");
    }
}

#[test]
fn gc_lists_links_again_before_its_first_delete() {
    let reg = Registry::start();
    let repo = "go/late-push";
    let (stable, garbage) = ordinary(&reg, repo, 600);
    // G: a layer uploaded earlier that no manifest names yet (garbage at mark time), and
    // the config its image will have.
    let g = "layer G, pushed before its manifest\n"
        .repeat(30)
        .into_bytes();
    blob(&reg.url, repo, &g);
    let (cfg, cfg_blob) = config(&reg.url, repo, "late");
    let before = pull_all(&reg.url, std::slice::from_ref(&stable), "before regsweep");
    assert!(before.is_empty(), "{before:?}");
    plant_garbage(&reg.root(), 3000);

    // No hook in regsweep: gc prints its whole plan (a line per blob) and flushes it before
    // its first delete, so a reader that stops reading after the "Marked ..." line holds
    // gc between its mark and its sweep for as long as it likes.
    let tmp = tempfile::tempdir().expect("tempdir");
    let err_path = tmp.path().join("stderr");
    let root = reg.root().to_string_lossy().into_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_regsweep"))
        .arg("gc")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REGISTRY_DIR", &root)
        .env("REGISTRY_STOPPED", "true")
        .env("MIN_AGE", "0")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path).expect("stderr"))
        .spawn()
        .expect("spawn regsweep gc");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stdout, &mut line).expect("read gc's stdout");
        assert!(
            n > 0,
            "gc ended before its plan\nstdout:\n{seen}\nstderr:\n{}",
            read_file(&err_path)
        );
        seen.push_str(&line);
        if line.starts_with("Marked ") {
            break;
        }
    }
    // gc cannot get past writing its plan now; give it time to fill the pipe.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "gc must wait on its plan's output"
    );

    // Marked, listed, not yet swept: a client pushes a manifest naming G and tags it.
    let body = schema2(
        &cfg,
        &format!(
            r#""layers":[{}]"#,
            desc(DOCKER_LAYER, g.len(), &Digest::of(&g).to_string())
        ),
    );
    let d = push_manifest(&reg.url, repo, "late", DOCKER_MANIFEST, &body);
    let late = Tagged {
        repo: repo.into(),
        tag: "late".into(),
        manifests: vec![d],
        blobs: vec![cfg_blob, Blob::sha256(&g)],
        schema1: false,
    };
    let live = [stable, late];
    let now = pull_all(&reg.url, &live, "while gc waits");
    // What the registry's collector keeps of the storage as it is now.
    let theirs = registry_collector_keeps(&reg, "registry-gc");
    // Read the rest: gc goes on, lists the links again and sweeps.
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("read gc's stdout");
    seen.push_str(&rest);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("regsweep gc did not finish within 30 s of being let go; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = || format!("stdout:\n{seen}\nstderr:\n{}", read_file(&err_path));
    assert!(
        seen.contains("Marked again before the sweep: 1 manifests pushed since the mark began; 2 blobs they reference are kept."),
        "{}",
        output()
    );
    let mut problems = now;
    if !reg.blob_exists(&Digest::of(&g)) {
        problems.push(format!("G {} was deleted", Digest::of(&g)));
    }
    if status.code() != Some(0) {
        problems.push(format!("regsweep gc exited {status}\n{}", output()));
    }
    assert!(
        theirs.contains(&Digest::of(&g)),
        "the registry's collector keeps G once the manifest is there"
    );
    problems.extend(judge(&fs_blobs(&reg.root()), &theirs, &live, &garbage));
    let url = reg.restart_with("", &[]);
    problems.extend(pull_all(&url, &live, "after regsweep gc and a restart"));
    verdict(problems);
}

// ---------------------------------------------------------------------------------------
// a and c on S3 (moto)

#[test]
fn s3_gc_keeps_capitalised_layers_and_sha512_layers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path());
    let reg = registry_on(&moto);
    let repo = "go/s3";
    let (stable, garbage) = ordinary(&reg, repo, 700);
    // a
    let (cfg, cfg_blob) = config(&reg.url, repo, "Layers on S3");
    let l = layer(&reg.url, repo, "Layers on S3");
    let body = schema2(
        &cfg,
        &format!(
            r#""Layers":[{}]"#,
            desc(DOCKER_LAYER, l.len(), &Digest::of(&l).to_string())
        ),
    );
    let d = push_manifest(&reg.url, repo, "capital", DOCKER_MANIFEST, &body);
    let capital = Tagged {
        repo: repo.into(),
        tag: "capital".into(),
        manifests: vec![d],
        blobs: vec![cfg_blob, Blob::sha256(&l)],
        schema1: false,
    };
    // c
    let (sha512, stored) = push_sha512_image(&reg.url, repo, "sha512");
    let link = format!(
        "{}/docker/registry/v2/repositories/{repo}/_layers/sha512/{}/link",
        ROOT.trim_matches('/'),
        sha512.blobs[1].reference.trim_start_matches("sha512:")
    );
    assert_eq!(keys(&moto, &link), vec![link.clone()], "the sha512 link");
    let live = [stable, capital, sha512];
    let before = pull_all(&reg.url, &live, "before regsweep");
    assert!(before.is_empty(), "the registry must serve it: {before:?}");

    let all = s3_blobs(&moto);
    let eligible: BTreeSet<Digest> = reg
        .garbage_collect_dry_run()
        .iter()
        .filter_map(|d| Digest::parse(d))
        .collect();
    let theirs: BTreeSet<Digest> = all.difference(&eligible).copied().collect();
    assert!(garbage.iter().all(|g| eligible.contains(g)), "{eligible:?}");
    assert!(
        theirs.contains(&Digest::of(&l)),
        "the registry's collector reads \"Layers\""
    );
    assert!(
        eligible.contains(&stored),
        "the registry's collector would delete the sha512 layer's data {stored}"
    );
    let s3 = s3_env(&moto);
    let mut env: Vec<(&str, &str)> = s3.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([("REGISTRY_STOPPED", "true"), ("MIN_AGE", "0")]);
    common::run_expecting(&env, &["gc"], 0);
    let mut problems = judge(&s3_blobs(&moto), &theirs, &live, &garbage);
    let url = reg.restart_with(
        "",
        &[
            ("S3_TEST_ENDPOINT", &moto.url),
            ("S3_TEST_BUCKET", BUCKET),
            ("S3_TEST_ROOT", ROOT),
        ],
    );
    problems.extend(pull_all(&url, &live, "after regsweep gc and a restart"));
    verdict(problems);
}
