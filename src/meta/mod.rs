//! Meta reader: manifest and config bodies by digest, digest-checked and parsed into what
//! plan and report need (kind, children, subject, creation date, platform). It reads blobs
//! through the scan stage's `BlobSource`; it decides no verdict.

pub mod gojson;
pub mod parse;

use std::io;

use crate::digest::{Digest, DigestMap};
use crate::record::RepoRecord;
use crate::storage::BlobSource;
pub use parse::{Child, ImageInfo, Kind, Manifest, ManifestError, Platform};

/// Why a blob's body as read cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// It could not be read.
    #[error(transparent)]
    Read(#[from] io::Error),
    /// Read twice, its content does not match its digest.
    #[error("content does not match its digest")]
    DigestMismatch,
}

/// Why a manifest read for a digest cannot be trusted; the text names the blob.
#[derive(Debug, thiserror::Error)]
pub enum ManifestReadError {
    /// Its body could not be read, or does not match the digest.
    #[error("manifest {digest} at {at}: {cause}")]
    Body {
        /// The manifest's digest.
        digest: Digest,
        /// Where the blob lives.
        at: String,
        /// Why.
        cause: BodyError,
    },
    /// Its body is no manifest regsweep can trust.
    #[error("manifest {digest} at {at}: {cause}")]
    Parse {
        /// The manifest's digest.
        digest: Digest,
        /// Where the blob lives.
        at: String,
        /// Why (boxed: a JSON error names keys and a field).
        cause: Box<ManifestError>,
    },
}

/// Why an image config cannot be trusted to date its image; the text names the blob.
#[derive(Debug, thiserror::Error)]
enum ConfigReadError {
    /// Its body could not be read, or does not match the digest.
    #[error("config {digest} at {at}: {cause}")]
    Body {
        digest: Digest,
        at: String,
        cause: BodyError,
    },
    /// Its body is no JSON image config.
    #[error("config {digest} at {at}: not a JSON image config")]
    NotAConfig { digest: Digest, at: String },
}

/// A manifest as read from storage: parsed, or the reason it could not be.
#[derive(Clone, Debug)]
pub enum Meta {
    /// Parsed manifest.
    Parsed(Box<Manifest>),
    /// Unreadable or unparsable: the planner fails closed on it.
    Bad(String),
}

/// One repository's record together with the manifests and image configs it refers to.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// What the lister saw.
    pub record: RepoRecord,
    /// Every revision's and every tag target's manifest.
    pub manifests: DigestMap<Meta>,
    /// Image config facts (created, platform), keyed by the image manifest's digest.
    pub images: DigestMap<ImageInfo>,
    /// Image manifests whose config blob could not be read, digest-checked or parsed,
    /// with why (naming the blob); usually empty.
    pub config_errors: DigestMap<String>,
}

/// Most index levels followed to find an index's creation date.
const MAX_DEPTH: usize = 8;

impl Snapshot {
    /// The parsed manifest of `d`, if it was read and parsed.
    pub fn manifest(&self, d: &Digest) -> Option<&Manifest> {
        match self.manifests.get(d) {
            Some(Meta::Parsed(m)) => Some(m),
            _ => None,
        }
    }

    /// Image creation time (unix seconds): the config's `created`; for an index, that of
    /// its linux/amd64 child, else of its first child.
    pub fn created_of(&self, d: &Digest) -> Option<i64> {
        self.images.get(&self.dating_image(d)?)?.created
    }

    /// Why the date of `d` (an image, or an index through its representative child) cannot
    /// be trusted: its config blob could not be read, digest-checked or parsed.
    pub fn date_problem(&self, d: &Digest) -> Option<&str> {
        self.config_errors
            .get(&self.dating_image(d)?)
            .map(String::as_str)
    }

    /// The image whose config dates `d`: `d` itself for an image, for an index its
    /// representative child, through at most [`MAX_DEPTH`] index levels.
    fn dating_image(&self, d: &Digest) -> Option<Digest> {
        let mut d = *d;
        for _ in 0..=MAX_DEPTH {
            let m = self.manifest(&d)?;
            match m.kind {
                Kind::Index => d = representative_child(&m.children)?.digest,
                Kind::Image | Kind::Schema1 => return Some(d),
                Kind::Unknown => return None,
            }
        }
        None
    }
}

/// The child whose date stands for an index: linux/amd64, else the first.
pub fn representative_child(children: &[Child]) -> Option<&Child> {
    children
        .iter()
        .find(|c| {
            c.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        })
        .or(children.first())
}

