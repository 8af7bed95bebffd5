//! Dockerfile semantics beyond the engine's core (the start of the conformance work): predefined platform ARGs,
//! proxy build args, RUN and COPY heredocs. Built with the real binary as root and as the unprivileged user.

use rbuild_tests::build_fixture::{builders, counts};

#[test]
fn platform_args_are_predefined_and_proxy_args_need_no_arg() {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    for b in builders() {
        let ctx = b.context(
            "platform",
            &[(
                "Dockerfile",
                "FROM busybox AS base-amd64\nRUN echo amd64 > /which\nFROM busybox AS base-arm64\nRUN echo arm64 > /which\n\
                 FROM base-${TARGETARCH}\nARG TARGETPLATFORM\nARG TARGETARCH\nARG BUILDOS\n\
                 RUN echo $TARGETPLATFORM $TARGETARCH $BUILDOS > /platform; echo \"proxy=$HTTP_PROXY\" > /proxy\n",
            )],
        );
        let (ok, _, err) = b.build(&ctx, "plat", &["--build-arg", "HTTP_PROXY=http://proxy.invalid:3128"]);
        assert!(ok, "{err}");
        assert_eq!(
            b.run("plat", &["cat", "/which", "/platform", "/proxy"]),
            format!("{arch}\nlinux/{arch} {arch} linux\nproxy=http://proxy.invalid:3128\n")
        );
        // The proxy is in no history entry, and another proxy value does not invalidate the cache.
        let v: serde_json::Value = serde_json::from_slice(&b.rb(&["inspect", "plat"]).stdout).unwrap();
        assert!(!v["Config"]["history"].to_string().contains("proxy.invalid"), "{}", v["Config"]["history"]);
        let (ok, _, err) = b.build(&ctx, "plat", &["--build-arg", "HTTP_PROXY=http://other.invalid:1"]);
        assert!(ok && counts(&err).0 == 0, "{err}");
        b.assert_clean();
    }
}

#[test]
fn run_and_copy_heredocs() {
    for b in builders() {
        let dockerfile = "FROM busybox\nARG NAME=world\n\
            RUN <<EOF\necho \"hello $NAME\" > /simple\necho second line >> /simple\nEOF\n\
            RUN <<EOF\n#!/bin/sh\necho \"from a script: $0\" > /script\nEOF\n\
            RUN cat <<-ONE > /chomped && cat <<'TWO' > /quoted\n\tindented $NAME\n\tONE\nkept $NAME\nTWO\n\
            COPY <<EOF /etc/greeting\nhi $NAME, \"quoted\" 'single'\nEOF\n\
            COPY <<'RAW' <<OTHER /files/\nraw $NAME\nRAW\nother $NAME\nOTHER\n";
        let ctx = b.context("heredocs", &[("Dockerfile", dockerfile)]);
        let (ok, _, err) = b.build(&ctx, "hd", &[]);
        assert!(ok, "{err}");
        assert_eq!(
            b.run(
                "hd",
                &["cat", "/simple", "/script", "/chomped", "/quoted", "/etc/greeting", "/files/RAW", "/files/OTHER"]
            ),
            "hello world\nsecond line\nfrom a script: /dev/pipes/EOF\nindented world\nkept $NAME\n\
             hi world, \"quoted\" 'single'\nraw $NAME\nother world\n"
        );
        let (ok, _, err) = b.build(&ctx, "hd", &[]);
        assert!(ok && counts(&err) == (0, 5), "{err}");
        b.assert_clean();
    }
}

