//! Tree operations run inside the sandbox's user namespace, for stores whose snapshots hold files of
//! subordinate ids: the rbuild binary re-executed (through the runtime) as `__tree-op`, as root of the user
//! namespace, where it can create files of any mapped owner and remove them again.

use std::path::Path;

use rbuild_runtime::{ExitStatus, Runtime, UsernsMode};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layer::{ApplyMode, ApplyOptions, ApplyReport, LayerInfo, LayerOptions, apply_tar, decompressed};
use crate::store::TreeOps;

/// The argument that makes the rbuild binary run one tree operation (see [`tree_op_main`]).
pub const TREE_OP_ARG: &str = "__tree-op";

/// The tree operations for a sandbox mode: inside the user namespace when subordinate ids are mapped (so
/// files keep their real owners and can be removed again), in this process otherwise.
pub fn tree_ops_for(runtime: &Runtime, userns: UsernsMode) -> Box<dyn TreeOps> {
    match (userns, std::env::current_exe()) {
        (UsernsMode::Subuid { .. }, Ok(binary)) => Box::new(UsernsTreeOps { runtime: runtime.clone(), binary, userns }),
        _ => Box::new(crate::store::InProcess),
    }
}

/// [`TreeOps`] inside a user namespace.
#[derive(Debug, Clone)]
pub struct UsernsTreeOps {
    pub runtime: Runtime,
    pub binary: std::path::PathBuf,
    pub userns: UsernsMode,
}

impl UsernsTreeOps {
    fn op(&self, args: &[&Path]) -> Result<()> {
        let mut argv = vec![self.binary.display().to_string(), TREE_OP_ARG.to_string()];
        argv.extend(args.iter().map(|a| a.display().to_string()));
        match self.runtime.exec_in_userns(&argv, self.userns).map_err(|e| Error::Sandbox(Box::new(e)))? {
            ExitStatus::Exited(0) => Ok(()),
            other => Err(Error::TreeOpFailed {
                op: format!("{:?}", &argv[2..]),
                reason: format!("it ended with {other:?} (its error is printed above)"),
            }),
        }
    }
}

impl TreeOps for UsernsTreeOps {
    fn unpack(&self, blob: &Path, dest: &Path, _layer_name: &str) -> Result<ApplyReport> {
        self.op(&[Path::new("unpack"), blob, dest])?;
        Ok(ApplyReport::default())
    }

