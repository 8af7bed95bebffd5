//! Files the writer of a layer directory made itself from memory (a COPY of small context files), with what it
//! gave each: reading the tree takes their entries from here instead of reading their metadata back
//! (`tree::collect_tree_known`), and writing the layer takes their contents from here instead of reading the files
//! again (`tar_writer`). A COPY of 20,000 small files then opens and stats each once, not three times.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A regular file as it was written: one name, no extended attributes.
#[derive(Debug, Clone)]
pub struct KnownFile {
    pub data: Arc<[u8]>,
    /// Permission bits (with setuid/setgid/sticky), as on disk.
    pub mode: u32,
    /// The owner the layer gives it.
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch, as on disk.
    pub mtime: i64,
}

/// Known files by their path on disk.
#[derive(Debug, Default)]
pub struct KnownFiles(HashMap<PathBuf, KnownFile>);

impl KnownFiles {
    pub fn new() -> KnownFiles {
        KnownFiles::default()
    }

    pub fn insert(&mut self, path: PathBuf, file: KnownFile) {
        self.0.insert(path, file);
    }

    /// Forget `path`: something else is written there.
    pub fn remove(&mut self, path: &Path) {
        self.0.remove(path);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn get(&self, path: &Path) -> Option<&KnownFile> {
        self.0.get(path)
    }

    /// The content of the file at `path`, when it is known and `size` bytes long.
    pub(crate) fn content(&self, path: &Path, size: u64) -> Option<&[u8]> {
        self.0.get(path).map(|f| &f.data[..]).filter(|d| d.len() as u64 == size)
    }
}
