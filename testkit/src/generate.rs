//! Storage generator: writes a distribution storage tree directly (revisions, tags with
//! `current` and `index` history, manifest, config and layer blobs), deterministic for a
//! seed, for benchmarks at a scale the registry itself would take hours to push.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde_json::json;

use regsweep::digest::Digest;
use regsweep::meta::parse::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenSpec {
    /// Repositories.
    pub repos: usize,
    /// Manifest revisions in all (index children included).
    pub manifests: usize,
    /// Tags in all.
    pub tags: usize,
    /// Seed: the same seed gives the same tree.
    pub seed: u64,
}

/// What was written.
#[derive(Clone, Debug, Default)]
pub struct GenStats {
    /// Repository names.
    pub repos: Vec<String>,
    /// Revisions written.
    pub manifests: usize,
    /// Tags written.
    pub tags: usize,
    /// Files written.
    pub files: usize,
}

/// Repository `i`'s name: a mix of flat and nested names.
pub fn repo_name(i: usize) -> String {
    match i % 4 {
        0 => format!("app{i}"),
        1 => format!("team{}/app{i}", i % 7),
        2 => format!("org{}/team{}/svc{i}", i % 3, i % 5),
        _ => format!("lib/base.{i}-img_x"),
    }
}

struct Writer {
    root: PathBuf,
    files: usize,
    old: SystemTime,
}

impl Writer {
    fn put(&mut self, path: &Path, body: &[u8]) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut f = File::create(path)?;
        f.write_all(body)?;
        f.set_modified(self.old)?;
        self.files += 1;
        Ok(())
    }

    fn blob(&mut self, body: &[u8]) -> io::Result<Digest> {
        let d = Digest::of(body);
        let hex = d.hex();
        let path = self.root.join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ));
        if !path.exists() {
            self.put(&path, body)?;
        }
        Ok(d)
    }

    fn link(&mut self, path: PathBuf, d: &Digest) -> io::Result<()> {
        self.put(&path, d.to_string().as_bytes())
    }

    /// A blob linked into the repository's `_layers` (layers and configs).
    fn layer(&mut self, repo_dir: &Path, body: &[u8]) -> io::Result<Digest> {
        let d = self.blob(body)?;
        self.link(
            repo_dir.join(format!("_layers/sha256/{}/link", d.hex())),
            &d,
        )?;
        Ok(d)
    }

    /// A manifest blob linked as a revision of the repository.
    fn manifest(&mut self, manifests_dir: &Path, body: &[u8]) -> io::Result<Digest> {
        let d = self.blob(body)?;
        self.link(
            manifests_dir.join(format!("revisions/sha256/{}/link", d.hex())),
            &d,
        )?;
        Ok(d)
    }
}

struct Made {
    digest: Digest,
    media_type: &'static str,
    size: usize,
}

