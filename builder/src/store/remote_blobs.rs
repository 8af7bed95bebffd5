//! How the store fetches a remote layer: the [`RemoteBlobs`] a process attaches (the registry client).

use std::io::Write;

use crate::digest::Digest;
use crate::error::Result;

/// Fetches blobs from registries (the registry client, made when first needed).
pub trait RemoteBlobs: Send + Sync + std::fmt::Debug {
    /// Write the blob `digest` of `registry/repository` into `out`; returns the bytes written.
    fn fetch(&self, registry: &str, repository: &str, digest: &Digest, out: &mut dyn Write) -> Result<u64>;
}
