//! Making the container's root hold a stage's filesystem: the stack of snapshots a step runs over, applied onto
//! `/` as overlayfs would show them (a whiteout removes, an opaque directory empties), files copied with their
//! owners, modes, times and extended attributes. What the root holds is remembered: a step whose stack extends it
//! (the next step of the same stage, after a COPY or a cached step) only applies the new snapshots; any other
//! stack first empties the root of everything out of the guard's reach. Nothing kept by the guard is ever
//! removed, replaced or written.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::guard::Protected;
use crate::error::{Error, Result};
use crate::layer::tree::join;
use crate::layer::{overlay_opaque, overlay_whiteout};

/// The snapshots the root holds now, bottom first (empty: unknown, the root must be emptied first).
#[derive(Debug, Default)]
pub struct RootState {
    pub applied: Vec<PathBuf>,
    /// Where the image has a non-directory (Debian's `/var/run -> /run`) but the container keeps a directory
    /// holding its mounts (Kubernetes' `/var/run/secrets/...`): the container's directory stays, out of reach like
    /// what it holds. Relative paths.
    pub shadowed: Vec<Vec<u8>>,
}

impl RootState {
    /// `protected` with the shadowed paths added.
    pub fn protected(&self, protected: &Protected) -> Protected {
        let mut p = protected.clone();
        for s in &self.shadowed {
            p.add_relative(s);
        }
        p
    }
}

/// Make `root` hold `lowers` (bottom first). Returns how many snapshots were applied.
pub fn make_root(root: &Path, protected: &Protected, lowers: &[PathBuf], state: &mut RootState) -> Result<usize> {
    if state.applied.as_slice() == lowers {
        return Ok(0);
    }
    let from = if !state.applied.is_empty() && lowers.starts_with(&state.applied) {
        state.applied.len()
    } else {
        state.applied.clear();
        state.shadowed.clear();
        empty_root(root, protected)?;
        0
    };
    for snapshot in &lowers[from..] {
        let mut links = HashMap::new();
        let kept = state.protected(protected);
        apply_dir(snapshot, root, b"", &kept, &mut links, &mut state.shadowed)?;
        state.applied.push(snapshot.clone());
    }
    Ok(lowers.len() - from)
}

/// Remove everything under `root` out of the guard's reach (entering the directories that lead to kept paths).
pub fn empty_root(root: &Path, protected: &Protected) -> Result<()> {
    remove_children(root, b"", protected)
}

fn remove_children(dir: &Path, rel: &[u8], protected: &Protected) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    for entry in fs::read_dir(dir).map_err(Error::io("read directory", dir))? {
        let entry = entry.map_err(Error::io("read directory", dir))?;
        let child = join(rel, entry.file_name().as_bytes());
        remove_unkept(&entry.path(), &child, protected)?;
    }
    Ok(())
}

/// Remove `abs` (relative path `rel`) unless kept; a directory holding kept paths is emptied of the rest instead.
fn remove_unkept(abs: &Path, rel: &[u8], protected: &Protected) -> Result<()> {
    if protected.is_kept(rel) {
        return Ok(());
    }
    let is_dir = fs::symlink_metadata(abs).is_ok_and(|m| m.is_dir());
    if is_dir && protected.holds_kept(rel) {
        return remove_children(abs, rel, protected);
    }
    crate::fsops::remove_path(abs).map_err(Error::io("remove", abs))
}

/// Apply one snapshot directory (overlay form) onto `root`, below `rel`. A non-directory of the image where the
/// container keeps a directory holding kept paths is left as the container's directory, and said in `shadowed`.
fn apply_dir(
    src_dir: &Path,
    root: &Path,
    rel: &[u8],
    protected: &Protected,
    links: &mut HashMap<(u64, u64), PathBuf>,
    shadowed: &mut Vec<Vec<u8>>,
) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let mut children: Vec<_> = fs::read_dir(src_dir)
        .map_err(Error::io("read directory", src_dir))?
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(Error::io("read directory", src_dir))?;
    children.sort_by_key(|e| e.file_name());
    let mut singles = Vec::new();
    for entry in children {
        let child = join(rel, entry.file_name().as_bytes());
        if protected.is_kept(&child) {
            continue;
        }
        let src = entry.path();
        let meta = fs::symlink_metadata(&src).map_err(Error::io("stat", &src))?;
        let dest = root.join(std::ffi::OsStr::from_bytes(&child));
        if overlay_whiteout(&src, &meta) {
            remove_unkept(&dest, &child, protected)?;
            continue;
        }
        if meta.is_dir() {
            match fs::symlink_metadata(&dest) {
                Ok(m) if m.is_dir() => {
                    if overlay_opaque(&src) {
                        remove_children(&dest, &child, protected)?;
                    }
                }
                Ok(_) => {
                    remove_unkept(&dest, &child, protected)?;
                    fs::create_dir(&dest).map_err(Error::io("create", &dest))?;
                }
                Err(_) => fs::create_dir(&dest).map_err(Error::io("create", &dest))?,
            }
            apply_dir(&src, root, &child, protected, links, shadowed)?;
            copy_attributes(&src, &dest, &meta)?;
            continue;
        }
        if protected.holds_kept(&child) {
            if !shadowed.contains(&child) {
                shadowed.push(child);
            }
            continue;
        }
        if meta.nlink() == 1 {
            // Single-name files are copied on all CPUs below (copy-many's 20,000 files).
            singles.push((src, dest, child, meta));
            continue;
        }
        remove_unkept(&dest, &child, protected)?;
        copy_entry(&src, &dest, &meta, links)?;
    }
    singles.into_par_iter().try_for_each(|(src, dest, child, meta)| {
        remove_unkept(&dest, &child, protected)?;
        copy_entry(&src, &dest, &meta, &mut HashMap::new())
    })
}

