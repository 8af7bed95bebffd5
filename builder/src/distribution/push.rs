//! Pushing an image from the store.

use std::sync::atomic::{AtomicUsize, Ordering};

use rbuild_registry::{Client, Reference, RegistryError};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::export::image::load_image;
use crate::store::Store;

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    pub manifest_digest: String,
    /// Blobs uploaded, mounted from another repository, and already present.
    pub uploaded: usize,
    pub mounted: usize,
    pub present: usize,
    /// The platforms of an index left out because the store lacks their images (a partial pull).
    pub left_out: Vec<String>,
}

fn registry_error(e: RegistryError) -> Error {
    Error::Registry(Box::new(e))
}

/// Push the image with manifest `digest` to `dest` (its tag, or its digest when it names none). An index is pushed
/// with every image of it the store has, each by digest, then the index itself.
pub fn push(store: &Store, client: &Client, digest: &Digest, dest: &Reference) -> Result<PushReport> {
    let bytes = store.read_blob(digest)?;
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| Error::Json { what: format!("manifest {digest}"), source })?;
    if doc["manifests"].is_array() {
        return push_index(store, client, &doc, &bytes, dest);
    }
    let image = load_image(store, digest)?;
    let mut blobs: Vec<Digest> = vec![image.config_digest.clone()];
    blobs.extend(image.layers.iter().map(|l| l.digest.clone()));
    push_artifact(store, client, &blobs, &image.manifest_media_type, &image.manifest_bytes, dest)
}

/// Push an index: its images the store has, by digest, then the index naming them. A registry refuses an index
/// whose manifests it lacks, so platforms the store does not have (a partial pull) are left out of a new index.
fn push_index(
    store: &Store,
    client: &Client,
    doc: &serde_json::Value,
    bytes: &[u8],
    dest: &Reference,
) -> Result<PushReport> {
    let mut report = PushReport::default();
    let mut kept = Vec::new();
    for entry in doc["manifests"].as_array().into_iter().flatten() {
        let d = Digest::parse(entry["digest"].as_str().unwrap_or_default())?;
        if !store.has_blob(&d) {
            let p = &entry["platform"];
            report.left_out.push(format!(
                "{}/{}",
                p["os"].as_str().unwrap_or("?"),
                p["architecture"].as_str().unwrap_or("?")
            ));
            continue;
        }
        let by_digest = Reference { tag: None, digest: Some(d.to_string()), ..dest.clone() };
        let r = push(store, client, &d, &by_digest)?;
        report.uploaded += r.uploaded;
        report.mounted += r.mounted;
        report.present += r.present;
        kept.push(entry.clone());
    }
    let media_type = doc["mediaType"].as_str().unwrap_or(crate::export::image::OCI_INDEX).to_string();
    let bytes = if report.left_out.is_empty() {
        bytes.to_vec()
    } else {
        let mut partial = doc.clone();
        partial["manifests"] = serde_json::Value::Array(kept);
        serde_json::to_vec(&partial).map_err(|source| Error::Json { what: "image index".into(), source })?
    };
    let reference = dest.tag.clone().or_else(|| dest.digest.clone()).unwrap_or_else(|| "latest".into());
    report.manifest_digest = client
        .put_manifest(&dest.registry, &dest.repository, &reference, &media_type, &bytes)
        .map_err(registry_error)?;
    Ok(report)
}

/// Push blobs from the store, then a manifest with exactly these bytes (an image, or an artifact such as a
/// build cache), to `dest`.
pub fn push_artifact(
    store: &Store,
    client: &Client,
    blobs: &[Digest],
    media_type: &str,
    manifest_bytes: &[u8],
    dest: &Reference,
) -> Result<PushReport> {
    let mut blobs = blobs.to_vec();
    blobs.dedup();
    let (uploaded, mounted, present) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
    crate::bounded::for_each_bounded(&blobs, 3, |d| push_blob(store, client, d, dest, &uploaded, &mounted, &present))?;
    let reference = dest.tag.clone().or_else(|| dest.digest.clone()).unwrap_or_else(|| "latest".into());
    let manifest_digest = client
        .put_manifest(&dest.registry, &dest.repository, &reference, media_type, manifest_bytes)
        .map_err(registry_error)?;
    Ok(PushReport {
        manifest_digest,
        uploaded: uploaded.into_inner(),
        mounted: mounted.into_inner(),
        present: present.into_inner(),
        left_out: Vec::new(),
    })
}

fn push_blob(
    store: &Store,
    client: &Client,
    d: &Digest,
    dest: &Reference,
    uploaded: &AtomicUsize,
    mounted: &AtomicUsize,
    present: &AtomicUsize,
) -> Result<()> {
    let (registry, repo) = (&dest.registry, &dest.repository);
    if client.blob_exists(registry, repo, d.as_str()).map_err(registry_error)? {
        present.fetch_add(1, Ordering::Relaxed);
        store.record_source(d, registry, repo);
        return Ok(());
    }
    let prefix = format!("{registry}/");
    for source in store.blob_sources(d) {
        if let Some(from) = source.strip_prefix(&prefix)
            && from != repo
            && client.mount_blob(registry, repo, d.as_str(), from).map_err(registry_error)?
        {
            mounted.fetch_add(1, Ordering::Relaxed);
            store.record_source(d, registry, repo);
            return Ok(());
        }
    }
    // A remote layer no repository of this registry has: fetched from where it is, then uploaded.
    store.ensure_blob(d)?;
    client.upload_blob(registry, repo, d.as_str(), &store.blob_path(d)).map_err(registry_error)?;
    uploaded.fetch_add(1, Ordering::Relaxed);
    store.record_source(d, registry, repo);
    Ok(())
}
