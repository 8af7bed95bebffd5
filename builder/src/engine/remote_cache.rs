//! Sharing the build cache between machines: `--cache-to` exports the cache records a build used or made
//! (`mode=min`: the final image's stages; `mode=max`: every stage) and, with `mounts=true`, the contents of the
//! cache mounts its RUN steps used; `--cache-from` imports them before a build, so a CI runner that starts empty
//! gets cache hits and warm cache mounts. Destinations: a registry (`type=registry,ref=REF`) or a local OCI layout
//! (`type=local,dest=DIR` / `src=DIR`).
//!
//! The format is an OCI artifact (documented in `docs/cache-format.md`): an image manifest with `artifactType`
//! `application/vnd.rbuild.cache.v1`, a config blob `application/vnd.rbuild.cache.config.v1+json`
//! (`{"version": 1, "records": [{"key", "layer"}], "mounts": [{"name", "layer"}]}`) and every layer the records
//! and mounts name as the manifest's layers (so registries keep them).

use std::fs;
use std::path::{Path, PathBuf};

use rbuild_registry::{Client, Reference};
use serde_json::{Value, json};

use super::cache::{self, Cached};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::export::image::LayerRef;
use crate::layer::{ApplyMode, ApplyOptions, LayerOptions, apply_tar, collect_tree, decompressed};
use crate::store::Store;

pub const ARTIFACT_TYPE: &str = "application/vnd.rbuild.cache.v1";
pub const CONFIG_TYPE: &str = "application/vnd.rbuild.cache.config.v1+json";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Where a cache goes or comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    Registry(Reference),
    Local(PathBuf),
    /// `type=inline`: the records ride in the built image's config (`rbuild.cache.v1`), as BuildKit's inline
    /// cache does; a later `--cache-from IMAGE` reads them from that image.
    Inline,
}

/// The image config key that carries inline cache records.
pub const INLINE_KEY: &str = "rbuild.cache.v1";

/// One `--cache-to` / `--cache-from` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    pub location: CacheLocation,
    pub mode_max: bool,
    pub mounts: bool,
}

impl std::fmt::Display for CacheSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location {
            CacheLocation::Registry(r) => write!(f, "registry {}", r.familiar()),
            CacheLocation::Local(p) => write!(f, "local {}", p.display()),
            CacheLocation::Inline => f.write_str("the image (inline)"),
        }
    }
}

impl CacheSpec {
    /// Parse `type=registry,ref=REF[,mode=min|max][,mounts=true]` or `type=local,dest=DIR|src=DIR`; a bare value
    /// is a registry reference (as buildx takes it).
    pub fn parse(spec: &str) -> std::result::Result<CacheSpec, String> {
        if !spec.contains('=') {
            let r = Reference::parse(spec).map_err(|e| e.to_string())?;
            return Ok(CacheSpec { location: CacheLocation::Registry(r), mode_max: false, mounts: false });
        }
        let mut kind = "registry".to_string();
        let (mut reference, mut dir, mut mode_max, mut mounts) = (None, None, false, false);
        for field in spec.split(',') {
            let (k, v) = field.split_once('=').ok_or_else(|| format!("{field:?} is not KEY=VALUE"))?;
            match k.trim() {
                "type" => kind = v.trim().to_string(),
                "ref" => reference = Some(v.trim().to_string()),
                "dest" | "src" => dir = Some(PathBuf::from(v.trim())),
                "mode" => {
                    mode_max = match v.trim() {
                        "max" => true,
                        "min" => false,
                        other => return Err(format!("mode={other}: use min or max")),
                    }
                }
                "mounts" => mounts = v.trim() == "true",
                // Accepted and meaningless here (BuildKit's knobs).
                "compression" | "compression-level" | "force-compression" | "oci-mediatypes" | "ignore-error" => {}
                other => return Err(format!("unknown field {other:?}")),
            }
        }
        let location = match kind.as_str() {
            "registry" => CacheLocation::Registry(
                Reference::parse(&reference.ok_or("type=registry needs ref=REF")?).map_err(|e| e.to_string())?,
            ),
            "local" => CacheLocation::Local(dir.ok_or("type=local needs dest=DIR (or src=DIR)")?),
            "inline" => CacheLocation::Inline,
            other => return Err(format!("unknown cache type {other:?} (registry, local)")),
        };
        Ok(CacheSpec { location, mode_max, mounts })
    }
}

fn layer_json(l: &LayerRef, diff_id: &Digest) -> Value {
    json!({"digest": l.digest.as_str(), "size": l.size, "mediaType": l.media_type, "diffID": diff_id.as_str()})
}

