//! An open store: its root, the shared usage lock every process holds (taken exclusively by `prune`), and this
//! process's temporary area.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::TmpArea;
use crate::error::{Error, Result};

/// An open store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    usage_lock: File,
    tmp: TmpArea,
    /// How remote layers are fetched (see `remote.rs`); none attached: they cannot be.
    pub(super) remote: std::sync::OnceLock<std::sync::Arc<dyn super::RemoteBlobs>>,
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
        Ok(Store { root: root.to_path_buf(), usage_lock, tmp, remote: Default::default() })
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
