//! What an online collection's filesystem quarantine holds, read straight from disk.

use std::path::{Path, PathBuf};

/// The quarantine of the storage root `root`.
pub fn dir(root: &Path) -> PathBuf {
    root.join("regsweep-quarantine")
}

/// Where the quarantine keeps the blob of hex digest `hex`: one file a blob.
pub fn path_of(root: &Path, hex: &str) -> PathBuf {
    dir(root).join("sha256").join(&hex[..2]).join(hex)
}

/// The hex digests of the blobs the quarantine holds, sorted.
pub fn held(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let top = dir(root).join("sha256");
    for p in std::fs::read_dir(&top).into_iter().flatten().flatten() {
        for b in std::fs::read_dir(p.path()).into_iter().flatten().flatten() {
            if b.path().is_file() {
                out.push(b.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}
