//! `rbuild run IMAGE [CMD...]`: run a command in an image from the store with the runtime's sandbox, over the
//! image's layer snapshots with a throwaway upper directory (like `buildah run`); used to check built images.

use std::fs;
use std::path::PathBuf;

use rbuild_runtime::{NetworkMode, OutputMode, Rootfs, RunOutcome, RunSpec, Runtime, UsernsMode};
use serde_json::Value;

use super::executor::{SandboxExecutor, SandboxRun};
use super::idmap::id_map_for;
use super::tree_ops::tree_ops_for;
use crate::engine::ports::Executor;
use crate::error::{Error, Result};
use crate::export::image::load_image_for;
use crate::export::import_layout_reference;
use crate::layer::{EntryKind, diff_overlay_upper_mapped};
use crate::platform::Platform;
use crate::store::Store;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunImageOptions {
    /// A store name or digest, or `oci-layout://PATH[:TAG]`.
    pub image: String,
    /// Replaces the image's CMD (the ENTRYPOINT stays, as with `docker run`).
    pub cmd: Vec<String>,
    pub network: NetworkMode,
    pub output: OutputMode,
    pub userns: UsernsMode,
    pub extra_hosts: Vec<(String, String)>,
    /// Report what the command changed (as `docker diff` does).
    pub changes: bool,
    /// `--mount` specifications (bind sources are host paths; secret sources are files).
    pub mounts: Vec<crate::dockerfile::RunMount>,
    /// `--ulimit` values: (name, soft, hard).
    pub rlimits: Vec<(String, u64, u64)>,
    /// How much of the sandbox the run may give up (`--isolation`).
    pub isolation: super::isolation::IsolationChoice,
    /// `--platform`: the image of this platform (from an index), which must be one; None: the image as it is.
    pub platform: Option<Platform>,
}

/// One change a run made to the image's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `A` added, `C` changed, `D` deleted.
    pub kind: char,
    pub path: String,
    /// Owner in the image (for `A` and `C`).
    pub owner: Option<(u32, u32)>,
}

/// The outcome of a run and, when asked for, its changes.
#[derive(Debug, Clone)]
pub struct RunImageOutcome {
    pub outcome: RunOutcome,
    pub changes: Vec<Change>,
}

/// The changes between a pristine copy and the copy the run used (the copy snapshotter's diff).
fn changes_between(pristine: &std::path::Path, used: &std::path::Path, mode: UsernsMode) -> Result<Vec<Change>> {
    if !pristine.is_dir() {
        return Ok(Vec::new());
    }
    let entries = crate::layer::diff_trees_mapped(pristine, used, &id_map_for(mode))?;
    Ok(to_changes(&entries, |rel| fs::symlink_metadata(pristine.join(rel)).is_ok()))
}

/// The changes an overlay upper directory holds over its lower snapshots.
fn changes_of(upper: &std::path::Path, lowers: &[PathBuf], mode: UsernsMode) -> Result<Vec<Change>> {
    let entries = diff_overlay_upper_mapped(upper, &id_map_for(mode))?;
    Ok(to_changes(&entries, |rel| lowers.iter().any(|l| fs::symlink_metadata(l.join(rel)).is_ok())))
}

