//! What a step changed in the container's root, told without an overlay: the metadata of every path out of the
//! guard's reach is recorded before the step, and compared after it. A regular file, symlink or device changed when
//! its inode, size, mode, owner, modification or change time differs (a step cannot set a change time back, so
//! even content written with its old mtime restored is seen); a directory when its mode, owner or modification
//! time does (its change time moves when a RUN mount is placed in it and taken away). A directory made anew (a new
//! inode) becomes opaque, as overlayfs records it. Timestamps are coarse (a clock tick), so before the step runs
//! the record waits for the clock to pass the newest change time it saw: the step's writes then always show.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::guard::Protected;
use crate::error::{Error, Result};
use crate::layer::tree::join;
use crate::layer::{EntryKind, TreeEntry, collect_tree_picked};

/// What is compared of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signature {
    format: u32,
    ino: u64,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Signature {
    fn of(meta: &fs::Metadata) -> Signature {
        Signature {
            format: meta.mode() & 0o170000,
            ino: meta.ino(),
            size: meta.len(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn is_dir(&self) -> bool {
        self.format == 0o040000
    }

    /// Whether `now` is a change of what `self` recorded (the same kind of entry).
    fn changed_to(&self, now: &Signature) -> bool {
        if self.is_dir() {
            (self.mode, self.uid, self.gid, self.mtime) != (now.mode, now.uid, now.gid, now.mtime)
        } else {
            self != now
        }
    }
}

/// The root's state before a step: each path (relative, `/`-separated) and its signature.
#[derive(Debug, Default)]
pub struct Record {
    paths: HashMap<Vec<u8>, Signature>,
    newest_ctime: (i64, i64),
}

impl Record {
    /// Record everything under `root` out of `protected`'s reach.
    pub fn take(root: &Path, protected: &Protected) -> Result<Record> {
        let mut record = Record::default();
        for (rel, meta) in signatures_below(root, b"", protected)? {
            record.add(rel, &meta);
        }
        Ok(record)
    }

    fn add(&mut self, rel: Vec<u8>, meta: &fs::Metadata) {
        let sig = Signature::of(meta);
        self.newest_ctime = self.newest_ctime.max(sig.ctime);
        self.paths.insert(rel, sig);
    }

    /// Wait until the kernel's coarse clock (which stamps file times) has passed the newest change time recorded,
    /// so that whatever the step changes gets a later one.
    pub fn wait_for_clock(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
        while coarse_now() <= self.newest_ctime && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// What changed since this record, as layer entries (sorted, parents first), and the record of the root as it
    /// is now (for the next step).
    pub fn changes(&self, root: &Path, protected: &Protected) -> Result<(Vec<TreeEntry>, Record)> {
        let mut now = Record::default();
        let mut changed: HashSet<Vec<u8>> = HashSet::new();
        let mut opaque: Vec<Vec<u8>> = Vec::new();
        let mut entries = collect_tree_picked(root, &mut |_, rel, meta| {
            if protected.is_kept(rel) {
                return false;
            }
            now.add(rel.to_vec(), meta);
            let sig = Signature::of(meta);
            let differs = match self.paths.get(rel) {
                None => true,
                Some(old) if old.format != sig.format => true,
                Some(old) if old.is_dir() && old.ino != sig.ino => {
                    opaque.push(rel.to_vec());
                    true
                }
                Some(old) => old.changed_to(&sig),
            };
            if differs {
                changed.insert(rel.to_vec());
            }
            // Directories are entered whatever they are; they are left out afterwards when nothing of theirs changed.
            differs || meta.is_dir()
        })?;
        // A directory entry stays when it changed itself or holds a change.
        let mut needed: HashSet<Vec<u8>> = HashSet::new();
        for rel in &changed {
            let mut p = rel.as_slice();
            while let Some(i) = p.iter().rposition(|b| *b == b'/') {
                p = &p[..i];
                if !needed.insert(p.to_vec()) {
                    break;
                }
            }
        }
        entries.retain(|e| changed.contains(&e.path) || needed.contains(&e.path));
        for dir in &opaque {
            entries.push(marker(dir, b".wh..wh..opq", EntryKind::Opaque));
        }
        // What is gone: a whiteout for each topmost path that no longer exists, unless its directory was made anew
        // (opaque) or is no longer a directory.
        let replaced =
            |p: &[u8]| now.paths.get(p).is_some_and(|s| !s.is_dir()) || opaque.iter().any(|o| o.as_slice() == p);
        for rel in self.paths.keys() {
            if now.paths.contains_key(rel) {
                continue;
            }
            let parent = rel.iter().rposition(|b| *b == b'/').map(|i| &rel[..i]);
            let parent_gone = parent.is_some_and(|p| !now.paths.contains_key(p) || replaced(p));
            if parent_gone {
                continue;
            }
            let (dir, name) = match parent {
                Some(p) => (p, &rel[p.len() + 1..]),
                None => (&rel[..0], rel.as_slice()),
            };
            entries.push(marker(dir, &[b".wh.", name].concat(), EntryKind::Whiteout));
        }
        entries.sort_by(|a, b| a.path.split(|c| *c == b'/').cmp(b.path.split(|c| *c == b'/')));
        Ok((entries, now))
    }
}

/// Every path below `dir` (relative to the root, `dir` being `rel`) out of `protected`'s reach, with its metadata;
/// directories are read on all CPUs.
fn signatures_below(dir: &Path, rel: &[u8], protected: &Protected) -> Result<Vec<(Vec<u8>, fs::Metadata)>> {
    use rayon::prelude::*;
    use std::os::unix::ffi::OsStrExt;
    let entries: Vec<fs::DirEntry> = fs::read_dir(dir)
        .map_err(Error::io("read directory", dir))?
        .collect::<std::io::Result<_>>()
        .map_err(Error::io("read directory", dir))?;
    let nested: Vec<Vec<(Vec<u8>, fs::Metadata)>> = entries
        .into_par_iter()
        .map(|entry| {
            let child = join(rel, entry.file_name().as_bytes());
            if protected.is_kept(&child) {
                return Ok(Vec::new());
            }
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(Error::io("stat", &path))?;
            let below = if meta.is_dir() { signatures_below(&path, &child, protected)? } else { Vec::new() };
            let mut out = Vec::with_capacity(below.len() + 1);
            out.push((child, meta));
            out.extend(below);
            Ok(out)
        })
        .collect::<Result<_>>()?;
    Ok(nested.into_iter().flatten().collect())
}

/// A whiteout or opaque marker entry in `dir`.
fn marker(dir: &[u8], name: &[u8], kind: EntryKind) -> TreeEntry {
    TreeEntry { path: join(dir, name), kind, mode: 0o600, uid: 0, gid: 0, mtime: 0, xattrs: Vec::new() }
}

/// The coarse realtime clock, as file timestamps are taken.
fn coarse_now() -> (i64, i64) {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME_COARSE)
        .unwrap_or(nix::sys::time::TimeSpec::new(0, 0));
    (t.tv_sec(), t.tv_nsec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(entries: &[TreeEntry]) -> Vec<String> {
        entries.iter().map(|e| String::from_utf8_lossy(&e.path).into_owned()).collect()
    }

    #[test]
    fn additions_changes_removals_and_remade_directories_are_found() {
        let dir = std::env::temp_dir().join(format!("rbuild-container-changes-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for d in ["keep/x", "d/sub", "same", "kept"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        for f in ["keep/x/a", "d/a", "d/sub/b", "same/s", "gone", "kept/k", "touched"] {
            fs::write(dir.join(f), "1").unwrap();
        }
        let mut protected = Protected::default();
        protected.add(Path::new("/kept"));
        let before = Record::take(&dir, &protected).unwrap();
        before.wait_for_clock();
        fs::write(dir.join("keep/x/new"), "n").unwrap();
        fs::write(dir.join("touched"), "2").unwrap();
        fs::remove_file(dir.join("gone")).unwrap();
        fs::remove_dir_all(dir.join("d")).unwrap();
        fs::create_dir(dir.join("d")).unwrap();
        fs::write(dir.join("d/n"), "n").unwrap();
        fs::write(dir.join("kept/k2"), "not mine").unwrap();
        let (entries, now) = before.changes(&dir, &protected).unwrap();
        let mut got: std::collections::BTreeSet<String> = names(&entries).into_iter().collect();
        // The remade directory hides what it held: opaque when it got a new inode, else a whiteout for each.
        let hidden_by_whiteouts = got.remove("d/.wh.a") && got.remove("d/.wh.sub");
        let hidden_by_opaque = got.remove("d/.wh..wh..opq");
        assert!(hidden_by_whiteouts != hidden_by_opaque, "{:?}", names(&entries));
        let want: std::collections::BTreeSet<String> =
            ["d", "d/n", ".wh.gone", "keep", "keep/x", "keep/x/new", "touched"].iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want);
        assert!(
            !names(&entries).iter().any(|n| n.starts_with("kept") || n.starts_with("same")),
            "{:?}",
            names(&entries)
        );
        // Nothing changed since: nothing to record.
        now.wait_for_clock();
        assert!(now.changes(&dir, &protected).unwrap().0.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
