//! Reading image documents from the store: a name resolves to a manifest (OCI or Docker schema2; an index or
//! manifest list resolves to the host platform's manifest), its config and its layers. Writing a new image:
//! config, manifest and tag, with OCI or Docker media types.

use oci_spec::image::{Descriptor, MediaType};
use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::store::{ImageRecord, Store};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// One layer of an image, as its manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// An image manifest with its config, read from the store.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub manifest_bytes: Vec<u8>,
    pub config_digest: Digest,
    pub config_media_type: String,
    pub config_bytes: Vec<u8>,
    pub config: Value,
    pub layers: Vec<LayerRef>,
}

impl LoadedImage {
    /// The config's `rootfs.diff_ids`.
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        self.config["rootfs"]["diff_ids"]
            .as_array()
            .ok_or_else(|| malformed("image config", "no rootfs.diff_ids"))?
            .iter()
            .map(|d| {
                d.as_str().ok_or_else(|| malformed("image config", "a diff_id is not a string")).and_then(Digest::parse)
            })
            .collect()
    }

    pub fn descriptor(&self) -> Result<Descriptor> {
        descriptor(&self.manifest_media_type, self.manifest_bytes.len() as u64, &self.manifest_digest)
    }
}

pub(crate) fn malformed(what: &str, reason: &str) -> Error {
    Error::Malformed { what: what.to_string(), reason: reason.to_string() }
}

/// An oci-spec descriptor for a blob.
pub fn descriptor(media_type: &str, size: u64, digest: &Digest) -> Result<Descriptor> {
    let d: oci_spec::image::Digest =
        digest.as_str().parse().map_err(|e: oci_spec::OciSpecError| malformed("digest", &e.to_string()))?;
    Ok(Descriptor::new(MediaType::from(media_type), size, d))
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json { what: what.to_string(), source })
}

fn field_digest(v: &Value, what: &str) -> Result<Digest> {
    Digest::parse(v["digest"].as_str().ok_or_else(|| malformed(what, "a descriptor has no digest"))?)
}

/// Load the image a manifest (or index) digest names; an index resolves to the host platform's manifest.
pub fn load_image(store: &Store, digest: &Digest) -> Result<LoadedImage> {
    load_image_for(store, digest, &Platform::host())
}

/// The media type of the manifest or index `digest` names (as it says, else OCI's by its shape).
pub fn media_type_of(store: &Store, digest: &Digest) -> Result<String> {
    let doc = parse_json(&store.read_blob(digest)?, &format!("manifest {digest}"))?;
    Ok(match doc["mediaType"].as_str().filter(|t| !t.is_empty()) {
        Some(t) => t.to_string(),
        None if doc["manifests"].is_array() => OCI_INDEX.to_string(),
        None => OCI_MANIFEST.to_string(),
    })
}

/// The platforms an index lists (`os/architecture[/variant]`), for messages.
fn listed_platforms(manifests: &[Value]) -> String {
    let names: Vec<String> = index_platforms(manifests).into_iter().map(|(p, _)| p.to_string()).collect();
    if names.is_empty() { "none named".into() } else { names.join(", ") }
}

/// The images an index's entries name, with their platforms (attestation entries, `unknown/unknown`, left out).
pub fn index_platforms(manifests: &[Value]) -> Vec<(Platform, Digest)> {
    manifests
        .iter()
        .filter_map(|m| Some((Platform::of_config(&m["platform"])?, Digest::parse(m["digest"].as_str()?).ok()?)))
        .filter(|(p, _)| p.os != "unknown")
        .collect()
}

