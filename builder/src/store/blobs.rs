//! Blobs: `blobs/sha256/<hex>`, written under `tmp/`, verified (digest and, when announced, size) while streaming,
//! synced once, then renamed into place. A blob that fails verification never becomes visible.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::Store;
use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, Result};
use crate::layer::{LayerInfo, LayerOptions, TreeEntry};

impl Store {
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root().join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Store what `reader` yields; when `expected` is given, the content must have that digest (and size).
    /// Returns the digest and size.
    pub fn put_blob(&self, reader: impl Read, expected: Option<(&Digest, Option<u64>)>) -> Result<(Digest, u64)> {
        if let Some((d, _)) = expected
            && self.has_blob(d)
        {
            // Already stored (and verified when it was).
            let size = fs::metadata(self.blob_path(d)).map_err(Error::io("stat", self.blob_path(d)))?.len();
            return Ok((d.clone(), size));
        }
        let tmp = self.tmp().path("blob");
        let result = self.write_and_commit(reader, &tmp, expected);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_and_commit(
        &self,
        mut reader: impl Read,
        tmp: &Path,
        expected: Option<(&Digest, Option<u64>)>,
    ) -> Result<(Digest, u64)> {
        let file = File::create(tmp).map_err(Error::io("create", tmp))?;
        let mut w = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        io::copy(&mut reader, &mut w).map_err(Error::io("write blob", tmp))?;
        let (digest, size, buf) = w.finish();
        let file = buf.into_inner().map_err(|e| Error::io("write blob", tmp)(e.into_error()))?;
        if let Some((want, want_size)) = expected {
            if &digest != want {
                return Err(Error::ContentMismatch {
                    what: format!("blob {want}"),
                    expected: want.to_string(),
                    actual: digest.to_string(),
                });
            }
            if let Some(s) = want_size.filter(|s| *s != size) {
                return Err(Error::ContentMismatch {
                    what: format!("blob {want}"),
                    expected: format!("{s} bytes"),
                    actual: format!("{size} bytes"),
                });
            }
        }
        file.sync_all().map_err(Error::io("sync", tmp))?;
        self.commit_blob_file(tmp, &digest)?;
        Ok((digest, size))
    }

    /// Move a fully written and verified temporary file (inside this store's tmp area) into `blobs/`.
    pub(crate) fn commit_blob_file(&self, tmp: &Path, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        fs::rename(tmp, &dest).map_err(Error::io("rename into blobs", &dest))
    }

    /// Store a small blob held in memory.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            self.put_blob(bytes, Some((&digest, Some(bytes.len() as u64))))?;
        }
        Ok(digest)
    }

    /// Open a blob for reading (a remote layer is fetched first).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        if !self.has_blob(digest) {
            self.ensure_blob(digest)?;
        }
        File::open(self.blob_path(digest)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                Error::BlobNotFound { digest: digest.to_string(), root: self.root().to_path_buf() }
            }
            _ => Error::io("open", self.blob_path(digest))(e),
        })
    }

    /// Read a (small) blob into memory, verifying its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?.read_to_end(&mut bytes).map_err(Error::io("read", self.blob_path(digest)))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(Error::ContentMismatch {
                what: format!("stored blob {digest} (the store is damaged: run `rbuild fsck`)"),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Every blob digest in the store.
    pub fn list_blobs(&self) -> Result<Vec<Digest>> {
        list_digest_names(&self.root().join("blobs/sha256"))
    }

    /// A writer for a blob whose digest is known only at the end; `finish` verifies nothing but commits.
    pub fn blob_writer(&self) -> Result<BlobWriter<'_>> {
        let path = self.tmp().path("blob");
        let file = EarlyWriteback::new(File::create(&path).map_err(Error::io("create", &path))?);
        Ok(BlobWriter { store: self, path, inner: Some(HashingWriter::new(BufWriter::with_capacity(1 << 20, file))) })
    }
}

/// Streams a new blob into the store's tmp area; `commit` hashes, syncs and moves it into place.
#[derive(Debug)]
pub struct BlobWriter<'a> {
    store: &'a Store,
    path: PathBuf,
    inner: Option<HashingWriter<BufWriter<EarlyWriteback>>>,
}

/// A file being written whose written ranges are handed to the kernel for writeback as they fill (every
/// [`WRITEBACK_EVERY`] bytes), so that the `fsync` at commit waits for the last few megabytes, not for the whole
/// blob: writing to disk overlaps with producing the data.
#[derive(Debug)]
struct EarlyWriteback {
    file: File,
    written: u64,
    started: u64,
}

const WRITEBACK_EVERY: u64 = 8 << 20;

impl EarlyWriteback {
    fn new(file: File) -> Self {
        EarlyWriteback { file, written: 0, started: 0 }
    }

    fn into_file(self) -> File {
        self.file
    }
}

impl Write for EarlyWriteback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_EVERY {
            // On dirty pages DONTNEED only starts their writeback (nothing is dropped from the cache); a failure
            // here costs only the overlap.
            let len = std::num::NonZeroU64::new(self.written - self.started);
            let _ = rustix::fs::fadvise(&self.file, self.started, len, rustix::fs::Advice::DontNeed);
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter<'_> {
    pub fn commit(mut self) -> Result<(Digest, u64)> {
        let Some(w) = self.inner.take() else {
            return Err(Error::Bug { what: "a blob writer committed twice".into() });
        };
        let (digest, size, buf) = w.finish();
        let file = buf.into_inner().map_err(|e| Error::io("write blob", &self.path)(e.into_error()))?;
        let file = file.into_file();
        file.sync_all().map_err(Error::io("sync", &self.path))?;
        self.store.commit_blob_file(&self.path, &digest)?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.as_mut() {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("blob already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        if self.inner.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The entries of `dir` whose names are sha256 hex digests, as digests, sorted.
pub(crate) fn list_digest_names(dir: &Path) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(Error::io("read", dir))?.flatten() {
        if let Some(d) = e.file_name().to_str().and_then(|n| Digest::parse(&format!("sha256:{n}")).ok()) {
            out.push(d);
        }
    }
    out.sort();
    Ok(out)
}

impl Store {
    /// Write `entries` as a layer blob into the store, in one pass (the tar, its diff_id, the compressed blob and
    /// its digest).
    pub fn write_layer(&self, entries: &[TreeEntry], opts: &LayerOptions) -> Result<LayerInfo> {
        self.write_layer_with(entries, opts, &crate::layer::KnownFiles::new())
    }

    /// [`Self::write_layer`], taking the contents of the files `known` holds from memory (a copy wrote them).
    pub fn write_layer_with(
        &self,
        entries: &[TreeEntry],
        opts: &LayerOptions,
        known: &crate::layer::KnownFiles,
    ) -> Result<LayerInfo> {
        let blob = self.blob_writer()?;
        let (diff_id, blob) = crate::layer::write_layer_with(entries, blob, opts, known)?;
        let (digest, size) = blob.commit()?;
        Ok(LayerInfo { digest, size, diff_id, compression: opts.compression })
    }
}