    fn remove(&self, path: &Path) -> Result<()> {
        self.runtime.remove_tree(path, self.userns).map_err(|e| Error::Sandbox(Box::new(e)))
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<()> {
        let (uid, gid) = (uid.to_string(), gid.to_string());
        self.op(&[Path::new("chown"), path, Path::new(&uid), Path::new(&gid)])
    }
}

/// Merge snapshots (bottom first) into the new directory `dest`, inside the user namespace of `userns` when it
/// maps subordinate ids (files keep their real owners and unreadable directories can be read), else here.
pub fn merge_snapshots_as_sandbox(
    runtime: &Runtime,
    userns: UsernsMode,
    bottom_first: &[std::path::PathBuf],
    dest: &Path,
) -> Result<()> {
    let binary = match (userns, std::env::current_exe()) {
        (UsernsMode::Subuid { .. }, Ok(binary)) => binary,
        _ => return super::snapshotter::merge_snapshots(bottom_first, dest),
    };
    let ops = UsernsTreeOps { runtime: runtime.clone(), binary, userns };
    let mut args: Vec<&Path> = vec![Path::new("merge"), dest];
    args.extend(bottom_first.iter().map(|p| p.as_path()));
    ops.op(&args)
}

/// Export what a step changed as a layer blob of the store at `store_root`, inside the user namespace of
/// `userns` (a step may leave files the invoking user cannot read: apt's 0700 `partial` directories of `_apt`):
/// `upper` is an overlay upper directory, or, with `pristine`, a copied root to diff against it. None when nothing
/// changed.
pub fn export_diff_as_sandbox(
    runtime: &Runtime,
    userns: UsernsMode,
    store_root: &Path,
    upper: &Path,
    pristine: Option<&Path>,
    opts: &LayerOptions,
) -> Result<Option<LayerInfo>> {
    let binary = std::env::current_exe().map_err(Error::io("find", "the rbuild executable"))?;
    let ops = UsernsTreeOps { runtime: runtime.clone(), binary, userns };
    let result = upper.with_file_name(format!(
        "{}.layer",
        upper.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let (compression, threads) = (opts.compression.spec(), opts.threads.to_string());
    let epoch = opts.source_date_epoch.map_or("-".to_string(), |e| e.to_string());
    let mut args: Vec<&Path> = vec![Path::new("export-diff"), store_root, &result];
    args.extend([Path::new(&compression), Path::new(&threads), Path::new(&epoch), upper]);
    args.extend(pristine);
    let outcome = ops.op(&args).and_then(|_| {
        let text = std::fs::read_to_string(&result).map_err(Error::io("read", &result))?;
        parse_layer_info(&text, opts.compression)
    });
    let _ = std::fs::remove_file(&result);
    outcome
}

/// A layer's `digest size diff_id` line (`-` for none), as the `export-diff` helper writes it.
fn parse_layer_info(text: &str, compression: crate::layer::Compression) -> Result<Option<LayerInfo>> {
    let bad = || Error::TreeOpFailed { op: "export layer".into(), reason: format!("unreadable result {text:?}") };
    match text.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["-"] => Ok(None),
        [digest, size, diff_id] => Ok(Some(LayerInfo {
            digest: Digest::parse(digest)?,
            size: size.parse().map_err(|_| bad())?,
            diff_id: Digest::parse(diff_id)?,
            compression,
        })),
        _ => Err(bad()),
    }
}

/// The helper's side of `export-diff`: the diff's entries (ids as this namespace sees them, which are the
/// image's), written as a layer blob into the store; its line goes to `result`.
fn export_diff(store: &str, result: &str, options: [&str; 3], upper: &str, pristine: Option<&String>) -> Result<()> {
    let [compression, threads, epoch] = options;
    let bad = |what: &str| Error::TreeOpFailed { op: "export layer".into(), reason: format!("bad {what}") };
    let opts = LayerOptions {
        compression: crate::layer::Compression::parse(compression).ok_or_else(|| bad("compression"))?,
        threads: threads.parse().map_err(|_| bad("threads"))?,
        source_date_epoch: if epoch == "-" { None } else { Some(epoch.parse().map_err(|_| bad("epoch"))?) },
    };
    let store = crate::store::Store::open(Path::new(store))?;
    let entries = match pristine {
        Some(p) => crate::layer::diff_trees(Path::new(p), Path::new(upper))?,
        None => crate::layer::diff_overlay_upper(Path::new(upper))?,
    };
    let line = if entries.is_empty() {
        "-".to_string()
    } else {
        let info = store.write_layer(&entries, &opts)?;
        format!("{} {} {}", info.digest, info.size, info.diff_id)
    };
    std::fs::write(result, line).map_err(Error::io("write", result))
}

/// The helper's side: `__tree-op unpack BLOB DEST`, `__tree-op chown PATH UID GID`, `__tree-op merge DEST
/// SNAPSHOT...` or `__tree-op export-diff STORE RESULT COMPRESSION THREADS EPOCH UPPER [PRISTINE]`. Returns the
/// exit code.
pub fn tree_op_main(args: &[String]) -> i32 {
    let result = match args {
        [op, store, result, c, t, e, upper, pristine @ ..] if op == "export-diff" && pristine.len() <= 1 => {
            export_diff(store, result, [c, t, e], upper, pristine.first()).map(|_| ApplyReport::default())
        }
        [op, dest, snapshots @ ..] if op == "merge" => {
            let bottom_first: Vec<std::path::PathBuf> = snapshots.iter().map(std::path::PathBuf::from).collect();
            super::snapshotter::merge_snapshots(&bottom_first, Path::new(dest)).map(|_| ApplyReport::default())
        }
        [op, blob, dest] if op == "unpack" => (|| {
            let file = std::fs::File::open(blob).map_err(Error::io("open", blob))?;
            std::fs::create_dir(dest).map_err(Error::io("create", dest))?;
            apply_tar(decompressed(file)?, Path::new(dest), &ApplyOptions::new(ApplyMode::Snapshot, blob.clone()))
        })(),
        [op, path, uid, gid] if op == "chown" => match (uid.parse(), gid.parse()) {
            (Ok(uid), Ok(gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(Error::io("chown", path))
                .map(|_| crate::layer::ApplyReport::default()),
            _ => Err(Error::TreeOpFailed { op: "chown".into(), reason: format!("bad ids: {args:?}") }),
        },
        _ => Err(Error::TreeOpFailed { op: format!("{args:?}"), reason: "unknown operation".into() }),
    };
    match result {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
