//! A store for `rbuild build` tests, as root or as the unprivileged test user, with busybox loaded; helpers to
//! make contexts, build, run images and check the store is clean afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{PrivateDockerd, TEST_USER, TempDir, rbuild_bin, running_as_root, test_image, test_images_dir};

/// Where a container builder's directory (store and work) and the test images appear inside its containers: out of
/// the directories images use, so container isolation keeps them out of the steps' reach.
const CONTAINER_DIR: &str = "/rbuild-tests";
const CONTAINER_IMAGES: &str = "/rbuild-test-images";

/// rbuild run in containers of a private Docker engine under Docker's default security settings (container
/// isolation), as root; the static binary bound in at /rbuild/bin/rbuild.
#[derive(Debug, Clone)]
pub struct InContainer {
    pub engine: std::sync::Arc<PrivateDockerd>,
    pub bin: PathBuf,
}

/// A store for builds, as root or as the unprivileged test user.
#[derive(Debug)]
pub struct Builder {
    _dir: TempDir,
    pub root: PathBuf,
    pub work: PathBuf,
    pub as_user: bool,
    /// As the user, but with one id mapped (`RBUILD_USERNS=single`: no subordinate ids used).
    pub one_id: bool,
    /// Every rbuild in a container of a private engine, in container isolation (`rbuild run` in the namespace
    /// sandbox there, which needs the seccomp profile lifted).
    pub container: Option<InContainer>,
}

impl Builder {
    /// A builder whose store holds only busybox (also as `localhost/busybox:latest`).
    pub fn new(as_user: bool) -> Builder {
        let b = Builder::empty(as_user);
        assert!(b.rb(&["load", "-i", test_image("busybox").to_str().unwrap()]).status.success());
        assert!(b.rb(&["tag", "busybox", "localhost/busybox:latest"]).status.success());
        b
    }

    /// A builder as the unprivileged user with one id mapped (busybox loaded), as a user without subordinate ids
    /// builds.
    pub fn one_id() -> Builder {
        let mut b = Builder::empty(true);
        b.one_id = true;
        assert!(b.rb(&["load", "-i", test_image("busybox").to_str().unwrap()]).status.success());
        assert!(b.rb(&["tag", "busybox", "localhost/busybox:latest"]).status.success());
        b
    }

    /// A builder whose every rbuild runs in a container of `c.engine` in container isolation (busybox loaded).
    pub fn in_container(c: InContainer) -> Builder {
        let mut b = Builder::empty(false);
        b.container = Some(c);
        assert!(b.rb(&["load", "-i", test_image("busybox").to_str().unwrap()]).status.success());
        assert!(b.rb(&["tag", "busybox", "localhost/busybox:latest"]).status.success());
        b
    }

