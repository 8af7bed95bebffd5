//! rbuild-runtime: runs one process over a root filesystem in fresh Linux namespaces (user, mount, pid, uts, ipc,
//! and network for `--network none`), rootless by default, with no daemon, and reports how it ended. It is what
//! `RUN` and `rbuild run` use.
//!
//! The caller builds a [`RunSpec`] and calls [`Runtime::run`]; the sandbox is the rbuild binary re-executed as
//! `__sandbox-init` (a user namespace can only be created by a single-threaded process), which the binary
//! dispatches to [`init_main`] before anything else. It depends on no other workspace crate.

// Library code reports errors; it never panics on input (tests may unwrap, see clippy.toml).
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod emulation;
mod error;
mod id_emulation;
mod init;
mod launcher;
mod mounts;
pub mod owner_record;
pub mod probe;
mod rlimit;
mod spec;
pub mod user;
pub mod userns;

pub use error::{Error, SetupStage};
pub use init::init_main;
pub use launcher::{LineSink, OutputMode, OutputStream, RunOutcome, Runtime, kill_running_sandboxes};
pub use rlimit::rlimit_resource;
pub use spec::{Emulator, ExitStatus, Isolation, Mount, NetworkMode, Rootfs, RunSpec, UsernsMode};

/// The argument that makes the rbuild binary act as the sandbox init.
pub const INIT_ARG: &str = "__sandbox-init";
