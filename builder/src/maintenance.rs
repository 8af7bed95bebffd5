//! Store maintenance: `prune` (drop what no named image references, oldest first, optionally down to a size
//! budget; remote layers' `sources/` records are kept), `fsck` (verify every blob's digest and every image's
//! references; remote layers are reported as such), and `system df` (sizes by kind).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::digest::{Digest, digest_reader};
use crate::error::{Error, Result};
use crate::export::image::{image_blobs, load_image};
use crate::store::Store;

/// What `prune` may remove.
#[derive(Debug, Clone, Copy, Default)]
pub struct PruneOptions {
    /// Also remove cache mounts.
    pub all: bool,
    /// Stop once the store is at most this many bytes (unreferenced items go oldest first).
    pub keep_storage: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs: u64,
    pub snapshots: u64,
    pub mounts: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageReport {
    pub images: u64,
    pub blobs: (u64, u64),
    pub snapshots: (u64, u64),
    pub cache_records: (u64, u64),
    pub mounts: (u64, u64),
    /// Bytes not referenced by any named image (what a prune would free).
    pub reclaimable: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    pub blobs_checked: u64,
    pub images_checked: u64,
    pub snapshots_checked: u64,
    /// Layers images name that are remote (known to be in a registry, fetched when needed): not problems.
    pub remote_layers: Vec<String>,
    pub problems: Vec<String>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Total size of a file or tree (apparent bytes, hard links counted once per tree).
fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    let mut total = 0;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.nlink() <= 1 || seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    total
}

fn mtime(path: &Path) -> SystemTime {
    fs::symlink_metadata(path).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// What `prune` may remove, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prunable {
    Blob,
    Snapshot,
    CacheMount,
}

impl Store {
    /// Blobs and snapshots that named images reference.
    fn referenced(&self) -> Result<(BTreeSet<Digest>, BTreeSet<Digest>)> {
        let mut blobs = BTreeSet::new();
        let mut snapshots = BTreeSet::new();
        for record in self.images()? {
            let digest = record.digest()?;
            blobs.extend(image_blobs(self, &digest)?);
            if let Ok(img) = load_image(self, &digest) {
                snapshots.extend(img.diff_ids()?);
            }
        }
        Ok((blobs, snapshots))
    }

