//! The build cache: the keys of every kind of step, and the index that maps a key to what the step produced.
//!
//! What invalidates what — every key starts from the stage's key before the step (its parent), so a change
//! anywhere below a step invalidates it and everything above:
//! - a stage's first key is its base: `scratch`, the base image's manifest digest, the key of the stage it is
//!   built on, or the checksum of a named directory context's files;
//! - after each step the stage's key becomes the step's key with the diff_id of what it produced ([`after_step`]),
//!   so the key follows content: a step re-run (`--no-cache-filter`) that writes something else changes it;
//! - RUN: the command (argv, with SHELL applied), its environment (ARGs in scope and ENV; proxy build args are
//!   left out, as in BuildKit), WORKDIR, USER, the network mode, a heredoc script's text, and each mount: its
//!   kind, target, id and options, and for bind mounts the content of the files it mounts (context files by
//!   their checksum, a stage's or image's files by that stage's key) — never secrets or SSH sockets;
//! - WORKDIR that creates its directory: the path;
//! - COPY/ADD from the context or a named directory: the checksum of exactly the files selected (names, content,
//!   modes, after `.dockerignore` and `--exclude`), the destination, `--chown`, `--chmod`, `--exclude`,
//!   `--parents`, the archives ADD unpacks; with `--link` the parent is left out ([`LINK_BASE`]) and the stage's
//!   key chains afterwards ([`after_link`]);
//! - COPY/ADD `--from` a stage or an image: that stage's or image's key (which follows its content), the source
//!   paths, the destination and the same flags;
//! - files rbuild writes for a step (heredocs, downloaded URLs, git checkouts): their checksum.
//!
//! The index: `cache/<key>.json` records what a step produced (its layer, or none) and when it ran. A record is written only
//! after its layer blob is stored; a record whose blob has gone (pruned) is a miss, and so is one that is empty or
//! unreadable (records are not synced: after a crash one may be).

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::export::image::LayerRef;
use crate::store::Store;

/// Bump when anything that feeds keys changes meaning.
const CACHE_FORMAT: &str = "rbuild-cache-v3";

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

/// The parent part of a `--link` copy's key: the layer does not depend on the stage below it.
pub(crate) const LINK_BASE: &str = "link";

/// The key of an empty stage (`FROM scratch`).
pub(crate) fn scratch() -> String {
    key(&["scratch"])
}

/// The key of a stage made of a named directory context's files.
pub(crate) fn context_image(checksum: &str) -> String {
    key(&["context", checksum])
}

/// The stage's key after a step: the step's key and what it produced.
pub(crate) fn after_step(step_key: &str, diff_id: Option<&Digest>) -> String {
    key(&[step_key, diff_id.map_or("-", Digest::as_str)])
}

/// The stage's key after a `--link` copy: what follows depends on both the stage below and the copy.
pub(crate) fn after_link(parent_key: &str, copy_result_key: &str) -> String {
    key(&[parent_key, "linked", copy_result_key])
}

/// WORKDIR creating its directory.
pub(crate) fn workdir(parent: &str, path: &str) -> String {
    key(&[parent, "WORKDIR", path])
}

/// What a RUN step's result depends on.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunKey<'a> {
    pub parent: &'a str,
    pub argv: &'a [String],
    /// `KEY=value` entries, without proxy build args.
    pub env: &'a [String],
    pub workdir: &'a str,
    pub user: &'a str,
    /// One line per mount (see [`mount_part`]).
    pub mounts: &'a [String],
    pub network: &'a str,
    pub script: &'a str,
    /// The emulated platform the step ran for; empty for native steps (whose keys it leaves as they were).
    pub platform: &'a str,
}

pub(crate) fn run(k: &RunKey<'_>) -> String {
    let (argv, env, mounts) =
        (serde_json::to_string(k.argv).unwrap_or_default(), k.env.join("\n"), k.mounts.join("\n"));
    let mut parts = vec![k.parent, "RUN", &argv, &env, k.workdir, k.user, &mounts, k.network, k.script];
    if !k.platform.is_empty() {
        parts.push(k.platform);
    }
    key(&parts)
}

