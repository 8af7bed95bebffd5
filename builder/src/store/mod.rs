//! The local store: content-addressed blobs, unpacked layer snapshots, the image index (name -> manifest), cache
//! records and cache-mount directories, under one root shared safely by concurrent rbuild processes.
//!
//! Layout (see docs/architecture.md): `blobs/sha256/<hex>`, `snapshots/<hex of diff_id>/`, `cache/`, `mounts/`,
//! `images/index.json`, `sources/` (where remote layers are), `tmp/`, `lock`. Nothing appears under `blobs/`, `snapshots/` or `images/` until it is
//! complete and verified: everything is written under `tmp/` and renamed into place.
//!
//! Concurrency: every process holds a shared lock on `lock` while it uses the store; `prune` takes it exclusively,
//! so it never removes what a running build or import is using. The image index has its own short exclusive lock
//! for read-modify-write updates.

mod blobs;
mod handle;
mod images;
mod remote;
mod remote_blobs;
mod snapshots;
mod tmp;

pub use blobs::BlobWriter;
pub use handle::Store;
pub use images::ImageRecord;
pub use remote_blobs::RemoteBlobs;
pub use snapshots::{InProcess, TreeOps};
pub use tmp::TmpArea;
