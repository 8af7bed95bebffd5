//! What a build produced: the image (or index) written, and how many steps ran.

use std::path::PathBuf;

use crate::digest::Digest;
use crate::error::Result;
use crate::export::image::LoadedImage;

use super::Platform;

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub image: LoadedImage,
    /// The image's layer snapshots, bottom first (for filesystem outputs).
    pub snapshots: Vec<PathBuf>,
    /// How the owners of the snapshots' files on disk map to the image's (the executor's id map).
    pub ids: crate::layer::IdMap,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    /// Steps that ran, and steps whose results came from the cache.
    pub executed: usize,
    pub cached: usize,
    /// A multi-platform build's image index (then `manifest_digest` is its digest, and `image`, `snapshots` and
    /// `config_digest` are the host platform's image, or the first platform's), and each platform's result.
    pub index: Option<IndexDocument>,
    pub per_platform: Vec<(Platform, BuildResult)>,
}

impl BuildResult {
    /// The descriptor names point at: the image's, or the index's.
    pub fn descriptor(&self) -> Result<oci_spec::image::Descriptor> {
        match &self.index {
            Some(i) => crate::export::image::descriptor(&i.media_type, i.bytes.len() as u64, &self.manifest_digest),
            None => self.image.descriptor(),
        }
    }

    /// Whether the result is an index of several platforms' images.
    pub fn is_multi_platform(&self) -> bool {
        self.index.is_some()
    }
}

/// The image index a multi-platform build made (its digest is the result's `manifest_digest`).
#[derive(Debug, Clone)]
pub struct IndexDocument {
    pub media_type: String,
    pub bytes: Vec<u8>,
}
