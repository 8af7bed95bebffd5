//! The end of every step that makes files: a layer directory (an executor's changes or a tree rbuild wrote) is
//! exported as a layer blob and becomes the layer's snapshot; the result goes into the cache and the stage
//! (layers, diff_ids, history, key). A cache hit takes the same way from its record.

use super::*;

impl StageBuilder<'_> {
    /// Directories of a new layer that the stage already has keep their mode and owner (a COPY or WORKDIR
    /// into `/home/user/x` must not make `/home/user` root's); `new_owner` is given to the ones that are new.
    /// The directories in `layer_dir` are given the same attributes where this process can give them, so that
    /// the tree stays usable as the layer's snapshot; `Adjusted` when one could not be.
    pub(super) fn keep_existing_dirs(
        &self,
        layer_dir: &Path,
        entries: &mut [crate::layer::TreeEntry],
        new_owner: Option<(u32, u32)>,
        which: &dyn Fn(&str) -> bool,
    ) -> LayerDir {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        let mut origin = LayerDir::Written;
        // The directories the stage already has, with their (mode, uid, gid), looked up once each.
        let existing: std::collections::HashMap<String, (u32, u32, u32)> = entries
            .iter()
            .filter(|e| matches!(e.kind, crate::layer::EntryKind::Dir))
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .filter(|rel| which(rel))
            .filter_map(|rel| self.stage_dir_attrs(&rel).map(|attrs| (rel, attrs)))
            .collect();
        // An existing directory that gets a new entry has a new mtime (the build's); one only passed through on
        // the way to the destination keeps its own (as BuildKit's layers have it).
        let mut touched = std::collections::HashSet::new();
        for e in entries.iter() {
            let rel = String::from_utf8_lossy(&e.path);
            let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
            if existing.contains_key(parent) && !touched.contains(parent) && !self.path_exists(&rel) {
                touched.insert(parent.to_string());
            }
        }
        for e in entries.iter_mut().filter(|e| matches!(e.kind, crate::layer::EntryKind::Dir)) {
            let rel = String::from_utf8_lossy(&e.path).into_owned();
            if !which(&rel) {
                continue;
            }
            let path = layer_dir.join(std::ffi::OsStr::from_bytes(&e.path));
            let want = match existing.get(&rel) {
                Some(attrs) => *attrs,
                None => match new_owner {
                    Some((uid, gid)) => (e.mode, uid, gid),
                    None => continue,
                },
            };
            if (e.mode, e.uid, e.gid) != want {
                (e.mode, e.uid, e.gid) = want;
                if !set_written_dir_attrs(&path, want) {
                    origin = LayerDir::Adjusted;
                }
            }
            if existing.contains_key(&rel)
                && !touched.contains(&rel)
                && let Some(meta) = self.path_meta(&rel)
                && e.mtime != meta.mtime()
            {
                e.mtime = meta.mtime();
                let kept = fs::File::open(&path).and_then(|d| d.set_modified(meta.modified()?));
                if kept.is_err() {
                    origin = LayerDir::Adjusted;
                }
            }
        }
        origin
    }

    /// Add a layer (or none) to the stage; returns its diff_id.
    pub(super) fn push_layer(
        &mut self,
        layer: Option<(LayerRef, Digest, PathBuf)>,
        created_by: String,
    ) -> Option<Digest> {
        match layer {
            Some((l, diff_id, snapshot)) => {
                self.state.config.push_diff_id(&diff_id);
                self.state.layers.push(l);
                self.state.diff_ids.push(diff_id.clone());
                self.state.snapshots.push(snapshot);
                self.history(created_by, false);
                Some(diff_id)
            }
            None => {
                self.history(created_by, true);
                None
            }
        }
    }

    /// The stage's key after a step: the step's key and what it produced, so the key of a stage's files follows
    /// their content (a step re-run with `--no-cache-filter` that writes something else changes it), and a
    /// `COPY --from` that stage can be keyed without reading its files.
    pub(super) fn advance(&mut self, step_key: &str, diff_id: Option<&Digest>) {
        self.state.cache_key = cache::after_step(step_key, diff_id);
    }

    /// A cache hit: the layer, whose snapshot (or blob: a remote layer) is made present only when a later step
    /// reads the stage's files (`ensure_files`).
    pub(super) fn apply_cached(&mut self, hit: cache::Cached, created_by: String) -> Result<Option<Digest>> {
        self.note_step_time(&hit.created.unwrap_or_else(|| self.created.clone()));
        let layer = match hit.layer {
            Some((l, diff_id)) => {
                let snap = self.store.snapshot_path(&diff_id);
                Some((l, diff_id, snap))
            }
            None => None,
        };
        let diff_id = self.push_layer(layer, created_by);
        self.cached += 1;
        Ok(diff_id)
    }

    /// Export a layer directory (an overlay upper or a COPY tree) and make it the layer's snapshot. A tree rbuild
    /// wrote itself cannot become the snapshot as it is under subordinate ids when it has owners other than root
    /// (they are only recorded, not real), nor one whose entries were given other attributes than its files
    /// have: the snapshot is then unpacked from the layer (inside the user namespace when there is one).
    pub(super) fn commit_dir(
        &self,
        dir: &Path,
        entries: Vec<crate::layer::TreeEntry>,
        origin: LayerDir,
    ) -> Result<Option<(LayerRef, Digest, PathBuf)>> {
        self.commit_dir_with(dir, entries, origin, &crate::layer::KnownFiles::new())
    }

    /// [`Self::commit_dir`], the layer taking the contents of the files `known` holds from memory (a copy wrote
    /// them).
    pub(super) fn commit_dir_with(
        &self,
        dir: &Path,
        entries: Vec<crate::layer::TreeEntry>,
        origin: LayerDir,
        known: &crate::layer::KnownFiles,
    ) -> Result<Option<(LayerRef, Digest, PathBuf)>> {
        let usable_as_snapshot = match origin {
            LayerDir::Sandbox => true,
            // Under subordinate ids the caller's own ids are root's, and only those are real on disk.
            LayerDir::Written => {
                !self.session.worker.written_owners_root_only || entries.iter().all(|e| (e.uid, e.gid) == (0, 0))
            }
            LayerDir::Adjusted => false,
        };
        if entries.is_empty() {
            self.tree_ops.remove(dir)?;
            return Ok(None);
        }
        let info = self.store.write_layer_with(&entries, &self.req.layers, known)?;
        self.keep_layer(dir, info, usable_as_snapshot).map(Some)
    }

    /// A layer the executor exported itself (None: the step changed nothing); `dir` holds its files.
    pub(super) fn commit_exported(
        &self,
        dir: &Path,
        info: Option<crate::layer::LayerInfo>,
        origin: LayerDir,
    ) -> Result<Option<(LayerRef, Digest, PathBuf)>> {
        match info {
            Some(info) => self.keep_layer(dir, info, origin == LayerDir::Sandbox).map(Some),
            None => {
                self.tree_ops.remove(dir)?;
                Ok(None)
            }
        }
    }

    /// The empty layer (a tar with no entries) and its snapshot, an empty directory.
    pub(super) fn empty_layer(&self) -> Result<(LayerRef, Digest, PathBuf)> {
        let info = self.store.write_layer(&[], &self.req.layers)?;
        let dir = self.store.tmp().path("empty");
        fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        self.keep_layer(&dir, info, true)
    }

    /// A layer in the store and its files in `dir`: `dir` becomes the layer's snapshot when usable as one (else
    /// it is removed and the snapshot unpacked from the layer).
    fn keep_layer(
        &self,
        dir: &Path,
        info: crate::layer::LayerInfo,
        usable_as_snapshot: bool,
    ) -> Result<(LayerRef, Digest, PathBuf)> {
        let media_type = match self.req.media_types {
            MediaTypes::Oci => info.compression.oci_media_type(),
            MediaTypes::Docker => info.compression.docker_media_type(),
        };
        let layer = LayerRef { digest: info.digest.clone(), size: info.size, media_type: media_type.to_string() };
        let snap = self.store.snapshot_path(&info.diff_id);
        if !usable_as_snapshot || snap.exists() || fs::rename(dir, &snap).is_err() {
            self.tree_ops.remove(dir)?;
        }
        let snap = self.store.ensure_snapshot(self.tree_ops, &info.diff_id, &info.digest)?;
        Ok((layer, info.diff_id, snap))
    }

    /// Record a step's result (its layer, or none) in the cache and the stage, and report it done.
    pub(super) fn finish_step(
        &mut self,
        key: &str,
        layer: Option<(LayerRef, Digest, PathBuf)>,
        created_by: String,
        step: usize,
        start: Instant,
    ) -> Result<()> {
        self.files_failed()?;
        let created = Some(self.created.clone());
        let result = cache::Cached { layer: layer.as_ref().map(|(l, d, _)| (l.clone(), d.clone())), created };
        self.cache_put(key, &result)?;
        self.claimed = None;
        self.note_step_time(&self.created.clone());
        let diff_id = self.push_layer(layer, created_by);
        self.advance(key, diff_id.as_ref());
        self.executed += 1;
        self.done(step, start);
        Ok(())
    }
}

/// Give a directory rbuild wrote the image-side mode and owner, if this process can give that owner on disk: as
/// root any; otherwise only root's, which the caller's own ids stand for. False when it cannot.
fn set_written_dir_attrs(dir: &Path, (mode, uid, gid): (u32, u32, u32)) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if rustix::process::geteuid().is_root() {
        if std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).is_err() {
            return false;
        }
    } else if (uid, gid) != (0, 0) {
        return false;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).is_ok()
}