/// Layer entries as `docker diff` shows them; `in_base` tells whether a path existed before the run.
fn to_changes(entries: &[crate::layer::TreeEntry], in_base: impl Fn(&str) -> bool) -> Vec<Change> {
    let mut out = Vec::new();
    for e in entries {
        let path = String::from_utf8_lossy(&e.path).into_owned();
        match e.kind {
            EntryKind::Whiteout => {
                let (dir, name) = path.rsplit_once('/').map_or(("", path.as_str()), |(d, n)| (d, n));
                let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
                let gone = name.strip_prefix(".wh.").unwrap_or(name);
                out.push(Change { kind: 'D', path: format!("/{prefix}{gone}"), owner: None });
            }
            EntryKind::Opaque => {}
            _ => out.push(Change {
                kind: if in_base(&path) { 'C' } else { 'A' },
                path: format!("/{path}"),
                owner: Some((e.uid, e.gid)),
            }),
        }
    }
    out
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Run a command in an image; the upper directory is discarded afterwards.
pub fn run_image(store: &Store, runtime: &Runtime, opts: &RunImageOptions) -> Result<RunImageOutcome> {
    let digest = if opts.image.starts_with("oci-layout://") {
        import_layout_reference(store, &opts.image)?
    } else {
        store.resolve_image(&opts.image)?.digest()?
    };
    let wanted = opts.platform.clone().unwrap_or_else(Platform::host);
    let image = load_image_for(store, &digest, &wanted)?;
    // As docker run: an image of another platform than the one asked for is an error; without --platform, the
    // image runs as what it is (emulated when foreign).
    let platform = match (Platform::of_config(&image.config), &opts.platform) {
        (Some(actual), Some(asked)) if actual != *asked => {
            return Err(Error::PlatformMismatch {
                image: opts.image.clone(),
                wanted: asked.to_string(),
                actual: actual.to_string(),
            });
        }
        (Some(actual), _) => actual,
        (None, _) => wanted,
    };
    let diff_ids = image.diff_ids()?;
    if opts.isolation == super::isolation::IsolationChoice::Container {
        return Err(Error::InvalidSetting {
            name: "rbuild run --isolation container".into(),
            reason: "container isolation builds images only; `rbuild run` needs the namespace sandbox (run the built \
                     image with the container engine instead)"
                .into(),
        });
    }
    // The sandbox first: it decides how snapshots are marked (and drops those marked otherwise).
    let executor = SandboxExecutor::detecting(store, runtime.clone(), opts.userns, opts.isolation)?;
    let mut lowers = Vec::new();
    let ops = tree_ops_for(runtime, executor.userns());
    for (layer, diff_id) in image.layers.iter().zip(&diff_ids) {
        lowers.push(store.ensure_snapshot(ops.as_ref(), diff_id, &layer.digest)?);
    }
    let config = &image.config["config"];
    let mut argv = strings(&config["Entrypoint"]);
    argv.extend(if opts.cmd.is_empty() { strings(&config["Cmd"]) } else { opts.cmd.clone() });
    if argv.is_empty() {
        return Err(Error::BadRequest {
            what: format!("image {}", opts.image),
            reason: "it has no ENTRYPOINT or CMD and no command was given".into(),
        });
    }
    let spec = RunSpec {
        rootfs: Rootfs::Dir(PathBuf::new()),
        argv,
        env: strings(&config["Env"]),
        cwd: config["WorkingDir"].as_str().filter(|w| !w.is_empty()).unwrap_or("/").to_string(),
        user: config["User"].as_str().filter(|u| !u.is_empty()).map(str::to_string),
        hostname: digest.hex()[..12].to_string(),
        network: opts.network,
        extra_hosts: opts.extra_hosts.clone(),
        userns: executor.userns(),
        mounts: Vec::new(),
        rlimits: opts.rlimits.clone(),
        shm_size: 0,
        state_dir: PathBuf::new(),
        all_capabilities: false,
        isolation: rbuild_runtime::Isolation::default(),
        emulator: executor.emulator_for(&platform)?,
        single_id_as: (0, 0),
        emulate_ids: false,
        groups: None,
    };
    let run = SandboxRun {
        lowers: &lowers,
        mounts: &opts.mounts,
        script: None,
        spec,
        output: opts.output.clone(),
        pristine: opts.changes,
    };
    let mut changes = Vec::new();
    let outcome = executor.run_sandboxed(run, &mut |finished| {
        if opts.changes {
            changes = match finished.pristine {
                Some(pristine) => changes_between(pristine, finished.upper, executor.userns())?,
                None if finished.overlay => changes_of(finished.upper, &lowers, executor.userns())?,
                None => Vec::new(),
            };
        }
        Ok(())
    });
    let gave_up = executor.gave_up().iter().map(|g| format!("note: {g}"));
    for note in gave_up.chain(executor.take_notes()) {
        eprintln!("{note}");
    }
    Ok(RunImageOutcome { outcome: outcome?, changes })
}
