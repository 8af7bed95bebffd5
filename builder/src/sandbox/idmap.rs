//! How the sandbox's ids show on disk for each user-namespace mode (and, with one id, for a USER step), for
//! reading back what a step wrote.

use std::path::{Path, PathBuf};

use rbuild_runtime::UsernsMode;

use crate::layer::tree::ROOTLESS_XATTR;
use crate::layer::{EntryKind, IdMap, TreeEntry};

/// How the sandbox's ids show on disk, for reading back what it wrote.
pub fn id_map_for(mode: UsernsMode) -> IdMap {
    match mode {
        UsernsMode::Off | UsernsMode::Full => IdMap { uids: Vec::new(), gids: Vec::new() },
        UsernsMode::Single => IdMap::for_current_user(),
        UsernsMode::Subuid { uid_start, gid_start, count } => IdMap::subordinate(uid_start, gid_start, count),
    }
}

/// With one id mapped as the step's user (uid, gid): files on disk owned by this process are that user's.
pub fn one_id_as(user: (u32, u32)) -> IdMap {
    let (euid, egid) = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
    IdMap { uids: vec![(user.0, euid, 1)], gids: vec![(user.1, egid, 1)] }
}

/// A USER step's changes with one id mapped: every entry it touched shows as the user's, but what it only copied
/// up (a directory it created a file in, a file it changed) already existed below with its own owner, which it
/// keeps. Entries the step made (not in any lower snapshot, or deleted there) stay the user's.
pub fn keep_lower_owners(mut entries: Vec<TreeEntry>, user: (u32, u32), lowers: &[PathBuf]) -> Vec<TreeEntry> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let below = IdMap::for_current_user();
    for e in entries.iter_mut().filter(|e| (e.uid, e.gid) == user) {
        if matches!(e.kind, EntryKind::Whiteout | EntryKind::Opaque) {
            continue;
        }
        let rel = Path::new(std::ffi::OsStr::from_bytes(&e.path));
        for lower in lowers.iter().rev() {
            let path = lower.join(rel);
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.file_type().is_char_device() && meta.rdev() == 0 {
                // Deleted in that snapshot: the step made it anew.
                break;
            }
            let recorded = (!meta.file_type().is_symlink())
                .then(|| xattr::get(&path, ROOTLESS_XATTR).ok().flatten())
                .flatten()
                .and_then(|v| crate::layer::rootless_owner::decode(&v));
            let (uid, gid) = below.to_image(meta.uid(), meta.gid());
            (e.uid, e.gid) = match recorded {
                Some((u, g)) => (u.unwrap_or(uid), g.unwrap_or(gid)),
                None => (uid, gid),
            };
            break;
        }
    }
    entries
}
