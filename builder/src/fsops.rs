//! File operations every layer of the builder uses, at the bottom (they import nothing but the error type):
//! removing a file or tree whatever it is, replacing what is in the way, writing a file atomically, and reading
//! a file whose size is known.

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

/// A name part no other writer uses: this process's id, a random number fixed for the process (processes in
/// different pid namespaces — containers sharing a store on a volume — have the same ids), and a counter (threads).
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nonce = *NONCE.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // Seeded from the OS's randomness.
        std::collections::hash_map::RandomState::new().build_hasher().finish() & 0xffff_ffff
    });
    format!("{}-{nonce:08x}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst))
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
    let tmp =
        dir.join(format!(".{}.tmp-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("file"), unique_suffix()));
    let mut f = File::create(&tmp).map_err(Error::io("create", &tmp))?;
    f.write_all(bytes).map_err(Error::io("write", &tmp))?;
    if sync {
        f.sync_all().map_err(Error::io("sync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(Error::io("rename", &tmp))
}

/// A file's content, `len` bytes as its metadata says: read without the end-of-file probe and the size query
/// `read_to_end` makes (a file that shrank meanwhile gives what it has).
pub fn read_known_size(f: &mut fs::File, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut data = vec![0u8; len as usize];
    let mut filled = 0;
    while filled < data.len() {
        match f.read(&mut data[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    data.truncate(filled);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rbuild-fsops-{tag}-{}", std::process::id()));
        let _ = remove_path(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn remove_path_removes_a_tree_with_read_only_directories_and_accepts_nothing_there() {
        let d = scratch("remove");
        fs::create_dir_all(d.join("a/b")).unwrap();
        fs::write(d.join("a/b/f"), "x").unwrap();
        fs::set_permissions(d.join("a/b"), fs::Permissions::from_mode(0o500)).unwrap();
        remove_path(&d).unwrap();
        assert!(!d.exists());
        remove_path(&d).unwrap();
    }

    #[test]
    fn replacing_removes_what_is_in_the_way_and_atomic_writes_replace_whole_files() {
        let d = scratch("replace");
        fs::create_dir_all(d.join("x/inner")).unwrap();
        let x = d.join("x");
        replacing(&x, || fs::create_dir(&x)).unwrap();
        assert!(x.is_dir() && !x.join("inner").exists(), "the old directory was replaced by a new one");
        replacing(&x, || fs::create_dir(d.join("nope/deeper"))).unwrap_err();
        write_atomically(&d.join("f"), b"one").unwrap();
        write_atomically_unsynced(&d.join("f"), b"two").unwrap();
        assert_eq!(fs::read(d.join("f")).unwrap(), b"two");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 2, "no temporary file is left");
        remove_path(&d).unwrap();
    }
}
