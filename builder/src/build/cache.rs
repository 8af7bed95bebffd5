//! The build cache index: `cache/<key>.json` records what a RUN or COPY produced (its layer, or none), under a
//! key that covers everything the result depends on. A record is written only after its layer blob is stored;
//! a record whose blob has gone (pruned) is a miss, and so is one that is empty or unreadable (records are not
//! synced: after a crash one may be).

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::export::image::LayerRef;
use crate::store::Store;

/// Bump when anything that feeds keys changes meaning.
const CACHE_FORMAT: &str = "rbuild-cache-v2";

/// A key over the parts, in order (each part delimited, so parts cannot run into each other).
pub(crate) fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(CACHE_FORMAT.as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// A cached result: the layer the step made (None when it changed no file) and its diff_id.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub layer: Option<(LayerRef, Digest)>,
}

pub(crate) fn get(store: &Store, key: &str) -> Option<Cached> {
    let bytes = std::fs::read(store.root().join("cache").join(format!("{key}.json"))).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    if v["layer"].is_null() {
        return Some(Cached { layer: None });
    }
    let digest = Digest::parse(v["layer"]["digest"].as_str()?).ok()?;
    if !store.has_blob(&digest) {
        return None;
    }
    let layer = LayerRef {
        digest,
        size: v["layer"]["size"].as_u64()?,
        media_type: v["layer"]["mediaType"].as_str()?.to_string(),
    };
    let diff_id = Digest::parse(v["layer"]["diffID"].as_str()?).ok()?;
    Some(Cached { layer: Some((layer, diff_id)) })
}

pub(crate) fn put(store: &Store, key: &str, cached: &Cached) -> crate::error::Result<()> {
    let layer = match &cached.layer {
        Some((l, diff_id)) => json!({
            "digest": l.digest.as_str(), "size": l.size, "mediaType": l.media_type, "diffID": diff_id.as_str()
        }),
        None => Value::Null,
    };
    let bytes = serde_json::to_vec(&json!({ "layer": layer }))
        .map_err(|source| crate::error::Error::Json { what: "cache record".into(), source })?;
    // The record is written after its blob is synced; the record itself is only a cache (a lost one is a miss).
    crate::store::write_atomically_unsynced(&store.root().join("cache").join(format!("{key}.json")), &bytes)
}
