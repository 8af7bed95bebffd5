//! Pulling an image into the store.

use std::sync::atomic::{AtomicU64, Ordering};

use rbuild_registry::platform;
use rbuild_registry::{Client, Reference, RegistryError};
use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::export::image::{LoadedImage, descriptor, load_image_for};
use crate::platform::Platform;
use crate::store::Store;

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The image pulled (of an index: the platform's image; the name points at the index).
    pub manifest_digest: Digest,
    /// Blobs downloaded, bytes downloaded, and blobs the store already had.
    pub downloaded: usize,
    pub bytes: u64,
    pub present: usize,
}

fn registry_error(e: RegistryError) -> Error {
    Error::Registry(Box::new(e))
}

fn doc(bytes: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json { what: what.to_string(), source })
}

/// The blobs an image manifest names (config first, then the layers, with their announced sizes); malformed or
/// unsupported manifests (schema 1, foreign layers) are errors naming the image.
pub fn manifest_blobs(bytes: &[u8], what: &str) -> Result<Vec<(Digest, Option<u64>)>> {
    let manifest = doc(bytes, &format!("the manifest of {what}"))?;
    let mut blobs: Vec<(Digest, Option<u64>)> = Vec::new();
    let entry = |v: &Value| -> Result<(Digest, Option<u64>)> {
        let d = v["digest"].as_str().ok_or_else(|| Error::Malformed {
            what: format!("the manifest of {what}"),
            reason: "a descriptor has no digest".into(),
        })?;
        Ok((Digest::parse(d)?, v["size"].as_u64()))
    };
    blobs.push(entry(&manifest["config"])?);
    for l in manifest["layers"].as_array().ok_or_else(|| Error::Malformed {
        what: format!("the manifest of {what}"),
        reason: "no layers (schema 1 manifests are not supported)".into(),
    })? {
        if l["urls"].is_array() && l["mediaType"].as_str().is_some_and(|t| t.contains("foreign")) {
            return Err(Error::Malformed {
                what: format!("image {what}"),
                reason: "it has foreign layers (Windows images), which rbuild cannot pull".into(),
            });
        }
        blobs.push(entry(l)?);
    }
    Ok(blobs)
}

/// Whether a pull downloads the layers or leaves them remote (fetched when something needs their bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerFetch {
    /// Everything into the store now (`rbuild pull`: the store then has the image for offline use).
    Now,
    /// Manifest and config now; the layers are remote layers (a build base: a fully cached build, or one pushed
    /// to the same registry, never downloads them).
    WhenNeeded,
}

/// Pull `reference` for the host platform into the store and name it; returns what was done.
pub fn pull(store: &Store, client: &Client, reference: &Reference) -> Result<PullReport> {
    pull_for(store, client, reference, &Platform::host(), LayerFetch::Now)
}