/// Generates one repository; returns (revisions, tags, files).
fn repository(root: &Path, spec: &GenSpec, r: usize) -> io::Result<(usize, usize, usize)> {
    let mut rng =
        fastrand::Rng::with_seed(spec.seed ^ (r as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let name = repo_name(r);
    let target = spec.manifests / spec.repos + usize::from(r < spec.manifests % spec.repos);
    let tag_target = spec.tags / spec.repos + usize::from(r < spec.tags % spec.repos);
    let repo_dir = root.join("docker/registry/v2/repositories").join(&name);
    let manifests_dir = repo_dir.join("_manifests");
    let mut w = Writer {
        root: root.to_owned(),
        files: 0,
        old: SystemTime::now() - Duration::from_secs(30 * 86_400),
    };
    // Two base layers shared by the repository's images.
    let mut layers = Vec::new();
    for l in 0..2 {
        let body = format!("layer {r} {l} ").repeat(32).into_bytes();
        let d = w.layer(&repo_dir, &body)?;
        layers.push((d, body.len()));
    }
    let mut revisions = 0;
    let mut roots: Vec<Made> = Vec::new();
    let base_time = 1_700_000_000i64;
    let image = |w: &mut Writer,
                 arch: &str,
                 n: usize,
                 rng: &mut fastrand::Rng|
     -> io::Result<Made> {
        let oci = rng.bool();
        let created = chrono::DateTime::from_timestamp(base_time + rng.i64(0..40_000_000), 0)
            .unwrap_or_default();
        let config = serde_json::to_vec(&json!({"architecture": arch, "os": "linux",
            "created": created.to_rfc3339(), "config": {"Env": [format!("N={r}-{n}")]},
            "rootfs": {"type": "layers", "diff_ids": []}}))
        .map_err(io::Error::other)?;
        let cd = w.layer(&repo_dir, &config)?;
        let (mt, cmt, lmt) = if oci {
            (
                OCI_MANIFEST,
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        } else {
            (
                DOCKER_MANIFEST,
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        };
        let ls: Vec<_> = layers
            .iter()
            .map(|(d, size)| json!({"mediaType": lmt, "size": size, "digest": d.to_string()}))
            .collect();
        let body = serde_json::to_vec_pretty(&json!({"schemaVersion": 2, "mediaType": mt,
            "config": {"mediaType": cmt, "size": config.len(), "digest": cd.to_string()}, "layers": ls}))
        .map_err(io::Error::other)?;
        let d = w.manifest(&manifests_dir, &body)?;
        Ok(Made {
            digest: d,
            media_type: mt,
            size: body.len(),
        })
    };
    while revisions < target {
        if target - revisions >= 3 && rng.u8(0..10) == 0 {
            let a = image(&mut w, "amd64", revisions, &mut rng)?;
            let b = image(&mut w, "arm64", revisions + 1, &mut rng)?;
            let mt = if rng.bool() { OCI_INDEX } else { DOCKER_LIST };
            let entries: Vec<_> = [(&a, "amd64"), (&b, "arm64")]
                .iter()
                .map(|(m, arch)| json!({"mediaType": m.media_type, "size": m.size, "digest": m.digest.to_string(),
                    "platform": {"os": "linux", "architecture": arch}}))
                .collect();
            let body = serde_json::to_vec_pretty(
                &json!({"schemaVersion": 2, "mediaType": mt, "manifests": entries}),
            )
            .map_err(io::Error::other)?;
            let d = w.manifest(&manifests_dir, &body)?;
            roots.push(Made {
                digest: d,
                media_type: mt,
                size: body.len(),
            });
            revisions += 3;
        } else {
            let m = image(&mut w, "amd64", revisions, &mut rng)?;
            roots.push(m);
            revisions += 1;
        }
    }
    // Tags on top-level manifests: hash tags, version tags, and moving tags with history.
    let mut tags = 0;
    for t in 0..tag_target.min(roots.len()) {
        let m = &roots[rng.usize(0..roots.len())];
        let tag = match t % 10 {
            0..=5 => format!("{:08x}", rng.u32(..)),
            6..=8 => format!("v{}.{}.{t}", r % 5, rng.u8(0..20)),
            _ => format!("moving-{t}"),
        };
        let tag_dir = manifests_dir.join("tags").join(&tag);
        if tag_dir.exists() {
            continue;
        }
        w.link(tag_dir.join("current/link"), &m.digest)?;
        w.link(
            tag_dir.join(format!("index/sha256/{}/link", m.digest.hex())),
            &m.digest,
        )?;
        if tag.starts_with("moving") {
            // Earlier targets of the moving tag stay in its history.
            for _ in 0..3 {
                let old = &roots[rng.usize(0..roots.len())];
                w.link(
                    tag_dir.join(format!("index/sha256/{}/link", old.digest.hex())),
                    &old.digest,
                )?;
            }
        }
        tags += 1;
    }
    Ok((revisions, tags, w.files))
}

/// Writes the tree under `root` (a registry `rootdirectory`), repositories in parallel.
pub fn generate(root: &Path, spec: &GenSpec) -> io::Result<GenStats> {
    let spec = GenSpec {
        repos: spec.repos.max(1),
        ..spec.clone()
    };
    let per: Vec<(usize, usize, usize)> = (0..spec.repos)
        .into_par_iter()
        .map(|r| repository(root, &spec, r))
        .collect::<io::Result<_>>()?;
    Ok(GenStats {
        repos: (0..spec.repos).map(repo_name).collect(),
        manifests: per.iter().map(|p| p.0).sum(),
        tags: per.iter().map(|p| p.1).sum(),
        files: per.iter().map(|p| p.2).sum(),
    })
}