#[test]
fn onbuild_triggers_run_in_the_child_and_are_not_inherited() {
    for b in builders() {
        let parent = b.context(
            "onbuild-parent",
            &[("Dockerfile", "FROM busybox\nONBUILD RUN echo triggered > /t\nONBUILD COPY f.txt /f\n")],
        );
        let (ok, _, err) = b.build(&parent, "parent:1", &[]);
        assert!(ok, "{err}");
        let child = b.context(
            "onbuild-child",
            &[("Dockerfile", "FROM parent:1\nRUN cat /t /f > /both\n"), ("f.txt", "from the child's context\n")],
        );
        let (ok, _, err) = b.build(&child, "child:1", &[]);
        assert!(ok, "{err}");
        assert_eq!(b.run("child:1", &["cat", "/both"]), "triggered\nfrom the child's context\n");
        let v: serde_json::Value = serde_json::from_slice(&b.rb(&["inspect", "child:1"]).stdout).unwrap();
        assert!(v["Config"]["config"]["OnBuild"].is_null(), "{}", v["Config"]["config"]);
        // Within one Dockerfile too: FROM a stage that has triggers.
        let ctx = b.context(
            "onbuild-stage",
            &[("Dockerfile", "FROM busybox AS base\nONBUILD RUN echo in-stage > /s\nFROM base\nRUN cat /s\n")],
        );
        let (ok, _, err) = b.build(&ctx, "s", &[]);
        assert!(ok && err.contains("in-stage"), "{err}");
        // A trigger that fails names the FROM line.
        let bad = b.context("onbuild-bad-parent", &[("Dockerfile", "FROM busybox\nONBUILD RUN exit 7\n")]);
        assert!(b.build(&bad, "badparent:1", &[]).0);
        let ctx = b.context("onbuild-bad", &[("Dockerfile", "# a comment\nFROM badparent:1\n")]);
        let (ok, _, err) = b.build(&ctx, "x", &[]);
        assert!(!ok && err.contains("Dockerfile:2") && err.contains("exit code: 7"), "{err}");
        b.assert_clean();
    }
}

#[test]
fn copy_exclude_link_named_chown_and_symbolic_chmod() {
    for b in builders() {
        let ctx = b.context(
            "copyflags",
            &[
                (
                    "Dockerfile",
                    "FROM busybox\n\
                     RUN adduser -D user\n\
                     COPY --exclude=*.log --exclude=tmp src/ /app/\n\
                     COPY --chown=user:nogroup --chmod=u+x,go-r src/run.sh /bin/run-user.sh\n\
                     COPY --chown=nobody --chmod=0640 src/a.txt /owned-by-nobody\n\
                     COPY --link src/a.txt /linked/\n\
                     RUN stat -c '%U:%G %a' /bin/run-user.sh /owned-by-nobody > /modes; ls -A /app > /app-list\n",
                ),
                ("src/a.txt", "a\n"),
                ("src/run.sh", "#!/bin/sh\necho run\n"),
                ("src/debug.log", "log\n"),
                ("src/tmp/x", "x\n"),
            ],
        );
        let (ok, _, err) = b.build(&ctx, "flags", &[]);
        assert!(ok, "{err}");
        assert_eq!(
            b.run("flags", &["cat", "/modes", "/app-list", "/linked/a.txt"]),
            "user:nogroup 700\nnobody:nogroup 640\na.txt\nrun.sh\na\n",
        );
        // A name the image does not know is a clear error on that line.
        let ctx = b.context("chown-bad", &[("Dockerfile", "FROM busybox\nCOPY --chown=nosuchuser Dockerfile /\n")]);
        let (ok, _, err) = b.build(&ctx, "x", &[]);
        assert!(
            !ok && err.contains("Dockerfile:2") && err.contains("no \"nosuchuser\" in the image's /etc/passwd"),
            "{err}"
        );
        // --link: a change below the linked COPY leaves its record valid.
        let ctx = b.context(
            "link",
            &[
                ("Dockerfile", "FROM busybox\nARG V=1\nRUN echo $V > /v\nCOPY --link big.txt /big.txt\n"),
                ("big.txt", "big\n"),
            ],
        );
        assert!(b.build(&ctx, "l", &[]).0);
        let (ok, _, err) = b.build(&ctx, "l", &["--build-arg", "V=2"]);
        assert!(ok && counts(&err) == (1, 1), "only the RUN re-runs: {err}");
        assert_eq!(b.run("l", &["cat", "/v", "/big.txt"]), "2\nbig\n");
        b.assert_clean();
    }
}

