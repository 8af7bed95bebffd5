//! Moving images between the store and registries with the registry client: `pull` (manifest or index for the
//! host platform, config and layers streamed into the store, verified, concurrently, skipping blobs the store
//! has; then named), `push` (blobs the registry lacks uploaded, mounted from another repository of the same
//! registry when rbuild knows one that has them; the manifest's exact bytes put under each tag) and a small record
//! of where blobs came from (`sources/<hex>`: one `registry/repository` per line) that makes mounts possible.

mod bounded;
mod fetcher;
mod image_source;
mod pull;
mod push;
mod sources;
mod url_cache;

pub use fetcher::NetworkFetcher;
pub use image_source::StoreImageSource;
pub use pull::{PullReport, ensure_image, manifest_blobs, pull, pull_for};
pub use push::{PushReport, push, push_artifact};
