//! Tree operations run inside the sandbox's user namespace, for stores whose snapshots hold files of
//! subordinate ids: the rbuild binary re-executed (through the runtime) as `__tree-op`, as root of the user
//! namespace, where it can create files of any mapped owner and remove them again.

use std::path::Path;

use rbuild_runtime::{ExitStatus, Runtime, UsernsMode};

use crate::error::{Error, Result};
use crate::layer::{ApplyMode, ApplyOptions, ApplyReport, apply_tar, decompressed};
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
            other => Err(Error::Malformed {
                what: format!("tree operation {:?}", &argv[2..]),
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

/// The helper's side: `__tree-op unpack BLOB DEST`, `__tree-op chown PATH UID GID` or `__tree-op merge DEST
/// SNAPSHOT...`. Returns the exit code.
pub fn tree_op_main(args: &[String]) -> i32 {
    let result = match args {
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
            _ => Err(Error::Malformed { what: "tree operation".into(), reason: format!("bad ids: {args:?}") }),
        },
        _ => Err(Error::Malformed { what: "tree operation".into(), reason: format!("unknown: {args:?}") }),
    };
    match result {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
