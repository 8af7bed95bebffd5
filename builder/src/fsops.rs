//! File operations every layer of the builder uses, at the bottom (they import nothing but the error type):
//! removing a file or tree whatever it is, replacing what is in the way, and writing a file atomically.

use std::fs::{self, File};
use std::path::Path;

use crate::error::{Error, Result};

/// Remove a file or a directory tree, whichever `path` is.
pub fn remove_path(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            make_tree_writable(path);
            fs::remove_dir_all(path)
        }
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Give the owner write and search permission on every directory below `path`, so that a tree unpacked with
/// read-only directories can be removed.
fn make_tree_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(m) = fs::symlink_metadata(path) else { return };
    if !m.is_dir() {
        return;
    }
    let mode = m.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            make_tree_writable(&e.path());
        }
    }
}

/// Run `create` (which fails with `AlreadyExists` when something is at `to`); if something is there (an earlier
/// source's entry), remove it and run `create` again.
pub fn replacing<T>(to: &Path, create: impl Fn() -> std::io::Result<T>) -> std::io::Result<T> {
    match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            remove_path(to)?;
            create()
        }
        other => other,
    }
}

/// Write `bytes` to `path` atomically: a temporary file beside it, synced, then renamed over it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(path, bytes, true)
}

/// [`write_atomically`] without the sync, for records that are only a cache (the build cache index): after a
/// crash such a file may be empty or gone, which its readers take as a miss. Saves a journal commit per step.
pub fn write_atomically_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
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
