//! Blob reads from a filesystem registry: `blobs/sha256/<2 hex>/<hex>/data`, size-capped.
//! Read only.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::BlobSource;
use crate::digest::Digest;

/// Largest manifest or config body read; the registry itself refuses manifests over 4 MiB.
const MAX_BLOB: u64 = 16 << 20;

/// Reads blobs below `<root>/docker/registry/v2/blobs`.
pub struct FsBlobs {
    blobs: PathBuf,
}

impl FsBlobs {
    /// Blob reader for the registry rooted at `root`.
    pub fn new(root: &Path) -> FsBlobs {
        FsBlobs {
            blobs: root.join("docker/registry/v2/blobs/sha256"),
        }
    }

    fn path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.blobs.join(&hex[..2]).join(&hex).join("data")
    }
}

impl BlobSource for FsBlobs {
    fn read_blob(&self, d: &Digest) -> io::Result<Vec<u8>> {
        let f = File::open(self.path(d))?;
        let len = f.metadata()?.len();
        if len > MAX_BLOB {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{len} bytes is too large for a manifest"),
            ));
        }
        let mut buf = Vec::with_capacity(len as usize);
        f.take(MAX_BLOB).read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn locate(&self, d: &Digest) -> String {
        self.path(d).display().to_string()
    }
}
