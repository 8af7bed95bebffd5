//! The store's `tmp/` area. Each process gets its own directory `tmp/<pid>-<n>/` and holds an exclusive lock on
//! `tmp/<pid>-<n>.lock` while it lives (a name is taken only when free: processes in different pid namespaces —
//! containers sharing a store on a volume, each rbuild their pid 1 — have the same pids); at start, every entry
//! whose lock can be taken belongs to a process that is gone and is swept. A live process's entries are never
//! touched.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// This process's private temporary directory inside the store.
#[derive(Debug)]
pub struct TmpArea {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    counter: AtomicU64,
}

impl TmpArea {
    /// Sweep entries of dead processes, then create and lock this process's directory.
    pub(crate) fn open(tmp_root: &Path) -> Result<TmpArea> {
        fs::create_dir_all(tmp_root).map_err(Error::io("create", tmp_root))?;
        sweep(tmp_root)?;
        // The lock file appears under its final name only once it is locked, and the directory only after that,
        // so a concurrent sweep never mistakes a starting process for a dead one. A sweep may still remove the
        // `.lock.new` file between its creation and its locking; then the link fails and we start over. Names are
        // taken, never replaced (`create_new`, `hard_link`): a process of another pid namespace (a container sharing
        // this store on a volume) may have the same pid, and then takes the next free name.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let mut attempts = 0;
        let (name, lock_path, lock) = loop {
            attempts += 1;
            let name = format!("{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
            let lock_path = tmp_root.join(format!("{name}.lock"));
            let new_path = tmp_root.join(format!("{name}.lock.new"));
            let lock = match File::options().write(true).create_new(true).open(&new_path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 1000 => continue,
                Err(e) => return Err(Error::io("create", &new_path)(e)),
            };
            lock.lock().map_err(Error::io("lock", &new_path))?;
            let linked = fs::hard_link(&new_path, &lock_path);
            let _ = fs::remove_file(&new_path);
            match linked {
                Ok(()) => break (name, lock_path, lock),
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::AlreadyExists)
                        && attempts < 1000 => {}
                Err(e) => return Err(Error::io("link", &new_path)(e)),
            }
        };
        let dir = tmp_root.join(&name);
        // A directory of this name left by a dead owner of the name whose sweep has not happened yet.
        crate::fsops::remove_path(&dir).map_err(Error::io("remove", &dir))?;
        fs::create_dir(&dir).map_err(Error::io("create", &dir))?;
        Ok(TmpArea { dir, lock_path, _lock: lock, counter: AtomicU64::new(0) })
    }

    /// A fresh path inside this process's directory (nothing is created).
    pub fn path(&self, tag: &str) -> PathBuf {
        self.dir.join(format!("{tag}-{}", self.counter.fetch_add(1, Ordering::SeqCst)))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TmpArea {
    fn drop(&mut self) {
        let _ = crate::fsops::remove_path(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// Remove every `tmp/<name>` whose `<name>.lock` no live process holds (and stray entries without a lock file).
fn sweep(tmp_root: &Path) -> Result<()> {
    let entries = fs::read_dir(tmp_root).map_err(Error::io("read", tmp_root))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        let stem = name.strip_suffix(".lock").or_else(|| name.strip_suffix(".lock.new"));
        if let Some(stem) = stem {
            let Ok(lock) = File::open(&path) else { continue };
            match lock.try_lock() {
                Ok(()) => {
                    if name.ends_with(".lock") {
                        let _ = crate::fsops::remove_path(&tmp_root.join(stem));
                    }
                    let _ = fs::remove_file(&path);
                }
                Err(TryLockError::WouldBlock | TryLockError::Error(_)) => {}
            }
        } else if !tmp_root.join(format!("{name}.lock")).exists() {
            // A directory or file whose owner's lock file is gone: its owner finished or died.
            let _ = crate::fsops::remove_path(&path);
        }
    }
    Ok(())
}
