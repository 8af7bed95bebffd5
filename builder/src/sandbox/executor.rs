//! [`SandboxExecutor`]: the engine's [`Executor`] over rbuild-runtime, also what `rbuild run` uses. It makes the
//! step's root filesystem from the stage's snapshots with the snapshotter in use (overlayfs, fuse-overlayfs or a
//! copied root; see [`super::snapshotter`]), falling back to the next one when the kernel refuses a mount (and
//! remembering that in the store), prepares `RUN --mount`s, runs the step, and reads back what it changed: an
//! overlay's upper directory, or the difference between a copied root and a pristine copy of it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rbuild_runtime::user::ResolvedUser;
use rbuild_runtime::{
    Isolation, Mount, NetworkMode, OutputMode, OutputStream, Rootfs, RunOutcome, RunSpec, Runtime, UsernsMode,
};

use super::emulation::{Emulation, Unsupported};
use super::idmap::id_map_for;
use super::isolation::{IsolationChoice, Refusal};
use super::snapshotter::{Snapshotter, choose, remember, scratch_dir};
use super::tree_ops::{export_diff_as_sandbox, merge_snapshots_as_sandbox, tree_ops_for};
use crate::dockerfile::RunMount;
use crate::engine::ports::{
    Changes, CommitChanges, ExecOutcome, ExecRequest, Executor, ExitStatus, Network, OutputSink, Platform, StepChanges,
};
use crate::engine::progress::Stream;
use crate::error::{Error, Result};
use crate::layer::{EntryKind, LayerOptions, TreeEntry, diff_overlay_upper_mapped, diff_trees_mapped};
use crate::store::Store;

/// Runs steps in rbuild-runtime's sandbox over a store's snapshots.
#[derive(Debug)]
pub struct SandboxExecutor<'a> {
    store: &'a Store,
    runtime: Runtime,
    userns: UsernsMode,
    /// The snapshotter in use (it changes when one is refused), and whether `RBUILD_SNAPSHOTTER` forced it.
    snapshotter: Mutex<Snapshotter>,
    forced: bool,
    /// What to tell the build's progress (a fallback), taken by [`Executor::take_notes`].
    notes: Mutex<Vec<String>>,
    /// What this host gives up of the sandbox, or why no step can run here (the first RUN's error).
    tier: std::result::Result<Isolation, Refusal>,
    gave_up: Vec<String>,
    /// How each foreign platform's binaries run, decided on first use.
    emulation: Mutex<std::collections::BTreeMap<Platform, std::result::Result<Emulation, Unsupported>>>,
}

/// One sandboxed run as `rbuild run` and RUN steps share it: the process and its settings, without the root
/// filesystem (made here from `lowers`) and the mounts (prepared here from `mounts`).
#[derive(Debug)]
pub struct SandboxRun<'r> {
    /// Snapshots, bottom first.
    pub lowers: &'r [PathBuf],
    pub mounts: &'r [RunMount],
    /// A script to bind read-only and executable into the run: (target, content).
    pub script: Option<(String, String)>,
    /// The process; its `rootfs`, `mounts`, `state_dir` and `userns` are replaced.
    pub spec: RunSpec,
    pub output: OutputMode,
    /// Keep a pristine copy next to a copied root, so changes can be told (the copy snapshotter only).
    pub pristine: bool,
}

/// A run that ended, while its directories still exist.
#[derive(Debug)]
pub struct Finished<'f> {
    pub outcome: &'f RunOutcome,
    /// The overlay's upper directory, or the copied root.
    pub upper: &'f Path,
    /// With a copied root: the pristine copy (when asked for); with an overlay: None.
    pub pristine: Option<&'f Path>,
    pub overlay: bool,
}

