//! rbuild-registry: the OCI distribution client. Today: image references (parsing, Docker's normalisation of
//! short names, familiar display). Pull, push, auth and mirrors land with the registry issue.
//!
//! It depends on no other workspace crate.

// Library code reports errors; it never panics on input (tests may unwrap, see clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod reference;

pub use reference::{Reference, ReferenceError};