/// Copy one non-directory entry `src` to `dest` (which does not exist) with its attributes; a further name of an
/// inode already copied (`links`) becomes a hard link to that copy.
pub fn copy_entry(
    src: &Path,
    dest: &Path,
    meta: &fs::Metadata,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let ft = meta.file_type();
    if meta.nlink() > 1 && !ft.is_dir() {
        if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
            return fs::hard_link(first, dest).map_err(Error::io("link", dest));
        }
        links.insert((meta.dev(), meta.ino()), dest.to_path_buf());
    }
    if ft.is_file() {
        fs::copy(src, dest).map_err(Error::io("copy", src))?;
    } else if ft.is_symlink() {
        let target = fs::read_link(src).map_err(Error::io("read link", src))?;
        std::os::unix::fs::symlink(&target, dest).map_err(Error::io("symlink", dest))?;
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        let kind = if ft.is_char_device() {
            rustix::fs::FileType::CharacterDevice
        } else if ft.is_block_device() {
            rustix::fs::FileType::BlockDevice
        } else {
            rustix::fs::FileType::Fifo
        };
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dest,
            kind,
            rustix::fs::Mode::from_raw_mode(meta.mode() & 0o7777),
            meta.rdev(),
        )
        .map_err(|e| Error::io("mknod", dest)(e.into()))?;
    } else {
        // Sockets are not part of an image.
        return Ok(());
    }
    copy_attributes(src, dest, meta)
}

/// Copy a whole tree `src` (a directory or anything else) to `dest` (which does not exist), attributes included.
pub fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(src).map_err(Error::io("stat", src))?;
    if !meta.is_dir() {
        return copy_entry(src, dest, &meta, &mut HashMap::new());
    }
    fs::create_dir(dest).map_err(Error::io("create", dest))?;
    let mut links = HashMap::new();
    copy_dir_contents(src, dest, &mut links)?;
    copy_attributes(src, dest, &meta)
}