    /// Who builds, for messages: `root`, `user`, `one-id` or `container`.
    pub fn who(&self) -> &'static str {
        if self.container.is_some() {
            return "container";
        }
        match (self.as_user, self.one_id) {
            (false, _) => "root",
            (true, false) => "user",
            (true, true) => "one-id",
        }
    }

    /// A builder with an empty store.
    pub fn empty(as_user: bool) -> Builder {
        let dir = TempDir::new(if as_user { "build-user" } else { "build-root" });
        let root = dir.path().join("store");
        let work = dir.path().join("work");
        fs::create_dir_all(&work).unwrap();
        if as_user {
            fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            crate::give_to_test_user(dir.path());
        }
        Builder { _dir: dir, root, work, as_user, one_id: false, container: None }
    }

    pub fn rb(&self, args: &[&str]) -> Output {
        self.rb_env(args, &[])
    }

    /// Run rbuild with extra environment variables.
    pub fn rb_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.rb_in(None, args, env)
    }

    /// Run rbuild in directory `cwd` (relative paths in flags resolve there) with extra environment variables.
    pub fn rb_in(&self, cwd: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Output {
        if let Some(c) = &self.container {
            return self.rb_in_container(c, cwd, args, env);
        }
        let mut cmd = if self.as_user {
            let mut c = Command::new("runuser");
            c.args(["-u", TEST_USER, "--", "env", "-u", "RBUILD_USERNS", "RBUILD_OFFLINE=1"]);
            if self.one_id {
                c.arg("RBUILD_USERNS=single");
            }
            c.args(env.iter().map(|(k, v)| format!("{k}={v}")));
            c.arg(rbuild_bin());
            c
        } else {
            let mut c = Command::new(rbuild_bin());
            // Tests never reach beyond loopback: no registry unless a test sets one up.
            c.env("RBUILD_OFFLINE", "1");
            c.envs(env.iter().copied());
            c
        };
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        cmd.arg("--root").arg(&self.root).args(args).output().unwrap()
    }

    /// [`Builder::rb_in`] in a container: this builder's directory and the test images are bound in (paths in the
    /// arguments, the environment and the working directory mapped), the host's loopback is reachable.
    fn rb_in_container(&self, c: &InContainer, cwd: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Output {
        let base = self._dir.path().to_string_lossy().into_owned();
        let images = test_images_dir().to_string_lossy().into_owned();
        let map = |s: &str| s.replace(&base, CONTAINER_DIR).replace(&images, CONTAINER_IMAGES);
        let mut docker: Vec<String> = vec!["run".into(), "--rm".into(), "--network".into(), "host".into()];
        let mut add = |v: &[String]| docker.extend(v.iter().cloned());
        add(&["-v".into(), format!("{base}:{CONTAINER_DIR}")]);
        add(&["-v".into(), format!("{images}:{CONTAINER_IMAGES}:ro")]);
        add(&["-v".into(), format!("{}:/rbuild/bin/rbuild:ro", c.bin.display())]);
        add(&["-w".into(), cwd.map_or("/".into(), |d| map(&d.to_string_lossy()))]);
        add(&["-e".into(), "RBUILD_OFFLINE=1".into()]);
        for (k, v) in env {
            add(&["-e".into(), format!("{k}={}", map(v))]);
        }
        if args.first() == Some(&"run") {
            // `rbuild run` needs a namespace sandbox: this one container gets the seccomp profile lifted.
            add(&["--security-opt".into(), "seccomp=unconfined".into(), "-e".into(), "RBUILD_ISOLATION=auto".into()]);
        } else {
            add(&["-e".into(), "RBUILD_ISOLATION=container".into()]);
        }
        add(&["busybox".into(), "/rbuild/bin/rbuild".into(), "--root".into(), map(&self.root.to_string_lossy())]);
        docker.extend(args.iter().map(|a| map(a)));
        let docker: Vec<&str> = docker.iter().map(String::as_str).collect();
        let mut out = c.engine.docker(&docker);
        // What rbuild said names the paths as the host has them.
        let unmap = |b: &[u8]| String::from_utf8_lossy(b).replace(CONTAINER_DIR, &base).into_bytes();
        out.stdout = unmap(&out.stdout);
        out.stderr = unmap(&out.stderr);
        out
    }

    /// Build `context` (tag `tag`); returns (success, stdout, stderr).
    pub fn build(&self, context: &Path, tag: &str, extra: &[&str]) -> (bool, String, String) {
        self.build_str(context.to_str().unwrap(), tag, extra)
    }

    /// Build a context given as a string (a directory, `-`, a URL), with plain progress.
    pub fn build_str(&self, context: &str, tag: &str, extra: &[&str]) -> (bool, String, String) {
        let mut args = vec!["build", "-t", tag];
        if !extra.contains(&"--progress") {
            args.extend(["--progress", "plain"]);
        }
        args.extend_from_slice(extra);
        args.push(context);
        let out = self.rb(&args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn run(&self, image: &str, cmd: &[&str]) -> String {
        let mut args = vec!["run", image];
        args.extend_from_slice(cmd);
        let out = self.rb(&args);
        assert!(out.status.success(), "run {image}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A build context in the work dir with these files.
    pub fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.work.join(name);
        fs::create_dir_all(&dir).unwrap();
        for (rel, content) in files {
            let p = dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, content).unwrap();
        }
        if self.as_user {
            crate::give_to_test_user(&dir);
        }
        dir
    }

    /// Run `sh -c script` in `dir` as the builder's user (root or the unprivileged test user).
    pub fn shell(&self, dir: &Path, script: &str) -> Output {
        let mut cmd = if self.as_user {
            let mut c = Command::new("runuser");
            c.args(["-u", TEST_USER, "--", "sh", "-c", script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", script]);
            c
        };
        cmd.current_dir(dir).output().unwrap()
    }

    pub fn assert_clean(&self) {
        let out = self.rb(&["fsck"]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("store is clean"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let left = fs::read_dir(self.root.join("tmp")).unwrap().count();
        assert_eq!(left, 0, "temporary entries left in the store");
    }
}

/// A builder as root, and one as the unprivileged test user when running as root.
pub fn builders() -> Vec<Builder> {
    if running_as_root() { vec![Builder::new(false), Builder::new(true)] } else { vec![Builder::new(false)] }
}

/// The (steps run, steps cached) of a build's summary line.
pub fn counts(stderr: &str) -> (usize, usize) {
    let line = stderr.lines().find(|l| l.starts_with("built ")).unwrap_or_else(|| panic!("no summary in: {stderr}"));
    let num = |word: &str| -> usize {
        let before = line.split(word).next().unwrap();
        before.trim_end().rsplit(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    (num(" steps run"), num(" cached"))
}
