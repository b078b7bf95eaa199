//! Manifest and image-config parsing for the five manifest media types the registry stores.
//! Pure functions over bytes: no I/O, and every malformed input is an error, never a panic.

use std::fmt;

use chrono::DateTime;
use serde::Deserialize;
use serde_json::Value;

use crate::digest::Digest;

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-arch).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 manifest, unsigned.
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1 manifest, signed.
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-arch).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The Accept list for every manifest GET/HEAD (docs/POLICY.md).
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// What sort of manifest a body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A single image (Docker schema 2 or OCI manifest).
    Image,
    /// A multi-arch index (Docker manifest list or OCI index).
    Index,
    /// A Docker schema 1 manifest.
    Schema1,
    /// An unknown media type: kept, with every digest it mentions.
    Unknown,
}

/// Operating system and architecture of an image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Platform {
    /// `os`, e.g. linux.
    pub os: String,
    /// `architecture`, e.g. amd64.
    pub architecture: String,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_q = |s: &str| {
            if s.is_empty() {
                "?".to_owned()
            } else {
                s.to_owned()
            }
        };
        write!(f, "{}/{}", or_q(&self.os), or_q(&self.architecture))
    }
}

/// A manifest an index refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    /// The child's digest.
    pub digest: Digest,
    /// The platform the index entry declares.
    pub platform: Option<Platform>,
}

/// What the planner and report need of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Image, index, schema 1 or unknown.
    pub kind: Kind,
    /// Manifests this one keeps alive: index entries, or for an unknown type every digest in it.
    pub children: Vec<Child>,
    /// The `subject` this manifest is a referrer of (signatures, SBOMs, attestations).
    pub subject: Option<Digest>,
    /// The config blob of an image.
    pub config: Option<Digest>,
    /// Creation time and platform that schema 1 carries inline.
    pub schema1: Option<ImageInfo>,
    /// Blobs it references (config and layers) with their sizes; `None` where the
    /// manifest gives none (schema 1).
    pub blobs: Vec<(Digest, Option<u64>)>,
    /// Size of the manifest's own body in bytes.
    pub size: u64,
}

/// Image facts from a config blob.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// `created`, unix seconds.
    pub created: Option<i64>,
    /// `os` / `architecture`.
    pub platform: Option<Platform>,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<Vec<RawDescriptor>>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    #[serde(rename = "fsLayers")]
    fs_layers: Option<Vec<RawFsLayer>>,
    subject: Option<RawDescriptor>,
    history: Option<Vec<RawHistory>>,
    architecture: Option<String>,
}

#[derive(Deserialize)]
struct RawFsLayer {
    #[serde(rename = "blobSum")]
    blob_sum: String,
}

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    digest: String,
    size: Option<u64>,
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