fn copy_dir_contents(src: &Path, dest: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> Result<()> {
    for entry in fs::read_dir(src).map_err(Error::io("read directory", src))? {
        let entry = entry.map_err(Error::io("read directory", src))?;
        let (from, to) = (entry.path(), dest.join(entry.file_name()));
        let meta = fs::symlink_metadata(&from).map_err(Error::io("stat", &from))?;
        if meta.is_dir() {
            fs::create_dir(&to).map_err(Error::io("create", &to))?;
            copy_dir_contents(&from, &to, links)?;
            copy_attributes(&from, &to, &meta)?;
        } else {
            copy_entry(&from, &to, &meta, links)?;
        }
    }
    Ok(())
}

/// Owner, mode, extended attributes (overlay markers left out) and times of `src` onto `dest`.
fn copy_attributes(src: &Path, dest: &Path, meta: &fs::Metadata) -> Result<()> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};
    let symlink = meta.file_type().is_symlink();
    rustix::fs::chownat(
        CWD,
        dest,
        Some(rustix::fs::Uid::from_raw(meta.uid())),
        Some(rustix::fs::Gid::from_raw(meta.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::io("chown", dest)(e.into()))?;
    if !symlink {
        // After chown, which clears setuid and setgid bits.
        fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777))
            .map_err(Error::io("chmod", dest))?;
        if let Ok(names) = xattr::list(src) {
            for name in names {
                let n = name.to_string_lossy();
                if n.starts_with("trusted.overlay.") || n.starts_with("user.overlay.") {
                    continue;
                }
                if let Ok(Some(v)) = xattr::get(src, &name) {
                    // An attribute this container may not set (trusted.*) is left out of the working copy only; the
                    // layers keep it.
                    let _ = xattr::set(dest, &name, &v);
                }
            }
        }
    }
    let times = Timestamps {
        last_access: Timespec { tv_sec: meta.atime(), tv_nsec: meta.atime_nsec() },
        last_modification: Timespec { tv_sec: meta.mtime(), tv_nsec: meta.mtime_nsec() },
    };
    rustix::fs::utimensat(CWD, dest, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io("set times", dest)(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_stack_onto_the_root_and_kept_paths_survive() {
        let base = std::env::temp_dir().join(format!("rbuild-root-sync-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (root, l1, l2) = (base.join("root"), base.join("l1"), base.join("l2"));
        for d in [root.join("mnt/vol"), root.join("old"), l1.join("d/sub"), l1.join("mnt"), l2.join("d")] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(root.join("mnt/vol/data"), "volume").unwrap();
        fs::write(root.join("old/x"), "container's own").unwrap();
        fs::write(l1.join("d/a"), "a").unwrap();
        fs::write(l1.join("d/sub/b"), "b").unwrap();
        fs::write(l1.join("f"), "f1").unwrap();
        fs::hard_link(l1.join("f"), l1.join("f-link")).unwrap();
        std::os::unix::fs::symlink("d/a", l1.join("to-a")).unwrap();
        fs::write(l2.join("f"), "f2").unwrap();
        fs::write(l2.join("d/new"), "n").unwrap();
        // An xattr whiteout (the form snapshots take where mknod is refused) of d/sub.
        fs::write(l2.join("d/sub"), "").unwrap();
        let marked = xattr::set(l2.join("d/sub"), "user.overlay.whiteout", b"y").is_ok();
        let mut protected = Protected::default();
        protected.add(Path::new("/mnt/vol"));
        let mut state = RootState::default();
        assert_eq!(make_root(&root, &protected, std::slice::from_ref(&l1), &mut state).unwrap(), 1);
        assert!(!root.join("old").exists(), "the container's own files go");
        assert_eq!(fs::read_to_string(root.join("mnt/vol/data")).unwrap(), "volume");
        assert_eq!(fs::read_link(root.join("to-a")).unwrap(), Path::new("d/a"));
        let ino = |p: &str| fs::metadata(root.join(p)).unwrap().ino();
        assert_eq!(ino("f"), ino("f-link"));
        // The next stack extends this one: only l2 is applied.
        assert_eq!(make_root(&root, &protected, &[l1.clone(), l2.clone()], &mut state).unwrap(), 1);
        assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "f2");
        assert_eq!(fs::read_to_string(root.join("d/new")).unwrap(), "n");
        assert_eq!(fs::read_to_string(root.join("d/a")).unwrap(), "a");
        if marked {
            assert!(!root.join("d/sub").exists(), "the whiteout removes d/sub");
        }
        // Another stack: the root is emptied first.
        assert_eq!(make_root(&root, &protected, std::slice::from_ref(&l2), &mut state).unwrap(), 1);
        assert!(!root.join("d/a").exists() && !root.join("to-a").exists());
        assert_eq!(fs::read_to_string(root.join("mnt/vol/data")).unwrap(), "volume");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn an_image_symlink_over_a_directory_holding_mounts_leaves_the_directory() {
        let base = std::env::temp_dir().join(format!("rbuild-root-shadow-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (root, layer) = (base.join("root"), base.join("layer"));
        fs::create_dir_all(root.join("var/run/secrets")).unwrap();
        fs::write(root.join("var/run/secrets/token"), "kube").unwrap();
        fs::write(root.join("var/run/other"), "container's").unwrap();
        fs::create_dir_all(layer.join("var")).unwrap();
        fs::create_dir_all(layer.join("run")).unwrap();
        std::os::unix::fs::symlink("/run", layer.join("var/run")).unwrap();
        let mut protected = Protected::default();
        protected.add(Path::new("/var/run/secrets"));
        let mut state = RootState::default();
        make_root(&root, &protected, std::slice::from_ref(&layer), &mut state).unwrap();
        assert_eq!(state.shadowed, vec![b"var/run".to_vec()]);
        assert!(fs::symlink_metadata(root.join("var/run")).unwrap().is_dir());
        assert_eq!(fs::read_to_string(root.join("var/run/secrets/token")).unwrap(), "kube");
        assert!(state.protected(&protected).is_kept(b"var/run/other"));
        fs::remove_dir_all(&base).unwrap();
    }
}
