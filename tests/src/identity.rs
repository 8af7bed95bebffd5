//! Running rbuild as each identity the rootless tests cover: root, the test user with subordinate ids, and a user
//! with none (one id mapped); each with a directory of its own (a build context `ctx/` and a store) that it owns.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{TEST_USER, TempDir, give_to_test_user, rbuild_bin, running_as_root};

/// The user without subordinate ids (created by scripts/install-test-deps.sh).
pub const NOSUB_USER: &str = "rbuild-nosub";

/// Who runs rbuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum As {
    Root,
    /// The test user, with subordinate ids.
    Subuid,
    /// A user with none: one id mapped.
    NoSubuid,
}

impl As {
    /// The user name to run as, None for the current user.
    pub fn user(self) -> Option<&'static str> {
        match (running_as_root(), self) {
            (true, As::Subuid) => Some(TEST_USER),
            (true, As::NoSubuid) => Some(NOSUB_USER),
            _ => None,
        }
    }

    /// Give `path` (recursively) to this identity.
    pub fn own(self, path: &Path) {
        match self.user() {
            Some(TEST_USER) => give_to_test_user(path),
            Some(user) => {
                let status = Command::new("chown").arg("-R").arg(format!("{user}:")).arg(path).status().unwrap();
                assert!(status.success(), "chown {user} {}", path.display());
            }
            None => {}
        }
    }
}

/// Every identity this machine can run as: all three as root, else the current user (one id, as a user without
/// subordinate ids).
pub fn identities() -> Vec<As> {
    if running_as_root() { vec![As::Root, As::Subuid, As::NoSubuid] } else { vec![As::NoSubuid] }
}

/// An identity's directory: `ctx/` (the build context, written from `files`) and `store/`.
#[derive(Debug)]
pub struct Workspace {
    pub who: As,
    pub dir: TempDir,
}

impl Workspace {
    pub fn new(who: As, tag: &str, files: &[(&str, &str)]) -> Workspace {
        let dir = TempDir::new(&format!("{tag}-{who:?}"));
        for (name, content) in files {
            dir.write(&format!("ctx/{name}"), content);
        }
        std::fs::create_dir_all(dir.path().join("ctx")).unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        who.own(dir.path());
        Workspace { who, dir }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// rbuild with `env` (`K=V` entries) and the automatic user-namespace choice, in `ctx/`.
    pub fn rbuild(&self, env: &[&str], args: &[&str]) -> Output {
        let mut cmd = match self.who.user() {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", "env", "-u", "RBUILD_USERNS"]);
                c
            }
            None => {
                let mut c = Command::new("env");
                c.args(["-u", "RBUILD_USERNS"]);
                c
            }
        };
        cmd.args(env).arg(rbuild_bin()).arg("--root").arg(self.store()).args(args);
        cmd.current_dir(self.dir.path().join("ctx")).output().unwrap()
    }

    /// rbuild that must succeed: its standard output, then its standard error.
    pub fn ok(&self, env: &[&str], args: &[&str]) -> String {
        let out = self.rbuild(env, args);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert!(out.status.success(), "{:?} rbuild {args:?}: {}", self.who, text(&out.stderr));
        text(&out.stdout) + &text(&out.stderr)
    }
}