#[derive(Deserialize)]
struct RawHistory {
    #[serde(rename = "v1Compatibility")]
    v1_compatibility: Option<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    created: Option<String>,
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

fn digest_field(s: &str, what: &str) -> Result<Digest, String> {
    Digest::parse(s).ok_or_else(|| format!("{what} digest {s:?} is not sha256:<64 hex>"))
}

/// Parses a manifest body; `Err` says why it cannot be trusted.
pub fn parse_manifest(body: &[u8]) -> Result<Manifest, String> {
    let raw: RawManifest =
        serde_json::from_slice(body).map_err(|e| format!("unparsable manifest JSON: {e}"))?;
    let subject = raw
        .subject
        .as_ref()
        .map(|s| digest_field(&s.digest, "subject"))
        .transpose()?;
    let kind = match raw.media_type.as_deref() {
        Some(DOCKER_MANIFEST | OCI_MANIFEST) => Kind::Image,
        Some(DOCKER_LIST | OCI_INDEX) => Kind::Index,
        Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED) => Kind::Schema1,
        None if raw.schema_version == Some(1) => Kind::Schema1,
        None if raw.manifests.is_some() => Kind::Index,
        None if raw.config.is_some() => Kind::Image,
        _ => Kind::Unknown,
    };
    let mut m = Manifest {
        kind,
        children: Vec::new(),
        subject,
        config: None,
        schema1: None,
        blobs: Vec::new(),
        size: body.len() as u64,
    };
    match kind {
        Kind::Image => {
            let config = raw.config.as_ref().ok_or("image manifest without config")?;
            let c = digest_field(&config.digest, "config")?;
            // An artifact's config (a signature's, a chart's, an SBOM's) is no image config:
            // it has no creation date to read, and need not be JSON.
            if config.media_type.as_deref().is_none_or(is_image_config) {
                m.config = Some(c);
            }
            m.blobs.push((c, config.size));
            for l in raw.layers.iter().flatten() {
                // A layer that is not a sha256 blob (a foreign URL layer) frees nothing here.
                if let Some(d) = Digest::parse(&l.digest) {
                    m.blobs.push((d, l.size));
                }
            }
        }
        Kind::Index => {
            for d in raw.manifests.unwrap_or_default() {
                m.children.push(Child {
                    digest: digest_field(&d.digest, "index entry")?,
                    platform: d.platform.map(|p| Platform {
                        os: p.os,
                        architecture: p.architecture,
                    }),
                });
            }
        }
        Kind::Schema1 => {
            m.schema1 = Some(schema1_info(&raw));
            for l in raw.fs_layers.iter().flatten() {
                if let Some(d) = Digest::parse(&l.blob_sum) {
                    m.blobs.push((d, None));
                }
            }
        }
        Kind::Unknown => {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| format!("unparsable manifest JSON: {e}"))?;
            let mut found = Vec::new();
            collect_digests(&v, &mut found);
            found.sort_unstable();
            found.dedup();
            m.children = found
                .into_iter()
                .map(|digest| Child {
                    digest,
                    platform: None,
                })
                .collect();
        }
    }
    Ok(m)
}

/// Every string in the document that is a sha256 digest.
fn collect_digests(v: &Value, out: &mut Vec<Digest>) {
    match v {
        Value::String(s) => out.extend(Digest::parse(s)),
        Value::Array(a) => a.iter().for_each(|x| collect_digests(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_digests(x, out)),
        _ => {}
    }
}

fn schema1_info(raw: &RawManifest) -> ImageInfo {
    let v1: Option<RawConfig> = raw
        .history
        .as_ref()
        .and_then(|h| h.first())
        .and_then(|h| h.v1_compatibility.as_deref())
        .and_then(|s| serde_json::from_str(s).ok());
    let created = v1
        .as_ref()
        .and_then(|c| c.created.as_deref())
        .and_then(parse_time);
    let arch = v1
        .as_ref()
        .map(|c| c.architecture.clone())
        .filter(|a| !a.is_empty())
        .or_else(|| raw.architecture.clone())
        .unwrap_or_default();
    let os = v1.map(|c| c.os).unwrap_or_default();
    ImageInfo {
        created,
        platform: Some(Platform {
            os,
            architecture: arch,
        }),
    }
}

/// Whether a config descriptor's media type is an image config (Docker's or OCI's).
fn is_image_config(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.docker.container.image.v1+json"
            | "application/vnd.oci.image.config.v1+json"
    )
}

/// Parses an image config blob's `created`, `os` and `architecture`.
pub fn parse_config(body: &[u8]) -> Option<ImageInfo> {
    let raw: RawConfig = serde_json::from_slice(body).ok()?;
    // A `created` that is there but no RFC 3339 time cannot rank the image: not trusted.
    let created = match raw.created.as_deref() {
        Some(s) => Some(parse_time(s)?),
        None => None,
    };
    Some(ImageInfo {
        created,
        platform: Some(Platform {
            os: raw.os,
            architecture: raw.architecture,
        }),
    })
}

fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
}

#[cfg(test)]
mod tests;
