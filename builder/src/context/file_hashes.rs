//! Incremental context hashing: the sha256 of each context file read, remembered in the store
//! (`cache/context-files.json`) under the file's absolute path with its (device, inode, size, mtime, ctime).
//! A later build re-reads only files whose identity changed; touching a file re-reads it (and finds the
//! same content), editing it gives a new hash. The record is a cache: lost or stale entries only cost a read.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// Most entries kept (the oldest-inserted go first beyond this; a build's own files are always kept).
const MAX_ENTRIES: usize = 200_000;

type Identity = (u64, u64, u64, i64, i64);

#[derive(Debug, Default)]
pub struct FileHashes {
    file: Option<PathBuf>,
    /// Keyed by the path's bytes (hashing a `Path` walks its components: slow for 100,000 entries).
    entries: Mutex<HashMap<OsString, (Identity, String)>>,
    /// Files read and hashed, and files whose remembered hash was used, in this build.
    pub hashed: AtomicUsize,
    pub reused: AtomicUsize,
}

fn identity(meta: &fs::Metadata) -> Identity {
    (
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
    )
}

impl FileHashes {
    /// Load the record at `file` (a missing or unreadable one starts empty).
    pub fn load(file: PathBuf) -> FileHashes {
        type Row = (u64, u64, u64, i64, i64, String);
        let mut entries = HashMap::new();
        if let Ok(bytes) = fs::read(&file)
            && let Ok(map) = serde_json::from_slice::<HashMap<String, Row>>(&bytes)
        {
            entries.reserve(map.len());
            for (path, (dev, ino, size, mtime, ctime, hash)) in map {
                entries.insert(OsString::from(path), ((dev, ino, size, mtime, ctime), hash));
            }
        }
        FileHashes { file: Some(file), entries: Mutex::new(entries), ..FileHashes::default() }
    }

    /// The sha256 (hex) of a regular file's content, from the record when its identity is unchanged; with `keep`,
    /// a file that is read keeps its content and capabilities for the copy that follows (none when the record knew
    /// the file, or when it changed while being read).
    pub(crate) fn hash_keeping(
        &self,
        abs: &Path,
        meta: &fs::Metadata,
        keep: bool,
    ) -> Result<(String, Option<KeptFile>)> {
        let id = identity(meta);
        if let Ok(entries) = self.entries.lock()
            && let Some((known, hash)) = entries.get(abs.as_os_str())
            && *known == id
        {
            self.reused.fetch_add(1, Ordering::Relaxed);
            return Ok((hash.clone(), None));
        }
        let mut f = fs::File::open(abs).map_err(Error::io("open", abs))?;
        let (hash, kept) = if keep {
            let data = crate::fsops::read_known_size(&mut f, meta.size()).map_err(Error::io("read", abs))?;
            let hash = hex::encode(Sha256::digest(&data));
            (hash, Some(KeptFile { data: data.into(), capabilities: capabilities_of(&f) }))
        } else {
            (hash_stream(&mut f, meta.size()).map_err(Error::io("read", abs))?, None)
        };
        self.hashed.fetch_add(1, Ordering::Relaxed);
        // A file modified while being read keeps no record (its identity would not match the content), nor its
        // content for the copy.
        let unchanged = f.metadata().is_ok_and(|m| identity(&m) == id);
        if unchanged
            && self.file.is_some()
            && let Ok(mut entries) = self.entries.lock()
        {
            entries.insert(abs.as_os_str().to_os_string(), (id, hash.clone()));
        }
        Ok((hash, kept.filter(|_| unchanged)))
    }

    /// Write the record back (atomically), if this build hashed anything new.
    pub fn save(&self) -> Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        if self.hashed.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let entries = self
            .entries
            .lock()
            .map_err(|_| Error::WorkerPanicked { what: "a thread writing the context hash record".into() })?;
        // Written straight from the map (a build of many files saves tens of thousands of rows at its end).
        let mut bytes = Vec::with_capacity(entries.len() * 160);
        serde_json::to_writer(&mut bytes, &Rows(&entries))
            .map_err(|source| Error::Json { what: "context hash record".into(), source })?;
        // Only a cache: after a crash an empty or missing record costs reads, never a wrong hash.
        crate::fsops::write_atomically_unsynced(file, &bytes)
    }
}

/// The record's rows as a JSON object: path -> (device, inode, size, mtime, ctime, hash), at most `MAX_ENTRIES`.
struct Rows<'a>(&'a HashMap<OsString, (Identity, String)>);

impl serde::Serialize for Rows<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.0
                .iter()
                .take(MAX_ENTRIES)
                .filter_map(|(path, (id, hash))| Some((path.to_str()?, (id.0, id.1, id.2, id.3, id.4, hash.as_str())))),
        )
    }
}

/// A small context file as the checksum read it: what its copy writes and the layer's entry holds, so the copy
/// and the layer writer need not open it (or the copy) again.
#[derive(Debug, Clone)]
pub(crate) struct KeptFile {
    pub data: std::sync::Arc<[u8]>,
    /// Its file capabilities (or the record of them a rootless copy left), the one xattr a copy carries.
    pub capabilities: Option<Vec<u8>>,
}

/// The sha256 (hex) of up to `size` bytes of `f` (the size its identity has), without probing for the end.
fn hash_stream(f: &mut fs::File, size: u64) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; size.min(1 << 16) as usize];
    let mut left = size;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hex::encode(h.finalize()))
}

/// An open file's capabilities as a copy carries them: one call when it has no xattrs at all (the usual case).
pub(crate) fn capabilities_of(f: &fs::File) -> Option<Vec<u8>> {
    use crate::layer::tree::{CAPABILITY_RECORD_XATTR, CAPABILITY_XATTR};
    use xattr::FileExt as _;
    if rustix::fs::flistxattr_query(f).is_ok_and(|n| n == 0) {
        return None;
    }
    [CAPABILITY_XATTR, CAPABILITY_RECORD_XATTR].iter().find_map(|n| f.get_xattr(n).ok().flatten())
}
