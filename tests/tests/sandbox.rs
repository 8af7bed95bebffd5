//! The rootless sandbox through `rbuild run`, in every id-mapping mode this machine offers: as root (no user
//! namespace), and as the unprivileged test user with one id mapped (`RBUILD_USERNS=single`) and with
//! subordinate ids (`RBUILD_USERNS=subuid`). Each mode checks identity, pid 1, hostname, /proc, `--network none`,
//! where writes and deletes land, exit codes and signals, output streams, chown, and that nothing is left
//! behind (mounts, temporary directories, processes), also after rbuild itself is killed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rbuild_tests::{TEST_USER, TempDir, rbuild_bin, running_as_root, test_image};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Root,
    Single,
    Subuid,
}

/// A store with busybox, used by one mode's runs.
struct Sandbox {
    mode: Mode,
    _dir: TempDir,
    root: PathBuf,
    /// `RBUILD_SNAPSHOTTER` for the runs (None: the default).
    snapshotter: Option<&'static str>,
    /// More environment for rbuild (also through runuser).
    extra_env: Vec<String>,
}

impl Sandbox {
    fn new(mode: Mode) -> Sandbox {
        let dir = TempDir::new(&format!("sandbox-{mode:?}"));
        let root = dir.path().join("store");
        if running_as_root() && mode != Mode::Root {
            fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            assert!(Command::new("chown").arg(TEST_USER).arg(dir.path()).status().unwrap().success());
        }
        let s = Sandbox { mode, _dir: dir, root, snapshotter: None, extra_env: Vec::new() };
        let out = s.rbuild(&["load", "-i", test_image("busybox").to_str().unwrap()]);
        assert!(out.status.success(), "{mode:?}: load: {}", String::from_utf8_lossy(&out.stderr));
        s
    }

    fn command(&self, args: &[&str]) -> Command {
        let userns = match self.mode {
            Mode::Root => "auto",
            Mode::Single => "single",
            Mode::Subuid => "subuid",
        };
        let mut cmd = if running_as_root() && self.mode != Mode::Root {
            let mut c = Command::new("runuser");
            c.args(["-u", TEST_USER, "--", "env", &format!("RBUILD_USERNS={userns}")]);
            if let Some(snap) = self.snapshotter {
                c.arg(format!("RBUILD_SNAPSHOTTER={snap}"));
            }
            c.args(&self.extra_env);
            c.arg(rbuild_bin());
            c
        } else {
            let mut c = Command::new(rbuild_bin());
            c.env("RBUILD_USERNS", userns);
            if let Some(snap) = self.snapshotter {
                c.env("RBUILD_SNAPSHOTTER", snap);
            }
            for kv in &self.extra_env {
                if let Some((k, v)) = kv.split_once('=') {
                    c.env(k, v);
                }
            }
            c
        };
        cmd.arg("--root").arg(&self.root).args(args);
        cmd
    }

    fn rbuild(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut full = vec!["run"];
        full.extend_from_slice(args);
        let out = self.rbuild(&full);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `run --changes` of a step that writes a file and deletes one reports exactly those (and their directories).
    fn assert_a_write_and_a_delete_are_the_changes(&self) {
        let (code, out, err) = self.run(&["--changes", "busybox", "sh", "-c", "echo hi > /tmp/written; rm /bin/ls"]);
        assert_eq!(code, 0, "{:?}: {err}", self.mode);
        // fuse-overlayfs copies up a hard-link sibling of a file it unlinks (busybox's applets are one inode): an
        // unchanged copy, reported as changed.
        let fuse = self.snapshotter == Some("fuse-overlayfs");
        let changes: Vec<&str> =
            out.lines().filter(|l| !(fuse && l.starts_with("C /bin/") && l.ends_with(" 0:0"))).collect();
        let want = ["C /bin 0:0", "D /bin/ls", "C /tmp 0:0", "A /tmp/written 0:0"];
        assert_eq!(changes, want, "{:?} {:?}", self.mode, self.snapshotter);
    }

    fn assert_nothing_left(&self) {
        let tmp = self.root.join("tmp");
        let left: Vec<_> = fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{:?}: temporary entries left: {left:?}", self.mode);
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(self.root.to_str().unwrap()), "{:?}: a mount is left", self.mode);
    }
}

