//! Moving images between the store and registries with the registry client: `pull` (manifest or index for the
//! host platform, config and layers streamed into the store, verified, concurrently, skipping blobs the store
//! has; then named — or, for a build, only the manifest and config, the layers left remote until needed), `push` (blobs the registry lacks uploaded, mounted from another repository of the same
//! registry when rbuild knows one that has them; the manifest's exact bytes put under each tag) and a small record
//! of where blobs came from (the store's `sources/`) that makes mounts and remote layers possible.

mod fetcher;
mod image_source;
mod pull;
mod push;
mod remote_blobs;
mod url_cache;

pub use fetcher::NetworkFetcher;
pub use image_source::StoreImageSource;
pub use pull::{LayerFetch, PullReport, ensure_image, manifest_blobs, pull, pull_for};
pub use push::{PushReport, push, push_artifact};
pub use remote_blobs::LazyRegistry;