impl<'a> SandboxExecutor<'a> {
    /// An executor for `store`, with the snapshotter `RBUILD_SNAPSHOTTER` forces or the store remembers, assuming
    /// the full sandbox (see [`SandboxExecutor::detecting`]).
    pub fn new(store: &'a Store, runtime: Runtime, userns: UsernsMode) -> Result<Self> {
        let (snapshotter, forced) = choose(store)?;
        Ok(SandboxExecutor {
            store,
            runtime,
            userns,
            snapshotter: Mutex::new(snapshotter),
            forced,
            notes: Mutex::new(Vec::new()),
            tier: Ok(Isolation::default()),
            gave_up: Vec::new(),
            emulation: Mutex::new(std::collections::BTreeMap::new()),
        })
    }

    /// An executor with the sandbox this host allows (probed once here): its user-namespace mode may become
    /// [`UsernsMode::Full`], and what it gives up is said once in the progress.
    pub fn detecting(store: &'a Store, runtime: Runtime, userns: UsernsMode, choice: IsolationChoice) -> Result<Self> {
        let detection = super::isolation::detect(store, &runtime, userns, choice);
        let mut executor = SandboxExecutor::new(store, runtime, userns)?;
        match detection.tier {
            Ok(tier) => {
                executor.userns = tier.userns;
                executor.tier = Ok(tier.isolation);
                executor.gave_up = tier.gave_up;
            }
            Err(refusal) => executor.tier = Err(refusal),
        }
        // Overlays mounted in a user namespace read `user.*` markers only, whoever runs rbuild (root included:
        // the every-id tier, or RBUILD_USERNS=single|subuid).
        if executor.userns != UsernsMode::Off {
            crate::layer::use_user_overlay_xattrs();
        }
        store.reconcile_overlay_xattrs(crate::layer::overlay_xattr_namespace())?;
        Ok(executor)
    }

    pub fn userns(&self) -> UsernsMode {
        self.userns
    }

    /// Whether no namespace sandbox can run here (the first RUN step would fail with the refusal).
    pub fn refused(&self) -> bool {
        self.tier.is_err()
    }

    /// What this host's sandbox gives up (one line each; empty for the full sandbox).
    pub fn gave_up(&self) -> &[String] {
        &self.gave_up
    }

    /// How `platform`'s binaries run here (decided once per platform).
    pub fn emulation(&self, platform: &Platform) -> Result<Emulation> {
        let mut known = self.emulation.lock().map_err(|_| Error::Cancelled)?;
        let decided = known.entry(platform.clone()).or_insert_with(|| super::emulation::plan(platform));
        decided.clone().map_err(Error::Emulation)
    }

    /// The emulator a run of `platform` registers, if it needs one of its own.
    pub fn emulator_for(&self, platform: &Platform) -> Result<Option<rbuild_runtime::Emulator>> {
        Ok(match self.emulation(platform)? {
            Emulation::Sandboxed(e) => Some(e),
            Emulation::Native | Emulation::Host(_) => None,
        })
    }

    fn current(&self) -> Snapshotter {
        self.snapshotter.lock().map(|s| *s).unwrap_or(Snapshotter::Copy)
    }

