//! Blob reads from a filesystem registry: `blobs/sha256/<2 hex>/<hex>/data`, opened
//! relative to the open `blobs/sha256` directory, size-capped. Read only.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::BlobSource;
use super::fs_at::{self, Dir};
use crate::digest::Digest;

/// Largest manifest or config body read; the registry itself refuses manifests over 4 MiB.
const MAX_BLOB: u64 = 16 << 20;

/// Reads blobs below `<root>/docker/registry/v2/blobs`.
pub struct FsBlobs {
    blobs: PathBuf,
    /// `blobs/sha256`, opened on first use (or why it could not be).
    dir: OnceLock<io::Result<Dir>>,
}

/// The `blobs/sha256` directory of a registry rooted at `root`.
pub fn blobs_dir(root: &Path) -> PathBuf {
    root.join("docker/registry/v2/blobs/sha256")
}

/// A blob's directory below `blobs/sha256`: `<2 hex>/<hex>`.
pub fn blob_dir_rel(d: &Digest) -> String {
    let hex = d.hex_buf();
    let hex = hex.as_str();
    format!("{}/{hex}", &hex[..2])
}

impl FsBlobs {
    /// Blob reader for the registry rooted at `root`.
    pub fn new(root: &Path) -> FsBlobs {
        FsBlobs {
            blobs: blobs_dir(root),
            dir: OnceLock::new(),
        }
    }

    /// Opens the blob's `data` file relative to `blobs/sha256`.
    fn open(&self, d: &Digest) -> io::Result<std::fs::File> {
        let dir = self
            .dir
            .get_or_init(|| Dir::open(&self.blobs))
            .as_ref()
            .map_err(|e| io::Error::other(format!("{}: {e}", self.blobs.display())))?;
        dir.open_file(&format!("{}/data", blob_dir_rel(d)))
    }
}

impl BlobSource for FsBlobs {
    fn read_blob(&self, d: &Digest) -> io::Result<Vec<u8>> {
        fs_at::read_quick(self.open(d)?, MAX_BLOB)
    }

    fn reread(&self, d: &Digest) -> io::Result<Vec<u8>> {
        fs_at::read_to_end(self.open(d)?, MAX_BLOB)
    }

    fn locate(&self, d: &Digest) -> String {
        self.blobs
            .join(blob_dir_rel(d))
            .join("data")
            .display()
            .to_string()
    }
}
