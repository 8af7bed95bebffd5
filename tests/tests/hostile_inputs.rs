//! Hostile and awkward input, with the real binary: contexts with symlinks out of them, odd names, unreadable
//! files, huge sparse files and very many files; secrets that must appear nowhere after a build; builds and
//! prunes at once on one store; a store on a full disk. Each leaves the store clean (`rbuild fsck`, no
//! temporary files).

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rbuild_tests::build_fixture::{Builder, builders};
use rbuild_tests::image_files::ImageFiles;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Build `ctx` and read the image back from an OCI layout output.
fn build_and_read(b: &Builder, ctx: &Path, tag: &str) -> ImageFiles {
    let layout = b.work.join(format!("{tag}-layout"));
    let dest = format!("type=oci,tar=false,dest={}", layout.display());
    let (ok, _, err) = b.build(ctx, tag, &["-o", &dest]);
    assert!(ok, "{err}");
    ImageFiles::from_layout(&layout).unwrap()
}

#[test]
fn symlinks_never_bring_files_from_outside_the_context() {
    for b in builders() {
        let outside = b.work.join("outside-secret.txt");
        std::fs::write(&outside, "outside content\n").unwrap();
        let ctx = b.context("links", &[("Dockerfile", "FROM busybox\nCOPY tree /tree/\n"), ("tree/ok.txt", "ok\n")]);
        std::os::unix::fs::symlink(&outside, ctx.join("tree/abs-out")).unwrap();
        std::os::unix::fs::symlink("../../outside-secret.txt", ctx.join("tree/rel-out")).unwrap();
        let image = build_and_read(&b, &ctx, "links");
        for (path, target) in
            [("/tree/abs-out", outside.to_str().unwrap()), ("/tree/rel-out", "../../outside-secret.txt")]
        {
            let e = &image.files[path];
            assert_eq!((e.kind, e.target.as_str()), ("symlink", target), "{path}");
        }
        assert!(!image.files.values().any(|e| e.content == b"outside content\n"));
        // Named as a source, such a link resolves inside the context, where there is no such file.
        std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY tree/rel-out /x\n").unwrap();
        let (ok, _, err) = b.build(&ctx, "links2", &[]);
        assert!(!ok && err.contains("tree/rel-out") && err.contains("not found"), "{err}");
        b.assert_clean();
    }
}

#[test]
fn names_with_newlines_and_invalid_utf8_arrive_byte_exact() {
    for b in builders() {
        let ctx = b.context(
            "names",
            &[(
                "Dockerfile",
                "FROM busybox\nCOPY . /ctx/\nRUN test \"$(cat \"$(printf '/ctx/a\\nb')\")\" = newline && \
                 test \"$(cat \"$(printf '/ctx/\\377\\376.bin')\")\" = latin && echo ok > /checked\n",
            )],
        );
        std::fs::write(ctx.join("a\nb"), "newline").unwrap();
        std::fs::write(ctx.join(std::ffi::OsStr::from_bytes(b"\xff\xfe.bin")), "latin").unwrap();
        if b.as_user {
            rbuild_tests::give_to_test_user(&ctx);
        }
        let (ok, _, err) = b.build(&ctx, "names", &[]);
        assert!(ok, "{err}");
        assert_eq!(b.run("names", &["cat", "/checked"]), "ok\n");
        b.assert_clean();
    }
}

