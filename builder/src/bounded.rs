//! Transfers several at a time (pulls, pushes, remote layers fetched by the store): a fixed number of worker
//! threads taking items in order, stopping at the first failure.

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
                h.join()
                    .unwrap_or_else(|_| Err(crate::error::Error::WorkerPanicked { what: "a transfer worker".into() }))
            })
            .collect()
    });
    results.into_iter().collect()
}
