//! Incremental COPY: a COPY from a build context records the content hash of each regular file it made
//! (`cache/copies/<key>`, with the diff_id of the layer, whose snapshot holds those files). The next run of the
//! same COPY (same context directory, sources, destination and options) hard-links each file whose content and
//! attributes are unchanged from that snapshot instead of writing it again: one `link` in place of creating,
//! filling and setting up an inode. Snapshots are never modified, so two of them may share inodes; a file is
//! linked only after the previous one is checked to have exactly what a fresh copy would give it (size, mode,
//! on-disk owner, mtime to the nanosecond, no extended attributes) and the recorded content hash matches.
//! The record is a hint: a missing, stale or unreadable one costs copies, never a wrong file.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::Result;

const MAGIC: &[u8] = b"rbuild-copy-record-v1\n";
/// A sha256 in hex.
const HASH_LEN: usize = 64;

/// The attributes a fresh copy gives a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FreshFile {
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
}

/// The files an earlier run of a COPY made: the snapshot holding them and each one's content hash, by its path
/// relative to the layer root.
#[derive(Debug)]
pub struct PriorCopy {
    root: PathBuf,
    files: HashMap<Vec<u8>, [u8; HASH_LEN]>,
}

impl PriorCopy {
    /// The record at `record`, if it is readable and `snapshot_of` finds its layer's snapshot (given the
    /// diff_id).
    pub fn load(record: &Path, snapshot_of: &dyn Fn(&str) -> Option<PathBuf>) -> Option<PriorCopy> {
        let bytes = fs::read(record).ok()?;
        let (diff_id, mut rows) = split_header(&bytes)?;
        let root = snapshot_of(diff_id)?;
        let mut files = HashMap::new();
        while !rows.is_empty() {
            let len = u32::from_le_bytes(rows.get(..4)?.try_into().ok()?) as usize;
            let path = rows.get(4..4 + len)?;
            let hash: [u8; HASH_LEN] = rows.get(4 + len..4 + len + HASH_LEN)?.try_into().ok()?;
            files.insert(path.to_vec(), hash);
            rows = &rows[4 + len + HASH_LEN..];
        }
        Some(PriorCopy { root, files })
    }
}

/// The diff_id of the layer whose snapshot a record's files are in (for pruning records with their snapshots).
pub fn recorded_layer(record: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = vec![0u8; MAGIC.len() + 80];
    let n = fs::File::open(record).ok()?.read(&mut head).ok()?;
    split_header(&head[..n]).map(|(diff_id, _)| diff_id.to_string())
}

/// A record's diff_id line and the rows after it.
fn split_header(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let newline = rest.iter().position(|b| *b == b'\n')?;
    Some((std::str::from_utf8(&rest[..newline]).ok()?, &rest[newline + 1..]))
}

/// One COPY's use of its previous result, and what it makes for the next.
#[derive(Debug)]
pub struct Incremental {
    layer_root: PathBuf,
    prior: Option<PriorCopy>,
    made: Mutex<Vec<(Vec<u8>, String)>>,
    linked: AtomicUsize,
}

impl Incremental {
    /// A copy into `layer_root`, reusing `prior`'s files where they are unchanged.
    pub fn new(layer_root: &Path, prior: Option<PriorCopy>) -> Incremental {
        Incremental { layer_root: layer_root.to_path_buf(), prior, made: Mutex::default(), linked: AtomicUsize::new(0) }
    }

    /// How many files were linked instead of copied.
    pub fn linked(&self) -> usize {
        self.linked.load(Ordering::Relaxed)
    }

    fn rel<'a>(&self, target: &'a Path) -> Option<&'a [u8]> {
        target.strip_prefix(&self.layer_root).ok().map(|r| r.as_os_str().as_bytes())
    }

    /// Make `target` a link to the previous copy's file at the same place, if that has content `hash` and exactly
    /// the attributes `fresh`. False (and nothing done) when it cannot be linked.
    pub(crate) fn try_link(&self, target: &Path, hash: &str, fresh: &FreshFile) -> bool {
        let (Some(prior), Some(rel)) = (&self.prior, self.rel(target)) else { return false };
        if prior.files.get(rel).is_none_or(|h| h.as_slice() != hash.as_bytes()) {
            return false;
        }
        let old = prior.root.join(std::ffi::OsStr::from_bytes(rel));
        let Ok(meta) = fs::symlink_metadata(&old) else { return false };
        let same = meta.is_file()
            && FreshFile {
                size: meta.size(),
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
            } == *fresh
            && xattr::list(&old).is_ok_and(|mut names| names.next().is_none());
        if !same || crate::fsops::replacing(target, || fs::hard_link(&old, target)).is_err() {
            return false;
        }
        self.linked.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Note that `target` (linked or copied) is a regular file with content `hash`.
    pub(crate) fn record(&self, target: &Path, hash: &str) {
        if let (Some(rel), Ok(mut made)) = (self.rel(target), self.made.lock()) {
            made.push((rel.to_vec(), hash.to_string()));
        }
    }

    /// Write the record for the next run: this copy's files, held by the snapshot of layer `diff_id`.
    pub fn save(&self, record: &Path, diff_id: &str) -> Result<()> {
        let made = self.made.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default();
        let mut bytes = Vec::with_capacity(MAGIC.len() + diff_id.len() + 1 + made.len() * (HASH_LEN + 40));
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(diff_id.as_bytes());
        bytes.push(b'\n');
        for (path, hash) in made.iter().filter(|(_, h)| h.len() == HASH_LEN) {
            bytes.extend_from_slice(&(path.len() as u32).to_le_bytes());
            bytes.extend_from_slice(path);
            bytes.extend_from_slice(hash.as_bytes());
        }
        if let Some(dir) = record.parent() {
            fs::create_dir_all(dir).map_err(crate::error::Error::io("create", dir))?;
        }
        // A hint only: after a crash a lost or empty record costs copies.
        crate::fsops::write_atomically_unsynced(record, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_a_damaged_one_is_ignored() {
        let root = std::env::temp_dir().join(format!("rbuild-copy-record-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let inc = Incremental::new(&root, None);
        let hash = "a".repeat(64);
        inc.record(&root.join("app/x\nnewline"), &hash);
        inc.record(&root.join("b"), &"b".repeat(64));
        let record = root.join("cache/copies/k");
        inc.save(&record, "sha256:0123").unwrap();
        let snap = root.join("snap");
        let prior = PriorCopy::load(&record, &|d| (d == "sha256:0123").then(|| snap.clone())).unwrap();
        assert_eq!(prior.root, snap);
        assert_eq!(prior.files.len(), 2);
        assert_eq!(prior.files[b"app/x\nnewline".as_slice()].as_slice(), hash.as_bytes());
        assert_eq!(recorded_layer(&record).as_deref(), Some("sha256:0123"));
        // No snapshot for the diff_id: no prior copy.
        assert!(PriorCopy::load(&record, &|_| None).is_none());
        // Truncated: ignored.
        let bytes = fs::read(&record).unwrap();
        fs::write(&record, &bytes[..bytes.len() - 10]).unwrap();
        assert!(PriorCopy::load(&record, &|_| Some(snap.clone())).is_none());
        fs::remove_dir_all(&root).unwrap();
    }
}
