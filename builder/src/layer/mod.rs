//! Layers: directory trees to deterministic tar streams and back. `tree` lists what a layer holds (a whole tree,
//! an overlay upper directory, or the difference of two trees), `tar_writer` writes it, `compress` compresses it,
//! and `Store::write_layer` does all of it in one pass into the store, computing diff_id (uncompressed), digest
//! (compressed) and size on the way. `apply` unpacks a layer safely.

pub mod apply;
pub mod compress;
pub mod known_files;
pub mod rootless_owner;
pub mod tar_writer;
pub mod tree;

use std::io::Write;

pub use apply::{
    ApplyMode, ApplyOptions, ApplyReport, apply_tar, decompressed, overlay_xattr_namespace, use_user_overlay_xattrs,
};
pub use compress::{Compression, Compressor};
pub use known_files::{KnownFile, KnownFiles};
pub use tree::{
    EntryKind, IdMap, TreeEntry, collect_tree, collect_tree_known, collect_tree_mapped, collect_tree_picked,
    diff_overlay_upper, diff_overlay_upper_mapped, diff_overlay_upper_within, diff_trees, diff_trees_mapped,
    overlay_opaque, overlay_whiteout,
};

use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, Result};

/// How layers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOptions {
    pub compression: Compression,
    /// Compression threads (0: all CPUs). The output does not depend on it.
    pub threads: usize,
    /// SOURCE_DATE_EPOCH: mtimes are clamped to it.
    pub source_date_epoch: Option<i64>,
}

impl Default for LayerOptions {
    fn default() -> Self {
        let source_date_epoch = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.trim().parse().ok());
        LayerOptions { compression: Compression::default(), threads: 0, source_date_epoch }
    }
}

impl LayerOptions {
    pub(crate) fn thread_count(&self) -> usize {
        if self.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { self.threads }
    }
}

/// A layer written to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// Digest of the compressed blob.
    pub digest: Digest,
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    pub compression: Compression,
}

/// Write `entries` as a layer into `out`: returns the diff_id and the writer (with the compressed stream in it).
pub fn write_layer<W: Write>(entries: &[TreeEntry], out: W, opts: &LayerOptions) -> Result<(Digest, W)> {
    write_layer_with(entries, out, opts, &KnownFiles::new())
}

/// [`write_layer`], taking the contents of the files `known` holds from memory.
pub fn write_layer_with<W: Write>(
    entries: &[TreeEntry],
    out: W,
    opts: &LayerOptions,
    known: &KnownFiles,
) -> Result<(Digest, W)> {
    let compressor =
        Compressor::new(opts.compression, opts.thread_count(), out).map_err(Error::io("start compressor", "layer"))?;
    let hashing = tar_writer::write_tar_with(entries, HashingWriter::new(compressor), opts.source_date_epoch, known)?;
    let (diff_id, _, compressor) = hashing.finish();
    let out = compressor.finish().map_err(Error::io("finish compression", "layer"))?;
    Ok((diff_id, out))
}