    /// Remove what no named image references (and, with `all`, cache mounts), oldest first, down to
    /// `keep_storage` when given. Waits until no other process uses the store.
    pub fn prune(&self, opts: PruneOptions, tree_ops: &dyn crate::store::TreeOps) -> Result<PruneReport> {
        let _exclusive = self.exclusive()?;
        let (ref_blobs, ref_snapshots) = self.referenced()?;
        let mut candidates: Vec<(SystemTime, PathBuf, Prunable)> = Vec::new();
        for d in self.list_blobs()? {
            if !ref_blobs.contains(&d) {
                let p = self.blob_path(&d);
                candidates.push((mtime(&p), p, Prunable::Blob));
            }
        }
        for d in self.list_snapshots()? {
            if !ref_snapshots.contains(&d) {
                let p = self.snapshot_path(&d);
                candidates.push((mtime(&p), p, Prunable::Snapshot));
            }
        }
        if opts.all {
            let mounts = self.root().join("mounts");
            for e in fs::read_dir(&mounts).map_err(Error::io("read", &mounts))?.flatten() {
                candidates.push((mtime(&e.path()), e.path(), Prunable::CacheMount));
            }
            // Remembered ADD downloads (counted with the cache mounts: both are kept only to save work).
            if let Ok(downloads) = fs::read_dir(self.root().join("downloads")) {
                for e in downloads.flatten() {
                    candidates.push((mtime(&e.path()), e.path(), Prunable::CacheMount));
                }
            }
        }
        candidates.sort();
        let mut total =
            opts.keep_storage.map(|_| self.usage().map(|u| u.blobs.1 + u.snapshots.1 + u.mounts.1)).transpose()?;
        let mut report = PruneReport::default();
        for (_, path, kind) in candidates {
            if let (Some(t), Some(budget)) = (total, opts.keep_storage)
                && t <= budget
            {
                break;
            }
            let size = tree_size(&path);
            if kind == Prunable::Snapshot {
                // Snapshots may hold files of subordinate ids: removed where those ids are mapped.
                tree_ops.remove(&path)?;
            } else {
                crate::fsops::remove_path(&path).map_err(Error::io("remove", &path))?;
            }
            report.bytes += size;
            match kind {
                Prunable::Blob => report.blobs += 1,
                Prunable::Snapshot => report.snapshots += 1,
                Prunable::CacheMount => report.mounts += 1,
            }
            total = total.map(|t| t.saturating_sub(size));
        }
        // COPY's records of files it made point into snapshots: those whose snapshot has gone are dropped.
        let copies = self.root().join("cache/copies");
        for e in fs::read_dir(&copies).into_iter().flatten().flatten() {
            let gone = crate::context::copy_reuse::recorded_layer(&e.path())
                .and_then(|d| Digest::parse(&d).ok())
                .is_none_or(|d| !self.snapshot_path(&d).is_dir());
            if gone {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(report)
    }

    /// Sizes by kind.
    pub fn usage(&self) -> Result<UsageReport> {
        let (ref_blobs, ref_snapshots) = self.referenced()?;
        let mut r = UsageReport { images: self.images()?.len() as u64, ..Default::default() };
        for d in self.list_blobs()? {
            let s = tree_size(&self.blob_path(&d));
            r.blobs.0 += 1;
            r.blobs.1 += s;
            if !ref_blobs.contains(&d) {
                r.reclaimable += s;
            }
        }
        for d in self.list_snapshots()? {
            let s = tree_size(&self.snapshot_path(&d));
            r.snapshots.0 += 1;
            r.snapshots.1 += s;
            if !ref_snapshots.contains(&d) {
                r.reclaimable += s;
            }
        }
        for (kind, slot) in [("cache", &mut r.cache_records), ("mounts", &mut r.mounts)] {
            let dir = self.root().join(kind);
            for e in fs::read_dir(&dir).map_err(Error::io("read", &dir))?.flatten() {
                slot.0 += 1;
                slot.1 += tree_size(&e.path());
            }
        }
        Ok(r)
    }

    /// Verify every blob's digest, every named image's documents and blobs, and the snapshot directories.
    pub fn fsck(&self) -> Result<FsckReport> {
        let mut r = FsckReport::default();
        for d in self.list_blobs()? {
            r.blobs_checked += 1;
            let path = self.blob_path(&d);
            match fs::File::open(&path).and_then(digest_reader) {
                Ok((actual, _)) if actual == d => {}
                Ok((actual, _)) => r.problems.push(format!("blob {d} is corrupt: its content hashes to {actual}")),
                Err(e) => r.problems.push(format!("blob {d} cannot be read: {e}")),
            }
        }
        let blobs_dir = self.root().join("blobs/sha256");
        for e in fs::read_dir(&blobs_dir).map_err(Error::io("read", &blobs_dir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if Digest::parse(&format!("sha256:{name}")).is_err() {
                r.problems.push(format!("unexpected file in blobs/sha256: {name}"));
            }
        }
        match self.images() {
            Ok(images) => {
                for img in images {
                    r.images_checked += 1;
                    let check = img.digest().and_then(|d| {
                        let blobs = image_blobs(self, &d)?;
                        load_image(self, &d)?;
                        Ok(blobs)
                    });
                    match check {
                        Ok(blobs) => {
                            for b in blobs.iter().filter(|b| !self.has_blob(b)) {
                                let places = self.blob_sources(b);
                                if places.is_empty() {
                                    r.problems.push(format!(
                                        "image {} needs blob {b}, which is missing",
                                        img.name.familiar()
                                    ));
                                } else if !r.remote_layers.iter().any(|l| l.starts_with(b.as_str())) {
                                    r.remote_layers.push(format!("{b} (at {})", places.join(", ")));
                                }
                            }
                        }
                        Err(e) => r.problems.push(format!("image {}: {e}", img.name.familiar())),
                    }
                }
            }
            Err(e) => r.problems.push(format!("the image index cannot be read: {e}")),
        }
        for d in self.list_snapshots()? {
            r.snapshots_checked += 1;
            let p = self.snapshot_path(&d);
            if !p.is_dir() {
                r.problems.push(format!("snapshot {d} is not a directory"));
            }
        }
        Ok(r)
    }
}