fn json_bytes(v: &Value, what: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|source| Error::Json { what: what.into(), source })
}

/// Export `records` (and the named cache mounts) to the spec's location; returns how many records went.
pub(crate) fn export(
    store: &Store,
    client: Option<&Client>,
    spec: &CacheSpec,
    records: &[(String, Cached)],
    mounts: &[String],
    layer_opts: &LayerOptions,
) -> Result<usize> {
    let mut seen = std::collections::BTreeSet::new();
    let mut record_json = Vec::new();
    let mut layers: Vec<(Digest, u64, String)> = Vec::new();
    let add_layer = |l: &LayerRef, layers: &mut Vec<(Digest, u64, String)>| {
        if !layers.iter().any(|(d, _, _)| *d == l.digest) {
            layers.push((l.digest.clone(), l.size, l.media_type.clone()));
        }
    };
    for (key, c) in records {
        if !seen.insert(key.clone()) {
            continue;
        }
        let layer = match &c.layer {
            Some((l, diff_id)) => {
                add_layer(l, &mut layers);
                layer_json(l, diff_id)
            }
            None => Value::Null,
        };
        let mut record = json!({"key": key, "layer": layer});
        if let Some(created) = &c.created {
            record["created"] = Value::String(created.clone());
        }
        record_json.push(record);
    }
    let mut mount_json = Vec::new();
    for name in mounts {
        let dir = store.root().join("mounts").join(name);
        if !dir.is_dir() {
            continue;
        }
        let info = store.write_layer(&collect_tree(&dir)?, layer_opts)?;
        let l = LayerRef {
            digest: info.digest.clone(),
            size: info.size,
            media_type: info.compression.oci_media_type().to_string(),
        };
        add_layer(&l, &mut layers);
        mount_json.push(json!({"name": name, "layer": layer_json(&l, &info.diff_id)}));
    }
    let config = json!({"version": 1, "records": record_json, "mounts": mount_json});
    let config_bytes = json_bytes(&config, "cache config")?;
    let config_digest = store.put_blob_bytes(&config_bytes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest.as_str(), "size": config_bytes.len()},
        "layers": layers.iter().map(|(d, s, t)| json!({"mediaType": t, "digest": d.as_str(), "size": s})).collect::<Vec<_>>(),
    });
    let manifest_bytes = json_bytes(&manifest, "cache manifest")?;
    let mut blobs: Vec<Digest> = vec![config_digest];
    blobs.extend(layers.iter().map(|(d, _, _)| d.clone()));
    match &spec.location {
        CacheLocation::Registry(r) => {
            let client = client.ok_or_else(|| no_client(spec))?;
            crate::distribution::push_artifact(store, client, &blobs, MANIFEST_TYPE, &manifest_bytes, r)?;
        }
        CacheLocation::Local(dir) => write_layout(store, dir, &blobs, &manifest_bytes)?,
        // Written into the image config by the build (see `inline_records`).
        CacheLocation::Inline => {}
    }
    Ok(record_json.len())
}

/// The inline form of records, for the image config: only records whose layers the image itself has (mode=min).
pub(crate) fn inline_records(records: &[(String, Cached)], image_layers: &[Digest]) -> Value {
    let mut seen = std::collections::BTreeSet::new();
    let list: Vec<Value> = records
        .iter()
        .filter(|(k, c)| {
            seen.insert(k.clone()) && c.layer.as_ref().is_none_or(|(l, _)| image_layers.contains(&l.digest))
        })
        .map(|(k, c)| {
            let layer = c.layer.as_ref().map_or(Value::Null, |(l, d)| layer_json(l, d));
            let mut record = json!({"key": k, "layer": layer});
            if let Some(created) = &c.created {
                record["created"] = Value::String(created.clone());
            }
            record
        })
        .collect();
    json!({"version": 1, "records": list})
}

fn no_client(spec: &CacheSpec) -> Error {
    Error::BadCache { spec: spec.to_string(), reason: "no registry client (offline?)".into() }
}

/// A one-manifest OCI layout at `dir` (blobs added to whatever is there; index.json replaced).
fn write_layout(store: &Store, dir: &Path, blobs: &[Digest], manifest: &[u8]) -> Result<()> {
    let blob_dir = dir.join("blobs/sha256");
    fs::create_dir_all(&blob_dir).map_err(Error::io("create", &blob_dir))?;
    for d in blobs {
        let to = blob_dir.join(d.hex());
        if !to.exists() {
            store.ensure_blob(d)?;
            let from = store.blob_path(d);
            if fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to).map_err(Error::io("copy", &to))?;
            }
        }
    }
    let manifest_digest = Digest::of(manifest);
    fs::write(blob_dir.join(manifest_digest.hex()), manifest).map_err(Error::io("write", &blob_dir))?;
    fs::write(dir.join("oci-layout"), b"{\"imageLayoutVersion\":\"1.0.0\"}").map_err(Error::io("write", dir))?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MANIFEST_TYPE, "artifactType": ARTIFACT_TYPE,
            "digest": manifest_digest.as_str(), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "cache"},
        }],
    });
    crate::fsops::write_atomically(&dir.join("index.json"), &json_bytes(&index, "cache layout index")?)
}