/// Reads and parses every manifest the record names, then the configs the report needs.
pub fn load(source: &dyn BlobSource, record: RepoRecord) -> Snapshot {
    let mut wanted: Vec<Digest> = record.revisions.iter().map(|r| r.digest).collect();
    wanted.extend(record.tags.iter().map(|t| t.digest));
    wanted.sort_unstable();
    wanted.dedup();
    let bodies = source.read_many(&wanted);
    let manifests: DigestMap<Meta> = wanted
        .iter()
        .zip(bodies)
        .map(|(d, body)| (*d, manifest_meta(source, d, body)))
        .collect();
    let configs: Vec<(Digest, Digest)> = manifests
        .iter()
        .filter_map(|(d, m)| match m {
            Meta::Parsed(m) if m.kind == Kind::Image && m.subject.is_none() => {
                m.config.map(|c| (*d, c))
            }
            _ => None,
        })
        .collect();
    let mut config_digests: Vec<Digest> = configs.iter().map(|(_, c)| *c).collect();
    config_digests.sort_unstable();
    config_digests.dedup();
    let config_bodies = source.read_many(&config_digests);
    let read: DigestMap<Result<ImageInfo, ConfigReadError>> = config_digests
        .iter()
        .zip(config_bodies)
        .map(|(c, body)| (*c, config_info(source, c, body)))
        .collect();
    let mut images: DigestMap<ImageInfo> = DigestMap::default();
    let mut config_errors: DigestMap<String> = DigestMap::default();
    for (d, c) in &configs {
        match read.get(c) {
            Some(Ok(info)) => {
                images.insert(*d, info.clone());
            }
            Some(Err(e)) => {
                config_errors.insert(*d, e.to_string());
            }
            None => {}
        }
    }
    for (d, m) in &manifests {
        if let Meta::Parsed(m) = m
            && let Some(info) = &m.schema1
        {
            images.insert(*d, info.clone());
        }
    }
    Snapshot {
        record,
        manifests,
        images,
        config_errors,
    }
}

/// A config blob's facts, or why it cannot be trusted (naming the blob).
fn config_info(
    source: &dyn BlobSource,
    c: &Digest,
    body: io::Result<Vec<u8>>,
) -> Result<ImageInfo, ConfigReadError> {
    let body = checked_body(source, c, body).map_err(|cause| ConfigReadError::Body {
        digest: *c,
        at: source.locate(c),
        cause,
    })?;
    parse::parse_config(&body).ok_or_else(|| ConfigReadError::NotAConfig {
        digest: *c,
        at: source.locate(c),
    })
}

fn manifest_meta(source: &dyn BlobSource, d: &Digest, body: io::Result<Vec<u8>>) -> Meta {
    match checked_manifest(source, d, body) {
        Ok(m) => Meta::Parsed(Box::new(m)),
        Err(why) => Meta::Bad(why.to_string()),
    }
}

/// A manifest body as read for `d`: digest-checked and parsed, or why it cannot be trusted
/// (naming the blob).
pub fn checked_manifest(
    source: &dyn BlobSource,
    d: &Digest,
    body: io::Result<Vec<u8>>,
) -> Result<Manifest, ManifestReadError> {
    let at = || source.locate(d);
    let body = checked_body(source, d, body).map_err(|cause| ManifestReadError::Body {
        digest: *d,
        at: at(),
        cause,
    })?;
    parse::parse_manifest(&body).map_err(|cause| ManifestReadError::Parse {
        digest: *d,
        at: at(),
        cause: Box::new(cause),
    })
}

/// A blob's body once its content matches `d`: a body that does not is read again with
/// [`BlobSource::reread`] (the first, fast read may have stopped short) and checked again.
fn checked_body(
    source: &dyn BlobSource,
    d: &Digest,
    body: io::Result<Vec<u8>>,
) -> Result<Vec<u8>, BodyError> {
    let body = body?;
    if Digest::of(&body) == *d {
        return Ok(body);
    }
    match source.reread(d) {
        Ok(body) if Digest::of(&body) == *d => Ok(body),
        Ok(_) => Err(BodyError::DigestMismatch),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Blobs held in memory whose first read stops after `short` bytes, as a fast read on a
    /// filesystem that returns short reads would.
    struct ShortFirst {
        body: Vec<u8>,
        short: usize,
        rereads: AtomicUsize,
    }

    impl BlobSource for ShortFirst {
        fn read_blob(&self, _: &Digest) -> io::Result<Vec<u8>> {
            Ok(self.body[..self.short].to_vec())
        }
        fn reread(&self, _: &Digest) -> io::Result<Vec<u8>> {
            self.rereads.fetch_add(1, Ordering::Relaxed);
            Ok(self.body.clone())
        }
        fn locate(&self, d: &Digest) -> String {
            d.to_string()
        }
    }

    #[test]
    fn a_body_that_does_not_match_is_read_again_before_it_is_judged() {
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#.to_vec();
        let d = Digest::of(&body);
        let src = ShortFirst {
            short: 10,
            body: body.clone(),
            rereads: AtomicUsize::new(0),
        };
        let m = checked_manifest(&src, &d, src.read_blob(&d)).expect("read again in full");
        assert_eq!(m.kind, Kind::Image);
        assert_eq!(src.rereads.load(Ordering::Relaxed), 1);
        // Content that is wrong on the second read too is refused, naming the blob.
        let other = Digest::of(b"other");
        let e = checked_manifest(&src, &other, src.read_blob(&other)).expect_err("mismatch");
        assert!(
            matches!(
                &e,
                ManifestReadError::Body {
                    digest,
                    cause: BodyError::DigestMismatch,
                    ..
                } if *digest == other
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains(&other.to_string()), "{e}");
        // A good first read is not read again.
        let whole = ShortFirst {
            short: body.len(),
            body,
            rereads: AtomicUsize::new(0),
        };
        checked_manifest(&whole, &d, whole.read_blob(&d)).expect("good");
        assert_eq!(whole.rereads.load(Ordering::Relaxed), 0);
    }
}
