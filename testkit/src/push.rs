//! A minimal registry client that pushes blobs, images, indexes and attachments, for tests
//! and the demo. It talks only to registries on 127.0.0.1.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use reqwest::blocking::Client;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::json;

use regsweep::digest::Digest;
use regsweep::meta::parse::{
    ACCEPT_MANIFESTS, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A manifest that was pushed: what an index or a tag needs to refer to it again.
#[derive(Clone, Debug)]
pub struct Pushed {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: &'static str,
    /// Its exact bytes.
    pub body: Vec<u8>,
}

/// One single-platform image to build.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// `os`.
    pub os: &'static str,
    /// `architecture`.
    pub arch: &'static str,
    /// Config `created`.
    pub created: DateTime<Utc>,
    /// Makes the layer and config unique.
    pub seed: u64,
    /// OCI media types instead of Docker's.
    pub oci: bool,
}

/// Pushes to one registry (`http://127.0.0.1:PORT`), optionally with basic auth.
pub struct Pusher {
    base: String,
    client: Client,
    auth: Option<(String, String)>,
}

impl Pusher {
    /// A pusher for the registry at `base`.
    pub fn new(base: &str) -> Result<Pusher> {
        Ok(Pusher {
            base: base.trim_end_matches('/').to_owned(),
            client: Client::builder()
                .danger_accept_invalid_certs(true)
                .build()?,
            auth: None,
        })
    }

