//! rbuild-registry: the OCI distribution client. Image references (parsing, Docker's normalisation of short
//! names), registry settings (mirrors, insecure and blocked registries, offline mode, CA files), credentials
//! (docker and podman config files, credential helpers), and the distribution API (manifests and blobs, pull and
//! push, bearer-token and Basic auth, retries). It speaks HTTP itself (reqwest on rustls with the ring provider;
//! tokio stays inside this crate: the API is blocking) and depends on no other workspace crate.

// Library code reports errors; it never panics on input (tests may unwrap, see clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod challenge;
mod client;
pub mod credentials;
mod error;
pub mod platform;
mod reference;
pub mod settings;
mod transport;

pub use client::{Client, MANIFEST_TYPES, Manifest, RequestCounts, UrlMeta, sha256_digest};
pub use credentials::Credentials;
pub use error::{RegistryError, Result};
pub use reference::{Reference, ReferenceError};
pub use settings::Settings;