/// The modes this machine can test: all three as root (subuid when newuidmap and ranges exist), else the
/// current user's own.
fn modes() -> Vec<Mode> {
    let subuid = Path::new("/usr/bin/newuidmap").exists()
        && fs::read_to_string("/etc/subuid")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{TEST_USER}:")));
    if running_as_root() {
        let mut m = vec![Mode::Root, Mode::Single];
        if subuid {
            m.push(Mode::Subuid);
        } else {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), b"SKIPPED subuid mode: no newuidmap or ranges\n");
        }
        m
    } else {
        vec![Mode::Single]
    }
}

#[test]
fn identity_pid_hostname_and_proc() {
    for mode in modes() {
        let s = Sandbox::new(mode);
        let (code, out, err) =
            s.run(&["busybox", "sh", "-c", "id -u; id -g; echo $$; hostname; ls /proc/1 >/dev/null && echo proc-ok"]);
        assert_eq!(code, 0, "{mode:?}: {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..3], ["0", "0", "1"], "{mode:?}: {out}");
        assert!(lines[3].len() == 12 && lines[3].bytes().all(|b| b.is_ascii_hexdigit()), "{mode:?}: hostname {out}");
        assert_eq!(lines[4], "proc-ok", "{mode:?}");
        s.assert_nothing_left();
    }
}

#[test]
fn network_none_has_only_loopback() {
    for mode in modes() {
        let s = Sandbox::new(mode);
        let (code, out, err) = s.run(&["--network", "none", "busybox", "ip", "-o", "link"]);
        assert_eq!(code, 0, "{mode:?}: {err}");
        let links: Vec<&str> = out.lines().collect();
        assert_eq!(links.len(), 1, "{mode:?}: {out}");
        assert!(links[0].contains(": lo:") && links[0].contains("UP"), "{mode:?}: {out}");
        // The host network is there by default.
        let (_, out, _) = s.run(&["busybox", "ip", "-o", "link"]);
        assert!(out.lines().count() >= 1);
        s.assert_nothing_left();
    }
}

#[test]
fn writes_land_in_the_upper_dir_and_deletes_leave_whiteouts() {
    for mode in modes() {
        let s = Sandbox::new(mode);
        s.assert_a_write_and_a_delete_are_the_changes();
        // The sandbox's own mount points (/proc, /dev, /sys, /etc/hosts ...) are not changes.
        s.assert_nothing_left();
    }
}

#[test]
fn exit_codes_and_output_streams_come_back_exactly() {
    for mode in modes() {
        let s = Sandbox::new(mode);
        for code in [0, 1, 42] {
            let (got, out, err) = s.run(&["busybox", "sh", "-c", &format!("echo out; echo err >&2; exit {code}")]);
            assert_eq!(got, code, "{mode:?}");
            assert_eq!(out, "out\n", "{mode:?}");
            assert!(err.starts_with("err\n"), "{mode:?}: {err}");
        }
        let (code, _, err) = s.run(&["busybox", "no-such-command"]);
        assert_ne!(code, 0);
        assert!(err.contains("no-such-command: executable file not found in $PATH"), "{mode:?}: {err}");
        s.assert_nothing_left();
    }
}

fn wait_for_process(pattern: &str, present: bool) -> bool {
    for _ in 0..100 {
        let found = Command::new("pgrep").args(["-f", pattern]).output().map(|o| o.status.success()).unwrap_or(false);
        if found == present {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_step_killed_by_a_signal_is_reported_as_such() {
    for (i, mode) in modes().into_iter().enumerate() {
        let s = Sandbox::new(mode);
        let marker = format!("424{i}.5");
        let child = s.command(&["run", "busybox", "sleep", &marker]).stderr(Stdio::piped()).spawn().unwrap();
        // Anchored: rbuild's own command line contains the marker too.
        assert!(wait_for_process(&format!("^sleep {marker}"), true), "{mode:?}: the step did not start");
        assert!(Command::new("pkill").args(["-KILL", "-f", &format!("^sleep {marker}")]).status().unwrap().success());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(137), "{mode:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("killed by signal 9"), "{mode:?}");
        s.assert_nothing_left();
    }
}

#[test]
fn steps_start_with_default_signal_dispositions() {
    // rbuild (like every Rust program) ignores SIGPIPE; a step must not inherit that, or `yes | head` never ends.
    for mode in modes() {
        let s = Sandbox::new(mode);
        let out = s.command(&["run", "busybox", "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]).output().unwrap();
        assert!(out.status.success(), "{mode:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
        let out = s.command(&["run", "busybox", "timeout", "10", "sh", "-c", "yes | head -c 5"]).output().unwrap();
        assert!(out.status.success(), "{mode:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "y\ny\ny", "{mode:?}");
        s.assert_nothing_left();
    }
}

#[test]
fn chown_fails_with_a_hint_with_one_id_and_works_with_subordinate_ids() {
    for mode in modes() {
        let s = Sandbox::new(mode);
        let (code, out, err) =
            s.run(&["--changes", "busybox", "sh", "-c", "touch /tmp/owned && chown 1000:1000 /tmp/owned"]);
        if mode == Mode::Single {
            assert_ne!(code, 0, "chown worked with one id mapped");
            assert!(err.contains("Invalid argument"), "{err}");
            let hint = err.find("hint: only one user id is mapped").expect("the hint follows the step's error");
            assert!(hint > err.find("chown").unwrap_or(0), "{err}");
        } else {
            assert_eq!(code, 0, "{mode:?}: {err}");
            assert!(out.lines().any(|l| l == "A /tmp/owned 1000:1000"), "{mode:?}: {out}");
        }
        s.assert_nothing_left();
    }
}

#[test]
fn killing_rbuild_itself_leaves_no_process_and_the_next_run_sweeps() {
    for (i, mode) in modes().into_iter().enumerate() {
        let s = Sandbox::new(mode);
        let marker = format!("434{i}.5");
        let mut child = s.command(&["run", "busybox", "sleep", &marker]).spawn().unwrap();
        assert!(wait_for_process(&format!("^sleep {marker}"), true), "{mode:?}: the step did not start");
        // Kill rbuild (for the unprivileged modes, the rbuild under runuser).
        let pattern = format!("^{} --root {} run busybox sleep {marker}", rbuild_bin().display(), s.root.display());
        assert!(Command::new("pkill").args(["-KILL", "-f", &pattern]).status().unwrap().success());
        let _ = child.wait();
        assert!(wait_for_process(&format!("^sleep {marker}"), false), "{mode:?}: the step outlived rbuild");
        let out = s.rbuild(&["images"]);
        assert!(out.status.success());
        s.assert_nothing_left();
    }
}

#[test]
fn two_hundred_runs_with_kills_and_terms_leave_nothing_behind() {
    for (m, mode) in modes().into_iter().enumerate() {
        let s = Sandbox::new(mode);
        let mut runs = 0;
        for i in 0..180 {
            let (code, _, err) = s.run(&["busybox", "sh", "-c", &format!("exit {}", i % 3)]);
            assert_eq!(code, i % 3, "{mode:?} run {i}: {err}");
            runs += 1;
        }
        for i in 0..10 {
            // A step killed by SIGKILL from outside.
            let marker = format!("61{m}{i}.5");
            let child = s.command(&["run", "busybox", "sleep", &marker]).stderr(Stdio::null()).spawn().unwrap();
            assert!(wait_for_process(&format!("^sleep {marker}"), true), "{mode:?}: step {i} did not start");
            Command::new("pkill").args(["-KILL", "-f", &format!("^sleep {marker}")]).status().unwrap();
            assert_eq!(child.wait_with_output().unwrap().status.code(), Some(137), "{mode:?}");
            runs += 1;
        }
        for i in 0..10 {
            // rbuild itself stopped by SIGTERM: it stops the sandbox and cleans up.
            let marker = format!("62{m}{i}.5");
            let child = s.command(&["run", "busybox", "sleep", &marker]).stderr(Stdio::piped()).spawn().unwrap();
            assert!(wait_for_process(&format!("^sleep {marker}"), true), "{mode:?}: step {i} did not start");
            let pattern = format!("^{} --root {} run busybox sleep {marker}", rbuild_bin().display(), s.root.display());
            Command::new("pkill").args(["-TERM", "-f", &pattern]).status().unwrap();
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(143), "{mode:?}: {}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stderr).contains("stopped and cleaned up"));
            assert!(wait_for_process(&format!("^sleep {marker}"), false), "{mode:?}: step outlived SIGTERM");
            runs += 1;
        }
        assert_eq!(runs, 200);
        s.assert_nothing_left();
    }
}

#[test]
fn the_copy_and_fuse_overlayfs_snapshotters_pass_the_same_checks() {
    // fuse-overlayfs needs /dev/fuse, which only root may open on the project's machines: that mode runs as root.
    let mut cases: Vec<(Mode, &str)> = modes().into_iter().map(|m| (m, "copy")).collect();
    if running_as_root() && Path::new("/usr/bin/fuse-overlayfs").exists() {
        cases.push((Mode::Root, "fuse-overlayfs"));
    } else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED fuse-overlayfs mode: needs root and fuse-overlayfs\n",
        );
    }
    for (mode, snapshotter) in cases {
        let mut s = Sandbox::new(mode);
        s.snapshotter = Some(snapshotter);
        let (code, out, err) = s.run(&["busybox", "sh", "-c", "id -u; echo $$; ls /proc/1 >/dev/null && echo proc-ok"]);
        assert_eq!((code, out.as_str()), (0, "0\n1\nproc-ok\n"), "{mode:?}: {err}");
        s.assert_a_write_and_a_delete_are_the_changes();
        for code in [1, 42] {
            assert_eq!(s.run(&["busybox", "sh", "-c", &format!("exit {code}")]).0, code, "{mode:?}");
        }
        let (code, out, _) = s.run(&["--network", "none", "busybox", "ip", "-o", "link"]);
        assert_eq!((code, out.lines().count()), (0, 1), "{mode:?}: {out}");
        s.assert_nothing_left();
    }
    // An unknown snapshotter is a clear error.
    let mut s = Sandbox::new(modes()[0]);
    s.snapshotter = Some("zfs");
    let (code, _, err) = s.run(&["busybox", "true"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("unknown snapshotter \"zfs\"; use auto, overlay, overlay-scratch, fuse-overlayfs or copy"),
        "{err}"
    );
}

#[test]
fn cache_secret_and_tmpfs_mounts() {
    for mode in modes() {
        let s = Sandbox::new(mode);
        let secret = s.root.parent().unwrap().join("token.txt");
        fs::write(&secret, "s3cr3t").unwrap();
        if running_as_root() && mode != Mode::Root {
            assert!(Command::new("chown").arg(TEST_USER).arg(&secret).status().unwrap().success());
        }
        let secret_mount = format!("type=secret,id=tok,source={}", secret.display());
        // A cache mount keeps its data from one run to the next.
        for (i, expect) in [(1, "run\n"), (2, "run\nrun\n")] {
            let (code, out, err) = s.run(&[
                "--mount",
                "type=cache,target=/cache,id=c",
                "busybox",
                "sh",
                "-c",
                "echo run >> /cache/log; cat /cache/log",
            ]);
            assert_eq!((code, out.as_str()), (0, expect), "{mode:?} run {i}: {err}");
        }
        // A secret is readable (0400), a tmpfs is writable, and neither leaves a trace in the changes.
        let (code, out, err) = s.run(&[
            "--changes",
            "--mount",
            &secret_mount,
            "--mount",
            "type=tmpfs,target=/scratch,size=1m",
            "busybox",
            "sh",
            "-c",
            "cat /run/secrets/tok; echo; stat -c %a /run/secrets/tok; echo x > /scratch/f && echo tmpfs-ok",
        ]);
        assert_eq!(code, 0, "{mode:?}: {err}");
        assert_eq!(out, "s3cr3t\n400\ntmpfs-ok\n", "{mode:?}: the changes must be empty: {out}");
        // A secret as an environment variable.
        let (_, out, _) =
            s.run(&["--mount", &format!("{secret_mount},env=TOKEN"), "busybox", "sh", "-c", "echo $TOKEN"]);
        assert_eq!(out, "s3cr3t\n", "{mode:?}");
        // sharing=locked lets one run at a time use the cache.
        let script = "echo start >> /cache/log; sleep 1; echo end >> /cache/log";
        let mount = "type=cache,target=/cache,id=locked,sharing=locked";
        let a = s.command(&["run", "--mount", mount, "busybox", "sh", "-c", script]).spawn().unwrap();
        let b = s.command(&["run", "--mount", mount, "busybox", "sh", "-c", script]).spawn().unwrap();
        for mut c in [a, b] {
            assert!(c.wait().unwrap().success());
        }
        let (_, out, _) = s.run(&["--mount", mount, "busybox", "cat", "/cache/log"]);
        assert_eq!(out, "start\nend\nstart\nend\n", "{mode:?}: locked runs overlapped");
        // sharing=private gives a run that finds the cache busy a directory of its own.
        let private = "type=cache,target=/cache,id=private,sharing=private";
        let a = s
            .command(&[
                "run",
                "--mount",
                private,
                "busybox",
                "sh",
                "-c",
                "echo A > /cache/who; sleep 1; cat /cache/who",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let (_, b_out, _) =
            s.run(&["--mount", private, "busybox", "sh", "-c", "cat /cache/who 2>/dev/null; echo B > /cache/who"]);
        let a_out = a.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&a_out.stdout), "A\n", "{mode:?}: a private cache was shared");
        assert_eq!(b_out, "", "{mode:?}: the second run saw the first one's private cache");
        s.assert_nothing_left();
    }
}

#[test]
fn file_owners_from_layers_show_inside_with_subordinate_ids() {
    use rbuild_builder::export::image::{HistoryEntry, MediaTypes, write_image};
    use rbuild_builder::layer::{Compression, LayerOptions, collect_tree};
    if !running_as_root() {
        let _ =
            std::io::Write::write_all(&mut std::io::stderr(), b"SKIPPED file_owners...: making the image needs root\n");
        return;
    }
    // An image with /owned (1000:1000) on top of busybox, saved as a Docker archive.
    let dir = TempDir::new("owners");
    let store_root = dir.path().join("maker");
    let out = rbuild_tests::run_rbuild(
        &["--root", store_root.to_str().unwrap(), "load", "-i", test_image("busybox").to_str().unwrap()],
        None,
        None,
    );
    assert!(out.status.success());
    let archive = dir.path().join("owned.tar");
    {
        let store = rbuild_builder::store::Store::open(&store_root).unwrap();
        let (_, base) = rbuild_builder::export::load_named(&store, "busybox").unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir_all(&tree).unwrap();
        fs::write(tree.join("owned"), "mine").unwrap();
        std::os::unix::fs::chown(tree.join("owned"), Some(1000), Some(1000)).unwrap();
        let opts = LayerOptions { compression: Compression::Gzip { level: 1 }, threads: 1, source_date_epoch: Some(0) };
        let layer = store.write_layer(&collect_tree(&tree).unwrap(), &opts).unwrap();
        let history = [HistoryEntry { created_by: "test".into(), empty_layer: false }];
        let img = write_image(
            &store,
            base.config.clone(),
            &base.layers,
            &[layer],
            &history,
            "1970-01-01T00:00:00Z",
            MediaTypes::Oci,
        )
        .unwrap();
        let name = rbuild_registry::Reference::parse("owned:1").unwrap();
        store.tag_image(&name, &img.descriptor().unwrap()).unwrap();
    }
    let out = rbuild_tests::run_rbuild(
        &[
            "--root",
            store_root.to_str().unwrap(),
            "save",
            "--format",
            "docker",
            "-o",
            archive.to_str().unwrap(),
            "owned:1",
        ],
        None,
        None,
    );
    assert!(out.status.success());
    fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    fs::set_permissions(&archive, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    for mode in modes() {
        let s = Sandbox::new(mode);
        let out = s.rbuild(&["load", "-i", archive.to_str().unwrap()]);
        assert!(out.status.success(), "{mode:?}: {}", String::from_utf8_lossy(&out.stderr));
        let (code, out, err) = s.run(&["owned:1", "stat", "-c", "%u:%g", "/owned"]);
        assert_eq!(code, 0, "{mode:?}: {err}");
        let want = if mode == Mode::Single { "0:0\n" } else { "1000:1000\n" };
        assert_eq!(out, want, "{mode:?}");
        // The store stays clean, and prune can remove those snapshots again.
        let out = s.rbuild(&["fsck"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("store is clean"), "{mode:?}");
        assert!(s.rbuild(&["rmi", "owned:1", "busybox"]).status.success());
        let out = s.rbuild(&["prune"]);
        assert!(out.status.success(), "{mode:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("2 snapshots"),
            "{mode:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(fs::read_dir(s.root.join("snapshots")).unwrap().count(), 0, "{mode:?}");
        s.assert_nothing_left();
    }
}

#[test]
fn hosts_ulimits_and_the_ssh_agent() {
    for mode in modes() {
        let mut s = Sandbox::new(mode);
        let (code, out, err) = s.run(&[
            "--add-host",
            "db.internal:10.1.2.3",
            "--ulimit",
            "nofile=512:1024",
            "busybox",
            "sh",
            "-c",
            "grep db.internal /etc/hosts; ulimit -n; ulimit -Hn",
        ]);
        assert_eq!(code, 0, "{mode:?}: {err}");
        assert_eq!(out, "10.1.2.3\tdb.internal\n512\n1024\n", "{mode:?}");
        let (code, _, err) = s.run(&["--ulimit", "nofile=2048:1024", "busybox", "true"]);
        assert!(code != 0 && err.contains("soft limit is above the hard limit"), "{mode:?}: {err}");
        // The SSH agent's socket is forwarded and named by SSH_AUTH_SOCK.
        let agent_dir = s.root.parent().unwrap().join("agent");
        fs::create_dir_all(&agent_dir).unwrap();
        let sock = agent_dir.join("sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        if running_as_root() && mode != Mode::Root {
            Command::new("chown").arg("-R").arg(TEST_USER).arg(&agent_dir).status().unwrap();
        }
        s.extra_env.push(format!("SSH_AUTH_SOCK={}", sock.display()));
        let script = "test -S \"$SSH_AUTH_SOCK\" && echo $SSH_AUTH_SOCK";
        let out = s.command(&["run", "--mount", "type=ssh", "busybox", "sh", "-c", script]).output().unwrap();
        drop(listener);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "/run/buildkit/ssh_agent.0\n",
            "{mode:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        s.assert_nothing_left();
    }
}

#[test]
fn bind_mounts_are_read_only_or_discard_their_writes() {
    for mode in modes() {
        let s = Sandbox::new(mode);
        let src = s.root.parent().unwrap().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("input.txt"), "input").unwrap();
        if running_as_root() && mode != Mode::Root {
            Command::new("chown").arg("-R").arg(TEST_USER).arg(&src).status().unwrap();
        }
        let ro = format!("type=bind,source={},target=/src", src.display());
        let (code, out, err) = s.run(&["--mount", &ro, "busybox", "sh", "-c", "cat /src/input.txt; touch /src/new"]);
        assert_ne!(code, 0, "{mode:?}: a read-only bind mount was writable");
        assert!(out.starts_with("input") && err.contains("Read-only file system"), "{mode:?}: {out} {err}");
        let rw = format!("{ro},rw");
        let (code, out, err) = s.run(&[
            "--changes",
            "--mount",
            &rw,
            "busybox",
            "sh",
            "-c",
            "echo new > /src/new; cat /src/new; rm /src/input.txt",
        ]);
        assert_eq!((code, out.as_str()), (0, "new\n"), "{mode:?}: {err}");
        assert!(!src.join("new").exists() && src.join("input.txt").exists(), "{mode:?}: writes reached the source");
        s.assert_nothing_left();
    }
}

#[test]
fn automatic_id_mapping_uses_subordinate_ids_when_set_up_and_one_id_otherwise() {
    if !running_as_root() {
        return; // needs the two test users made by scripts/install-test-deps.sh
    }
    let dir = TempDir::new("auto-userns");
    fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let layout = test_image("busybox");
    for (user, chown_works) in [(TEST_USER, true), ("rbuild-nosub", false)] {
        let root = dir.path().join(user);
        let sh = |args: &[&str]| {
            Command::new("runuser")
                .args(["-u", user, "--", "env", "-u", "RBUILD_USERNS"])
                .arg(rbuild_bin())
                .arg("--root")
                .arg(&root)
                .args(args)
                .output()
                .unwrap()
        };
        assert!(sh(&["load", "-i", layout.to_str().unwrap()]).status.success(), "{user}");
        let out = sh(&["run", "busybox", "sh", "-c", "touch /tmp/x && chown 1000 /tmp/x"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), chown_works, "{user}: {err}");
        assert_eq!(err.contains("hint: only one user id is mapped"), !chown_works, "{user}: {err}");
    }
}

#[test]
fn output_streams_to_a_sink_line_by_line_while_the_step_runs() {
    use rbuild_builder::sandbox::run_image::{RunImageOptions, run_image};
    use rbuild_runtime::{NetworkMode, OutputMode, OutputStream, Runtime, userns};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    let dir = TempDir::new("lines");
    let store = rbuild_builder::store::Store::open(&dir.path().join("store")).unwrap();
    rbuild_builder::export::load(&store, &test_image("busybox")).unwrap();
    let seen: Arc<Mutex<Vec<(OutputStream, String, Instant)>>> = Arc::default();
    let sink_seen = seen.clone();
    let sink = Arc::new(move |s: OutputStream, line: &[u8]| {
        sink_seen.lock().unwrap().push((s, String::from_utf8_lossy(line).into_owned(), Instant::now()));
    });
    let opts = RunImageOptions {
        image: "busybox".into(),
        cmd: vec!["sh".into(), "-c".into(), "echo one; sleep 0.5; echo two >&2; printf three".into()],
        network: NetworkMode::Host,
        output: OutputMode::Lines(sink),
        userns: userns::detect_with(Some("auto")).unwrap(),
        extra_hosts: Vec::new(),
        changes: false,
        mounts: Vec::new(),
        rlimits: Vec::new(),
        isolation: Default::default(),
        platform: None,
    };
    let end = {
        let result = run_image(&store, &Runtime::new(rbuild_bin()), &opts).unwrap();
        assert!(result.outcome.status.success());
        assert_eq!(result.outcome.stdout, b"one\nthree");
        assert_eq!(result.outcome.stderr, b"two\n");
        Instant::now()
    };
    let seen = seen.lock().unwrap();
    let lines: Vec<(OutputStream, &str)> = seen.iter().map(|(s, l, _)| (*s, l.as_str())).collect();
    assert_eq!(
        lines,
        [(OutputStream::Stdout, "one\n"), (OutputStream::Stderr, "two\n"), (OutputStream::Stdout, "three")]
    );
    // The first line arrived while the step was still sleeping, not when it ended.
    assert!(end.duration_since(seen[0].2).as_millis() >= 300, "the first line was not streamed");
}
