//! How a run gets its root filesystem from the image's snapshots: overlayfs (the default: no copying, the
//! upper directory is the step's changes), overlayfs with its upper and work directories in a scratch directory
//! outside the store (where the store is itself on overlayfs, which the kernel refuses as an upper: the default
//! inside a CI container; the lowers stay in the store), fuse-overlayfs (the same in user space), or copies (a
//! merged tree written for the run; slow, but works anywhere).
//! `RBUILD_SNAPSHOTTER=auto|overlay|overlay-scratch|fuse-overlayfs|copy` forces one; in auto, overlay is used
//! until it is refused once, then the next that works, which the store remembers. `RBUILD_SCRATCH=DIR` names the
//! scratch directory (default: the first of `$XDG_RUNTIME_DIR`, /dev/shm, /tmp, /var/tmp that is not on
//! overlayfs and has 1 GiB free).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layer::{
    ApplyMode, ApplyOptions, Compression, IdMap, LayerOptions, apply_tar, diff_overlay_upper_mapped,
    diff_overlay_upper_within, write_layer,
};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    Overlay,
    /// Overlay with the upper and work directories in [`scratch_dir`].
    OverlayScratch,
    FuseOverlayfs,
    Copy,
}

impl Snapshotter {
    pub fn name(self) -> &'static str {
        match self {
            Snapshotter::Overlay => "overlay",
            Snapshotter::OverlayScratch => "overlay-scratch",
            Snapshotter::FuseOverlayfs => "fuse-overlayfs",
            Snapshotter::Copy => "copy",
        }
    }

    fn named(name: &str) -> Option<Snapshotter> {
        [Snapshotter::Overlay, Snapshotter::OverlayScratch, Snapshotter::FuseOverlayfs, Snapshotter::Copy]
            .into_iter()
            .find(|s| s.name() == name)
    }

    /// What to try when this one is refused: overlay with a scratch upper when there is a scratch directory, then
    /// fuse-overlayfs when installed, then copies.
    pub fn fallback(self) -> Option<Snapshotter> {
        let fuse = ["/usr/bin/fuse-overlayfs", "/bin/fuse-overlayfs"].iter().any(|p| Path::new(p).is_file());
        match self {
            Snapshotter::Overlay if scratch_dir().is_some() => Some(Snapshotter::OverlayScratch),
            Snapshotter::Overlay | Snapshotter::OverlayScratch if fuse => Some(Snapshotter::FuseOverlayfs),
            Snapshotter::Overlay | Snapshotter::OverlayScratch | Snapshotter::FuseOverlayfs => Some(Snapshotter::Copy),
            Snapshotter::Copy => None,
        }
    }
}

/// overlayfs's filesystem magic number (statfs `f_type`).
const OVERLAYFS_MAGIC: i64 = 0x794c_7630;

/// Where overlay upper directories go when the store cannot hold them: `RBUILD_SCRATCH`, else the first usable
/// of `$XDG_RUNTIME_DIR`, /dev/shm, /tmp and /var/tmp (not on overlayfs, writable, 1 GiB free).
pub fn scratch_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("RBUILD_SCRATCH").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let candidates = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/dev/shm", "/tmp", "/var/tmp"].into_iter().map(PathBuf::from));
    // statfs's field types differ between architectures: the casts are needed on some.
    #[allow(clippy::unnecessary_cast)]
    candidates.into_iter().find(|dir| {
        let Ok(fs) = rustix::fs::statfs(dir) else { return false };
        let free = (fs.f_bavail as u64).saturating_mul(fs.f_bsize as u64);
        fs.f_type as i64 != OVERLAYFS_MAGIC
            && free >= 1 << 30
            && rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok()
    })
}

fn remembered(store: &Store) -> PathBuf {
    store.root().join("snapshotter")
}

