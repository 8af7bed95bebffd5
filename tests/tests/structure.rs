//! The project's structure rules (scripts/check-structure): no import cycle between the files of a crate, and
//! small CLI command files. The checker is shown to find a planted cycle, so a passing run means something.

use std::path::{Path, PathBuf};
use std::process::Command;

fn checker() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check-structure")
}

fn run(root: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new("python3");
    cmd.arg(checker());
    cmd.args(root);
    let out = cmd.output().expect("python3 runs (scripts/install-test-deps.sh installs it)");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_project_has_no_import_cycle_and_small_command_files() {
    let (ok, said) = run(None);
    assert!(ok, "scripts/check-structure found:\n{said}");
}

#[test]
fn the_checker_finds_a_cycle_through_a_facade_and_a_long_command_file() {
    let root = rbuild_tests::TempDir::new("structure");
    let src = root.path().join("builder/src");
    std::fs::create_dir_all(src.join("store")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod fsops;\npub mod store;\n").unwrap();
    std::fs::write(src.join("fsops.rs"), "use crate::store::Store;\npub fn remove() {}\n").unwrap();
    // The facade re-exports Store; the path through it leads to store/handle.rs, which imports fsops.
    std::fs::write(src.join("store/mod.rs"), "mod handle;\npub use handle::Store;\n").unwrap();
    std::fs::write(src.join("store/handle.rs"), "pub struct Store;\nfn f() { crate::fsops::remove() }\n").unwrap();
    let cmds = root.path().join("cli/src/commands");
    std::fs::create_dir_all(&cmds).unwrap();
    std::fs::write(cmds.join("build.rs"), "// line\n".repeat(251)).unwrap();
    let (ok, said) = run(Some(root.path()));
    assert!(!ok, "{said}");
    assert!(said.contains("builder: files import each other in a cycle: fsops, store/handle"), "{said}");
    assert!(said.contains("cli/src/commands/build.rs: 251 lines"), "{said}");
}
