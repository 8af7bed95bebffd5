//! OCI image layouts on disk: import (every blob verified while copied into the store) and export (blobs and
//! an `index.json` naming each image by tag, as skopeo and umoci expect, and by full name).

use std::fs;
use std::path::{Path, PathBuf};

use rbuild_registry::Reference;
use serde_json::Value;

use super::image::{image_blobs, malformed};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{ImageRecord, Store};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// An image found in a layout: its manifest descriptor and the name it carries (if any).
#[derive(Debug, Clone)]
pub struct LayoutImage {
    pub descriptor: Value,
    pub digest: Digest,
    /// `org.opencontainers.image.ref.name` (a tag, or a full name).
    pub ref_name: Option<String>,
    /// `io.containerd.image.name` (a full name).
    pub full_name: Option<String>,
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = fs::read(path).map_err(Error::io("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json { what: path.display().to_string(), source })
}

/// The images an OCI layout's index.json lists.
pub fn layout_images(dir: &Path) -> Result<Vec<LayoutImage>> {
    let layout = read_json(&dir.join("oci-layout"))?;
    if layout["imageLayoutVersion"].as_str().is_none() {
        return Err(malformed(&format!("OCI layout {}", dir.display()), "oci-layout has no imageLayoutVersion"));
    }
    let index = read_json(&dir.join("index.json"))?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or_else(|| malformed(&format!("{}/index.json", dir.display()), "no manifests"))?;
    manifests
        .iter()
        .map(|m| {
            let digest = Digest::parse(m["digest"].as_str().unwrap_or_default())?;
            Ok(LayoutImage {
                descriptor: m.clone(),
                digest,
                ref_name: m["annotations"][REF_NAME].as_str().map(str::to_string),
                full_name: m["annotations"][CONTAINERD_NAME].as_str().map(str::to_string),
            })
        })
        .collect()
}

fn layout_blob_path(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs/sha256").join(d.hex())
}

/// Copy one blob (verified) from a layout into the store.
fn import_blob(store: &Store, dir: &Path, d: &Digest, size: Option<u64>) -> Result<()> {
    if store.has_blob(d) {
        return Ok(());
    }
    let path = layout_blob_path(dir, d);
    let f = fs::File::open(&path).map_err(Error::io("open", &path))?;
    store.put_blob(f, Some((d, size)))?;
    Ok(())
}

/// Copy everything an image (manifest or index) needs from a layout into the store; every blob is verified.
pub fn import_tree(store: &Store, dir: &Path, d: &Digest, size: Option<u64>) -> Result<()> {
    import_blob(store, dir, d, size)?;
    let doc: Value = serde_json::from_slice(&store.read_blob(d)?)
        .map_err(|source| Error::Json { what: format!("manifest {d}"), source })?;
    if let Some(ms) = doc["manifests"].as_array() {
        for m in ms {
            let md = Digest::parse(m["digest"].as_str().unwrap_or_default())?;
            // An index may list other platforms whose blobs a layout need not carry.
            if layout_blob_path(dir, &md).is_file() {
                import_tree(store, dir, &md, m["size"].as_u64())?;
            }
        }
        return Ok(());
    }
    let config = &doc["config"];
    import_blob(store, dir, &Digest::parse(config["digest"].as_str().unwrap_or_default())?, config["size"].as_u64())?;
    for l in doc["layers"].as_array().into_iter().flatten() {
        import_blob(store, dir, &Digest::parse(l["digest"].as_str().unwrap_or_default())?, l["size"].as_u64())?;
    }
    Ok(())
}

/// The name to give an image imported from a layout: its full name, else `default_repo:<ref name>`.
fn import_name(img: &LayoutImage, default_repo: &str) -> Result<Option<Reference>> {
    if let Some(full) = &img.full_name {
        return Ok(Some(Reference::parse(full)?));
    }
    match &img.ref_name {
        Some(r) if r.contains('/') || r.contains(':') => Ok(Some(Reference::parse(r)?)),
        Some(tag) => Ok(Some(Reference::parse(&format!("{default_repo}:{tag}"))?)),
        None => Ok(None),
    }
}

/// Import every image of a layout; images are named by their annotations (`default_repo` supplies the
/// repository for bare tags). Returns the records written (images without a name are stored but not named).
pub fn import_layout(store: &Store, dir: &Path, default_repo: &str) -> Result<Vec<ImageRecord>> {
    let mut out = Vec::new();
    for img in layout_images(dir)? {
        import_tree(store, dir, &img.digest, img.descriptor["size"].as_u64())?;
        let media_type = img.descriptor["mediaType"].as_str().unwrap_or(super::image::OCI_MANIFEST);
        let size = img.descriptor["size"].as_u64().unwrap_or_default();
        let descriptor = super::image::descriptor(media_type, size, &img.digest)?;
        if let Some(name) = import_name(&img, default_repo)? {
            store.tag_image(&name, &descriptor)?;
            out.push(ImageRecord { name, descriptor });
        }
    }
    Ok(out)
}

/// Resolve `oci-layout://PATH[:TAG]` (or `@DIGEST`): import that image's blobs into the store and return its
/// manifest digest.
pub fn import_layout_reference(store: &Store, reference: &str) -> Result<Digest> {
    let rest = reference.strip_prefix("oci-layout://").unwrap_or(reference);
    let (path, selector) = match rest.rsplit_once('@') {
        Some((p, d)) => (p, Some(d)),
        None => match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p, Some(t)),
            _ => (rest, None),
        },
    };
    let dir = Path::new(path);
    let images = layout_images(dir)?;
    let pick = match selector {
        Some(s) if s.starts_with("sha256:") => images.iter().find(|i| i.digest.as_str() == s),
        Some(tag) => images.iter().find(|i| i.ref_name.as_deref() == Some(tag)),
        None if images.len() == 1 => images.first(),
        None => images.iter().find(|i| i.ref_name.as_deref() == Some("latest")),
    }
    .ok_or_else(|| Error::ImageNotFound { name: reference.to_string(), root: dir.to_path_buf() })?;
    import_tree(store, dir, &pick.digest, pick.descriptor["size"].as_u64())?;
    Ok(pick.digest.clone())
}

