//! How a run gets its root filesystem from the image's snapshots: overlayfs (the default: no copying, the
//! upper directory is the step's changes), fuse-overlayfs (the same, in user space, where the kernel refuses
//! overlayfs), or copies (a merged tree written for the run; slow, but works anywhere).
//! `RBUILD_SNAPSHOTTER=overlay|fuse-overlayfs|copy` forces one; otherwise overlay is used until it is refused
//! once, then the next that works, which the store remembers.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layer::{ApplyMode, ApplyOptions, Compression, LayerOptions, apply_tar, diff_overlay_upper, write_layer};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    Overlay,
    FuseOverlayfs,
    Copy,
}

impl Snapshotter {
    fn name(self) -> &'static str {
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
    fs::create_dir_all(dest).map_err(Error::io("create", dest))?;
    let opts = LayerOptions { compression: Compression::None, threads: 1, source_date_epoch: None };
    for snap in bottom_first {
        let entries = diff_overlay_upper(snap)?;
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
