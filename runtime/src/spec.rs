//! What one sandboxed run is: the root filesystem, the process (argv, env, cwd, user), the namespaces' settings.
//! It crosses from rbuild to the sandbox init as JSON.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::SetupStage;

/// The root filesystem of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rootfs {
    /// Overlayfs: `lowers` topmost first (as overlay's `lowerdir` lists them), writes go to `upper`.
    Overlay { lowers: Vec<PathBuf>, upper: PathBuf, work: PathBuf },
    /// A plain directory used as it is (the copy snapshotter).
    Dir(PathBuf),
    /// The overlay, mounted by the `fuse-overlayfs` program (where the kernel refuses overlayfs).
    FuseOverlay { lowers: Vec<PathBuf>, upper: PathBuf, work: PathBuf },
}

/// An extra mount inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mount {
    /// A host file or directory (a cache directory, a secret file, an agent socket, a context path).
    Bind { source: PathBuf, target: String, read_only: bool },
    /// A fresh tmpfs; `size` in bytes (0: the kernel default).
    Tmpfs { target: String, size: u64 },
    /// A host directory the step may write to, its writes discarded when the run ends (an overlay with a
    /// throwaway upper directory; a file is copied instead). BuildKit's `RUN --mount=type=bind,rw`.
    BindDiscardingWrites { source: PathBuf, target: String },
}

impl Mount {
    pub fn target(&self) -> &str {
        match self {
            Mount::Bind { target, .. } | Mount::Tmpfs { target, .. } | Mount::BindDiscardingWrites { target, .. } => {
                target
            }
        }
    }
}

/// The network a run sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NetworkMode {
    /// The host's network (the default, and what rootless builds can use).
    #[default]
    Host,
    /// A new network namespace with only `lo`, up.
    None,
}

/// How ids are mapped into the sandbox's user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsernsMode {
    /// No user namespace: real root only.
    Off,
    /// Map only the caller to root (works without any setup; `chown` to other ids fails).
    Single,
    /// Map root to the caller and 1..=N to its subordinate range (`newuidmap`/`newgidmap`, /etc/subuid).
    Subuid { uid_start: u32, gid_start: u32, count: u32 },
    /// Real root without CAP_SYS_ADMIN (a container's root): a user namespace mapping every id to itself, written
    /// by rbuild (root holds CAP_SETUID), so `chown` and `USER` work as with no user namespace at all.
    Full,
}

/// What a run gives up where the host refuses part of the sandbox (a CI container): each is BuildKit's or runc's
/// answer to the same refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Isolation {
    /// The caller's /proc bound in (recursively) and its pid namespace shared, where a fresh /proc is refused
    /// (Docker and Kubernetes mask /proc paths): BuildKit's `--oci-worker-no-process-sandbox`.
    pub shared_proc: bool,
    /// Enter the root with a move-mount and `chroot`, where `pivot_root` is refused (runc's no-pivot).
    pub chroot: bool,
}

/// An emulator for a foreign architecture, registered with binfmt_misc in the run's own user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emulator {
    /// The registration's name (`qemu-aarch64`).
    pub name: String,
    /// A statically linked emulator on the host (opened before the root switch).
    pub interpreter: PathBuf,
    /// The ELF header bytes that select it, and the mask applied before comparing.
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
}

/// One run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    pub rootfs: Rootfs,
    pub argv: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Working directory inside the sandbox (created if missing).
    pub cwd: String,
    /// `user`, `uid`, `user:group`, `uid:gid`; resolved from the root filesystem's /etc/passwd and /etc/group.
    pub user: Option<String>,
    pub hostname: String,
    pub network: NetworkMode,
    /// Extra `/etc/hosts` entries: (name, address).
    pub extra_hosts: Vec<(String, String)>,
    pub userns: UsernsMode,
    /// Extra mounts, in order (later ones may be inside earlier ones).
    pub mounts: Vec<Mount>,
    /// Resource limits: (name as `docker --ulimit` spells it, e.g. `nofile`, soft, hard).
    pub rlimits: Vec<(String, u64, u64)>,
    /// Size of /dev/shm in bytes (0: 64 MiB, Docker's default).
    pub shm_size: u64,
    /// A directory the runtime may use for the run (mount point, generated /etc files); the caller removes it.
    pub state_dir: PathBuf,
    /// Keep every capability of the user namespace (`RUN --security=insecure`); else Docker's default set.
    pub all_capabilities: bool,
    /// What this run gives up of the sandbox (nothing, normally).
    #[serde(default)]
    pub isolation: Isolation,
    /// The emulator the run's binaries need (a foreign architecture), None for native ones.
    #[serde(default)]
    pub emulator: Option<Emulator>,
    /// With one id mapped ([`UsernsMode::Single`]): the (uid, gid) the caller's one id is inside — the step's
    /// USER, so that what it creates is its own and `id -u` is real; (0, 0) for root.
    #[serde(default)]
    pub single_id_as: (u32, u32),
    /// With one id mapped and the step running as root: answer ownership changes and id switches in the init
    /// (seccomp user notification) instead of failing them (`id_emulation`).
    #[serde(default)]
    pub emulate_ids: bool,
    /// With id emulation: the step user's groups (the primary first) that `getgroups` answers, where the one id
    /// cannot have supplementary groups.
    #[serde(default)]
    pub groups: Option<Vec<u32>>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// A set-up failure inside the sandbox init (sent to rbuild as [`InitMessage::Failed`]): the stage, the step being
/// done, what went wrong, and a hint.
pub(crate) struct Failure {
    pub stage: SetupStage,
    pub step: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub(crate) fn new(stage: SetupStage, step: &str, e: impl std::fmt::Display) -> Failure {
        Failure { stage, step: step.to_string(), message: e.to_string(), hint: None }
    }
}

/// Messages from the sandbox init to rbuild.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum InitMessage {
    /// The init has its user namespace; rbuild should write the subordinate-id mapping now.
    NeedsMapping {
        pid: i32,
    },
    /// Paths created in the root filesystem only to mount over (removed from the upper dir afterwards).
    Mountpoints(Vec<String>),
    /// Setting up failed before the command ran.
    Failed {
        stage: SetupStage,
        step: String,
        message: String,
        hint: Option<String>,
    },
    Exited(ExitStatus),
    /// What a probe found (sent by the probe's pid 1).
    Probed(crate::probe::ProbeReport),
}

/// What rbuild asks the sandbox init to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum InitRequest {
    Run(Box<RunSpec>),
    /// Remove a tree inside the user namespace (files of subordinate ids cannot be removed from outside).
    RemoveTree {
        path: std::path::PathBuf,
        userns: UsernsMode,
    },
    /// Run a helper command as root of the user namespace (no other namespaces): tree operations on files of
    /// subordinate ids.
    Exec {
        argv: Vec<String>,
        userns: UsernsMode,
    },
    /// Try what a run needs (namespaces, a fresh /proc, pivot_root) in the scratch directory `dir`, and report.
    Probe {
        dir: std::path::PathBuf,
        userns: UsernsMode,
    },
}
