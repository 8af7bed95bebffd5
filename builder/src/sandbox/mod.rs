//! The sandbox: the engine's [`Executor`](crate::engine::ports::Executor) over rbuild-runtime's Linux
//! namespaces, and everything it needs around a run — how the root filesystem is made from snapshots
//! ([`snapshotter`]: overlayfs, fuse-overlayfs or copies, with the fallback between them), `RUN --mount`s
//! ([`mounts`]), tree operations inside the user namespace ([`tree_ops`]), how sandbox ids show on disk
//! ([`idmap`]) — and `rbuild run` ([`run_image`]) on top of the same executor. Where a container forbids
//! namespaces, [`container`] isolation runs steps in the container's own root instead.

pub mod container;
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

use std::path::PathBuf;
use std::sync::Arc;

use rbuild_runtime::{Runtime, UsernsMode};

use crate::distribution::{NetworkFetcher, StoreImageSource};
use crate::engine::Worker;
use crate::error::Result;
use crate::store::Store;

/// The worker real builds use: steps in this sandbox (or, as `isolation` allows, in container isolation), images
/// from the store, OCI layouts and (with `registry`) registries, ADD sources over the network, tree operations
/// inside the user namespace when subordinate ids are mapped, `jobs` stage slots (0: per CPU). `keep`: the build's
/// inputs (context, Dockerfile, secret files), which container isolation keeps out of its steps' reach.
pub fn sandboxed_worker<'a>(
    store: &'a Store,
    runtime: Runtime,
    userns: UsernsMode,
    isolation: isolation::IsolationChoice,
    registry: Option<Arc<rbuild_registry::Client>>,
    jobs: usize,
    keep: &[PathBuf],
) -> Result<Worker<'a>> {
    if let Some(client) = &registry {
        store.attach_remote(client.clone());
    }
    let images = StoreImageSource::new(store, registry.clone());
    let fetcher = NetworkFetcher::new(registry.clone()).remembering_downloads(store.root().join("downloads"));
    if isolation == isolation::IsolationChoice::Container {
        return container_worker(store, Box::new(images), Box::new(fetcher), registry, keep);
    }
    let executor = SandboxExecutor::detecting(store, runtime.clone(), userns, isolation)?;
    // Only root may build in the container's own root; a user job keeps the refusal, which says what lifts it.
    if isolation == isolation::IsolationChoice::AutoContainer
        && executor.refused()
        && container::guard::container_mark().is_some()
        && rustix::process::geteuid().is_root()
    {
        return container_worker(store, Box::new(images), Box::new(fetcher), registry, keep);
    }
    let userns = executor.userns();
    let mut worker = Worker::new(store, Box::new(executor), Box::new(images), Box::new(fetcher), jobs);
    worker.tree_ops = tree_ops::tree_ops_for(&runtime, userns);
    worker.id_map = id_map_for(userns);
    worker.written_owners_root_only =
        !rustix::process::geteuid().is_root() && matches!(userns, UsernsMode::Subuid { .. });
    worker.registry = registry;
    Ok(worker)
}

/// The worker of container isolation: one stage at a time, files written as root, snapshots' overlay markers
/// in the `user` namespace (setting `trusted` ones needs CAP_SYS_ADMIN, which a container's root lacks).
fn container_worker<'a>(
    store: &'a Store,
    images: Box<dyn crate::engine::ports::ImageSource + 'a>,
    fetcher: Box<dyn crate::engine::ports::Fetcher + 'a>,
    registry: Option<Arc<rbuild_registry::Client>>,
    keep: &[PathBuf],
) -> Result<Worker<'a>> {
    let executor = container::ContainerExecutor::new(store, keep)?;
    crate::layer::use_user_overlay_xattrs();
    store.reconcile_overlay_xattrs(crate::layer::overlay_xattr_namespace())?;
    let mut worker = Worker::new(store, Box::new(executor), images, fetcher, 1);
    worker.registry = registry;
    Ok(worker)
}
