//! rbuild-builder: everything between a Dockerfile on disk and an image in the store.
//!
//! The Dockerfile frontend (`dockerfile`), build contexts (`context`), the build engine (`engine`: planning,
//! scheduling, stages, cache keys, and the ports it runs steps and resolves images through), the one executor
//! of those ports that runs steps in Linux namespaces (`sandbox`), the store, layers, image documents and their
//! import/export (`export`), registries (`distribution`) and Compose projects (`compose`). Its one error type is
//! [`Error`].

// Library code reports errors; it never panics on input (tests may unwrap, see clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod bounded;
pub mod compose;
pub mod context;
pub mod digest;
pub mod distribution;
pub mod dockerfile;
pub mod engine;
mod error;
pub mod export;
pub mod fsops;
mod glob;
pub mod hosts;
pub mod layer;
pub mod maintenance;
pub mod platform;
pub mod sandbox;
pub mod size;
pub mod store;

pub use error::{Error, Result};
