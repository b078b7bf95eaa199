//! Blob reads from an S3 registry: bounded concurrent GETs of `blobs/sha256/<2>/<hex>/data`.
//! Read only.

use std::io;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use tokio::runtime::Handle;

use super::BlobSource;
use crate::digest::Digest;
use crate::s3::{GetKind, S3Store};

/// Reads blobs from the bucket; called from planner threads, it drives the async client.
pub struct S3Blobs {
    store: Arc<S3Store>,
    handle: Handle,
}

impl S3Blobs {
    /// Blob reader over `store`, running requests on `handle`'s runtime.
    pub fn new(store: Arc<S3Store>, handle: Handle) -> S3Blobs {
        S3Blobs { store, handle }
    }

    fn key(&self, d: &Digest) -> String {
        let hex = d.hex();
        format!("{}blobs/sha256/{}/{hex}/data", self.store.base, &hex[..2])
    }
}

impl BlobSource for S3Blobs {
    fn read_blob(&self, d: &Digest) -> io::Result<Vec<u8>> {
        self.handle
            .block_on(self.store.get(&self.key(d), GetKind::Blob))
    }

    fn locate(&self, d: &Digest) -> String {
        format!("s3://{}/{}", self.store.bucket, self.key(d))
    }

    fn read_many(&self, digests: &[Digest]) -> Vec<io::Result<Vec<u8>>> {
        let keys: Vec<String> = digests.iter().map(|d| self.key(d)).collect();
        self.handle.block_on(
            stream::iter(keys.iter().map(|k| self.store.get(k, GetKind::Blob)))
                .buffered(self.store.concurrency)
                .collect(),
        )
    }
}