/// Write images to an OCI layout directory (created or added to): blobs, `oci-layout` and an `index.json`
/// naming each image by tag (`org.opencontainers.image.ref.name`) and full name (`io.containerd.image.name`).
pub fn export_layout(store: &Store, images: &[(Reference, Digest)], dir: &Path) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(Error::io("create", &blobs))?;
    let mut manifests = Vec::new();
    for (name, digest) in images {
        let image_blobs = image_blobs(store, digest)?;
        store.ensure_blobs(&image_blobs)?;
        for b in image_blobs {
            let dest = blobs.join(b.hex());
            if !dest.is_file() {
                store.ensure_blob(&b)?;
                let tmp = blobs.join(format!(".{}.tmp", b.hex()));
                fs::copy(store.blob_path(&b), &tmp).map_err(Error::io("copy blob", &tmp))?;
                fs::rename(&tmp, &dest).map_err(Error::io("rename", &dest))?;
            }
        }
        // An index need not hold the host's platform: its media type is read from it, not from an image of it.
        let media_type = super::image::media_type_of(store, digest)?;
        let size = fs::metadata(store.blob_path(digest)).map_err(Error::io("stat", store.blob_path(digest)))?.len();
        let mut d = super::image::descriptor(&media_type, size, digest)?;
        d.set_annotations(Some(
            [
                (CONTAINERD_NAME.to_string(), name.to_string()),
                (REF_NAME.to_string(), name.tag.clone().unwrap_or_else(|| "latest".into())),
            ]
            .into_iter()
            .collect(),
        ));
        manifests.push(d);
    }
    let index = oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(oci_spec::image::MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|e| malformed("image index", &e.to_string()))?;
    let layout = oci_spec::image::OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()
        .map_err(|e| malformed("oci-layout", &e.to_string()))?;
    crate::fsops::write_atomically(&dir.join("oci-layout"), &serialize(&layout, "oci-layout")?)?;
    crate::fsops::write_atomically(&dir.join("index.json"), &serialize(&index, "index.json")?)
}

/// Serialise with object keys sorted (oci-spec keeps annotations in a HashMap, whose order varies by run).
fn serialize<T: serde::Serialize>(v: &T, what: &str) -> Result<Vec<u8>> {
    let err = |source| Error::Json { what: what.to_string(), source };
    serde_json::to_value(v).and_then(|v| serde_json::to_vec(&v)).map_err(err)
}
