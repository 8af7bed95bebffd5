//! rbuild-builder: everything between a Dockerfile on disk and an image in the store.
//!
//! This crate owns the Dockerfile frontend (`dockerfile`), build-context handling (`context`), and, as they land,
//! the build graph, solver, cache, store, layers and exporters. Its one error type is [`Error`].

// Library code reports errors; it never panics on input (tests may unwrap, see clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod build;
pub mod compose;
pub mod context;
pub mod digest;
pub mod distribution;
pub mod dockerfile;
mod error;
pub mod export;
mod glob;
pub mod layer;
pub mod run_image;
pub mod run_mounts;
pub mod snapshotter;
pub mod store;
pub mod userns_tree_ops;

pub use error::{Error, Result};
