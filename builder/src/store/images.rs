//! The image index: `images/index.json`, an OCI image index whose entries carry the full image name
//! (`docker.io/library/busybox:latest`) in the `org.opencontainers.image.ref.name` annotation. Updates are
//! read-modify-write under `images/index.lock` and land by atomic rename.

use std::collections::HashMap;
use std::fs::{self, File};

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};
use rbuild_registry::Reference;

use super::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fsops::write_atomically;

pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A named image in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    pub name: Reference,
    /// The manifest (or index) the name points at.
    pub descriptor: Descriptor,
}

impl ImageRecord {
    pub fn digest(&self) -> Result<Digest> {
        Digest::parse(self.descriptor.digest().as_ref())
    }
}

impl Store {
    fn index_path(&self) -> std::path::PathBuf {
        self.root().join("images/index.json")
    }

    fn read_index(&self) -> Result<Vec<ImageRecord>> {
        let path = self.index_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read", &path)(e)),
        };
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|source| Error::Json { what: path.display().to_string(), source })?;
        let mut out = Vec::new();
        for d in index.manifests() {
            let Some(name) = d.annotations().as_ref().and_then(|a| a.get(REF_NAME)) else { continue };
            out.push(ImageRecord { name: Reference::parse(name)?, descriptor: d.clone() });
        }
        Ok(out)
    }

    fn write_index(&self, records: &[ImageRecord]) -> Result<()> {
        let mut records = records.to_vec();
        records.sort_by_key(|r| r.name.to_string());
        let manifests: Vec<Descriptor> = records
            .into_iter()
            .map(|r| {
                let mut d = r.descriptor;
                let mut ann = d.annotations().clone().unwrap_or_default();
                ann.insert(REF_NAME.to_string(), r.name.to_string());
                d.set_annotations(Some(ann));
                d
            })
            .collect();
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .map_err(|e| Error::Malformed { what: "image index".into(), reason: e.to_string() })?;
        let bytes = serde_json::to_vec(&index).map_err(|source| Error::Json { what: "image index".into(), source })?;
        write_atomically(&self.index_path(), &bytes)
    }

    /// Run `f` on the index under its lock and write the result back.
    fn update_index<T>(&self, f: impl FnOnce(&mut Vec<ImageRecord>) -> Result<T>) -> Result<T> {
        let lock_path = self.root().join("images/index.lock");
        let lock = File::create(&lock_path).map_err(Error::io("create", &lock_path))?;
        lock.lock().map_err(Error::io("lock", &lock_path))?;
        let mut records = self.read_index()?;
        let out = f(&mut records)?;
        self.write_index(&records)?;
        Ok(out)
    }

    /// Every named image, sorted by name.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut r = self.read_index()?;
        r.sort_by_key(|r| r.name.to_string());
        Ok(r)
    }

    /// Point `name` at `descriptor` (replacing what it pointed at).
    pub fn tag_image(&self, name: &Reference, descriptor: &Descriptor) -> Result<()> {
        let mut d = descriptor.clone();
        d.set_annotations(None);
        self.update_index(|records| {
            records.retain(|r| &r.name != name);
            records.push(ImageRecord { name: name.clone(), descriptor: d });
            Ok(())
        })
    }

    /// Remove the name; returns whether it existed.
    pub fn untag_image(&self, name: &Reference) -> Result<bool> {
        self.update_index(|records| {
            let before = records.len();
            records.retain(|r| &r.name != name);
            Ok(records.len() != before)
        })
    }

    /// Find an image by name (`busybox`, `docker.io/library/busybox:latest`) or by manifest digest (full, or a
    /// prefix of at least 12 hex digits as `rbuild images` shows).
    pub fn resolve_image(&self, name: &str) -> Result<ImageRecord> {
        let records = self.images()?;
        let not_found = || Error::ImageNotFound { name: name.to_string(), root: self.root().to_path_buf() };
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: HashMap<String, &ImageRecord> = records
                .iter()
                .filter(|r| r.descriptor.digest().digest().starts_with(hex))
                .map(|r| (r.descriptor.digest().to_string(), r))
                .collect();
            if hits.len() == 1 {
                return hits.into_values().next().cloned().ok_or_else(not_found);
            }
        }
        let reference = Reference::parse(name)?;
        records.into_iter().find(|r| r.name == reference).ok_or_else(not_found)
    }
}