#[test]
fn an_unreadable_file_fails_naming_it_unless_ignored() {
    // Root reads everything: only the unprivileged user meets an unreadable file.
    let b = Builder::new(rbuild_tests::running_as_root());
    let ctx = b.context(
        "unreadable",
        &[("Dockerfile", "FROM busybox\nCOPY . /ctx/\n"), ("locked.txt", "secret\n"), ("fine.txt", "fine\n")],
    );
    std::fs::set_permissions(ctx.join("locked.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let (ok, _, err) = b.build(&ctx, "unreadable", &[]);
    // Named with the instruction that reads it, and what to do.
    assert!(
        !ok && err.contains("locked.txt") && err.contains("Dockerfile:2") && err.contains(".dockerignore"),
        "{err}"
    );
    std::fs::write(ctx.join(".dockerignore"), "locked.txt\n").unwrap();
    let (ok, _, err) = b.build(&ctx, "unreadable", &[]);
    assert!(ok, "{err}");
    assert_eq!(b.run("unreadable", &["cat", "/ctx/fine.txt"]), "fine\n");
    b.assert_clean();
}

#[test]
fn a_context_of_100k_files_builds() {
    let b = Builder::new(rbuild_tests::running_as_root());
    let ctx =
        b.context("many", &[("Dockerfile", "FROM busybox\nCOPY . /ctx/\nRUN find /ctx -type f | wc -l > /count\n")]);
    for d in 0..100 {
        let dir = ctx.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..1000 {
            std::fs::write(dir.join(format!("f{f:04}")), format!("{d}/{f}\n")).unwrap();
        }
    }
    if b.as_user {
        rbuild_tests::give_to_test_user(&ctx);
    }
    let (ok, _, err) = b.build(&ctx, "many", &[]);
    assert!(ok, "{err}");
    assert_eq!(b.run("many", &["cat", "/count"]), "100001\n");
    assert_eq!(b.run("many", &["cat", "/ctx/d099/f0999"]), "99/999\n");
    b.assert_clean();
}

#[test]
fn a_2gb_sparse_file_is_copied_exactly_without_2gb_of_memory() {
    let b = Builder::new(false);
    let ctx = b.context("sparse", &[("Dockerfile", "FROM busybox\nCOPY big.img /big.img\n")]);
    let f = std::fs::File::create(ctx.join("big.img")).unwrap();
    f.set_len(2 << 30).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"END-MARK", (2 << 30) - 8).unwrap();
    f.write_all_at(b"START", 0).unwrap();
    drop(f);
    let before = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    let (ok, _, err) = b.build(&ctx, "sparse", &[]);
    assert!(ok, "{err}");
    let peak_kib = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    assert!(peak_kib.max(before) < 512 * 1024, "rbuild's peak RSS was {peak_kib} KiB");
    let out = b.run("sparse", &["sh", "-c", "stat -c %s /big.img; head -c 5 /big.img; echo; tail -c 8 /big.img; echo"]);
    assert_eq!(out, format!("{}\nSTART\nEND-MARK\n", 2u64 << 30));
    b.assert_clean();
}

/// Every file of the store, decompressed when it is a gzip stream, searched for `needle`.
fn store_mentions(root: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
            if meta.is_dir() {
                stack.push(p);
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let Ok(mut data) = std::fs::read(&p) else { continue };
            if data.starts_with(&[0x1f, 0x8b]) {
                let mut out = Vec::new();
                if flate2::read::MultiGzDecoder::new(&data[..]).read_to_end(&mut out).is_ok() {
                    data = out;
                }
            }
            if data.windows(needle.len()).any(|w| w == needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

#[test]
fn secrets_appear_in_no_blob_history_config_cache_record_or_log() {
    for b in builders() {
        let sock = b.work.join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        if b.as_user {
            rbuild_tests::give_to_test_user(&sock);
        }
        let ctx = b.context(
            "secrets",
            &[
                ("token.txt", "FILE-SECRET-7f3a9c"),
                (
                    "Dockerfile",
                    "FROM busybox\nRUN --mount=type=secret,id=tok --mount=type=secret,id=envtok,env=ENVTOK \
                     --mount=type=ssh sh -c 'cat /run/secrets/tok | wc -c > /len; echo ${#ENVTOK} >> /len; \
                     test -S $SSH_AUTH_SOCK && echo agent >> /len'\n",
                ),
            ],
        );
        let ssh = format!("default={}", sock.display());
        let build = |progress: &str, extra: &[&str]| {
            let mut args = vec!["build", "-t", "sec", "--progress", progress, "--secret", "id=tok,src=token.txt"];
            args.extend(["--secret", "id=envtok,env=ENV_SECRET", "--ssh", &ssh]);
            args.extend_from_slice(extra);
            args.push(".");
            let out = b.rb_in(Some(&ctx), &args, &[("ENV_SECRET", "ENV-SECRET-41be02")]);
            assert!(out.status.success(), "{}", text(&out.stderr));
            format!("{}{}", text(&out.stdout), text(&out.stderr))
        };
        let mut printed = build("plain", &[]);
        assert_eq!(b.run("sec", &["cat", "/len"]), "18\n17\nagent\n");
        // The tty view's log too (kept in the store's logs/).
        printed.push_str(&build("tty", &["--no-cache"]));
        for secret in ["FILE-SECRET-7f3a9c", "ENV-SECRET-41be02"] {
            assert!(!printed.contains(secret), "{secret} in the output");
            let hits = store_mentions(&b.root, secret.as_bytes());
            assert!(hits.is_empty(), "{secret} found in {hits:?}");
        }
        b.assert_clean();
    }
}

#[test]
fn four_builds_and_two_prunes_at_once_share_a_store() {
    let b = Builder::new(rbuild_tests::running_as_root());
    let contexts: Vec<_> = (0..4)
        .map(|i| {
            b.context(
                &format!("proj{i}"),
                &[
                    ("Dockerfile", &format!("FROM busybox\nCOPY f /f\nRUN echo {i} >> /f && sleep 0.2\nRUN --mount=type=cache,target=/c echo {i} > /c/{i}\n")),
                    ("f", &format!("project {i}\n")),
                ],
            )
        })
        .collect();
    std::thread::scope(|s| {
        let builds: Vec<_> = contexts
            .iter()
            .enumerate()
            .map(|(i, ctx)| {
                let b = &b;
                s.spawn(move || b.build(ctx, &format!("proj{i}"), &[]))
            })
            .collect();
        let prunes: Vec<_> = (0..2).map(|_| s.spawn(|| b.rb(&["prune"]))).collect();
        for (i, h) in builds.into_iter().enumerate() {
            let (ok, _, err) = h.join().unwrap();
            assert!(ok, "build {i}: {err}");
        }
        for h in prunes {
            let out = h.join().unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
    });
    for i in 0..4 {
        assert_eq!(b.run(&format!("proj{i}"), &["cat", "/f"]), format!("project {i}\n{i}\n"));
    }
    b.assert_clean();
}

#[test]
fn a_full_disk_fails_clearly_and_leaves_the_store_clean() {
    if !rbuild_tests::running_as_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = rbuild_tests::TempDir::new("full");
    let mnt = dir.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=40m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _guard = Unmount(&mnt);
    let store = mnt.join("store");
    let rb = |args: &[&str]| {
        std::process::Command::new(rbuild_tests::rbuild_bin())
            .env("RBUILD_OFFLINE", "1")
            .arg("--root")
            .arg(&store)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(rb(&["load", "-i", rbuild_tests::test_image("busybox").to_str().unwrap()]).status.success());
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN head -c 60000000 /dev/urandom > /big\n").unwrap();
    let out = rb(&["build", "--progress", "plain", "-t", "full", ctx.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.to_lowercase().contains("no space"), "{err}");
    let fsck = rb(&["fsck"]);
    assert!(text(&fsck.stdout).contains("store is clean"), "{}", text(&fsck.stdout));
    assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0, "temporary files left");
    // Room again: the next build succeeds.
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo fits > /small\n").unwrap();
    let out = rb(&["build", "--progress", "plain", "-t", "fits", ctx.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_step_sees_only_its_image_and_cannot_change_what_is_below_it() {
    for b in builders() {
        let ctx = b.context(
            "escape",
            &[(
                "Dockerfile",
                "FROM busybox\nARG HOST_PID\n\
                 RUN ls / | tr '\\n' ' ' > /tmp/root-listing; \
                 (test -e /proc/$HOST_PID && echo seen || echo hidden) > /host-pid; \
                 (mount -o remount,rw /proc/sys 2>/dev/null && echo remounted || echo refused) > /procsys; \
                 (echo evil > /proc/sys/kernel/hostname 2>/dev/null && echo wrote || echo refused) > /procsys-write; \
                 (mount -t proc proc /mnt 2>/dev/null && echo mounted || echo refused) > /new-proc; \
                 echo changed >> /etc/passwd; rm /bin/cat\n",
            )],
        );
        let pid = std::process::id().to_string();
        let (ok, _, err) = b.build(&ctx, "escape", &["--build-arg", &format!("HOST_PID={pid}")]);
        assert!(ok, "{err}");
        let out = b.run("escape", &["sh", "-c", "for f in /tmp/root-listing /host-pid /procsys /procsys-write /new-proc; do echo \"$(busybox cat $f)\"; done"]);
        assert_eq!(
            out, "bin dev etc home proc root sys tmp usr var \nhidden\nrefused\nrefused\nrefused\n",
            "what a step saw"
        );
        // The base image is untouched: its files are the lower layers the step could not write.
        assert!(!b.run("busybox", &["cat", "/etc/passwd"]).contains("changed"));
        assert!(b.run("busybox", &["ls", "/bin/cat"]).contains("/bin/cat"));
        b.assert_clean();
    }
}

/// A fixed-seed sequence of delays (a small LCG: the same 20 kill points every run).
fn kill_points(seed: u64, n: usize, max_ms: u64) -> Vec<u64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) % max_ms
        })
        .collect()
}

/// Start rbuild with `args`, kill it with SIGKILL after `delay_ms` (if it still runs), and wait for it.
fn kill_after(b: &Builder, args: &[&str], env: &[(&str, &str)], delay_ms: u64) {
    let mut cmd = std::process::Command::new(rbuild_tests::rbuild_bin());
    cmd.env("RBUILD_OFFLINE", "1").envs(env.iter().copied()).arg("--root").arg(&b.root).args(args);
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(delay_ms));
    let _ = child.kill();
    let _ = child.wait();
}

/// Nothing of a killed rbuild is left: no process with `marker` in its command line, no mount under the store.
fn nothing_left_behind(b: &Builder, marker: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let running = std::process::Command::new("pgrep").args(["-f", marker]).output().unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let store = b.root.to_str().unwrap();
        if running.stdout.is_empty() && !mounts.contains(store) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left behind: processes {:?}, mounts under the store: {}",
            text(&running.stdout),
            mounts.lines().filter(|l| l.contains(store)).count()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn killing_rbuild_at_20_points_of_a_build_pull_and_push_leaves_a_usable_store() {
    use rbuild_tests::registry_fixture::{RegistryAuth, RegistryServer};
    let b = Builder::new(false);
    let marker = format!("crash-marker-{}", std::process::id());
    let ctx = b.context(
        "crash",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\nCOPY data.bin /data.bin\nRUN echo {marker} && head -c 8000000 /dev/urandom > /a && sleep 0.2\n\
                 RUN --mount=type=cache,target=/c cp /a /c/a && sleep 0.2\nRUN cat /data.bin /a > /b\n"
            ),
        )],
    );
    std::fs::write(ctx.join("data.bin"), vec![7u8; 6_000_000]).unwrap();
    let ctx_s = ctx.to_str().unwrap();
    let fsck_clean = |b: &Builder, when: &str| {
        let out = b.rb(&["fsck"]);
        assert!(text(&out.stdout).contains("store is clean"), "{when}: {}{}", text(&out.stdout), text(&out.stderr));
    };
    for (i, delay) in kill_points(42, 20, 1500).into_iter().enumerate() {
        kill_after(&b, &["build", "--no-cache", "-t", "crash", "--progress", "plain", ctx_s], &[], delay);
        nothing_left_behind(&b, &marker);
        fsck_clean(&b, &format!("build kill {i} at {delay} ms"));
    }
    let (ok, _, err) = b.build(&ctx, "crash", &[]);
    assert!(ok, "{err}");
    let registry = RegistryServer::start(RegistryAuth::None, false);
    let dest = format!("{}/crash/img:1", registry.host());
    let online = [("RBUILD_OFFLINE", "0")];
    for (i, delay) in kill_points(7, 20, 400).into_iter().enumerate() {
        kill_after(&b, &["push", "crash", &dest], &online, delay);
        fsck_clean(&b, &format!("push kill {i} at {delay} ms"));
    }
    assert!(b.rb_env(&["push", "crash", &dest], &online).status.success());
    // Pull into a second store, killed at 20 points, then complete.
    let p = Builder::empty(false);
    for (i, delay) in kill_points(99, 20, 300).into_iter().enumerate() {
        kill_after(&p, &["pull", &dest], &online, delay);
        fsck_clean(&p, &format!("pull kill {i} at {delay} ms"));
    }
    let out = p.rb_env(&["pull", &dest], &online);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(p.run(&dest, &["sh", "-c", "wc -c < /b"]), "14000000\n");
    b.assert_clean();
    p.assert_clean();
}

#[test]
fn hostile_layers_through_load_and_pull() {
    use rbuild_tests::raw_tar::{finish, gzip, oci_layout, raw_entry};
    use rbuild_tests::registry_fixture::{RegistryAuth, RegistryServer};
    let b = Builder::new(false);
    let layer = |parts: Vec<Vec<u8>>| {
        let tar = finish(parts);
        let gz = gzip(&tar);
        (tar, gz)
    };
    let load = |name: &str, layers: &[(Vec<u8>, Vec<u8>)]| {
        let dir = b.work.join(format!("layout-{name}"));
        oci_layout(&dir, &format!("hostile/{name}:1"), layers);
        b.rb(&["load", "-i", dir.to_str().unwrap()])
    };
    // Last of two entries with one name wins, as in Docker; links that loop are only links.
    let out = load(
        "dup",
        &[layer(vec![
            raw_entry(b"f", b'0', b"one", b"", None),
            raw_entry(b"f", b'0', b"two", b"", None),
            raw_entry(b"a", b'2', b"", b"b", None),
            raw_entry(b"b", b'2', b"", b"a", None),
        ])],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dup = b.work.join("layout-dup");
    let dup_ref = format!("oci-layout://{}", dup.display());
    let (ok, _, err) = b.build_str(
        b.context("dup-ctx", &[("Dockerfile", &format!("FROM {dup_ref}\n"))]).to_str().unwrap(),
        "dup-img",
        &[],
    );
    assert!(ok, "{err}");
    let files = build_and_read(&b, &b.work.join("dup-ctx"), "dup-img2");
    assert_eq!(files.files["/f"].content, b"two");
    assert_eq!((files.files["/a"].kind, files.files["/a"].target.as_str()), ("symlink", "b"));
    // Layers are stored as blobs by load and pull and unpacked when first used: an escaping entry is refused
    // there, naming it, and nothing lands outside.
    let use_image = |image: &str, env: &[(&str, &str)]| b.rb_env(&["run", image, "true"], env);
    let out = load("escape", &[layer(vec![raw_entry(b"../../escaped", b'0', b"x", b"", None)])]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = use_image("hostile/escape:1", &[]);
    assert!(!out.status.success() && text(&out.stderr).contains("escaped"), "{}", text(&out.stderr));
    assert!(!b.work.join("escaped").exists() && !b.root.join("escaped").exists());
    // A gzip bomb stops at the configured size, naming the layer.
    let zeros = vec![0u8; 64 << 20];
    let bomb = layer(vec![raw_entry(b"zeros", b'0', &zeros, b"", None)]);
    let bomb_digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bomb.1)));
    assert!(load("bomb", std::slice::from_ref(&bomb)).status.success());
    let out = use_image("hostile/bomb:1", &[("RBUILD_MAX_LAYER_SIZE", "10000000")]);
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("expands beyond") && err.contains(&bomb_digest[7..19]), "{err}");
    b.assert_clean();
    // The same escape through a registry: pushed with skopeo, refused when the pulled image is used.
    let registry = RegistryServer::start(RegistryAuth::None, false);
    let dest = format!("{}/hostile/escape:1", registry.host());
    let pushed = std::process::Command::new(rbuild_tests::require_tool("skopeo"))
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}", b.work.join("layout-escape").display()))
        .arg(format!("docker://{dest}"))
        .output()
        .unwrap();
    assert!(pushed.status.success(), "{}", text(&pushed.stderr));
    let p = Builder::empty(false);
    assert!(p.rb_env(&["pull", &dest], &[("RBUILD_OFFLINE", "0")]).status.success());
    let out = p.rb(&["run", &dest, "true"]);
    assert!(!out.status.success() && text(&out.stderr).contains("escaped"), "{}", text(&out.stderr));
    p.assert_clean();
    b.assert_clean();
}

