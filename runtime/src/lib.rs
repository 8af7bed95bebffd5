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
mod spec;
pub mod user;
pub mod userns;

pub use error::{Error, SetupStage};
pub use init::init_main;
pub use launcher::{LineSink, OutputMode, OutputStream, RunOutcome, Runtime, kill_running_sandboxes};
pub use spec::{Emulator, ExitStatus, Isolation, Mount, NetworkMode, Rootfs, RunSpec, UsernsMode};

/// The argument that makes the rbuild binary act as the sandbox init.
pub const INIT_ARG: &str = "__sandbox-init";

/// The resource a `--ulimit` name (as Docker spells it) limits, or None for an unknown name.
pub fn rlimit_resource(name: &str) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource;
    Some(match name {
        "core" => Resource::RLIMIT_CORE,
        "cpu" => Resource::RLIMIT_CPU,
        "data" => Resource::RLIMIT_DATA,
        "fsize" => Resource::RLIMIT_FSIZE,
        "locks" => Resource::RLIMIT_LOCKS,
        "memlock" => Resource::RLIMIT_MEMLOCK,
        "msgqueue" => Resource::RLIMIT_MSGQUEUE,
        "nice" => Resource::RLIMIT_NICE,
        "nofile" => Resource::RLIMIT_NOFILE,
        "nproc" => Resource::RLIMIT_NPROC,
        "rss" => Resource::RLIMIT_RSS,
        "rtprio" => Resource::RLIMIT_RTPRIO,
        "sigpending" => Resource::RLIMIT_SIGPENDING,
        "stack" => Resource::RLIMIT_STACK,
        _ => return None,
    })
}
