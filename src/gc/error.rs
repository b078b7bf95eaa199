//! Why a collection cannot go on, as kinds: a doubt or a listing it cannot trust stops it
//! before any delete (exit 1); a registry configuration or cache it cannot use is the
//! user's to fix (exit 2). Each message names the file, key or path.

/// A collection's error; `Display` is the one-line message.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The mark met a manifest or link it cannot read or trust: nothing may be deleted.
    #[error("{0}")]
    Doubt(String),
    /// The blob store (or its uploads) could not be listed, or holds what the registry
    /// never writes: nothing may be deleted.
    #[error("{0}")]
    Listing(String),
    /// The registry's configuration file, or the cache it names, cannot be used.
    #[error("{0}")]
    RegistryConfig(String),
    /// The registry's Redis blob descriptor cache did not answer or could not be cleared.
    #[error("{0}")]
    Cache(String),
}

impl GcError {
    /// The exit a collection stopped by this error ends with.
    pub fn exit(&self) -> crate::exit::Exit {
        use crate::exit::Exit;
        match self {
            GcError::Doubt(_) | GcError::Listing(_) => Exit::Fatal,
            GcError::RegistryConfig(_) | GcError::Cache(_) => Exit::Usage,
        }
    }
}