/// Puts a blob (digest, size if known) into the store from where a cache lives.
type BlobFetcher<'a> = Box<dyn Fn(&Digest, Option<u64>) -> Result<()> + 'a>;

/// Reads a manifest (by digest, verified) from where a cache lives.
type ManifestFetcher<'a> = Box<dyn Fn(&Digest) -> Result<Vec<u8>> + 'a>;

/// How a cache's blobs reach the store: the config and cache mounts' contents are fetched now; a record's layer
/// only when `lazy_from` names where it is (a registry): it stays a remote layer, fetched when first needed.
struct Fetchers<'a> {
    fetch: BlobFetcher<'a>,
    lazy_from: Option<(String, String)>,
}

impl Fetchers<'_> {
    fn layer(&self, store: &Store, l: &LayerRef) -> Result<()> {
        match &self.lazy_from {
            Some((registry, repository)) if !store.has_blob(&l.digest) => {
                store.record_source(&l.digest, registry, repository);
                Ok(())
            }
            _ => (self.fetch)(&l.digest, Some(l.size)),
        }
    }
}

/// Import a cache: its records into the local cache index and, when it has them, the cache mounts' contents into
/// mounts this store does not have yet. Returns the records imported. The records' layers of a registry cache stay
/// remote until a build needs their bytes (a fully cached build never does); a local cache's are copied in.
pub(crate) fn import(store: &Store, client: Option<&Client>, spec: &CacheSpec) -> Result<usize> {
    // How to get a blob into the store, and the manifest's bytes.
    let (manifest_bytes, fetch, fetch_manifest): (Vec<u8>, BlobFetcher<'_>, ManifestFetcher<'_>) = match &spec.location
    {
        CacheLocation::Registry(r) => {
            let client = client.ok_or_else(|| no_client(spec))?;
            let m = client.get_manifest(r).map_err(|e| Error::Registry(Box::new(e)))?;
            let r2 = r.clone();
            let r = r.clone();
            let fetch = move |d: &Digest, size: Option<u64>| -> Result<()> {
                if store.has_blob(d) {
                    return Ok(());
                }
                let mut w = store.blob_writer()?;
                client
                    .fetch_blob(&r.registry, &r.repository, d.as_str(), size, &mut w)
                    .map_err(|e| Error::Registry(Box::new(e)))?;
                w.commit()?;
                Ok(())
            };
            let c = client;
            let fetch_manifest = move |d: &Digest| -> Result<Vec<u8>> {
                let what = r2.familiar();
                let m = c
                    .get_manifest_by(&r2.registry, &r2.repository, d.as_str(), &what)
                    .map_err(|e| Error::Registry(Box::new(e)))?;
                if Digest::of(&m.bytes) != *d {
                    return Err(Error::ContentMismatch {
                        what: format!("manifest {d} of {what}"),
                        expected: d.to_string(),
                        actual: Digest::of(&m.bytes).to_string(),
                    });
                }
                Ok(m.bytes)
            };
            (m.bytes, Box::new(fetch), Box::new(fetch_manifest))
        }
        CacheLocation::Inline => {
            return Err(Error::BadRequest {
                what: "--cache-from type=inline".into(),
                reason: "name the image to read inline cache from: --cache-from REF".into(),
            });
        }
        CacheLocation::Local(dir) => {
            let index: Value =
                serde_json::from_slice(&fs::read(dir.join("index.json")).map_err(Error::io("read", dir))?)
                    .map_err(|source| Error::Json { what: "cache layout index".into(), source })?;
            let d = Digest::parse(index["manifests"][0]["digest"].as_str().unwrap_or(""))?;
            let bytes = fs::read(dir.join("blobs/sha256").join(d.hex())).map_err(Error::io("read", dir))?;
            if Digest::of(&bytes) != d {
                return Err(Error::ContentMismatch {
                    what: "cache manifest".into(),
                    expected: d.to_string(),
                    actual: Digest::of(&bytes).to_string(),
                });
            }
            let (dir, dir2) = (dir.clone(), dir.clone());
            let fetch = move |d: &Digest, size: Option<u64>| -> Result<()> {
                let p = dir.join("blobs/sha256").join(d.hex());
                let f = fs::File::open(&p).map_err(Error::io("open", &p))?;
                store.put_blob(f, Some((d, size)))?;
                Ok(())
            };
            let fetch_manifest = move |d: &Digest| -> Result<Vec<u8>> {
                let p = dir2.join("blobs/sha256").join(d.hex());
                let bytes = fs::read(&p).map_err(Error::io("read", &p))?;
                if Digest::of(&bytes) != *d {
                    return Err(Error::ContentMismatch {
                        what: format!("manifest {}", p.display()),
                        expected: d.to_string(),
                        actual: Digest::of(&bytes).to_string(),
                    });
                }
                Ok(bytes)
            };
            (bytes, Box::new(fetch), Box::new(fetch_manifest))
        }
    };
    let top: Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|source| Error::Json { what: "cache manifest".into(), source })?;
    // An image index (an inline cache of a multi-platform image): every platform's image carries records.
    let lazy_from = match &spec.location {
        CacheLocation::Registry(r) => Some((r.registry.clone(), r.repository.clone())),
        _ => None,
    };
    let fetchers = Fetchers { fetch, lazy_from };
    let Some(entries) = top["manifests"].as_array() else {
        return import_records(store, spec, &manifest_bytes, &fetchers);
    };
    let mut n = 0;
    for e in entries {
        let d = Digest::parse(e["digest"].as_str().unwrap_or(""))?;
        n += import_records(store, spec, &fetch_manifest(&d)?, &fetchers)?;
    }
    Ok(n)
}

