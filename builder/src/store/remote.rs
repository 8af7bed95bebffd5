//! Blobs the store knows where to find but may not hold: `sources/<hex>` lists the `registry/repository` places
//! a blob is known to exist (written after a pull, a push or a cache import; appends are whole lines, so
//! concurrent writers cannot corrupt one another's). A layer named by a cache record or an image but not yet in
//! `blobs/` is a *remote* layer: [`Store::ensure_blob`] fetches and verifies it the first time something needs its
//! bytes, through the [`RemoteBlobs`] the process attached (none under `--offline`: then it is a clear error).
//! Pushes read the same list to mount a blob from another repository instead of uploading it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::Arc;

use super::{RemoteBlobs, Store};
use crate::digest::Digest;
use crate::error::{Error, Result};

impl Store {
    /// Let this store fetch remote layers with `remote` (the first one attached stays).
    pub fn attach_remote(&self, remote: Arc<dyn RemoteBlobs>) {
        let _ = self.remote.set(remote);
    }

    /// Remember that `digest` exists at `registry/repository`.
    pub fn record_source(&self, digest: &Digest, registry: &str, repository: &str) {
        let dir = self.root().join("sources");
        let line = format!("{registry}/{repository}");
        if self.blob_sources(digest).contains(&line) {
            return;
        }
        if fs::create_dir_all(&dir).is_ok()
            && let Ok(mut f) = OpenOptions::new().create(true).append(true).open(dir.join(digest.hex()))
        {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }

    /// The `registry/repository` places `digest` is known to exist at.
    pub fn blob_sources(&self, digest: &Digest) -> Vec<String> {
        fs::read_to_string(self.root().join("sources").join(digest.hex()))
            .map(|t| t.lines().filter(|l| l.contains('/')).map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The blob is here, or it can be fetched when needed (a remote layer).
    pub fn has_or_knows_blob(&self, digest: &Digest) -> bool {
        self.has_blob(digest) || !self.blob_sources(digest).is_empty()
    }

    /// A remote layer: not here, but known to exist in a registry.
    pub fn is_remote(&self, digest: &Digest) -> bool {
        !self.has_blob(digest) && !self.blob_sources(digest).is_empty()
    }

    /// Make sure the blob is in `blobs/`: a remote one is fetched (from the first place that has it) and
    /// verified. A blob neither here nor known anywhere is `BlobNotFound`.
    pub fn ensure_blob(&self, digest: &Digest) -> Result<()> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let places = self.blob_sources(digest);
        if places.is_empty() {
            return Err(Error::BlobNotFound { digest: digest.to_string(), root: self.root().to_path_buf() });
        }
        let not_fetched =
            |reason: String| Error::RemoteLayer { digest: digest.to_string(), place: places.join(", "), reason };
        let Some(remote) = self.remote.get() else {
            return Err(not_fetched("this command has no registry client".into()));
        };
        let mut reasons = Vec::new();
        for place in &places {
            let Some((registry, repository)) = place.split_once('/') else { continue };
            let mut w = self.blob_writer()?;
            match remote.fetch(registry, repository, digest, &mut w) {
                Ok(_) => {
                    let (got, _) = w.commit()?;
                    if &got == digest {
                        return Ok(());
                    }
                    reasons.push(format!("{place} sent content hashing to {got}"));
                }
                Err(e) => reasons.push(e.to_string()),
            }
        }
        Err(not_fetched(reasons.join("; ")))
    }

    /// Fetch every blob of `digests` the store lacks, four at once.
    pub fn ensure_blobs(&self, digests: &[Digest]) -> Result<()> {
        let missing: Vec<&Digest> = digests.iter().filter(|d| !self.has_blob(d)).collect();
        crate::bounded::for_each_bounded(&missing, 4, |d| self.ensure_blob(d))
    }
}
