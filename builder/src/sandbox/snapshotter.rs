//! How a run gets its root filesystem from the image's snapshots: overlayfs (the default: no copying, the
//! upper directory is the step's changes), fuse-overlayfs (the same, in user space, where the kernel refuses
//! overlayfs), or copies (a merged tree written for the run; slow, but works anywhere).
//! `RBUILD_SNAPSHOTTER=overlay|fuse-overlayfs|copy` forces one; otherwise overlay is used until it is refused
//! once, then the next that works, which the store remembers.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layer::{
    ApplyMode, ApplyOptions, Compression, LayerOptions, apply_tar, diff_overlay_upper, diff_overlay_upper_within,
    write_layer,
};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    Overlay,
    FuseOverlayfs,
    Copy,
}

impl Snapshotter {
    pub fn name(self) -> &'static str {
        match self {
            Snapshotter::Overlay => "overlay",
            Snapshotter::FuseOverlayfs => "fuse-overlayfs",
            Snapshotter::Copy => "copy",
        }
    }

    /// What to try when this one is refused: fuse-overlayfs when installed, then copies.
    pub fn fallback(self) -> Option<Snapshotter> {
        let fuse = ["/usr/bin/fuse-overlayfs", "/bin/fuse-overlayfs"].iter().any(|p| Path::new(p).is_file());
        match self {
            Snapshotter::Overlay if fuse => Some(Snapshotter::FuseOverlayfs),
            Snapshotter::Overlay | Snapshotter::FuseOverlayfs => Some(Snapshotter::Copy),
            Snapshotter::Copy => None,
        }
    }
}

fn remembered(store: &Store) -> PathBuf {
    store.root().join("snapshotter")
}

/// The snapshotter to use: forced by `RBUILD_SNAPSHOTTER`, else what this store fell back to, else overlay.
pub fn choose(store: &Store) -> Result<(Snapshotter, bool)> {
    match std::env::var("RBUILD_SNAPSHOTTER").unwrap_or_default().as_str() {
        "overlay" => Ok((Snapshotter::Overlay, true)),
        "fuse-overlayfs" => Ok((Snapshotter::FuseOverlayfs, true)),
        "copy" => Ok((Snapshotter::Copy, true)),
        "" | "auto" => Ok((
            match fs::read_to_string(remembered(store)).unwrap_or_default().trim() {
                "copy" => Snapshotter::Copy,
                "fuse-overlayfs" => Snapshotter::FuseOverlayfs,
                _ => Snapshotter::Overlay,
            },
            false,
        )),
        other => Err(Error::Malformed {
            what: "RBUILD_SNAPSHOTTER".into(),
            reason: format!("unknown snapshotter {other:?}; use overlay, fuse-overlayfs or copy"),
        }),
    }
}

/// Remember the snapshotter that works here, so later runs go straight to it.
pub fn remember(store: &Store, s: Snapshotter) -> Result<()> {
    crate::store::write_atomically(&remembered(store), format!("{}\n", s.name()).as_bytes())
}

/// Merge overlay snapshots (bottom layer first) into `dest`: each snapshot's changes, whiteouts included, are
/// applied in order, as a stream (no layer is held in memory).
pub fn merge_snapshots(bottom_first: &[PathBuf], dest: &Path) -> Result<()> {
    merge_snapshots_within(bottom_first, dest, None)
}

/// Merge into `dest` what COPY needs of snapshots to read `sources` (paths, as a COPY names them): the subtrees
/// they name, followed through the symlinks on their way, or everything when one has a wildcard or names the
/// root. A COPY from a large image reads the files it copies, not the whole image.
pub fn merge_snapshots_for(bottom_first: &[PathBuf], sources: &[String], dest: &Path) -> Result<()> {
    let mut within: Vec<String> = Vec::new();
    for s in sources {
        let rel = crate::context::clean_path(&format!("/{s}")).trim_start_matches('/').to_string();
        if rel.is_empty() || crate::context::copy::has_glob(&rel) {
            return merge_snapshots(bottom_first, dest);
        }
        within.push(rel);
    }
    // Each round merges the paths known so far (afresh: an opaque directory re-applied would hide what an
    // earlier round merged below it), then adds where symlinks on their way lead.
    for _ in 0..40 {
        let _ = crate::store::remove_path(dest);
        let as_bytes: Vec<Vec<u8>> = within.iter().map(|p| p.as_bytes().to_vec()).collect();
        merge_snapshots_within(bottom_first, dest, Some(&as_bytes))?;
        let known = within.len();
        let followed: Vec<String> =
            within.iter().filter_map(|p| crate::context::copy::first_symlink_followed(dest, p)).collect();
        for p in followed {
            if !within.contains(&p) {
                within.push(p);
            }
        }
        if within.len() == known {
            return Ok(());
        }
    }
    // Links that keep leading somewhere new: everything.
    let _ = crate::store::remove_path(dest);
    merge_snapshots(bottom_first, dest)
}

fn merge_snapshots_within(bottom_first: &[PathBuf], dest: &Path, within: Option<&[Vec<u8>]>) -> Result<()> {
    fs::create_dir_all(dest).map_err(Error::io("create", dest))?;
    let opts = LayerOptions { compression: Compression::None, threads: 1, source_date_epoch: None };
    for snap in bottom_first {
        let entries = match within {
            Some(paths) => diff_overlay_upper_within(snap, paths)?,
            None => diff_overlay_upper(snap)?,
        };
        let (reader, writer) = std::io::pipe().map_err(Error::io("create pipe", snap))?;
        let name = snap.display().to_string();
        std::thread::scope(|s| {
            let producer = s.spawn(move || write_layer(&entries, writer, &opts).map(|_| ()));
            let applied = apply_tar(reader, dest, &ApplyOptions::new(ApplyMode::Merge, name));
            let produced = producer.join().unwrap_or_else(|_| {
                Err(Error::Malformed { what: "snapshot copy".into(), reason: "the writer panicked".into() })
            });
            applied.and(produced).map(|_| ())
        })?;
    }
    Ok(())
}