#[test]
fn hostile_registries_are_refused_without_hanging_or_storing_anything() {
    let registry = rbuild_tests::hostile_registry::HostileRegistry::start();
    let host = registry.host();
    let b = Builder::empty(false);
    let env = [("RBUILD_OFFLINE", "0"), ("RBUILD_REGISTRY_READ_TIMEOUT", "2"), ("RBUILD_REGISTRY_RETRY_SECONDS", "3")];
    let pull = |repo: &str| {
        let started = std::time::Instant::now();
        let out = b.rb_env(&["pull", &format!("{host}/{repo}:1")], &env);
        (out.status.success(), text(&out.stderr), started.elapsed())
    };
    for (repo, needle) in [
        ("truncated", host.as_str()),
        ("endless", "larger than 4 MiB; refused"),
        ("huge", "larger than 4 MiB; refused"),
        ("slow", host.as_str()),
        ("baddigest", "nothing was stored"),
    ] {
        let (ok, err, took) = pull(repo);
        assert!(!ok && err.contains(needle), "{repo}: {err}");
        assert!(took < std::time::Duration::from_secs(30), "{repo} took {took:?}");
        let images = text(&b.rb(&["images"]).stdout);
        assert!(!images.contains(repo), "{repo} was stored: {images}");
    }
    // 500s are retried, then the image arrives.
    let before = registry.manifest_requests.load(std::sync::atomic::Ordering::SeqCst);
    let (ok, err, _) = pull("flaky");
    assert!(ok, "{err}");
    assert!(registry.manifest_requests.load(std::sync::atomic::Ordering::SeqCst) - before >= 3);
    assert!(text(&b.rb(&["images"]).stdout).contains("flaky"));
    b.assert_clean();
}