    /// Run once, falling back to the next snapshotter while mounting the root is refused (unless forced).
    /// `after` sees the finished run before its directories are removed.
    pub fn run_sandboxed(
        &self,
        run: SandboxRun<'_>,
        after: &mut dyn FnMut(&Finished<'_>) -> Result<()>,
    ) -> Result<RunOutcome> {
        loop {
            let snapshotter = self.current();
            match self.run_once(&run, snapshotter, after) {
                Err(Error::Sandbox(e)) if !self.forced && e.root_mount_refused() => {
                    let Some(next) = snapshotter.fallback() else { return Err(Error::Sandbox(e)) };
                    let note = format!(
                        "note: the {} snapshotter was refused here ({}); using {} from now on",
                        snapshotter.name(),
                        e.to_string().lines().next().unwrap_or_default(),
                        next.name()
                    );
                    if let Ok(mut notes) = self.notes.lock() {
                        notes.push(note);
                    }
                    remember(self.store, next)?;
                    if let Ok(mut s) = self.snapshotter.lock() {
                        *s = next;
                    }
                }
                other => return other,
            }
        }
    }

    fn run_once(
        &self,
        run: &SandboxRun<'_>,
        snapshotter: Snapshotter,
        after: &mut dyn FnMut(&Finished<'_>) -> Result<()>,
    ) -> Result<RunOutcome> {
        let run_dir = self.store.tmp().path("step");
        let result = self.run_in(&run_dir, run, snapshotter, after);
        let cleanup = self.runtime.remove_tree(&run_dir, self.userns);
        let outcome = result?;
        cleanup.map_err(|e| Error::Sandbox(Box::new(e)))?;
        Ok(outcome)
    }

    fn run_in(
        &self,
        run_dir: &Path,
        run: &SandboxRun<'_>,
        snapshotter: Snapshotter,
        after: &mut dyn FnMut(&Finished<'_>) -> Result<()>,
    ) -> Result<RunOutcome> {
        // Overlay's upper and work directories, in a scratch directory outside the store when it cannot hold them.
        let scratch = match snapshotter {
            Snapshotter::OverlayScratch => Some(self.scratch_for_run()?),
            _ => None,
        };
        let layer_dirs = scratch.as_deref().unwrap_or(run_dir);
        let outcome = self.run_over(run_dir, layer_dirs, run, snapshotter, after);
        if let Some(dir) = &scratch {
            let _ = self.runtime.remove_tree(dir, self.userns);
        }
        outcome
    }

    /// A new directory for one run's overlay upper and work directories under the scratch directory.
    fn scratch_for_run(&self) -> Result<PathBuf> {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let base = scratch_dir().ok_or_else(|| Error::InvalidSetting {
            name: "RBUILD_SNAPSHOTTER=overlay-scratch".into(),
            reason: "no scratch directory off overlayfs with 1 GiB free: set RBUILD_SCRATCH=DIR".into(),
        })?;
        let uid = rustix::process::geteuid().as_raw();
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // A new directory of this process's own (create_dir follows no link and fails on anything already
        // there), private to the user: scratch directories such as /tmp are shared.
        let dir = base.join(format!("rbuild-{uid}-{}-{n}", std::process::id()));
        fs::create_dir(&dir).map_err(Error::io("create", &dir))?;
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(Error::io("chmod", &dir))?;
        Ok(dir)
    }

    /// One run with its private files in `run_dir` and the overlay's upper and work directories in `layer_dirs`.
    fn run_over(
        &self,
        run_dir: &Path,
        layer_dirs: &Path,
        run: &SandboxRun<'_>,
        snapshotter: Snapshotter,
        after: &mut dyn FnMut(&Finished<'_>) -> Result<()>,
    ) -> Result<RunOutcome> {
        let (upper, work, state) = (layer_dirs.join("upper"), layer_dirs.join("work"), run_dir.join("state"));
        for d in [&upper, &work, &state] {
            fs::create_dir_all(d).map_err(Error::io("create", d))?;
        }
        let mut prepared = super::mounts::prepare(self.store, run.mounts, &run_dir.join("scratch"))?;
        if self.userns != UsernsMode::Single && !prepared.owners_to_set.is_empty() {
            let tree_ops = tree_ops_for(&self.runtime, self.userns);
            for (dir, uid, gid) in &prepared.owners_to_set {
                tree_ops.chown(dir, *uid, *gid)?;
            }
        }
        let mut mounts = prepared.mounts.clone();
        if let Some((target, content)) = &run.script {
            // A heredoc script with a shebang runs as a file of its own, as in BuildKit.
            let file = run_dir.join("heredoc-script");
            fs::write(&file, content).map_err(Error::io("write", &file))?;
            fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(Error::io("chmod", &file))?;
            mounts.push(Mount::Bind { source: file, target: target.clone(), read_only: true });
        }
        let mut topmost_first = run.lowers.to_vec();
        topmost_first.reverse();
        // A snapshot twice in the stack (the empty layer of two RUNs that changed nothing) is one lower directory:
        // overlayfs refuses repeated lowers (ELOOP). Its topmost place shadows the lower ones entirely.
        let mut seen = std::collections::HashSet::new();
        topmost_first.retain(|l| seen.insert(l.clone()));
        let pristine = run_dir.join("pristine");
        let rootfs = match snapshotter {
            _ if topmost_first.is_empty() => Rootfs::Dir(upper.clone()),
            Snapshotter::Overlay | Snapshotter::OverlayScratch => {
                Rootfs::Overlay { lowers: topmost_first, upper: upper.clone(), work }
            }
            Snapshotter::FuseOverlayfs => Rootfs::FuseOverlay { lowers: topmost_first, upper: upper.clone(), work },
            Snapshotter::Copy => {
                merge_snapshots_as_sandbox(&self.runtime, self.userns, run.lowers, &upper)?;
                if run.pristine {
                    merge_snapshots_as_sandbox(&self.runtime, self.userns, run.lowers, &pristine)?;
                }
                Rootfs::Dir(upper.clone())
            }
        };
        let overlay = !matches!(rootfs, Rootfs::Dir(_));
        let mut spec = run.spec.clone();
        spec.rootfs = rootfs;
        spec.env.extend(prepared.env.iter().cloned());
        spec.mounts = mounts;
        spec.state_dir = state;
        spec.userns = self.userns;
        spec.isolation = *self.tier.as_ref().map_err(|r| Error::Sandbox(Box::new(r.to_runtime_error())))?;
        let outcome = self.runtime.run(&spec, run.output.clone());
        prepared.release();
        let outcome = outcome.map_err(|e| Error::Sandbox(Box::new(e)))?;
        let pristine = (!overlay && run.pristine).then_some(pristine.as_path());
        after(&Finished { outcome: &outcome, upper: &upper, pristine, overlay })?;
        Ok(outcome)
    }

    /// Why a step that failed may have failed, measured before its files are removed: a step that filled the
    /// disk fails with whatever its program says (often "I/O error"). (With one id mapped, a step whose output
    /// says changing owners failed gets the subordinate-id note once its output has all been read.)
    fn failure_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let free = rustix::fs::statvfs(self.store.root()).map(|s| s.f_bavail.saturating_mul(s.f_frsize)).ok();
        if free.is_some_and(|f| f < 1 << 20) {
            notes.push(format!(
                "no space left on the store's filesystem ({}): free some, `rbuild prune`, or use another --root",
                self.store.root().display()
            ));
        }
        notes
    }

    /// What a finished step changed: its entries, read here (image-side owners). Under subordinate ids a step
    /// may leave files this process cannot read (apt's 0700 `partial` directories of `_apt`): when the walk is
    /// refused or an entry is unreadable from here, the layer is exported inside the user namespace instead, where
    /// the step's ids are valid (one more helper process, so only then).
    fn changes(
        &self,
        finished: &Finished<'_>,
        layer: &LayerOptions,
        lowers: &[PathBuf],
        identity: Option<&ResolvedUser>,
    ) -> Result<Changes> {
        let one_id_user = identity
            .map(|u| (u.uid, u.gid))
            .filter(|ids| *ids != (0, 0) && self.userns == UsernsMode::Single && one_id_user_mapping());
        let ids = match one_id_user {
            Some(user) => super::idmap::one_id_as(user),
            None => id_map_for(self.userns),
        };
        let entries = match finished.pristine {
            Some(pristine) => diff_trees_mapped(pristine, finished.upper, &ids),
            None => diff_overlay_upper_mapped(finished.upper, &ids),
        };
        // With one id as the USER, a file or directory the step only copied up (a directory it created a file in)
        // keeps the owner it had below; only what the step made is the USER's.
        let entries = match (one_id_user, entries) {
            (Some(user), Ok(entries)) => Ok(super::idmap::keep_lower_owners(entries, user, lowers)),
            (_, entries) => entries,
        };
        let subordinate = matches!(self.userns, UsernsMode::Subuid { .. }) && !rustix::process::geteuid().is_root();
        match entries {
            Ok(entries) if !subordinate || entries.iter().all(readable_here) => Ok(Changes::Entries(entries)),
            Err(e) if !subordinate => Err(e),
            _ => {
                let (root, upper) = (self.store.root(), finished.upper);
                let info = export_diff_as_sandbox(&self.runtime, self.userns, root, upper, finished.pristine, layer)?;
                Ok(Changes::Exported(info))
            }
        }
    }
}

/// `RBUILD_ONE_ID=root` keeps the one id as root in every step (before USER steps were mapped to their user and
/// root steps' ownership changes were emulated); anything else (the default) does both.
fn one_id_user_mapping() -> bool {
    std::env::var("RBUILD_ONE_ID").map_or(true, |v| v != "root")
}

impl SandboxExecutor<'_> {
    /// With one id mapped: the one id is the step's user (root or its USER), and ownership changes and id
    /// switches are emulated (`rbuild_runtime`'s id emulation), with the user's supplementary groups.
    fn with_one_id(&self, mut spec: RunSpec, identity: Option<&ResolvedUser>) -> RunSpec {
        if self.userns != UsernsMode::Single || !one_id_user_mapping() {
            return spec;
        }
        spec.emulate_ids = true;
        if let Some(u) = identity {
            spec.single_id_as = (u.uid, u.gid);
            spec.groups = Some(u.groups.clone());
        }
        spec
    }
}

/// Whether this process can read a regular file of a step's changes (owners are the image's: 0 is this process's
/// own user and group under subordinate ids). Other entries were read by the walk already.
fn readable_here(e: &TreeEntry) -> bool {
    !matches!(e.kind, EntryKind::File { .. })
        || e.mode & 0o004 != 0
        || (e.uid == 0 && e.mode & 0o400 != 0)
        || (e.gid == 0 && e.mode & 0o040 != 0)
}

/// The step's environment with `HOSTNAME` set, as BuildKit sets it, unless the environment has one.
pub(super) fn with_hostname(env: &[String], hostname: &str) -> Vec<String> {
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={hostname}"));
    }
    env
}

impl Executor for SandboxExecutor<'_> {
    fn run(&self, req: &ExecRequest, output: OutputSink<'_>, commit: CommitChanges<'_>) -> Result<ExecOutcome> {
        let spec = RunSpec {
            rootfs: Rootfs::Dir(PathBuf::new()),
            argv: req.argv.clone(),
            env: with_hostname(&req.env, &req.hostname),
            cwd: req.cwd.clone(),
            user: req.user.clone(),
            hostname: req.hostname.clone(),
            network: match req.network {
                Network::Host => NetworkMode::Host,
                Network::None => NetworkMode::None,
            },
            extra_hosts: req.extra_hosts.clone(),
            userns: self.userns,
            mounts: Vec::new(),
            rlimits: req.ulimits.clone(),
            shm_size: req.shm_size,
            state_dir: PathBuf::new(),
            all_capabilities: req.insecure,
            isolation: Isolation::default(),
            emulator: self.emulator_for(&req.platform)?,
            single_id_as: (0, 0),
            emulate_ids: false,
            groups: None,
        };
        let spec = self.with_one_id(spec, req.identity.as_ref());
        // Output lines go through a channel (the runtime's sink must be 'static) to the caller's sink.
        let (tx, rx) = std::sync::mpsc::channel::<(Stream, String)>();
        let sink = std::sync::Arc::new(move |stream: OutputStream, line: &[u8]| {
            let text = String::from_utf8_lossy(line).trim_end_matches('\n').to_string();
            let stream = if stream == OutputStream::Stdout { Stream::Stdout } else { Stream::Stderr };
            let _ = tx.send((stream, text));
        });
        let run = SandboxRun {
            lowers: &req.lowers,
            mounts: &req.mounts,
            script: req.script.clone(),
            spec,
            output: OutputMode::Lines(sink),
            pristine: true,
        };
        let mut notes = Vec::new();
        let owner_trouble = std::sync::atomic::AtomicBool::new(false);
        let outcome = std::thread::scope(|scope| {
            let trouble = &owner_trouble;
            let forwarder = scope.spawn(move || {
                for (stream, line) in rx {
                    if says_owner_change_failed(&line) {
                        trouble.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    output(stream, &line);
                }
            });
            let outcome = self.run_sandboxed(run, &mut |finished| {
                if !finished.outcome.status.success() {
                    notes = self.failure_notes();
                    return Ok(());
                }
                let changes = self.changes(finished, &req.layer, &req.lowers, req.identity.as_ref())?;
                commit(StepChanges { dir: finished.upper, changes, as_snapshot: finished.overlay })
            });
            // The output's last lines are read only once the forwarder is done with them.
            let _ = forwarder.join();
            if outcome.as_ref().is_ok_and(|o| !o.status.success())
                && self.userns == UsernsMode::Single
                && owner_trouble.load(std::sync::atomic::Ordering::Relaxed)
            {
                notes.push(rbuild_runtime::userns::subuid_hint());
            }
            outcome
        })?;
        let status = match outcome.status {
            rbuild_runtime::ExitStatus::Exited(c) => ExitStatus::Exited(c),
            rbuild_runtime::ExitStatus::Signaled(s) => ExitStatus::Signaled(s),
        };
        Ok(ExecOutcome { status, notes })
    }

    fn check_platform(&self, platform: &Platform) -> Result<Option<String>> {
        Ok(match self.emulation(platform)? {
            Emulation::Native => None,
            Emulation::Sandboxed(e) => Some(format!(
                "note: {platform} steps run under emulation ({}, registered in each step's own binfmt_misc)",
                e.interpreter.display()
            )),
            Emulation::Host(name) => {
                Some(format!("note: {platform} steps run under emulation (the host's binfmt_misc handler {name})"))
            }
        })
    }

    fn describe(&self) -> Option<String> {
        let mut lines: Vec<String> = self.gave_up.iter().map(|g| format!("note: {g}")).collect();
        if self.current() != Snapshotter::Overlay {
            lines.push(format!(
                "note: steps run over the {} snapshotter ({})",
                self.current().name(),
                if self.forced { "RBUILD_SNAPSHOTTER" } else { "overlayfs was refused on this store earlier" }
            ));
        }
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    fn take_notes(&self) -> Vec<String> {
        self.notes.lock().map(|mut n| std::mem::take(&mut *n)).unwrap_or_default()
    }
}

/// Whether a line of a step's output tells of a refused change of owner or of ids (chown, tar's and dpkg's
/// "ownership", apt's seteuid, setgroups): what one mapped id makes fail.
fn says_owner_change_failed(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    let refused = l.contains("operation not permitted") || l.contains("invalid argument");
    let about_ids =
        ["chown", "ownership", "setgroups", "setgid", "setuid", "setresuid", "setresgid", "seteuid", "setegid"]
            .iter()
            .any(|w| l.contains(w));
    (refused && about_ids) || l.contains("cannot change ownership")
}

#[cfg(test)]
mod owner_failure_tests {
    #[test]
    fn ownership_failures_are_told_from_others() {
        assert!(super::says_owner_change_failed("chown: /x: Invalid argument"));
        assert!(super::says_owner_change_failed("E: setgroups 65534 failed - setgroups (1: Operation not permitted)"));
        assert!(super::says_owner_change_failed("tar: x: Cannot change ownership to uid 1000, gid 1000"));
        assert!(!super::says_owner_change_failed("sh: 1: false: not found"));
        assert!(!super::says_owner_change_failed("cp: cannot create regular file '/x': Operation not permitted"));
    }
}
