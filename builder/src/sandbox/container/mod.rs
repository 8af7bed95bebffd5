//! Container isolation: the engine's [`Executor`] for a root job inside a container whose security profile forbids
//! namespaces (Docker's and containerd's defaults), as Kaniko worked. Each step's stage filesystem is made in the
//! container's own root ([`root_sync`]), the step runs there with plain fork and exec ([`process`]), its
//! `RUN --mount`s placed as files and directories ([`placed`]), and what it changed is found by comparing the root
//! with the record taken before it ([`changes`]). The guard ([`guard`]) refuses to start outside a container and
//! keeps the container's mounts, /proc, /sys, /dev, rbuild's own files, the store and the build's inputs out of
//! reach. Steps run one at a time (the root is one).

pub mod changes;
pub mod guard;
pub mod placed;
pub mod process;
pub mod root_sync;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::emulation::Emulation;
use crate::engine::ports::{
    Changes, CommitChanges, ExecOutcome, ExecRequest, Executor, Network, OutputSink, Platform, StepChanges,
};
use crate::error::{Error, Result};
use crate::store::Store;
use changes::Record;
use guard::Protected;
use placed::PlacedMounts;
use root_sync::{RootState, make_root};

/// What the root holds between steps.
#[derive(Debug, Default)]
struct Between {
    root: RootState,
    /// The root's record after the last step (valid while `root` is what the next step needs).
    record: Option<Record>,
}

/// Runs steps in the container's own root.
#[derive(Debug)]
pub struct ContainerExecutor<'a> {
    store: &'a Store,
    root: PathBuf,
    protected: Protected,
    /// How the container was recognised, for the progress.
    mark: String,
    between: Mutex<Between>,
    /// What to tell the build's progress, taken by [`Executor::take_notes`].
    notes: Mutex<Vec<String>>,
}

impl<'a> ContainerExecutor<'a> {
    /// An executor over this container's root, keeping `keep` (the build's inputs) out of reach. Refused outside a
    /// container, when not root, and with the store below a directory images use.
    pub fn new(store: &'a Store, keep: &[PathBuf]) -> Result<Self> {
        let mark = guard::check_may_run()?;
        guard::check_store(store.root())?;
        let protected = Protected::for_container(store.root(), keep);
        Ok(ContainerExecutor {
            store,
            root: PathBuf::from("/"),
            protected,
            mark,
            between: Mutex::default(),
            notes: Mutex::default(),
        })
    }

    fn note(&self, line: String) {
        if let Ok(mut notes) = self.notes.lock() {
            notes.push(line);
        }
    }

    fn step(&self, req: &ExecRequest, output: OutputSink<'_>, commit: CommitChanges<'_>) -> Result<ExecOutcome> {
        let mut between = self.between.lock().map_err(|_| Error::Cancelled)?;
        // Until the step has been committed, the root is unknown: a failure leaves it to be made anew.
        let mut state = std::mem::take(&mut *between);
        let unchanged = state.root.applied == req.lowers;
        let shadowed_before = state.root.shadowed.len();
        make_root(&self.root, &self.protected, &req.lowers, &mut state.root)?;
        for s in &state.root.shadowed[shadowed_before.min(state.root.shadowed.len())..] {
            self.note(format!(
                "note: the image's /{} is not a directory, but this container keeps one there holding its mounts: \
                 steps see the container's directory, and nothing below it goes into a layer",
                String::from_utf8_lossy(s)
            ));
        }
        let protected = state.root.protected(&self.protected);
        let record = match state.record.take() {
            Some(r) if unchanged => r,
            _ => Record::take(&self.root, &protected)?,
        };
        let user = match &req.identity {
            Some(u) => u.clone(),
            None => rbuild_runtime::user::resolve(&self.root, req.user.as_deref()).map_err(|m| {
                Error::Sandbox(Box::new(rbuild_runtime::Error::setup(
                    rbuild_runtime::SetupStage::Process,
                    "resolve user",
                    m,
                )))
            })?,
        };
        let scratch = self.store.tmp().path("container-step");
        let status = self.run_with_mounts(req, &user, &scratch, &record, &protected, output);
        let _ = crate::fsops::remove_path(&scratch);
        let status = status?;
        if !status.success() {
            return Ok(ExecOutcome { status, notes: Vec::new() });
        }
        let (entries, now) = record.changes(&self.root, &protected)?;
        let info = self.store.write_layer(&entries, &req.layer)?;
        let dir = self.store.tmp().path("container-layer");
        std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let snapshot = self.store.snapshot_path(&info.diff_id);
        commit(StepChanges { dir: &dir, changes: Changes::Exported(Some(info)), as_snapshot: false })?;
        state.root.applied.push(snapshot);
        state.record = Some(now);
        *between = state;
        Ok(ExecOutcome { status, notes: Vec::new() })
    }

    /// Place the step's mounts, run it, take the mounts away.
    fn run_with_mounts(
        &self,
        req: &ExecRequest,
        user: &rbuild_runtime::user::ResolvedUser,
        scratch: &Path,
        record: &Record,
        protected: &Protected,
        output: OutputSink<'_>,
    ) -> Result<crate::engine::ports::ExitStatus> {
        let mut prepared = super::mounts::prepare(self.store, &req.mounts, &scratch.join("mounts"))?;
        let script = req.script.as_ref().map(|(t, c)| (t.as_str(), c.as_str()));
        let mut placed = PlacedMounts::place(&self.root, protected, &prepared.mounts, script, &req.extra_hosts)?;
        let mut env = super::executor::with_hostname(&req.env, &req.hostname);
        env.extend(prepared.env.iter().cloned());
        record.wait_for_clock();
        let user_name = req.user.clone().unwrap_or_else(|| "root".into());
        let step = process::StepProcess {
            argv: &req.argv,
            env,
            cwd: &req.cwd,
            user,
            user_name: &user_name,
            rlimits: &req.ulimits,
            no_network: req.network == Network::None,
        };
        let status = process::run(&step, output);
        let taken = placed.take_away();
        prepared.release();
        let status = status?;
        taken?;
        Ok(status)
    }
}

impl Executor for ContainerExecutor<'_> {
    fn run(&self, req: &ExecRequest, output: OutputSink<'_>, commit: CommitChanges<'_>) -> Result<ExecOutcome> {
        self.step(req, output, commit)
    }

    fn check_platform(&self, platform: &Platform) -> Result<Option<String>> {
        match super::emulation::plan(platform) {
            Ok(Emulation::Native) => Ok(None),
            Ok(Emulation::Host(name)) => {
                Ok(Some(format!("note: {platform} steps run under emulation (the host's binfmt_misc handler {name})")))
            }
            // Not Linux, or no emulator at all: what the namespace sandbox says too.
            Err(unsupported) => Err(Error::Emulation(unsupported)),
            Ok(Emulation::Sandboxed(_)) => Err(Error::InvalidSetting {
                name: format!("--platform {platform}"),
                reason: "in container isolation a foreign platform's steps run only through the host's binfmt_misc \
                         (register qemu there, e.g. `docker run --privileged --rm tonistiigi/binfmt --install all`), \
                         or in the namespace sandbox"
                    .into(),
            }),
        }
    }

    fn take_notes(&self) -> Vec<String> {
        self.notes.lock().map(|mut n| std::mem::take(&mut *n)).unwrap_or_default()
    }

    fn describe(&self) -> Option<String> {
        Some(format!(
            "note: container isolation: steps run in this container's own root ({}), as root switching to each \
             step's USER, one at a time; the container's filesystem is the last stage's afterwards",
            self.mark
        ))
    }
}
