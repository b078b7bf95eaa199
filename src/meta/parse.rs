//! Manifest and image-config parsing for the five manifest media types the registry stores.
//! Pure functions over bytes: no I/O, and every malformed input is an error, never a panic.

use std::fmt;

use crate::digest::Digest;
use crate::meta::gojson::{self, Json, JsonError};
use chrono::DateTime;

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
    /// Blobs it references by another algorithm than sha256 (`sha512:<hex>` config or
    /// layers): only a repository's `_layers/<algo>/<hex>/link` says which blob holds them.
    pub foreign_blobs: Vec<String>,
    /// Every sha256 digest written anywhere in it (any key, any depth): what a kept
    /// manifest protects, whatever its parse says (docs/POLICY.md, "protect by mention").
    pub mentions: Vec<Digest>,
    /// Every sha384/sha512 digest written anywhere in it.
    pub foreign_mentions: Vec<String>,
    /// Why its structure could not be read as the registry reads it (keys that Go would
    /// merge, a field of the wrong type): it is then of kind `Unknown`, kept with
    /// everything it mentions.
    pub doubt: Option<String>,
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

/// Why a manifest body cannot be trusted: the caller fails closed on it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON.
    #[error("unparsable manifest JSON: {0}")]
    Unparsable(JsonError),
    /// JSON, but not an object (`an array`).
    #[error("unparsable manifest JSON: {0}, not an object")]
    NotAnObject(&'static str),
    /// A reference that must name a manifest of this repository (an index entry, a
    /// subject) in another algorithm than sha256: no manifest link resolves it.
    #[error("{what} digest {digest:?} is not sha256: no manifest link resolves it")]
    ManifestNotSha256 {
        /// `subject`, `index entry`.
        what: &'static str,
        /// The digest as written.
        digest: String,
    },
    /// A reference that is no digest the registry accepts.
    #[error("{what} digest {digest:?} is not sha256:<64 hex>")]
    BadDigest {
        /// `subject`, `index entry`, `config`.
        what: &'static str,
        /// The digest as written.
        digest: String,
    },
    /// An image manifest without `config`.
    #[error("image manifest without config")]
    NoConfig,
}

/// Why a manifest's structure could not be read.
enum Problem {
    /// It cannot be trusted at all (a reference that names no resolvable digest, an
    /// image without config): the caller fails closed on it.
    Bad(ManifestError),
    /// The registry (Go) could read it otherwise than regsweep would (keys Go merges,
    /// a field of the wrong type): kept as `Unknown`, with everything it mentions.
    Ambiguous(JsonError),
}

impl From<JsonError> for Problem {
    fn from(why: JsonError) -> Problem {
        Problem::Ambiguous(why)
    }
}

/// A digest as a manifest writes it.
enum Ref {
    /// `sha256:<64 lowercase hex>`: a blob's own name.
    Sha256(Digest),
    /// `sha384:`/`sha512:` with lowercase hex of the right length: a name the registry
    /// accepts and resolves through a repository's link.
    Other(String),
}

/// Reads a digest as go-digest validates it (lowercase algorithm and hex); `None` for
/// anything it would refuse.
fn digest_ref(s: &str) -> Option<Ref> {
    if let Some(d) = Digest::parse(s) {
        return Some(Ref::Sha256(d));
    }
    let (algo, hex) = s.split_once(':')?;
    let len = match algo {
        "sha384" => 96,
        "sha512" => 128,
        _ => return None,
    };
    (hex.len() == len && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| Ref::Other(s.to_owned()))
}

/// A descriptor's digest that must name a manifest in this repository (an index entry,
/// a subject): only sha256 names one (the registry links manifests by sha256 alone).
fn manifest_ref(desc: &Json, what: &'static str) -> Result<Digest, Problem> {
    let s = desc.str_field("digest")?.unwrap_or_default();
    match digest_ref(s) {
        Some(Ref::Sha256(d)) => Ok(d),
        Some(Ref::Other(_)) => Err(Problem::Bad(ManifestError::ManifestNotSha256 {
            what,
            digest: s.to_owned(),
        })),
        None => Err(Problem::Bad(ManifestError::BadDigest {
            what,
            digest: s.to_owned(),
        })),
    }
}

/// A descriptor's size (Go `int64`); a negative one is no size.
fn size_of(desc: &Json) -> Result<Option<u64>, Problem> {
    Ok(desc.int_field("size")?.and_then(|s| u64::try_from(s).ok()))
}