/// The snapshotter to use: forced by `RBUILD_SNAPSHOTTER`, else what this store fell back to, else overlay.
pub fn choose(store: &Store) -> Result<(Snapshotter, bool)> {
    match std::env::var("RBUILD_SNAPSHOTTER").unwrap_or_default().as_str() {
        "" | "auto" => Ok((
            Snapshotter::named(fs::read_to_string(remembered(store)).unwrap_or_default().trim())
                .unwrap_or(Snapshotter::Overlay),
            false,
        )),
        other => match Snapshotter::named(other) {
            Some(s) => Ok((s, true)),
            None => Err(Error::InvalidSetting {
                name: "RBUILD_SNAPSHOTTER".into(),
                reason: format!(
                    "unknown snapshotter {other:?}; use auto, overlay, overlay-scratch, fuse-overlayfs or copy"
                ),
            }),
        },
    }
}

/// Remember the snapshotter that works here, so later runs go straight to it.
pub fn remember(store: &Store, s: Snapshotter) -> Result<()> {
    crate::fsops::write_atomically(&remembered(store), format!("{}\n", s.name()).as_bytes())
}

/// Merge overlay snapshots (bottom layer first) into `dest`: each snapshot's changes, whiteouts included, are
/// applied in order, as a stream (no layer is held in memory).
pub fn merge_snapshots(bottom_first: &[PathBuf], dest: &Path) -> Result<()> {
    merge_snapshots_within(bottom_first, dest, None, &IdMap::for_current_user())
}

/// Merge into `dest` what COPY needs of snapshots to read `sources` (paths, as a COPY names them): the subtrees
/// they name, followed through the symlinks on their way, or everything when one has a wildcard or names the
/// root. A COPY from a large image reads the files it copies, not the whole image.
pub fn merge_snapshots_for(bottom_first: &[PathBuf], sources: &[String], dest: &Path, ids: &IdMap) -> Result<()> {
    let mut within: Vec<String> = Vec::new();
    for s in sources {
        let rel = crate::context::clean_path(&format!("/{s}")).trim_start_matches('/').to_string();
        if rel.is_empty() || crate::context::copy::has_glob(&rel) {
            return merge_snapshots_within(bottom_first, dest, None, ids);
        }
        within.push(rel);
    }
    // Each round merges the paths known so far (afresh: an opaque directory re-applied would hide what an
    // earlier round merged below it), then adds where symlinks on their way lead.
    for _ in 0..40 {
        let _ = crate::fsops::remove_path(dest);
        let as_bytes: Vec<Vec<u8>> = within.iter().map(|p| p.as_bytes().to_vec()).collect();
        merge_snapshots_within(bottom_first, dest, Some(&as_bytes), ids)?;
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
    let _ = crate::fsops::remove_path(dest);
    merge_snapshots_within(bottom_first, dest, None, ids)
}

fn merge_snapshots_within(
    bottom_first: &[PathBuf],
    dest: &Path,
    within: Option<&[Vec<u8>]>,
    ids: &IdMap,
) -> Result<()> {
    fs::create_dir_all(dest).map_err(Error::io("create", dest))?;
    let opts = LayerOptions { compression: Compression::None, threads: 1, source_date_epoch: None };
    for snap in bottom_first {
        let entries = match within {
            Some(paths) => diff_overlay_upper_within(snap, paths, ids)?,
            None => diff_overlay_upper_mapped(snap, ids)?,
        };
        let (reader, writer) = std::io::pipe().map_err(Error::io("create pipe", snap))?;
        let name = snap.display().to_string();
        std::thread::scope(|s| {
            let producer = s.spawn(move || write_layer(&entries, writer, &opts).map(|_| ()));
            let applied = apply_tar(reader, dest, &ApplyOptions::new(ApplyMode::Merge, name));
            let produced = producer
                .join()
                .unwrap_or_else(|_| Err(Error::WorkerPanicked { what: "the snapshot copy's writer".into() }));
            applied.and(produced).map(|_| ())
        })?;
    }
    Ok(())
}