/// Pull `platform`'s image of `reference` into the store and name it; returns what was done. When the registry
/// has an index, the index is kept (the name points at it) with the images of the platforms pulled so far; a
/// pull for another platform adds that platform's image.
pub fn pull_for(
    store: &Store,
    client: &Client,
    reference: &Reference,
    platform: &Platform,
    layers: LayerFetch,
) -> Result<PullReport> {
    let want = platform.for_registry();
    let what = reference.familiar();
    let mut m = client.get_manifest(reference).map_err(registry_error)?;
    let top = doc(&m.bytes, &format!("the manifest of {what}"))?;
    let mut index = None;
    if top["manifests"].is_array() {
        index = Some((m.bytes.clone(), m.media_type.clone()));
        let chosen = platform::select(&top, &want).ok_or_else(|| {
            let have: Vec<String> = top["manifests"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            let p = &e["platform"];
                            format!("{}/{}", p["os"].as_str().unwrap_or("?"), p["architecture"].as_str().unwrap_or("?"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Error::Malformed {
                what: format!("image {what}"),
                reason: format!("it has no image for {want} (it has: {})", have.join(", ")),
            }
        })?;
        m = client
            .get_manifest_by(&reference.registry, &reference.repository, &chosen.digest, &what)
            .map_err(registry_error)?;
    }
    let blobs = manifest_blobs(&m.bytes, &what)?;
    for (d, _) in &blobs {
        store.record_source(d, &reference.registry, &reference.repository);
    }
    let present = blobs.iter().filter(|(d, _)| store.has_blob(d)).count();
    // The config is always fetched (the first blob); the layers only when asked to.
    let wanted = if layers == LayerFetch::Now { blobs.len() } else { 1 };
    let missing: Vec<&(Digest, Option<u64>)> = blobs.iter().take(wanted).filter(|(d, _)| !store.has_blob(d)).collect();
    let bytes = AtomicU64::new(0);
    let workers = client.settings().max_concurrent_downloads.clamp(1, 16);
    crate::bounded::for_each_bounded(&missing, workers, |(digest, size)| {
        let mut w = store.blob_writer()?;
        let n = client
            .fetch_blob(&reference.registry, &reference.repository, digest.as_str(), *size, &mut w)
            .map_err(registry_error)?;
        let (stored, _) = w.commit()?;
        if &stored != digest {
            return Err(Error::ContentMismatch {
                what: format!("blob {digest} of {what}"),
                expected: digest.to_string(),
                actual: stored.to_string(),
            });
        }
        bytes.fetch_add(n, Ordering::Relaxed);
        Ok(())
    })?;
    let manifest_digest = store.put_blob_bytes(&m.bytes)?;
    let desc = match &index {
        Some((bytes, media_type)) => {
            let index_digest = store.put_blob_bytes(bytes)?;
            descriptor(media_type, bytes.len() as u64, &index_digest)?
        }
        None => descriptor(&m.media_type, m.bytes.len() as u64, &manifest_digest)?,
    };
    let name = Reference {
        digest: None,
        tag: Some(reference.tag.clone().unwrap_or_else(|| "latest".into())),
        ..reference.clone()
    };
    if reference.digest.is_none() {
        store.tag_image(&name, &desc)?;
    } else {
        store.tag_image(reference, &desc)?;
    }
    Ok(PullReport { manifest_digest, downloaded: missing.len(), bytes: bytes.into_inner(), present })
}

/// The image `name` from the store, pulled first when it is missing (or always with `always_pull`). Without a
/// client (offline or no registry configured) a missing image is an error naming it.
pub fn ensure_image(
    store: &Store,
    client: Option<&Client>,
    name: &str,
    always_pull: bool,
    platform: &Platform,
) -> Result<(LoadedImage, Option<PullReport>)> {
    let local = match store.resolve_image(name) {
        Ok(r) => Some(r.digest()?),
        Err(Error::ImageNotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    // The local image serves unless it is of another platform (or an index whose image for the platform is not
    // here) and a registry may be asked: then the platform's image is pulled, as docker does.
    if let Some(d) = &local
        && !always_pull
    {
        match load_image_for(store, d, platform) {
            Ok(image) if client.is_none() || Platform::of_config(&image.config).is_none_or(|p| p == *platform) => {
                return Ok((image, None));
            }
            Err(e) if client.is_none() => return Err(e),
            _ => {}
        }
    }
    let Some(client) = client else {
        return Err(Error::ImageNotFound { name: name.to_string(), root: store.root().to_path_buf() });
    };
    let reference = Reference::parse(name)?;
    match pull_for(store, client, &reference, platform, LayerFetch::WhenNeeded) {
        Ok(report) => Ok((load_image_for(store, &report.manifest_digest, platform)?, Some(report))),
        // --pull with no network, or a local image of another platform that the registry cannot give (a build's
        // own image): the local copy will do, as docker does (the stage then warns of its platform).
        Err(Error::Registry(e)) if !always_pull || matches!(*e, RegistryError::Offline { .. }) => {
            match local.as_ref().map(|d| load_image_for(store, d, platform)) {
                Some(Ok(image)) => Ok((image, None)),
                _ => Err(Error::Registry(e)),
            }
        }
        Err(e) => Err(e),
    }
}
