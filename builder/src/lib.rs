//! rbuild-builder: everything between a Dockerfile on disk and an image in the store.
//!
//! This crate owns the Dockerfile frontend (`dockerfile`), build-context handling (`context`), and, as they land,
//! the build graph, solver, cache, store, layers and exporters. Its one error type is [`Error`].

pub mod context;
pub mod dockerfile;
mod error;
mod glob;

pub use error::Error;
