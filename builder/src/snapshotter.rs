//! How a run gets its root filesystem from the image's snapshots: overlayfs (the default: no copying, the
//! upper directory is the step's changes), or copies (a merged tree written for the run; slow, but works where
//! overlayfs is refused). `RBUILD_SNAPSHOTTER=overlay|copy` forces one; otherwise overlay is used until the
//! kernel refuses it once, and the store remembers to use copies from then on.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layer::{ApplyMode, ApplyOptions, Compression, LayerOptions, apply_tar, diff_overlay_upper, write_layer};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    Overlay,
    Copy,
}

fn remembered(store: &Store) -> PathBuf {
    store.root().join("snapshotter")
}

/// The snapshotter to use: forced by `RBUILD_SNAPSHOTTER`, else what this store fell back to, else overlay.
pub fn choose(store: &Store) -> Result<(Snapshotter, bool)> {
    match std::env::var("RBUILD_SNAPSHOTTER").unwrap_or_default().as_str() {
        "overlay" => Ok((Snapshotter::Overlay, true)),
        "copy" => Ok((Snapshotter::Copy, true)),
        "" | "auto" => Ok((
            match fs::read_to_string(remembered(store)).unwrap_or_default().trim() {
                "copy" => Snapshotter::Copy,
                _ => Snapshotter::Overlay,
            },
            false,
        )),
        "fuse-overlayfs" => Err(Error::Malformed {
            what: "RBUILD_SNAPSHOTTER".into(),
            reason: "fuse-overlayfs is not supported yet; use overlay or copy".into(),
        }),
        other => Err(Error::Malformed {
            what: "RBUILD_SNAPSHOTTER".into(),
            reason: format!("unknown snapshotter {other:?}; use overlay or copy"),
        }),
    }
}

/// Remember that overlayfs was refused here, so later runs go straight to copies.
pub fn remember_copy(store: &Store) -> Result<()> {
    crate::store::write_atomically(&remembered(store), b"copy\n")
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
