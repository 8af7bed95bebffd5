//! The build engine: a [`BuildRequest`] (what to build) is carried out on a [`Worker`] (the store and the
//! [`ports`] steps run and images resolve through). The Dockerfile is lowered ([`graph`]) into the stages the
//! target needs; the scheduler ([`solve`]) starts every stage as soon as the stages it uses are built, as stage
//! slots allow, and stops starting new ones after a failure. Each stage is built instruction by instruction
//! ([`stage`]): RUN through the [`ports::Executor`] (what it changed becomes the layer and the layer's snapshot),
//! COPY/ADD from the context, a named context, another stage, an image or a fetched source, the rest as image
//! config changes. Step results are cached under keys built in [`cache`], the one file that says what
//! invalidates what. Progress goes out as [`progress::Event`]s.

mod build;
mod cache;
pub mod config;
pub mod graph;
pub mod multi_platform;
pub mod ports;
pub mod progress;
pub mod remote_cache;
mod request;
pub mod request_flags;
mod result;
mod session;
pub mod sharing;
mod solve;
mod source_epoch;
mod stage;
pub mod subrequests;
#[cfg(test)]
mod tests;

pub use build::plan;
pub(crate) use build::{Built, build_one, export_cache, import_cache, merge_cache_records};
pub use config::ImageConfig;
pub use graph::{Graph, Source};
pub use ports::{Network, Platform, PullPolicy, Worker};
pub use progress::{Event, JsonProgress, NoProgress, PlainProgress, ProgressSink, Stream};
pub use request::{BuildRequest, ContextTimes, NamedContext, SecretSource};
pub use result::{BuildResult, IndexDocument};
pub(crate) use session::Session;
pub use session::ThrowawayMounts;
pub use stage::StageResult;

/// Build the Dockerfile; returns the image written (and tagged with `opts.tags`): for several platforms, an image
/// index of one image per platform.
pub fn build(
    worker: &Worker<'_>,
    opts: &BuildRequest,
    progress: &dyn ProgressSink,
) -> crate::error::Result<BuildResult> {
    let platforms = opts.target_platforms();
    // BuildKit's BUILDKIT_MULTI_PLATFORM=1 makes an index of even one platform's image.
    let forced = opts.build_args.get("BUILDKIT_MULTI_PLATFORM").is_some_and(|v| v == "1" || v == "true");
    if platforms.len() > 1 || forced {
        return multi_platform::build(worker, opts, &platforms, progress);
    }
    let built = build_one(worker, opts, progress)?;
    export_cache(worker, opts, &built.cache_records, &built.mounts_used, progress)?;
    Ok(built.result)
}
