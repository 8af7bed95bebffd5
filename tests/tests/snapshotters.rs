//! Builds over every snapshotter `rbuild build` can use: `RBUILD_SNAPSHOTTER=copy` forced, and a store on an
//! overlayfs mount (the default inside a CI container, where $HOME is on the container's overlay), where the
//! kernel refuses an overlay whose upper directory is on overlayfs and auto mode must fall back. As root and as
//! the unprivileged user; `compose build` and `rbuild run` too.

use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_tests::build_fixture::{Builder, builders, counts};
use rbuild_tests::{TempDir, give_to_test_user, running_as_root, test_image};

/// A Dockerfile whose steps delete a file of the base (a whiteout), make directories, and write files as
/// another user, each checked by the next step.
const STEPS: &str = "FROM busybox\n\
    RUN mkdir -p /a/b && echo hi > /a/b/c && rm /bin/true && echo 'app:x:1234:1234::/tmp:/bin/sh' >> /etc/passwd\n\
    USER app\n\
    RUN echo mine > /tmp/mine\n\
    USER root\n\
    RUN test \"$(stat -c %u /tmp/mine)\" = 1234 && test ! -e /bin/true && test \"$(cat /a/b/c)\" = hi\n";

/// The built image has what the steps made.
fn check_image(b: &Builder, image: &str) {
    let out =
        b.run(image, &["sh", "-c", "cat /a/b/c /tmp/mine; stat -c %u /tmp/mine; test ! -e /bin/true && echo gone"]);
    assert_eq!(out, "hi\nmine\n1234\ngone\n", "{image} as user={}", b.as_user);
}

#[test]
fn builds_run_over_the_copy_snapshotter_when_it_is_forced() {
    for b in builders() {
        let ctx = b.context("copy", &[("Dockerfile", STEPS)]);
        let env = [("RBUILD_SNAPSHOTTER", "copy")];
        let out = b.rb_env(&["build", "-t", "copied", "--progress", "plain", ctx.to_str().unwrap()], &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "as user={}: {err}", b.as_user);
        assert!(err.contains("steps run over the copy snapshotter (RBUILD_SNAPSHOTTER)"), "{err}");
        assert_eq!(counts(&err), (3, 0));
        check_image(&b, "copied");
        let out = b.rb_env(&["build", "-t", "copied", "--progress", "plain", ctx.to_str().unwrap()], &env);
        assert_eq!(counts(&String::from_utf8_lossy(&out.stderr)), (0, 3));
        b.assert_clean();
    }
}

/// An unknown `RBUILD_SNAPSHOTTER` is refused by name, with the values it takes (typed `InvalidSetting`: the
/// message no longer calls the variable "malformed"), and the store stays clean.
#[test]
fn an_unknown_snapshotter_is_refused_with_the_values_it_takes() {
    let b = builders().remove(0);
    let ctx = b.context("bogus-snapshotter", &[("Dockerfile", "FROM busybox\nRUN true\n")]);
    let out = b.rb_env(&["build", ctx.to_str().unwrap()], &[("RBUILD_SNAPSHOTTER", "bogus")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("RBUILD_SNAPSHOTTER: unknown snapshotter \"bogus\"; use auto, overlay, overlay-scratch, fuse-overlayfs or copy"),
        "{err}"
    );
    assert!(!err.contains("malformed"), "{err}");
    b.assert_clean();
}

/// An overlayfs mounted for the test, unmounted when dropped.
struct OverlayMount {
    dir: TempDir,
}

impl OverlayMount {
    fn new() -> OverlayMount {
        let dir = TempDir::new("overlay-store");
        for d in ["lower", "upper", "work", "merged"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let p = |d: &str| dir.path().join(d).display().to_string();
        let options = format!("lowerdir={},upperdir={},workdir={}", p("lower"), p("upper"), p("work"));
        let status = Command::new("mount").args(["-t", "overlay", "overlay", "-o", &options, &p("merged")]).status();
        assert!(status.unwrap().success(), "mount an overlayfs for the store");
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        OverlayMount { dir }
    }

    fn merged(&self) -> PathBuf {
        self.dir.path().join("merged")
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.merged()).status();
    }
}

/// A builder whose store is at `root` (on the overlay).
fn builder_at(as_user: bool, root: &Path) -> Builder {
    let mut b = Builder::empty(as_user);
    std::fs::create_dir_all(root).unwrap();
    if as_user {
        give_to_test_user(root);
    }
    b.root = root.to_path_buf();
    assert!(b.rb(&["load", "-i", test_image("busybox").to_str().unwrap()]).status.success());
    b
}

#[test]
fn build_compose_build_and_run_work_on_a_store_on_overlayfs() {
    if !running_as_root() {
        eprintln!("skipped: mounting an overlayfs for the store needs root");
        return;
    }
    let overlay = OverlayMount::new();
    for as_user in [false, true] {
        let b = builder_at(as_user, &overlay.merged().join(if as_user { "user-store" } else { "root-store" }));
        let ctx = b.context(
            "on-overlay",
            &[("Dockerfile", STEPS), ("compose.yaml", "services:\n  app:\n    build: .\n    image: composed\n")],
        );
        let out = b.rb(&["build", "-t", "on-overlay", "--progress", "plain", ctx.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "as user={as_user}: {err}");
        // Auto mode says once what it fell back to, and remembers it.
        assert!(err.contains("snapshotter was refused here"), "{err}");
        check_image(&b, "on-overlay");
        let out = b.rb_in(Some(&ctx), &["compose", "build", "--progress", "plain", "--no-cache"], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "compose as user={as_user}: {err}");
        assert!(err.contains("note: steps run over the"), "the fallback is said once per build: {err}");
        assert!(!err.contains("was refused here"), "the store remembered the fallback: {err}");
        check_image(&b, "composed");
        b.assert_clean();
    }
}

#[test]
fn a_step_may_leave_files_the_invoking_user_cannot_read() {
    // As apt does with its `partial` directories: mode 0700, owned by another of the image's users.
    let dockerfile = "FROM busybox\n\
        RUN mkdir -p /var/cache/apt/archives/partial && echo data > /var/cache/apt/archives/partial/f \
            && chown -R 42:42 /var/cache/apt/archives/partial && chmod 700 /var/cache/apt/archives/partial \
            && chmod 600 /var/cache/apt/archives/partial/f\n\
        RUN test \"$(stat -c '%a %u' /var/cache/apt/archives/partial)\" = '700 42'\n";
    for b in builders() {
        for snapshotter in ["auto", "copy"] {
            let ctx = b.context("unreadable", &[("Dockerfile", dockerfile)]);
            let env = [("RBUILD_SNAPSHOTTER", snapshotter)];
            let out = b.rb_env(
                &["build", "-t", "unreadable", "--no-cache", "--progress", "plain", ctx.to_str().unwrap()],
                &env,
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "as user={} over {snapshotter}: {err}", b.as_user);
            let seen = b.run(
                "unreadable",
                &["sh", "-c", "stat -c '%a %u:%g' /var/cache/apt/archives/partial /var/cache/apt/archives/partial/f; cat /var/cache/apt/archives/partial/f"],
            );
            assert_eq!(seen, "700 42:42\n600 42:42\ndata\n", "as user={} over {snapshotter}", b.as_user);
            b.assert_clean();
        }
    }
}
