//! The engine's ports: what it asks of the world, as traits, so that the engine itself never touches a
//! namespace, a registry or the network. [`Executor`] runs one RUN step over a stage's snapshots and hands back
//! what the step changed; [`ImageSource`] resolves an image reference (a base, a `--from`, a named context) to
//! an image in the store; [`Fetcher`] downloads ADD URLs and checks out git sources. A [`Worker`] bundles the
//! store, the ports and the limits shared by every build it runs. The sandbox (`crate::sandbox`) and the
//! distribution module (`crate::distribution`) hold the real implementations; the engine's unit tests use fakes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::progress::Stream;
use super::sharing::{JobSlots, StepLocks};
use crate::dockerfile::RunMount;
use crate::error::Result;
use crate::export::image::LoadedImage;
use crate::layer::{IdMap, LayerInfo, LayerOptions, TreeEntry};
use crate::store::{Store, TreeOps};

/// The network a step sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network (BuildKit's default for rootless builds).
    #[default]
    Host,
    /// Only a loopback interface.
    None,
}

pub use crate::platform::Platform;

/// One RUN step, fully resolved: nothing in it needs the Dockerfile or the build's options to be understood.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// The stage's snapshots, bottom first; the step's root filesystem is their union with its own writes.
    pub lowers: Vec<PathBuf>,
    pub argv: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub cwd: String,
    /// The stage's USER (resolved by the executor in the step's own /etc/passwd), `None` for root.
    pub user: Option<String>,
    /// Who the step runs as, resolved in the stage's /etc/passwd and /etc/group as the sandbox resolves USER (None:
    /// not found there; the executor then reports the unknown user itself). With one id mapped, that id becomes
    /// this user.
    pub identity: Option<rbuild_runtime::user::ResolvedUser>,
    pub network: Network,
    /// `--add-host` entries: (name, address).
    pub extra_hosts: Vec<(String, String)>,
    /// `RUN --mount`s with their sources resolved: bind sources are absolute host paths, secrets are files, SSH
    /// mounts carry their agent socket.
    pub mounts: Vec<RunMount>,
    /// A heredoc script with a shebang: where it is mounted in the step (its argv[0]), and its content.
    pub script: Option<(String, String)>,
    /// Resource limits: (name, soft, hard).
    pub ulimits: Vec<(String, u64, u64)>,
    /// /dev/shm's size in bytes (0: 64 MiB).
    pub shm_size: u64,
    /// `RUN --security=insecure`: every capability of the sandbox.
    pub insecure: bool,
    /// The step's host name (BuildKit's `buildkitsandbox`, or the `BUILDKIT_SANDBOX_HOSTNAME` build arg); also its
    /// `HOSTNAME` unless the image or the step sets one.
    pub hostname: String,
    pub platform: Platform,
    /// How the step's layer is written, should the executor write it ([`Changes::Exported`]).
    pub layer: LayerOptions,
}

/// What a step changed, as the executor hands it over.
#[derive(Debug)]
pub enum Changes {
    /// The entries of a layer (image-side owners), whose files this process can read.
    Entries(Vec<TreeEntry>),
    /// Already written into the store as a layer blob (with the request's layer options) by the executor, where
    /// the step's ids are valid: rootless, a step may leave files the invoking user cannot read. None: nothing
    /// changed.
    Exported(Option<LayerInfo>),
}

/// What a successful step changed: a directory holding the changed files as an overlay layer directory (overlay
/// whiteouts), and the layer they make.
#[derive(Debug)]
pub struct StepChanges<'a> {
    pub dir: &'a Path,
    pub changes: Changes,
    /// Whether `dir` may become the layer's snapshot as it is (renamed into the store). It may not when it holds
    /// more than the changes (a copied root) or files whose owners are not real on disk.
    pub as_snapshot: bool,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// How a step that ran ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub status: ExitStatus,
    /// For a failed step: what the executor saw that may be why (no space left, one id mapped), for the error.
    pub notes: Vec<String>,
}

impl ExecOutcome {
    pub fn exited(code: i32) -> ExecOutcome {
        ExecOutcome { status: ExitStatus::Exited(code), notes: Vec::new() }
    }
}

/// A step's output line sink: called from any thread, in the order lines arrive.
pub type OutputSink<'a> = &'a (dyn Fn(Stream, &str) + Sync);