/// A bind mount's part of a RUN key: its source path and the key of the files it mounts (for the context, their
/// checksum; for a stage or image, its key).
pub(crate) fn bind_mount_part(source: &str, content_key: &str, target: &str, read_only: Option<bool>) -> String {
    format!("bind {source} from {content_key} at {target} {read_only:?}")
}

/// Any other mount's part of a RUN key: what it is and where, never its content (caches, tmpfs, secrets, SSH).
pub(crate) fn mount_part(m: &crate::dockerfile::RunMount) -> String {
    format!("{:?} {:?} {:?} {:?} {:?}", m.kind, m.target, m.id, m.read_only, m.source)
}

/// COPY/ADD `--from` a stage or image: its files stand for themselves through `source_key`.
pub(crate) fn copy_from_image(
    base: &str,
    keyword: &str,
    source_key: &str,
    sources: &[String],
    dest: &str,
    modifiers: &str,
) -> String {
    let sources = serde_json::to_string(sources).unwrap_or_default();
    key(&[base, keyword, "from", source_key, &sources, dest, modifiers])
}

/// COPY/ADD of context (or named directory) files: their checksum, and the archives ADD unpacks.
pub(crate) fn copy_from_context(
    base: &str,
    keyword: &str,
    checksum: &str,
    dest: &str,
    modifiers: &str,
    archives: &str,
) -> String {
    key(&[base, keyword, checksum, dest, modifiers, archives])
}

/// The name of the record of a context COPY's previous run (any content), for incremental COPY.
pub(crate) fn copy_record(root: &str, sources: &[String], dest: &str, modifiers: &str) -> String {
    let sources = serde_json::to_string(sources).unwrap_or_default();
    key(&["copy-files", root, &sources, dest, modifiers])
}

/// Files rbuild wrote for a step (`kind`: heredoc, url, url-unpack, git), by their checksum.
pub(crate) fn generated(
    parent: &str,
    keyword: &str,
    kind: &str,
    checksum: &str,
    dest: &str,
    modifiers: &str,
) -> String {
    key(&[parent, keyword, kind, checksum, dest, modifiers])
}

/// A cached result: the layer the step made (None when it changed no file) and its diff_id, and when the step
/// ran (RFC 3339; an image made only of cached steps takes its times from them, so it is the same image again).
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub layer: Option<(LayerRef, Digest)>,
    pub created: Option<String>,
}

pub(crate) fn get(store: &Store, key: &str) -> Option<Cached> {
    let bytes = std::fs::read(store.root().join("cache").join(format!("{key}.json"))).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let created = v["created"].as_str().map(str::to_string);
    if v["layer"].is_null() {
        return Some(Cached { layer: None, created });
    }
    let digest = Digest::parse(v["layer"]["digest"].as_str()?).ok()?;
    // A remote layer (imported from a registry cache, not fetched yet) is a hit: it is fetched when needed.
    if !store.has_or_knows_blob(&digest) {
        return None;
    }
    let layer = LayerRef {
        digest,
        size: v["layer"]["size"].as_u64()?,
        media_type: v["layer"]["mediaType"].as_str()?.to_string(),
    };
    let diff_id = Digest::parse(v["layer"]["diffID"].as_str()?).ok()?;
    Some(Cached { layer: Some((layer, diff_id)), created })
}

pub(crate) fn put(store: &Store, key: &str, cached: &Cached) -> crate::error::Result<()> {
    let layer = match &cached.layer {
        Some((l, diff_id)) => json!({
            "digest": l.digest.as_str(), "size": l.size, "mediaType": l.media_type, "diffID": diff_id.as_str()
        }),
        None => Value::Null,
    };
    let mut record = json!({ "layer": layer });
    if let Some(created) = &cached.created {
        record["created"] = Value::String(created.clone());
    }
    let bytes = serde_json::to_vec(&record)
        .map_err(|source| crate::error::Error::Json { what: "cache record".into(), source })?;
    // The record is written after its blob is synced; the record itself is only a cache (a lost one is a miss).
    crate::fsops::write_atomically_unsynced(&store.root().join("cache").join(format!("{key}.json")), &bytes)
}
