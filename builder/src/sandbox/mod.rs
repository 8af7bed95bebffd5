//! The sandbox: the engine's [`Executor`](crate::engine::ports::Executor) over rbuild-runtime's Linux
//! namespaces, and everything it needs around a run — how the root filesystem is made from snapshots
//! ([`snapshotter`]: overlayfs, fuse-overlayfs or copies, with the fallback between them), `RUN --mount`s
//! ([`mounts`]), tree operations inside the user namespace ([`tree_ops`]), how sandbox ids show on disk
//! ([`idmap`]) — and `rbuild run` ([`run_image`]) on top of the same executor.

pub mod emulation;
pub mod executor;
pub mod idmap;
pub mod isolation;
pub mod mounts;
pub mod run_image;
pub mod snapshotter;
pub mod ssh_proxy;
pub mod tree_ops;

pub use executor::SandboxExecutor;
pub use idmap::id_map_for;

use std::sync::Arc;

use rbuild_runtime::{Runtime, UsernsMode};

use crate::distribution::{NetworkFetcher, StoreImageSource};
use crate::engine::Worker;
use crate::error::Result;
use crate::store::Store;

/// The worker real builds use: steps in this sandbox, images from the store, OCI layouts and (with `registry`)
/// registries, ADD sources over the network, tree operations inside the user namespace when subordinate ids are
/// mapped, `jobs` stage slots (0: per CPU).
pub fn sandboxed_worker<'a>(
    store: &'a Store,
    runtime: Runtime,
    userns: UsernsMode,
    isolation: isolation::IsolationChoice,
    registry: Option<Arc<rbuild_registry::Client>>,
    jobs: usize,
) -> Result<Worker<'a>> {
    let executor = SandboxExecutor::detecting(store, runtime.clone(), userns, isolation)?;
    let userns = executor.userns();
    let images = StoreImageSource::new(store, registry.clone());
    let fetcher = NetworkFetcher::new(registry.clone()).remembering_downloads(store.root().join("downloads"));
    let mut worker = Worker::new(store, Box::new(executor), Box::new(images), Box::new(fetcher), jobs);
    worker.tree_ops = tree_ops::tree_ops_for(&runtime, userns);
    worker.id_map = id_map_for(userns);
    worker.written_owners_root_only =
        !rustix::process::geteuid().is_root() && matches!(userns, UsernsMode::Subuid { .. });
    worker.registry = registry;
    Ok(worker)
}