/// Parses a manifest body; `Err` says why it cannot be trusted. Keys are matched to fields
/// as the registry's Go decoder matches them (case-insensitively, with Unicode folding);
/// where Go would merge duplicate keys, or a field has a type Go refuses, the manifest is
/// `Unknown` (kept with everything it mentions) rather than read one way of several.
pub fn parse_manifest(body: &[u8]) -> Result<Manifest, ManifestError> {
    // Go reads bytes that are not UTF-8 as U+FFFD: so does this.
    let text = utf8_as_go_reads_it(body);
    let doc = gojson::parse(&text).map_err(ManifestError::Unparsable)?;
    if !matches!(doc, Json::Obj(_)) {
        return Err(ManifestError::NotAnObject(doc.what()));
    }
    let mentions = gojson::mentions(&doc);
    let mut m = Manifest {
        kind: Kind::Unknown,
        children: Vec::new(),
        subject: None,
        config: None,
        schema1: None,
        blobs: Vec::new(),
        foreign_blobs: Vec::new(),
        mentions: mentions.sha256,
        foreign_mentions: mentions.other,
        doubt: None,
        size: body.len() as u64,
    };
    match read_structure(&doc, &mut m) {
        Ok(()) => {}
        Err(Problem::Bad(why)) => return Err(why),
        Err(Problem::Ambiguous(why)) => {
            m.kind = Kind::Unknown;
            m.children.clear();
            m.subject = None;
            m.config = None;
            m.schema1 = None;
            m.blobs.clear();
            m.foreign_blobs.clear();
            m.doubt = Some(why.to_string());
        }
    }
    if m.kind == Kind::Unknown {
        m.children = m
            .mentions
            .iter()
            .map(|d| Child {
                digest: *d,
                platform: None,
            })
            .collect();
    }
    Ok(m)
}

/// What the document is, as the registry dispatches it: schema version 1 is schema 1
/// whatever its media type; then the media type; without one, an index where `manifests`
/// is there, an image where `config` is.
fn kind_of(doc: &Json) -> Result<Kind, Problem> {
    let version = doc.int_field("schemaVersion")?;
    let media_type = doc.str_field("mediaType")?.filter(|t| !t.is_empty());
    Ok(match media_type {
        _ if version == Some(1) => Kind::Schema1,
        Some(DOCKER_MANIFEST | OCI_MANIFEST) => Kind::Image,
        Some(DOCKER_LIST | OCI_INDEX) => Kind::Index,
        Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED) => Kind::Schema1,
        None if doc.arr_field("manifests")?.is_some() => Kind::Index,
        None if doc.obj_field("config")?.is_some() => Kind::Image,
        _ => Kind::Unknown,
    })
}

/// Fills kind, children, subject, config and blobs from the document's structure.
fn read_structure(doc: &Json, m: &mut Manifest) -> Result<(), Problem> {
    m.kind = kind_of(doc)?;
    m.subject = doc
        .obj_field("subject")?
        .map(|s| manifest_ref(s, "subject"))
        .transpose()?;
    match m.kind {
        Kind::Image => read_image(doc, m),
        Kind::Index => read_index(doc, m),
        Kind::Schema1 => read_schema1(doc, m),
        Kind::Unknown => Ok(()),
    }
}

/// An image manifest's config and layers.
fn read_image(doc: &Json, m: &mut Manifest) -> Result<(), Problem> {
    let config = doc
        .obj_field("config")?
        .ok_or(Problem::Bad(ManifestError::NoConfig))?;
    let digest = config.str_field("digest")?.unwrap_or_default();
    match digest_ref(digest) {
        Some(Ref::Sha256(c)) => {
            // An artifact's config (a signature's, a chart's, an SBOM's) is no image
            // config: it has no creation date to read, and need not be JSON.
            if config.str_field("mediaType")?.is_none_or(is_image_config) {
                m.config = Some(c);
            }
            m.blobs.push((c, size_of(config)?));
        }
        Some(Ref::Other(o)) => m.foreign_blobs.push(o),
        None => {
            return Err(Problem::Bad(ManifestError::BadDigest {
                what: "config",
                digest: digest.to_owned(),
            }));
        }
    }
    for l in doc.arr_field("layers")?.unwrap_or_default() {
        match digest_ref(l.str_field("digest")?.unwrap_or_default()) {
            Some(Ref::Sha256(d)) => m.blobs.push((d, size_of(l)?)),
            Some(Ref::Other(o)) => m.foreign_blobs.push(o),
            // No digest the registry accepts: it names no blob to free or keep.
            None => {}
        }
    }
    Ok(())
}

