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
mod init;
mod launcher;
mod mounts;
pub mod probe;
mod spec;
pub mod user;
pub mod userns;

use std::path::PathBuf;

pub use init::init_main;
pub use launcher::{LineSink, OutputMode, OutputStream, RunOutcome, Runtime, kill_running_sandboxes};
pub use spec::{Emulator, ExitStatus, Isolation, Mount, NetworkMode, Rootfs, RunSpec, UsernsMode};

/// The argument that makes the rbuild binary act as the sandbox init.
pub const INIT_ARG: &str = "__sandbox-init";

/// The setup stages that mount a run's root filesystem: their failure means the snapshotter was refused here.
pub(crate) const ROOT_MOUNT_STAGES: [&str; 3] =
    ["mount overlay root", "mount fuse-overlayfs root", "bind root directory"];

impl Error {
    /// Whether mounting the run's root filesystem was refused (another way of making it may work).
    pub fn root_mount_refused(&self) -> bool {
        matches!(self, Error::Setup { stage, .. } if ROOT_MOUNT_STAGES.contains(&stage.as_str()))
    }
}

/// Every failure of the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Setting up the sandbox failed before the step ran (the stage says where).
    #[error("sandbox setup failed ({stage}): {message}{}", hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Setup { stage: String, message: String, hint: Option<String> },

    /// The init binary could not be started.
    #[error("cannot start the sandbox ({}): {source}", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Talking to the sandbox init failed.
    #[error("sandbox communication failed: {0}")]
    Channel(String),
}
