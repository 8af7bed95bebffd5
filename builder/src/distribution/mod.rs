//! Moving images between the store and registries with the registry client: `pull` (manifest or index for the
//! host platform, config and layers streamed into the store, verified, concurrently, skipping blobs the store
//! has; then named), `push` (blobs the registry lacks uploaded, mounted from another repository of the same
//! registry when rbuild knows one that has them; the manifest's exact bytes put under each tag) and a small record
//! of where blobs came from (`sources/<hex>`: one `registry/repository` per line) that makes mounts possible.

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

/// Run `work` on every item with at most `workers` threads; returns the first error (the others finish their
/// current item and stop taking new ones).
pub(crate) fn for_each_bounded<T: Sync>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T) -> crate::error::Result<()> + Sync,
) -> crate::error::Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let results: Vec<crate::error::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.clamp(1, items.len().max(1)))
            .map(|_| {
                scope.spawn(|| -> crate::error::Result<()> {
                    while !failed.load(Ordering::SeqCst) {
                        let Some(item) = items.get(next.fetch_add(1, Ordering::SeqCst)) else { break };
                        if let Err(e) = work(item) {
                            failed.store(true, Ordering::SeqCst);
                            return Err(e);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(crate::error::Error::Malformed { what: "transfer".into(), reason: "a worker panicked".into() })
                })
            })
            .collect()
    });
    results.into_iter().collect()
}
