//! The runtime's failures: [`Error`], and [`SetupStage`], the part of a sandbox's set-up a failure happened in, which
//! callers match on (the snapshotter falls back when [`SetupStage::RootMount`] was refused) instead of on text.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The parts of setting up a sandbox, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetupStage {
    /// Reading the request, the parent-death signal, forking and waiting.
    Init,
    /// Creating the user namespace and mapping its ids (including `newuidmap` and the user-namespace mode).
    UserNamespace,
    /// Creating the other namespaces (mount, pid, uts, ipc, network) and the loopback device.
    Namespaces,
    /// Mounting the run's root filesystem (overlayfs, fuse-overlayfs, a bind): a refusal here means another
    /// snapshotter may work.
    RootMount,
    /// The mounts inside the root: /proc, /dev, /sys, tmpfs and bind mounts, /etc files, masked paths.
    Mounts,
    /// Switching into the new root (`pivot_root` or `chroot`).
    RootSwitch,
    /// Registering a foreign platform's emulator.
    Emulation,
    /// The step's process: hostname, user, working directory, limits, capabilities, `exec`.
    Process,
    /// No sandbox can be made on this host (found by probing before any step).
    Host,
}

/// Every failure of the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Setting up the sandbox failed before the step ran: `step` names what was being done.
    #[error("sandbox setup failed ({step}): {message}{}", hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Setup { stage: SetupStage, step: String, message: String, hint: Option<String> },

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

impl Error {
    /// Whether mounting the run's root filesystem was refused (another way of making it may work).
    pub fn root_mount_refused(&self) -> bool {
        matches!(self, Error::Setup { stage: SetupStage::RootMount, .. })
    }

    /// A set-up failure of `stage` while doing `step`.
    pub fn setup(stage: SetupStage, step: impl Into<String>, message: impl std::fmt::Display) -> Error {
        Error::Setup { stage, step: step.into(), message: message.to_string(), hint: None }
    }
}