#[test]
fn add_unpacks_local_archives_and_copy_does_not() {
    for b in builders() {
        let ctx = b.context("add-archives", &[("payload/dir/inner.txt", "inner\n"), ("payload/top.txt", "top\n")]);
        for (name, flag) in
            [("plain.tar", ""), ("gz.tgz", "-z"), ("bz.tar.bz2", "-j"), ("xz.tar.xz", "-J"), ("zst.tar.zst", "--zstd")]
        {
            let mut cmd = std::process::Command::new("tar");
            cmd.arg("-C").arg(ctx.join("payload")).arg("-c");
            if !flag.is_empty() {
                cmd.arg(flag);
            }
            let out = cmd.arg("-f").arg(ctx.join(name)).arg(".").output().unwrap();
            assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM busybox\nADD plain.tar /plain\nADD gz.tgz bz.tar.bz2 /multi/\nADD xz.tar.xz zst.tar.zst /more\n\
             COPY gz.tgz /copied/\nRUN cat /plain/dir/inner.txt /multi/top.txt /more/dir/inner.txt; ls /copied\n",
        )
        .unwrap();
        if b.as_user {
            rbuild_tests::give_to_test_user(&ctx);
        }
        let (ok, _, err) = b.build(&ctx, "add", &[]);
        assert!(ok, "{err}");
        assert!(err.contains("inner\n") || err.contains("#6 inner"), "{err}");
        assert_eq!(
            b.run("add", &["sh", "-c", "cat /plain/top.txt /multi/dir/inner.txt /more/top.txt; ls /copied"]),
            "top\ninner\ntop\ngz.tgz\n"
        );
        b.assert_clean();
    }
}

#[test]
fn copy_parents_keeps_source_paths_below_the_pivot() {
    for b in builders() {
        let ctx = b.context(
            "parents",
            &[
                (
                    "Dockerfile",
                    "FROM busybox\nCOPY --parents x/a.txt y/*/b.txt /all/\nCOPY --parents ./src/./pkg/c.txt /pivot/\n\
                     COPY --parents conf /whole/\nRUN find /all /pivot /whole -type f | sort > /list\n",
                ),
                ("x/a.txt", "a"),
                ("y/one/b.txt", "b1"),
                ("y/two/b.txt", "b2"),
                ("src/pkg/c.txt", "c"),
                ("conf/d/e.txt", "e"),
            ],
        );
        let (ok, _, err) = b.build(&ctx, "parents", &[]);
        assert!(ok, "{err}");
        assert_eq!(
            b.run("parents", &["cat", "/list"]),
            "/all/x/a.txt\n/all/y/one/b.txt\n/all/y/two/b.txt\n/pivot/pkg/c.txt\n/whole/conf/d/e.txt\n"
        );
        b.assert_clean();
    }
}