/// The commit callback: given what the step changed, while the executor still holds it.
pub type CommitChanges<'a> = &'a mut dyn FnMut(StepChanges<'_>) -> Result<()>;

/// Runs RUN steps.
pub trait Executor: Send + Sync {
    /// Run one step. Its output lines go to `output`. When it succeeds, `commit` is called with what it changed
    /// (while the executor's scratch space is alive; the engine exports and keeps what it needs); the scratch space
    /// is removed afterwards. An error is a step that could not be started (a bad mount, an unknown USER, a
    /// refused sandbox); a step that ran and failed is an `Ok` with its status, `commit` not called.
    fn run(&self, req: &ExecRequest, output: OutputSink<'_>, commit: CommitChanges<'_>) -> Result<ExecOutcome>;

    /// Whether steps of `platform` can run here (checked before a build runs any step): an error says why not.
    /// `describe` says how, when it is not natively.
    fn check_platform(&self, platform: &Platform) -> Result<Option<String>> {
        let _ = platform;
        Ok(None)
    }

    /// A line for the build's progress describing how steps run here (said once per build), if any.
    fn describe(&self) -> Option<String> {
        None
    }

    /// Lines for the progress that came up while running steps (a fallback to another snapshotter).
    fn take_notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// When to ask a registry for an image the store may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Only when the store does not have it.
    #[default]
    Missing,
    /// Always (`--pull`): the registry's current image for the tag.
    Always,
    /// Never: the store and OCI layouts only.
    Never,
}

/// Resolves image references to images in the store.
pub trait ImageSource: Send + Sync {
    /// The image `reference` names (a store name or digest, `oci-layout://PATH[:TAG]`, or a registry reference)
    /// for `platform`, in the store (pulled or imported first as `pull` allows). `Error::ImageNotFound` when it
    /// is nowhere it may be looked for.
    fn resolve(&self, reference: &str, platform: &Platform, pull: PullPolicy) -> Result<LoadedImage>;
}

/// Fetches remote sources for ADD.
pub trait Fetcher: Send + Sync {
    /// Download `url` into the new file `dest`; returns its `Last-Modified` time, when the server sent one.
    fn url(&self, url: &str, dest: &Path) -> Result<Option<SystemTime>>;

    /// Check out a git source (`URL#REF:SUBDIR`) under the new directory `dest`; returns the directory whose
    /// files are the source's (`.git` kept only with `keep_git_dir`) and the commit.
    fn git(&self, url: &str, dest: &Path, keep_git_dir: bool) -> Result<crate::context::git::GitCheckout>;
}

/// What every build on one store shares: the store, the ports, how the executor's files show on disk, the
/// registry client for remote caches, stage slots and the locks that make identical steps run once.
pub struct Worker<'a> {
    pub store: &'a Store,
    pub executor: Box<dyn Executor + 'a>,
    pub images: Box<dyn ImageSource + 'a>,
    pub fetcher: Box<dyn Fetcher + 'a>,
    /// Operations on snapshot trees (inside the user namespace when their files have subordinate owners).
    pub tree_ops: Box<dyn TreeOps + 'a>,
    /// How the sandbox's ids show on disk, for reading back owners of the stage's files.
    pub id_map: IdMap,
    /// Files this process writes itself are real on disk only with root's owner (rootless with subordinate ids):
    /// a COPY tree with other owners is then unpacked from its layer to become its snapshot.
    pub written_owners_root_only: bool,
    /// For `--cache-from`/`--cache-to` registry caches (None: offline).
    pub registry: Option<Arc<rbuild_registry::Client>>,
    /// Stage slots: how many stages of all builds on this worker run at once.
    pub slots: Arc<JobSlots>,
    pub step_locks: Arc<StepLocks>,
}

impl std::fmt::Debug for Worker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("store", &self.store.root()).finish_non_exhaustive()
    }
}

impl<'a> Worker<'a> {
    /// A worker over `store` with the given ports, `jobs` stage slots (0: per CPU) and in-process tree operations.
    pub fn new(
        store: &'a Store,
        executor: Box<dyn Executor + 'a>,
        images: Box<dyn ImageSource + 'a>,
        fetcher: Box<dyn Fetcher + 'a>,
        jobs: usize,
    ) -> Worker<'a> {
        let jobs = if jobs == 0 { super::sharing::default_jobs() } else { jobs };
        Worker {
            store,
            executor,
            images,
            fetcher,
            tree_ops: Box::new(crate::store::InProcess),
            id_map: IdMap::for_current_user(),
            written_owners_root_only: false,
            registry: None,
            slots: JobSlots::new(jobs),
            step_locks: Default::default(),
        }
    }
}
