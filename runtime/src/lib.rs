//! rbuild-runtime: the rootless sandbox that runs one RUN step in fresh Linux namespaces (user, mount, pid, ipc, uts, network) over overlayfs, and reports its exit status.
//!
//! It depends on no other workspace crate. Its implementation lands with its own issue; until then the crate
//! only fixes its place in the workspace.

// Library code reports errors; it never panics on input (tests may unwrap, see clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]