    /// The same pusher, authenticating with basic auth.
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Pusher {
        self.auth = Some((user.to_owned(), password.to_owned()));
        self
    }

    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::blocking::RequestBuilder {
        let r = self.client.request(method, url);
        match &self.auth {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    /// DELETEs a manifest by digest; gives the status code.
    pub fn delete(&self, repo: &str, digest: &Digest) -> Result<u16> {
        let r = self
            .req(
                reqwest::Method::DELETE,
                &format!("{}/v2/{repo}/manifests/{digest}", self.base),
            )
            .send()?;
        Ok(r.status().as_u16())
    }

    /// GETs `/v2/<repo>/<path>` (a manifest or a blob); gives the status and the body.
    pub fn get(&self, repo: &str, path: &str) -> Result<(u16, Vec<u8>)> {
        let r = self
            .req(
                reqwest::Method::GET,
                &format!("{}/v2/{repo}/{path}", self.base),
            )
            .header(reqwest::header::ACCEPT, ACCEPT_MANIFESTS)
            .send()?;
        let status = r.status().as_u16();
        Ok((status, r.bytes()?.to_vec()))
    }

    /// POSTs a new upload to `repo`; the answer (202, with its Location).
    fn begin_upload(&self, repo: &str) -> Result<reqwest::blocking::Response> {
        let start = self
            .req(
                reqwest::Method::POST,
                &format!("{}/v2/{repo}/blobs/uploads/", self.base),
            )
            .send()
            .with_context(|| format!("starting an upload to {repo}"))?;
        if start.status().as_u16() != 202 {
            bail!("upload to {repo}: POST answered {}", start.status());
        }
        Ok(start)
    }

    /// Starts an upload and leaves it unfinished, as an interrupted push does; gives its id
    /// (`Docker-Upload-UUID`).
    pub fn start_upload(&self, repo: &str, data: &[u8]) -> Result<String> {
        let start = self.begin_upload(repo)?;
        let header = |name: &str| {
            start
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let id = header("Docker-Upload-UUID").context("upload without Docker-Upload-UUID")?;
        let loc = header(LOCATION.as_str()).context("upload without Location")?;
        let loc = if loc.starts_with('/') {
            format!("{}{loc}", self.base)
        } else {
            loc
        };
        let patch = self
            .req(reqwest::Method::PATCH, &loc)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(data.to_vec())
            .send()?;
        if patch.status().as_u16() != 202 {
            bail!("upload {id} to {repo}: PATCH answered {}", patch.status());
        }
        Ok(id)
    }

    /// Uploads a blob (monolithic POST then PUT with `?digest=`) and returns its digest.
    pub fn blob(&self, repo: &str, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of(data);
        let head = self
            .req(
                reqwest::Method::HEAD,
                &format!("{}/v2/{repo}/blobs/{digest}", self.base),
            )
            .send()?;
        if head.status().is_success() {
            return Ok(digest);
        }
        let start = self.begin_upload(repo)?;
        let loc = start
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("upload without Location")?
            .to_owned();
        let loc = if loc.starts_with('/') {
            format!("{}{loc}", self.base)
        } else {
            loc
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let put = self
            .req(reqwest::Method::PUT, &format!("{loc}{sep}digest={digest}"))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(data.to_vec())
            .send()?;
        if put.status().as_u16() != 201 {
            bail!(
                "blob {digest} to {repo}: PUT answered {}: {}",
                put.status(),
                put.text().unwrap_or_default()
            );
        }
        Ok(digest)
    }

    /// PUTs a manifest under `reference` (a tag, or its own digest when `None`).
    pub fn manifest(
        &self,
        repo: &str,
        reference: Option<&str>,
        media_type: &'static str,
        body: Vec<u8>,
    ) -> Result<Pushed> {
        let digest = Digest::of(&body);
        let reference = reference.map_or_else(|| digest.to_string(), str::to_owned);
        let r = self
            .req(
                reqwest::Method::PUT,
                &format!("{}/v2/{repo}/manifests/{reference}", self.base),
            )
            .header(CONTENT_TYPE, media_type)
            .body(body.clone())
            .send()?;
        if r.status().as_u16() != 201 {
            bail!(
                "manifest {repo}:{reference}: PUT answered {}: {}",
                r.status(),
                r.text().unwrap_or_default()
            );
        }
        Ok(Pushed {
            digest,
            media_type,
            body,
        })
    }

    /// Points `tag` at an already pushed manifest.
    pub fn tag(&self, repo: &str, tag: &str, m: &Pushed) -> Result<()> {
        self.manifest(repo, Some(tag), m.media_type, m.body.clone())
            .map(|_| ())
    }

    /// Pushes a single-platform image (config, one layer, manifest by digest).
    pub fn image(&self, repo: &str, spec: &ImageSpec) -> Result<Pushed> {
        let layer: Vec<u8> = format!("layer {} {}/{}\n", spec.seed, spec.os, spec.arch)
            .repeat(64)
            .into_bytes();
        let layer_digest = self.blob(repo, &layer)?;
        let config = json!({
            "architecture": spec.arch,
            "os": spec.os,
            "created": spec.created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "config": {"Env": [format!("SEED={}", spec.seed)], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string()]},
            "history": [{"created": spec.created.to_rfc3339(), "created_by": "regsweep testkit"}],
        });
        let config = serde_json::to_vec(&config)?;
        let config_digest = self.blob(repo, &config)?;
        let (mt, cmt, lmt) = if spec.oci {
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
        } else {
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
        };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": mt,
            "config": {"mediaType": cmt, "size": config.len(), "digest": config_digest.to_string()},
            "layers": [{"mediaType": lmt, "size": layer.len(), "digest": layer_digest.to_string()}],
        });
        self.manifest(repo, None, mt, serde_json::to_vec_pretty(&manifest)?)
    }

    /// Pushes an index over already pushed children, each with its platform.
    pub fn index(
        &self,
        repo: &str,
        children: &[(&Pushed, &str, &str)],
        oci: bool,
    ) -> Result<Pushed> {
        let mt = if oci { OCI_INDEX } else { DOCKER_LIST };
        let entries: Vec<_> = children
            .iter()
            .map(|(c, os, arch)| {
                json!({"mediaType": c.media_type, "size": c.body.len(), "digest": c.digest.to_string(),
                       "platform": {"os": os, "architecture": arch}})
            })
            .collect();
        let body = serde_json::to_vec_pretty(
            &json!({"schemaVersion": 2, "mediaType": mt, "manifests": entries}),
        )?;
        self.manifest(repo, None, mt, body)
    }

    /// Pushes a cosign-style signature for `subject` and tags it `sha256-<hex>.sig`.
    pub fn signature(&self, repo: &str, subject: &Pushed) -> Result<Pushed> {
        let payload = serde_json::to_vec(
            &json!({"critical": {"image": {"docker-manifest-digest": subject.digest.to_string()},
            "type": "cosign container image signature"}}),
        )?;
        let layer = self.blob(repo, &payload)?;
        let config = self.blob(repo, b"{}")?;
        let body = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": 2, "digest": config.to_string()},
            "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "size": payload.len(),
                        "digest": layer.to_string(), "annotations": {"dev.cosignproject.cosign/signature": "MEUC"}}],
        }))?;
        let sig = self.manifest(repo, None, OCI_MANIFEST, body)?;
        self.tag(repo, &format!("sha256-{}.sig", subject.digest.hex()), &sig)?;
        Ok(sig)
    }

    /// Pushes an OCI referrer (an SBOM-like artifact) whose `subject` is `subject`.
    pub fn referrer(&self, repo: &str, subject: &Pushed, artifact: &str) -> Result<Pushed> {
        let data = format!("{{\"sbom\":\"{artifact}\",\"for\":\"{}\"}}", subject.digest);
        let layer = self.blob(repo, data.as_bytes())?;
        let config = self.blob(repo, b"{}")?;
        let body = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": config.to_string()},
            "layers": [{"mediaType": "application/spdx+json", "size": data.len(), "digest": layer.to_string()}],
            "subject": {"mediaType": subject.media_type, "size": subject.body.len(), "digest": subject.digest.to_string()},
        }))?;
        self.manifest(repo, None, OCI_MANIFEST, body)
    }

    /// Resolves a tag to a digest with the full Accept list (`None` when it does not exist).
    pub fn resolve(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        let r = self
            .req(
                reqwest::Method::HEAD,
                &format!("{}/v2/{repo}/manifests/{tag}", self.base),
            )
            .header(reqwest::header::ACCEPT, ACCEPT_MANIFESTS)
            .send()?;
        if r.status().as_u16() == 404 {
            return Ok(None);
        }
        if !r.status().is_success() {
            bail!("HEAD {repo}:{tag} answered {}", r.status());
        }
        let d = r
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(Digest::parse)
            .context("no Docker-Content-Digest")?;
        Ok(Some(d))
    }
}

/// Pushes `n` distinct untagged manifests (one image with an annotation each) to `repo`, on
/// eight threads.
pub fn push_untagged(url: &str, repo: &str, n: usize) -> Result<()> {
    let p = Pusher::new(url)?;
    let spec = ImageSpec {
        os: "linux",
        arch: "amd64",
        created: Utc::now(),
        seed: 1,
        oci: true,
    };
    let base = p.image(repo, &spec)?;
    let template: serde_json::Value = serde_json::from_slice(&base.body)?;
    let threads = 8;
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let template = template.clone();
                s.spawn(move || -> Result<()> {
                    let p = Pusher::new(url)?;
                    for i in (t..n).step_by(threads) {
                        let mut m = template.clone();
                        m["annotations"] = serde_json::json!({"org.example.n": i.to_string()});
                        p.manifest(repo, None, base.media_type, serde_json::to_vec(&m)?)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("pusher thread panicked"))??;
        }
        Ok(())
    })
}