/// An index's children with the platforms its entries declare.
fn read_index(doc: &Json, m: &mut Manifest) -> Result<(), Problem> {
    for d in doc.arr_field("manifests")?.unwrap_or_default() {
        let platform = d
            .obj_field("platform")?
            .map(|p| -> Result<Platform, Problem> {
                Ok(Platform {
                    os: p.str_field("os")?.unwrap_or_default().to_owned(),
                    architecture: p.str_field("architecture")?.unwrap_or_default().to_owned(),
                })
            })
            .transpose()?;
        m.children.push(Child {
            digest: manifest_ref(d, "index entry")?,
            platform,
        });
    }
    Ok(())
}

/// A schema 1 manifest's inline image facts and its layers (`fsLayers`).
fn read_schema1(doc: &Json, m: &mut Manifest) -> Result<(), Problem> {
    m.schema1 = Some(schema1_info(doc)?);
    for l in doc.arr_field("fsLayers")?.unwrap_or_default() {
        match digest_ref(l.str_field("blobSum")?.unwrap_or_default()) {
            Some(Ref::Sha256(d)) => m.blobs.push((d, None)),
            Some(Ref::Other(o)) => m.foreign_blobs.push(o),
            None => {}
        }
    }
    Ok(())
}

/// Creation time and platform of a schema 1 manifest, from its first history entry's
/// `v1Compatibility` (itself JSON, read the same way); what cannot be read is left out.
fn schema1_info(doc: &Json) -> Result<ImageInfo, Problem> {
    let v1 = doc
        .arr_field("history")?
        .and_then(|h| h.first())
        .map(|h| h.str_field("v1Compatibility"))
        .transpose()?
        .flatten()
        .and_then(|s| config_info(s).ok());
    let arch = v1
        .as_ref()
        .and_then(|c| c.platform.as_ref())
        .map(|p| p.architecture.clone())
        .filter(|a| !a.is_empty());
    let arch = match arch {
        Some(a) => a,
        None => doc
            .str_field("architecture")?
            .unwrap_or_default()
            .to_owned(),
    };
    let os = v1
        .as_ref()
        .and_then(|c| c.platform.as_ref())
        .map(|p| p.os.clone())
        .unwrap_or_default();
    Ok(ImageInfo {
        created: v1.and_then(|c| c.created),
        platform: Some(Platform {
            os,
            architecture: arch,
        }),
    })
}

/// Whether a config descriptor's media type is an image config (Docker's or OCI's).
fn is_image_config(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.docker.container.image.v1+json"
            | "application/vnd.oci.image.config.v1+json"
    )
}

/// Parses an image config blob's `created`, `os` and `architecture`, keys matched as Go
/// matches them; `None` when it is no JSON object, or a field cannot be read one way only.
pub fn parse_config(body: &[u8]) -> Option<ImageInfo> {
    config_info(&utf8_as_go_reads_it(body)).ok()
}

/// The body as text, bytes that are not UTF-8 replaced by U+FFFD (as Go's decoder reads
/// them); borrowed, after one fast check, when it is UTF-8 throughout.
fn utf8_as_go_reads_it(body: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(body) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(body),
    }
}

/// Why an image config cannot be read one way only.
#[derive(Debug, thiserror::Error)]
enum ConfigError {
    /// Not JSON, or a field Go would read otherwise.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// JSON, but not an object.
    #[error("{0}, not an object")]
    NotAnObject(&'static str),
    /// A `created` that is no RFC 3339 time.
    #[error("created {0:?} is no time")]
    NoTime(String),
}

/// [`parse_config`] over text, with why it fails.
fn config_info(text: &str) -> Result<ImageInfo, ConfigError> {
    let doc = gojson::parse(text)?;
    if !matches!(doc, Json::Obj(_)) {
        return Err(ConfigError::NotAnObject(doc.what()));
    }
    // A `created` that is there but no RFC 3339 time cannot rank the image: not trusted.
    let created = match doc.str_field("created")? {
        Some(s) => Some(parse_time(s).ok_or_else(|| ConfigError::NoTime(s.to_owned()))?),
        None => None,
    };
    Ok(ImageInfo {
        created,
        platform: Some(Platform {
            os: doc.str_field("os")?.unwrap_or_default().to_owned(),
            architecture: doc
                .str_field("architecture")?
                .unwrap_or_default()
                .to_owned(),
        }),
    })
}

fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
}

#[cfg(test)]
mod tests;
