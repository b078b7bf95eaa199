//! Meta reader: manifest and config bodies by digest, parsed into what plan and report need.

pub mod fs;
pub mod parse;

use std::io;

use rayon::prelude::*;

use crate::digest::{Digest, DigestMap};
use crate::scan::RepoRecord;
pub use parse::{Child, ImageInfo, Kind, Manifest, Platform};

/// Anything that can hand out a blob's bytes by digest (filesystem, S3).
pub trait BlobSource: Sync {
    /// The blob's bytes.
    fn read_blob(&self, digest: &Digest) -> io::Result<Vec<u8>>;
    /// Where the blob lives, for error messages.
    fn locate(&self, digest: &Digest) -> String;
}

/// A manifest as read from storage: parsed, or the reason it could not be.
#[derive(Clone, Debug)]
pub enum Meta {
    /// Parsed manifest.
    Parsed(Manifest),
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
        self.created_at_depth(d, 0)
    }

    fn created_at_depth(&self, d: &Digest, depth: usize) -> Option<i64> {
        let m = self.manifest(d)?;
        match m.kind {
            Kind::Index if depth < MAX_DEPTH => {
                let child = representative_child(&m.children)?;
                self.created_at_depth(&child.digest, depth + 1)
            }
            Kind::Image | Kind::Schema1 => self.images.get(d)?.created,
            _ => None,
        }
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
    let read = |d: &Digest| (*d, read_manifest(source, d));
    let manifests: DigestMap<Meta> = if wanted.len() > 64 {
        wanted.par_iter().map(read).collect()
    } else {
        wanted.iter().map(read).collect()
    };
    let configs: Vec<(Digest, Digest)> = manifests
        .iter()
        .filter_map(|(d, m)| match m {
            Meta::Parsed(m) if m.kind == Kind::Image && m.subject.is_none() => {
                m.config.map(|c| (*d, c))
            }
            _ => None,
        })
        .collect();
    let read_config = |(d, c): &(Digest, Digest)| (*d, read_image_info(source, c));
    let mut images: DigestMap<ImageInfo> = if configs.len() > 64 {
        configs.par_iter().map(read_config).collect()
    } else {
        configs.iter().map(read_config).collect()
    };
    for (d, m) in &manifests {
        if let Meta::Parsed(Manifest {
            schema1: Some(info),
            ..
        }) = m
        {
            images.insert(*d, info.clone());
        }
    }
    Snapshot {
        record,
        manifests,
        images,
    }
}

fn read_manifest(source: &dyn BlobSource, d: &Digest) -> Meta {
    match source.read_blob(d) {
        Ok(body) if Digest::of(&body) != *d => Meta::Bad(format!(
            "manifest {d} at {}: content does not match its digest",
            source.locate(d)
        )),
        Ok(body) => match parse::parse_manifest(&body) {
            Ok(m) => Meta::Parsed(m),
            Err(e) => Meta::Bad(format!("manifest {d} at {}: {e}", source.locate(d))),
        },
        Err(e) => Meta::Bad(format!("manifest {d} at {}: {e}", source.locate(d))),
    }
}

fn read_image_info(source: &dyn BlobSource, config: &Digest) -> ImageInfo {
    source
        .read_blob(config)
        .ok()
        .and_then(|b| parse::parse_config(&b))
        .unwrap_or_default()
}
