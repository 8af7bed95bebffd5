//! Snapshots: unpacked layers under `snapshots/<hex of diff_id>/`, each a standalone overlay layer directory
//! (whiteouts in overlay form), made by unpacking into `tmp/` and renaming into place.
//!
//! Rootless with subordinate ids, snapshot files belong to ids the invoking user cannot read or remove, so the
//! operations on snapshot trees go through [`TreeOps`]: in-process here, and run inside the user namespace by a
//! helper the runtime provides.

use std::fs;
use std::path::{Path, PathBuf};

use super::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layer::{ApplyMode, ApplyOptions, ApplyReport, apply_tar, decompressed};

/// Operations on snapshot trees, which may have to run inside a user namespace.
pub trait TreeOps: Send + Sync + std::fmt::Debug {
    /// Unpack the layer blob at `blob` into the new directory `dest` as an overlay layer directory.
    fn unpack(&self, blob: &Path, dest: &Path, layer_name: &str) -> Result<ApplyReport>;
    /// Remove a tree.
    fn remove(&self, path: &Path) -> Result<()>;
    /// Give `path` (not recursively) the owner `uid:gid` as the sandbox sees ids.
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<()>;
}

/// Tree operations run by this process with its own credentials.
#[derive(Debug, Default, Clone, Copy)]
pub struct InProcess;

impl TreeOps for InProcess {
    fn unpack(&self, blob: &Path, dest: &Path, layer_name: &str) -> Result<ApplyReport> {
        let file = fs::File::open(blob).map_err(Error::io("open", blob))?;
        fs::create_dir(dest).map_err(Error::io("create", dest))?;
        apply_tar(decompressed(file)?, dest, &ApplyOptions::new(ApplyMode::Snapshot, layer_name))
    }

    fn remove(&self, path: &Path) -> Result<()> {
        crate::fsops::remove_path(path).map_err(Error::io("remove", path))
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<()> {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(Error::io("chown", path))
    }
}

impl Store {
    /// Make the snapshots' overlay markers (opaque directories, xattr whiteouts) those of `namespace` (`trusted`
    /// or `user`), the one this process's overlay mounts read: the store records the namespace its snapshots were
    /// written with (`overlay-xattrs`), and when it differs the snapshots are dropped, to be unpacked again from
    /// their layers — a marker the mount does not read would let hidden files show through.
    pub fn reconcile_overlay_xattrs(&self, namespace: &str) -> Result<()> {
        let marker = self.root().join("overlay-xattrs");
        let recorded = match fs::read_to_string(&marker) {
            Ok(v) => v.trim().to_string(),
            // Stores older than the marker: real root wrote `trusted` markers, everyone else `user` ones.
            Err(_) => if rustix::process::geteuid().is_root() { "trusted" } else { "user" }.to_string(),
        };
        if recorded != namespace {
            let _exclusive = self.exclusive()?;
            let dir = self.root().join("snapshots");
            if let Ok(entries) = fs::read_dir(&dir) {
                for e in entries.flatten() {
                    crate::fsops::remove_path(&e.path()).map_err(Error::io("remove", e.path()))?;
                }
            }
        }
        if recorded != namespace || !marker.exists() {
            let tmp = self.tmp().path("overlay-xattrs");
            fs::write(&tmp, namespace).map_err(Error::io("write", &tmp))?;
            fs::rename(&tmp, &marker).map_err(Error::io("rename", &marker))?;
        }
        Ok(())
    }

    pub fn snapshot_path(&self, diff_id: &Digest) -> PathBuf {
        self.root().join("snapshots").join(diff_id.hex())
    }

    /// The snapshot of a layer, unpacking the layer blob first if needed (a remote layer is fetched first).
    pub fn ensure_snapshot(&self, tree_ops: &dyn TreeOps, diff_id: &Digest, blob: &Digest) -> Result<PathBuf> {
        let path = self.snapshot_path(diff_id);
        if path.is_dir() {
            return Ok(path);
        }
        self.ensure_blob(blob)?;
        let tmp = self.tmp().path("snapshot");
        let result = tree_ops.unpack(&self.blob_path(blob), &tmp, blob.as_str());
        if let Err(e) = result {
            let _ = tree_ops.remove(&tmp);
            return Err(e);
        }
        match fs::rename(&tmp, &path) {
            Ok(()) => Ok(path),
            // Another process made the same snapshot meanwhile: theirs is as good as ours.
            Err(_) if path.is_dir() => {
                let _ = tree_ops.remove(&tmp);
                Ok(path)
            }
            Err(e) => {
                let _ = tree_ops.remove(&tmp);
                Err(Error::io("rename into snapshots", &path)(e))
            }
        }
    }

    /// The snapshots of these layers (blob, diff_id), bottom first: the remote blobs among them fetched several at
    /// once, then the missing snapshots unpacked.
    pub fn ensure_snapshots(&self, tree_ops: &dyn TreeOps, layers: &[(Digest, Digest)]) -> Result<()> {
        let missing: Vec<&(Digest, Digest)> = layers.iter().filter(|(_, d)| !self.snapshot_path(d).is_dir()).collect();
        let blobs: Vec<Digest> = missing.iter().map(|(b, _)| b.clone()).collect();
        self.ensure_blobs(&blobs)?;
        for (blob, diff_id) in missing {
            self.ensure_snapshot(tree_ops, diff_id, blob)?;
        }
        Ok(())
    }

    /// Every snapshot's diff_id.
    pub fn list_snapshots(&self) -> Result<Vec<Digest>> {
        super::blobs::list_digest_names(&self.root().join("snapshots"))
    }
}