/// Import the records (and cache mounts) of one cache manifest or inline-cache image manifest.
fn import_records(store: &Store, spec: &CacheSpec, manifest_bytes: &[u8], fetchers: &Fetchers<'_>) -> Result<usize> {
    let fetch = &fetchers.fetch;
    let manifest: Value = serde_json::from_slice(manifest_bytes)
        .map_err(|source| Error::Json { what: "cache manifest".into(), source })?;
    let is_artifact = manifest["artifactType"].as_str() == Some(ARTIFACT_TYPE)
        || manifest["config"]["mediaType"].as_str() == Some(CONFIG_TYPE);
    let config_digest = Digest::parse(manifest["config"]["digest"].as_str().unwrap_or(""))?;
    fetch(&config_digest, manifest["config"]["size"].as_u64())?;
    let config: Value = serde_json::from_slice(&store.read_blob(&config_digest)?)
        .map_err(|source| Error::Json { what: "cache config".into(), source })?;
    // An image built with --cache-to type=inline carries its records in its config.
    let config = if is_artifact {
        config
    } else if config[INLINE_KEY].is_object() {
        config[INLINE_KEY].clone()
    } else {
        return Err(Error::BadCache {
            spec: spec.to_string(),
            reason: "neither an rbuild cache nor an image built with --cache-to type=inline".into(),
        });
    };
    let parse_layer = |v: &Value| -> Result<(LayerRef, Digest)> {
        let l = LayerRef {
            digest: Digest::parse(v["digest"].as_str().unwrap_or(""))?,
            size: v["size"].as_u64().unwrap_or(0),
            media_type: v["mediaType"].as_str().unwrap_or("").to_string(),
        };
        Ok((l, Digest::parse(v["diffID"].as_str().unwrap_or(""))?))
    };
    let mut n = 0;
    for r in config["records"].as_array().into_iter().flatten() {
        let Some(key) = r["key"].as_str().filter(|k| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit())) else {
            continue;
        };
        let layer = if r["layer"].is_null() {
            None
        } else {
            let (l, diff_id) = parse_layer(&r["layer"])?;
            fetchers.layer(store, &l)?;
            Some((l, diff_id))
        };
        let created = r["created"].as_str().filter(|c| c.len() == 20 && c.ends_with('Z')).map(str::to_string);
        cache::put(store, key, &Cached { layer, created })?;
        n += 1;
    }
    for m in config["mounts"].as_array().into_iter().flatten() {
        let Some(name) = m["name"].as_str().filter(|n| n.starts_with("cache-") && !n.contains('/')) else { continue };
        let dir = store.root().join("mounts").join(name);
        if dir.is_dir() && fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(false) {
            continue;
        }
        let (l, _) = parse_layer(&m["layer"])?;
        fetch(&l.digest, Some(l.size))?;
        fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let opts = ApplyOptions::new(ApplyMode::Merge, format!("cache mount {name}"));
        apply_tar(decompressed(store.open_blob(&l.digest)?)?, &dir, &opts)?;
    }
    Ok(n)
}
