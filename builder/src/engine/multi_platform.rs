//! One build for several platforms (`--platform linux/amd64,linux/arm64`): a build per platform, all at once over
//! the same worker, so a step they share (a `FROM --platform=$BUILDPLATFORM` stage with the same inputs) runs once
//! — the others wait for its claim and take it from the cache — then an image index of the platforms' images,
//! which the build's names are given. Progress lines name the platform (`[linux/arm64 build 2/4]`), and step
//! numbers stay unique across the platforms.

use serde_json::json;

use super::progress::{Labelled, ProgressSink, StepNumbers};
use super::{BuildRequest, BuildResult, IndexDocument, Worker};
use crate::error::{Error, Result};
use crate::export::image::{MediaTypes, descriptor};
use crate::platform::Platform;

/// The media type of an index of `media`'s images.
fn index_media_type(media: MediaTypes) -> &'static str {
    match media {
        MediaTypes::Oci => crate::export::image::OCI_INDEX,
        MediaTypes::Docker => crate::export::image::DOCKER_LIST,
    }
}

/// Build `req` for each of `platforms` at once and make the index of their images; the request's names are
/// given to the index.
pub(super) fn build(
    worker: &Worker<'_>,
    req: &BuildRequest,
    platforms: &[Platform],
    progress: &dyn ProgressSink,
) -> Result<BuildResult> {
    // The caches are imported once, for every platform (an inline cache of an index holds each platform's).
    super::import_cache(worker, req, progress);
    let numbers = StepNumbers::default();
    let results: Vec<Result<super::Built>> = std::thread::scope(|scope| {
        let handles: Vec<_> = platforms
            .iter()
            .map(|platform| {
                let mut one = req.clone();
                one.platform = platform.clone();
                one.platforms = Vec::new();
                one.tags = Vec::new();
                one.cache_from = Vec::new();
                let numbers = &numbers;
                scope.spawn(move || {
                    let sink = Labelled::new(progress, platform.to_string(), numbers);
                    super::build_one(worker, &one, &sink)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Err(Error::Cancelled))).collect()
    });
    let mut built = Vec::new();
    for r in results {
        built.push(r?);
    }
    let manifests: Vec<serde_json::Value> = built
        .iter()
        .zip(platforms)
        .map(|(b, p)| {
            let image = &b.result.image;
            let mut platform = json!({"architecture": p.architecture, "os": p.os});
            if let Some(v) = &p.variant {
                platform["variant"] = json!(v);
            }
            json!({
                "mediaType": image.manifest_media_type,
                "digest": image.manifest_digest.as_str(),
                "size": image.manifest_bytes.len(),
                "platform": platform,
            })
        })
        .collect();
    let media_type = index_media_type(req.media_types);
    let index = json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests});
    let bytes = serde_json::to_vec(&index).map_err(|source| Error::Json { what: "image index".into(), source })?;
    let store = worker.store;
    let digest = store.put_blob_bytes(&bytes)?;
    let desc = descriptor(media_type, bytes.len() as u64, &digest)?;
    for t in &req.tags {
        store.tag_image(t, &desc)?;
    }
    let (records, mounts) = super::merge_cache_records(&built);
    super::export_cache(worker, req, &records, &mounts, progress)?;
    let executed = built.iter().map(|b| b.result.executed).sum();
    let cached = built.iter().map(|b| b.result.cached).sum();
    let per_platform: Vec<(Platform, BuildResult)> =
        platforms.iter().cloned().zip(built.into_iter().map(|b| b.result)).collect();
    let host = per_platform.iter().position(|(p, _)| *p == Platform::host()).unwrap_or(0);
    let representative = &per_platform[host].1;
    Ok(BuildResult {
        image: representative.image.clone(),
        snapshots: representative.snapshots.clone(),
        ids: representative.ids.clone(),
        manifest_digest: digest,
        config_digest: representative.config_digest.clone(),
        executed,
        cached,
        index: Some(IndexDocument { media_type: media_type.to_string(), bytes }),
        per_platform,
    })
}
