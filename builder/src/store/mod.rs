//! The local store: content-addressed blobs, unpacked layer snapshots, the image index (name -> manifest), cache
//! records and cache-mount directories, under one root shared safely by concurrent rbuild processes.
//!
//! Layout (see docs/architecture.md): `blobs/sha256/<hex>`, `snapshots/<hex of diff_id>/`, `cache/`, `mounts/`,
//! `images/index.json`, `tmp/`, `lock`. Nothing appears under `blobs/`, `snapshots/` or `images/` until it is
//! complete and verified: everything is written under `tmp/` and renamed into place.
//!
//! Concurrency: every process holds a shared lock on `lock` while it uses the store; `prune` takes it exclusively,
//! so it never removes what a running build or import is using. The image index has its own short exclusive lock
//! for read-modify-write updates.

mod blobs;
mod images;
mod maintenance;
mod snapshots;
mod tmp;

use std::fs::{self, File};
use std::path::{Path, PathBuf};

pub use blobs::BlobWriter;
pub use images::ImageRecord;
pub use maintenance::{FsckReport, PruneOptions, PruneReport, UsageReport};
pub use snapshots::{InProcess, TreeOps};
pub use tmp::TmpArea;
pub use tmp::remove_any as remove_path;

use crate::error::{Error, Result};

/// An open store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    usage_lock: File,
    tmp: TmpArea,
}

impl Store {
    /// The default root: `$RBUILD_ROOT`, else `/var/lib/rbuild` for root, else `$XDG_DATA_HOME/rbuild`, else
    /// `~/.local/share/rbuild`.
    pub fn default_root() -> PathBuf {
        if let Some(r) = std::env::var_os("RBUILD_ROOT").filter(|r| !r.is_empty()) {
            return PathBuf::from(r);
        }
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/rbuild");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("rbuild");
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
        home.join(".local/share/rbuild")
    }

    /// Open (creating if needed) the store at `root`, sweeping temporary files of processes that are gone.
    pub fn open(root: &Path) -> Result<Store> {
        for sub in ["blobs/sha256", "snapshots", "cache", "mounts", "images", "tmp"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(Error::io("create store directory", &d))?;
        }
        let lock_path = root.join("lock");
        let usage_lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::io("open", &lock_path))?;
        usage_lock.lock_shared().map_err(Error::io("lock", &lock_path))?;
        let tmp = TmpArea::open(&root.join("tmp"))?;
        Ok(Store { root: root.to_path_buf(), usage_lock, tmp })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This process's temporary area inside the store (same filesystem, so renames into place are atomic).
    pub fn tmp(&self) -> &TmpArea {
        &self.tmp
    }

    /// Hold the store exclusively (no other process uses it) until the guard drops; then share it again.
    pub(crate) fn exclusive(&self) -> Result<ExclusiveGuard<'_>> {
        let p = self.root.join("lock");
        self.usage_lock.lock().map_err(Error::io("lock exclusively", &p))?;
        Ok(ExclusiveGuard { store: self })
    }
}

/// While alive, this process is the store's only user.
#[derive(Debug)]
pub(crate) struct ExclusiveGuard<'a> {
    store: &'a Store,
}

impl Drop for ExclusiveGuard<'_> {
    fn drop(&mut self) {
        let _ = self.store.usage_lock.lock_shared();
    }
}

/// Write `bytes` to `path` atomically: a temporary file beside it, synced, then renamed over it.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, bytes, true)
}

/// [`write_atomically`] without the sync, for records that are only a cache (the build cache index): after a
/// crash such a file may be empty or gone, which its readers take as a miss. Saves a journal commit per step.
pub(crate) fn write_atomically_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, bytes, false)
}

fn write_atomically_with(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = File::create(&tmp).map_err(Error::io("create", &tmp))?;
    f.write_all(bytes).map_err(Error::io("write", &tmp))?;
    if sync {
        f.sync_all().map_err(Error::io("sync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(Error::io("rename", &tmp))
}