/// Load the image a manifest digest names, or `platform`'s image of an index (nested indexes followed: an index
/// entry without a platform is taken when no entry names the platform).
pub fn load_image_for(store: &Store, digest: &Digest, platform: &Platform) -> Result<LoadedImage> {
    let bytes = store.read_blob(digest)?;
    let doc = parse_json(&bytes, &format!("manifest {digest}"))?;
    let media_type = doc["mediaType"].as_str().unwrap_or("").to_string();
    if media_type == OCI_INDEX || media_type == DOCKER_LIST || (media_type.is_empty() && doc["manifests"].is_array()) {
        let manifests = doc["manifests"].as_array().cloned().unwrap_or_default();
        let chosen = rbuild_registry::platform::select(&doc, &platform.for_registry())
            .map(|c| c.digest)
            .or_else(|| {
                manifests
                    .iter()
                    .find(|m| m["platform"].is_null())
                    .and_then(|m| m["digest"].as_str().map(str::to_string))
            })
            .ok_or_else(|| {
                malformed(
                    &format!("index {digest}"),
                    &format!("it has no image for {platform} (it has: {})", listed_platforms(&manifests)),
                )
            })?;
        return load_image_for(store, &Digest::parse(&chosen)?, platform);
    }
    let what = format!("manifest {digest}");
    let config_digest = field_digest(&doc["config"], &what)?;
    let config_media_type = doc["config"]["mediaType"].as_str().unwrap_or(OCI_CONFIG).to_string();
    let config_bytes = store.read_blob(&config_digest)?;
    let config = parse_json(&config_bytes, &format!("config {config_digest}"))?;
    let layers = doc["layers"]
        .as_array()
        .ok_or_else(|| malformed(&what, "no layers array"))?
        .iter()
        .map(|l| {
            Ok(LayerRef {
                digest: field_digest(l, &what)?,
                size: l["size"].as_u64().ok_or_else(|| malformed(&what, "a layer has no size"))?,
                media_type: l["mediaType"].as_str().unwrap_or("").to_string(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let media_type = if media_type.is_empty() { OCI_MANIFEST.to_string() } else { media_type };
    Ok(LoadedImage {
        manifest_digest: digest.clone(),
        manifest_media_type: media_type,
        manifest_bytes: bytes,
        config_digest,
        config_media_type,
        config_bytes,
        config,
        layers,
    })
}

/// Load a named image.
pub fn load_named(store: &Store, name: &str) -> Result<(ImageRecord, LoadedImage)> {
    let record = store.resolve_image(name)?;
    let image = load_image(store, &record.digest()?)?;
    Ok((record, image))
}

/// Every blob an image needs: manifest (and index), config, layers.
pub fn image_blobs(store: &Store, digest: &Digest) -> Result<Vec<Digest>> {
    let bytes = store.read_blob(digest)?;
    let doc = parse_json(&bytes, &format!("manifest {digest}"))?;
    let mut out = vec![digest.clone()];
    if let Some(ms) = doc["manifests"].as_array() {
        for m in ms {
            let d = field_digest(m, "index")?;
            if store.has_blob(&d) {
                out.extend(image_blobs(store, &d)?);
            }
        }
        return Ok(out);
    }
    out.push(field_digest(&doc["config"], "manifest")?);
    for l in doc["layers"].as_array().into_iter().flatten() {
        out.push(field_digest(l, "manifest")?);
    }
    Ok(out)
}

/// An image manifest (OCI, or Docker schema2 by media type) as the bytes rbuild stores, built with oci-spec.
pub fn manifest_json(media_type: &str, config: Descriptor, layers: &[LayerRef]) -> Result<Vec<u8>> {
    let layers = layers.iter().map(|l| descriptor(&l.media_type, l.size, &l.digest)).collect::<Result<Vec<_>>>()?;
    let manifest = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::from(media_type))
        .config(config)
        .layers(layers)
        .build()
        .map_err(|e| malformed("image manifest", &e.to_string()))?;
    serde_json::to_vec(&manifest).map_err(|source| Error::Json { what: "image manifest".into(), source })
}

/// Serialise a JSON document the way rbuild stores them (compact, keys in the order given).
pub fn to_json(v: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|source| Error::Json { what: "image document".into(), source })
}

/// The media types a new image is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaTypes {
    #[default]
    Oci,
    /// Docker schema2 (`--oci-mediatypes=false`).
    Docker,
}

/// One history entry of a new image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub created_by: String,
    pub empty_layer: bool,
}

/// Write a new image into the store: `config` is the complete config except `rootfs` and the new history
/// entries, `base_layers`/`base_diff_ids` come from the base image, `layers` are the new ones in order.
/// Returns the stored image (its manifest is not named; tag it with [`Store::tag_image`]).
pub fn write_image(
    store: &Store,
    mut config: Value,
    base_layers: &[LayerRef],
    new_layers: &[crate::layer::LayerInfo],
    history: &[HistoryEntry],
    created: &str,
    media: MediaTypes,
) -> Result<LoadedImage> {
    let mut diff_ids: Vec<Value> = config["rootfs"]["diff_ids"].as_array().cloned().unwrap_or_default();
    diff_ids.extend(new_layers.iter().map(|l| Value::String(l.diff_id.to_string())));
    if diff_ids.len() != base_layers.len() + new_layers.len() {
        return Err(malformed("image config", "the base config's diff_ids do not match the base layers"));
    }
    config["rootfs"] = serde_json::json!({ "type": "layers", "diff_ids": diff_ids });
    let mut hist = config["history"].as_array().cloned().unwrap_or_default();
    for h in history {
        let mut e = serde_json::json!({ "created": created, "created_by": h.created_by, "comment": "rbuild" });
        if h.empty_layer {
            e["empty_layer"] = Value::Bool(true);
        }
        hist.push(e);
    }
    config["history"] = Value::Array(hist);
    config["created"] = Value::String(created.to_string());
    let config_bytes = to_json(&config)?;
    let config_digest = store.put_blob_bytes(&config_bytes)?;
    let (manifest_type, config_type) = match media {
        MediaTypes::Oci => (OCI_MANIFEST, OCI_CONFIG),
        MediaTypes::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG),
    };
    let mut layers: Vec<LayerRef> = base_layers.to_vec();
    layers.extend(new_layers.iter().map(|l| {
        LayerRef {
            digest: l.digest.clone(),
            size: l.size,
            media_type: match media {
                MediaTypes::Oci => l.compression.oci_media_type(),
                MediaTypes::Docker => l.compression.docker_media_type(),
            }
            .to_string(),
        }
    }));
    let config_desc = descriptor(config_type, config_bytes.len() as u64, &config_digest)?;
    let manifest_bytes = manifest_json(manifest_type, config_desc, &layers)?;
    let manifest_digest = store.put_blob_bytes(&manifest_bytes)?;
    Ok(LoadedImage {
        manifest_digest,
        manifest_media_type: manifest_type.to_string(),
        manifest_bytes,
        config_digest,
        config_media_type: config_type.to_string(),
        config_bytes,
        config,
        layers,
    })
}