#[test]
fn add_downloads_urls_with_checksums() {
    rbuild_tests::require_tool("python3");
    let served = rbuild_tests::TempDir::new("served");
    std::fs::write(served.path().join("file.txt"), "downloaded\n").unwrap();
    let server = rbuild_tests::FileServer::start(served.path());
    let port = server.port;
    let sum = rbuild_builder::digest::Digest::of(b"downloaded\n").to_string();
    let b = rbuild_tests::build_fixture::Builder::new(false);
    let url = format!("http://127.0.0.1:{port}/file.txt");
    let ctx = b.context(
        "add-url",
        &[("Dockerfile", &format!("FROM busybox\nADD --checksum={sum} {url} /dl/\nRUN stat -c %a /dl/file.txt\n"))],
    );
    let build = |b: &rbuild_tests::build_fixture::Builder, ctx: &std::path::Path| {
        let out =
            b.rb_env(&["build", "--progress", "plain", "-t", "url", ctx.to_str().unwrap()], &[("RBUILD_OFFLINE", "0")]);
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = build(&b, &ctx);
    assert!(ok && err.contains("#3 600"), "{err}");
    assert_eq!(b.run("url", &["cat", "/dl/file.txt"]), "downloaded\n");
    let bad = b.context(
        "add-url-bad",
        &[("Dockerfile", &format!("FROM busybox\nADD --checksum=sha256:{} {url} /x\n", "0".repeat(64)))],
    );
    let (ok, err) = build(&b, &bad);
    assert!(!ok && err.contains("Dockerfile:2") && err.contains("does not match --checksum"), "{err}");
    // Offline, a URL is a clear error naming it.
    let (ok, _, err) = b.build(&ctx, "url2", &["--no-cache"]);
    assert!(!ok && err.contains("offline mode") && err.contains(&url), "{err}");
    drop(server);
    b.assert_clean();
}

/// A Debian-based build installs a local .deb with dpkg, as the unprivileged user with subordinate ids too: the
/// package's files, its maintainer script's chown to a non-root owner and dpkg's database all land in the image.
#[test]
fn debian_dpkg_installs_a_local_package() {
    if !rbuild_tests::running_as_root() {
        eprintln!("skipped: the debian test image is made with debootstrap, which needs root");
        return;
    }
    let debian = rbuild_tests::test_image("debian");
    let pkg = rbuild_tests::TempDir::new("deb");
    let root = pkg.path().join("pkg");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: rbuild-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: rbuild tests <t@example.com>\n\
         Description: a local test package\n",
    )
    .unwrap();
    std::fs::write(
        root.join("DEBIAN/postinst"),
        "#!/bin/sh\nset -e\nmkdir -p /var/lib/rbuild-hello\nchown 100:100 /var/lib/rbuild-hello\n",
    )
    .unwrap();
    std::fs::write(root.join("usr/bin/rbuild-hello"), "#!/bin/sh\necho hello from a local package\n").unwrap();
    for f in ["DEBIAN/postinst", "usr/bin/rbuild-hello"] {
        std::fs::set_permissions(root.join(f), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let deb = pkg.path().join("rbuild-hello.deb");
    let out = std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for as_user in [true, false] {
        let b = rbuild_tests::build_fixture::Builder::empty(as_user);
        let loaded = b.rb(&["load", "-i", debian.to_str().unwrap()]);
        assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
        let ctx = b.context(
            "dpkg",
            &[(
                "Dockerfile",
                "FROM debian\nCOPY rbuild-hello.deb /tmp/\nRUN dpkg -i /tmp/rbuild-hello.deb && rm /tmp/rbuild-hello.deb\n\
                 RUN rbuild-hello > /greeting && stat -c %u:%g /var/lib/rbuild-hello > /owner && \
                 dpkg -s rbuild-hello | grep ^Status > /status\n",
            )],
        );
        std::fs::copy(&deb, ctx.join("rbuild-hello.deb")).unwrap();
        rbuild_tests::give_to_test_user(&ctx);
        let (ok, _, err) = b.build(&ctx, "dpkg", &[]);
        assert!(ok, "as_user={as_user}: {err}");
        assert_eq!(
            b.run("dpkg", &["cat", "/greeting", "/owner", "/status"]),
            "hello from a local package\n100:100\nStatus: install ok installed\n",
            "as_user={as_user}"
        );
        b.assert_clean();
    }
}

/// On a merged-/usr Debian (`/bin -> usr/bin`, `/lib -> usr/lib`), COPY and WORKDIR through those links land in
/// /usr and keep the links: a layer with a `bin/` directory of its own would hide every program below it.
#[test]
fn debian_merged_usr_links_survive_copy_and_workdir() {
    if !rbuild_tests::running_as_root() {
        eprintln!("skipped: the debian test image is made with debootstrap, which needs root");
        return;
    }
    let debian = rbuild_tests::test_image("debian");
    for as_user in [true, false] {
        let b = rbuild_tests::build_fixture::Builder::empty(as_user);
        let loaded = b.rb(&["load", "-i", debian.to_str().unwrap()]);
        assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
        let ctx = b.context(
            "merged-usr",
            &[
                ("app", "#!/bin/sh\necho app ran\n"),
                (
                    "Dockerfile",
                    "FROM debian\nCOPY --chmod=755 app /bin/app\nCOPY --chmod=755 app /bin/app2\nCOPY app /lib/\n\
                     WORKDIR /bin/tools\nRUN app > /ran && test -L /bin && test -L /lib && ls /usr/lib/app && pwd > /cwd\n",
                ),
            ],
        );
        let (ok, _, err) = b.build(&ctx, "merged", &[]);
        assert!(ok, "as_user={as_user}: {err}");
        let out = b.run(
            "merged",
            &["sh", "-c", "cat /ran /cwd; readlink /bin /lib; ls /usr/bin/app2 && test -d /usr/bin/tools && echo ok"],
        );
        assert_eq!(out, "app ran\n/usr/bin/tools\nusr/bin\nusr/lib\n/usr/bin/app2\nok\n", "as_user={as_user}");
    }
}

/// BuildKit's testCacheMountModeNoCache: with `--no-cache` a cache mount starts empty and what the step leaves in it
/// is dropped; the next cached build finds the mount as the first build left it.
#[test]
fn no_cache_builds_get_empty_throwaway_cache_mounts() {
    for b in builders() {
        let ctx = b.context(
            "nocache-mount",
            &[(
                "Dockerfile",
                "FROM busybox\nARG FOO=abc\n\
                 RUN --mount=type=cache,target=/cache,mode=0773 touch /cache/$FOO && ls /cache | wc -l > /out\n",
            )],
        );
        let count = |extra: &[&str]| {
            let (ok, _, err) = b.build(&ctx, "nocache-mount", extra);
            assert!(ok, "{err}");
            b.run("nocache-mount", &["cat", "/out"]).trim().to_string()
        };
        assert_eq!(count(&[]), "1", "as_user={}", b.as_user);
        assert_eq!(count(&["--no-cache", "--build-arg", "FOO=def"]), "1", "as_user={}", b.as_user);
        assert_eq!(count(&["--build-arg", "FOO=ghi"]), "2", "abc and ghi, not def; as_user={}", b.as_user);
        b.assert_clean();
    }
}

/// BuildKit's testOnBuildNamedContext and testOnBuildNewDeps: ONBUILD triggers of a base image (by name, or
/// through a named context) may read a stage of the child's Dockerfile, which is then built first.
#[test]
fn onbuild_triggers_of_an_image_may_read_the_childs_stages() {
    for b in builders() {
        let base = b.context(
            "onbuild-img-base",
            &[("Dockerfile", "FROM busybox\nONBUILD COPY --from=otherstage /testfile /out/foo\n")],
        );
        let (ok, _, err) = b.build(&base, "onbuild-img-base", &[]);
        assert!(ok, "{err}");
        let child = b.context(
            "onbuild-img-child",
            &[(
                "Dockerfile",
                "FROM busybox AS otherstage\nRUN echo -n hello > /testfile\n\
                 FROM onbuild-img-base AS inputstage\n\
                 FROM busybox\nCOPY --from=inputstage /out/foo /bar\n",
            )],
        );
        let (ok, _, err) = b.build(&child, "onbuild-img-child", &[]);
        assert!(ok, "as_user={}: {err}", b.as_user);
        assert_eq!(b.run("onbuild-img-child", &["cat", "/bar"]), "hello");
        let named = b.context(
            "onbuild-img-named",
            &[(
                "Dockerfile",
                "FROM busybox AS otherstage\nRUN echo -n named > /testfile\n\
                 FROM base AS inputstage\n\
                 FROM busybox\nCOPY --from=inputstage /out/foo /bar\n",
            )],
        );
        let (ok, _, err) =
            b.build(&named, "onbuild-img-named", &["--build-context", "base=docker-image://onbuild-img-base"]);
        assert!(ok, "as_user={}: {err}", b.as_user);
        assert_eq!(b.run("onbuild-img-named", &["cat", "/bar"]), "named");
        b.assert_clean();
    }
}
