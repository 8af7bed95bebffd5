//! `rbuild build` on the real binary (first, sequential engine): the example and the benchmark workloads build and
//! their images do what they should; rebuilds hit the cache exactly when they should; unused stages are not
//! built; the image config carries the metadata instructions; failures name the Dockerfile line and leave the
//! store clean. As root, and as the unprivileged user with subordinate ids.

use std::fs;

use std::process::Command;

use rbuild_tests::build_fixture::{Builder, builders, counts};
use rbuild_tests::{rbuild_bin, running_as_root, workspace_root};

#[test]
fn the_example_builds_runs_and_rebuilds_from_cache() {
    for b in builders() {
        let ctx = workspace_root().join("examples/hello");
        let (ok, _, err) = b.build(&ctx, "hello:1", &[]);
        assert!(ok, "{err}");
        assert!(err.contains("#2 [stage-0 2/3] COPY greeting.txt /greeting.txt"), "{err}");
        assert!(err.contains("18 /greeting.txt"), "the RUN step's output is shown: {err}");
        assert_eq!(b.run("hello:1", &[]), "hello from rbuild\n");
        let (ok, _, err) = b.build(&ctx, "hello:2", &["--iidfile", b.work.join("iid").to_str().unwrap()]);
        assert!(ok, "{err}");
        assert_eq!(counts(&err), (0, 2), "{err}");
        assert!(err.contains("CACHED"));
        let iid = fs::read_to_string(b.work.join("iid")).unwrap();
        assert!(iid.starts_with("sha256:") && err.contains(&iid), "{iid}");
        b.assert_clean();
    }
}

#[test]
fn benchmark_workloads_build_and_their_images_work() {
    let ws = workspace_root().join("bench/workloads");
    for b in builders() {
        let (ok, _, err) = b.build(&ws.join("small-steps"), "small", &["--progress", "quiet"]);
        assert!(ok, "{err}");
        assert_eq!(b.run("small", &[]), "step 20 hello\n");
        let (ok, _, err) = b.build(&ws.join("multistage-parallel"), "multi", &["--progress", "quiet"]);
        assert!(ok, "{err}");
        assert_eq!(b.run("multi", &[]), (1..=4).map(|i| format!("stage{i} counted 1600000\n")).collect::<String>());
        // cache-mount: the second build (changed input) re-runs the step, which finds the cache mount filled.
        let ctx = b.context("cache-mount", &[]);
        for f in ["Dockerfile", "input.txt"] {
            fs::copy(ws.join("cache-mount").join(f), ctx.join(f)).unwrap();
        }
        let (ok, _, err) = b.build(&ctx, "cm", &["--progress", "quiet"]);
        assert!(ok, "{err}");
        let first = b.run("cm", &[]);
        assert!(first.starts_with("input version 1\n") && first.contains(" blob"), "{first}");
        fs::write(ctx.join("input.txt"), "input version 2\n").unwrap();
        let (ok, _, err) = b.build(&ctx, "cm", &[]);
        assert!(ok && counts(&err).0 == 2, "{err}");
        let second = b.run("cm", &[]);
        // `ls -l`'s "total" counts allocated blocks, which delayed allocation may still change after the first run.
        let without_total = |s: &str| s.lines().filter(|l| !l.starts_with("total ")).collect::<Vec<_>>().join("\n");
        assert_eq!(
            without_total(&second.replace("version 2", "version 1")),
            without_total(&first),
            "the cache mount kept its content"
        );
        // copy-many, with a smaller generated context.
        let ctx = b.context("copy-many", &[]);
        fs::copy(ws.join("copy-many/Dockerfile"), ctx.join("Dockerfile")).unwrap();
        let generated = Command::new(ws.join("copy-many/gen-context.sh")).arg(&ctx).arg("2000").status().unwrap();
        assert!(generated.success());
        if b.as_user {
            rbuild_tests::give_to_test_user(&ctx);
        }
        let (ok, _, err) = b.build(&ctx, "many", &["--progress", "quiet"]);
        assert!(ok, "{err}");
        assert_eq!(b.run("many", &[]), "2000\n");
        b.assert_clean();
    }
    // big-layer (512 MB in 5,000 files): once, with the default builder.
    let b = Builder::new(false);
    let (ok, _, err) = b.build(&ws.join("big-layer"), "big", &["--progress", "quiet"]);
    assert!(ok, "{err}");
    assert_eq!(
        b.run("big", &["sh", "-c", "find /data -type f | wc -l; du -sm /data | cut -f1"]).lines().next(),
        Some("5000")
    );
    let du: u64 = b.run("big", &["sh", "-c", "du -sm /data | cut -f1"]).trim().parse().unwrap();
    assert!((480..=520).contains(&du), "{du} MB");
    b.assert_clean();
}

#[test]
fn cache_follows_content_not_mtimes_and_args_only_where_declared() {
    for b in builders() {
        let ctx = b.context(
            "cache",
            &[
                ("Dockerfile", "FROM busybox AS a\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\n\nFROM busybox AS b\nARG ONLY_B=1\nCOPY --from=a /copy /from-a\nRUN echo $ONLY_B > /b\n"),
                ("a.txt", "one"),
                ("ignored.log", "x"),
                (".dockerignore", "*.log\n"),
            ],
        );
        let (ok, _, err) = b.build(&ctx, "c", &[]);
        assert!(ok, "{err}");
        assert_eq!(counts(&err).0, 4, "{err}");
        // Nothing changed: the context's files are not even re-read (their size, mtime, inode are the same).
        let (_, _, err) = b.build(&ctx, "c", &[]);
        assert_eq!(counts(&err), (0, 4), "{err}");
        assert!(err.contains("context: 0 files read, 1 unchanged files not re-read"), "{err}");
        // Same content, new mtime: everything hits.
        let a = ctx.join("a.txt");
        fs::File::options().write(true).open(&a).unwrap().set_modified(std::time::SystemTime::now()).unwrap();
        // An ignored file changing does not matter either.
        fs::write(ctx.join("ignored.log"), "changed").unwrap();
        let (_, _, err) = b.build(&ctx, "c", &[]);
        assert_eq!(counts(&err), (0, 4), "{err}");
        assert!(err.contains("context: 1 files read, 0 unchanged"), "the touched file is read again: {err}");
        // A build arg only stage b declares leaves stage a's steps cached.
        let (_, _, err) = b.build(&ctx, "c", &["--build-arg", "ONLY_B=2"]);
        assert_eq!(counts(&err), (1, 3), "{err}");
        assert_eq!(b.run("c", &["cat", "/b", "/from-a"]), "2\none");
        // Changed content re-runs from that COPY on.
        fs::write(&a, "two").unwrap();
        let (_, _, err) = b.build(&ctx, "c", &["--build-arg", "ONLY_B=2"]);
        assert_eq!(counts(&err), (4, 0), "{err}");
        assert_eq!(b.run("c", &["cat", "/from-a"]), "two");
        let (_, _, err) = b.build(&ctx, "c", &["--no-cache", "--build-arg", "ONLY_B=2"]);
        assert_eq!(counts(&err), (4, 0), "{err}");
        b.assert_clean();
    }
}

#[test]
fn unused_stages_are_not_built_and_target_picks_a_stage() {
    for b in builders() {
        let ctx = b.context(
            "stages",
            &[("Dockerfile", "FROM busybox AS broken\nRUN exit 1\n\nFROM busybox AS good\nRUN echo good > /g\n\nFROM good\nRUN echo final > /f\n")],
        );
        let (ok, _, err) = b.build(&ctx, "s", &[]);
        assert!(ok, "the unused failing stage was built: {err}");
        assert_eq!(b.run("s", &["cat", "/g", "/f"]), "good\nfinal\n");
        let (ok, _, err) = b.build(&ctx, "t", &["--target", "good"]);
        assert!(ok, "{err}");
        assert_eq!(b.run("t", &["sh", "-c", "cat /g; test -e /f || echo no-f"]), "good\nno-f\n");
        let (ok, _, err) = b.build(&ctx, "u", &["--target", "broken"]);
        assert!(!ok && err.contains("did not complete successfully: exit code: 1"), "{err}");
        let (ok, _, err) = b.build(&ctx, "v", &["--target", "nope"]);
        assert!(!ok && err.contains("target stage \"nope\" could not be found"), "{err}");
        b.assert_clean();
    }
}

#[test]
fn metadata_instructions_shape_the_image_config() {
    let b = Builder::new(false);
    let ctx = b.context(
        "config",
        &[(
            "Dockerfile",
            "FROM busybox\nENV A=1 B=\"two words\"\nLABEL org.example=rbuild\nWORKDIR /app\nWORKDIR sub\nUSER 1000:1000\nEXPOSE 80 53/udp\nVOLUME /data\nSTOPSIGNAL SIGTERM\nHEALTHCHECK --interval=5s CMD true\nENTRYPOINT [\"/bin/sh\", \"-c\"]\nCMD [\"echo $A\"]\n",
        )],
    );
    let (ok, _, err) = b.build(&ctx, "cfg", &[]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&b.rb(&["inspect", "cfg"]).stdout).unwrap();
    let c = &v["Config"]["config"];
    assert!(c["Env"].as_array().unwrap().contains(&serde_json::json!("B=two words")), "{c}");
    assert_eq!(c["Labels"]["org.example"], "rbuild");
    assert_eq!(c["WorkingDir"], "/app/sub");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["ExposedPorts"], serde_json::json!({"80/tcp": {}, "53/udp": {}}));
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(c["Healthcheck"], serde_json::json!({"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000u64}));
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["echo $A"]));
    let history = v["Config"]["history"].as_array().unwrap();
    assert!(
        history.iter().any(|h| h["created_by"] == "ENV A=1 B=two words" && h["empty_layer"] == true),
        "{history:?}"
    );
    assert_eq!(b.run("cfg", &[]), "1\n");
}

#[test]
fn failures_name_the_line_and_leave_the_store_clean() {
    for b in builders() {
        let ctx =
            b.context("fail", &[("Dockerfile", "FROM busybox\nRUN echo about to fail; echo on stderr >&2; exit 3\n")]);
        let (ok, _, err) = b.build(&ctx, "f", &[]);
        assert!(!ok);
        assert!(err.contains("Dockerfile:2") && err.contains("did not complete successfully: exit code: 3"), "{err}");
        assert!(err.contains("about to fail") && err.contains("on stderr"), "the step's last output is shown: {err}");
        let ctx = b.context("missing", &[("Dockerfile", "FROM busybox\n\nCOPY nothere.txt /\n")]);
        let (ok, _, err) = b.build(&ctx, "m", &[]);
        assert!(!ok && err.contains("Dockerfile:3") && err.contains("\"nothere.txt\""), "{err}");
        let ctx = b.context("nobase", &[("Dockerfile", "FROM alpine:3.19\nRUN true\n")]);
        let (ok, _, err) = b.build(&ctx, "n", &[]);
        assert!(!ok && err.contains("cannot pull alpine:3.19: offline mode"), "{err}");
        let ctx = b.context(
            "cycle",
            &[("Dockerfile", "FROM busybox AS a\nCOPY --from=b /bin/sh /x\nFROM busybox AS b\nCOPY --from=a /x /y\n")],
        );
        let (ok, _, err) = b.build(&ctx, "c", &[]);
        assert!(!ok && err.contains("circular dependency detected on stage: a (a -> b -> a)"), "{err}");
        let (ok, _, err) = b.build(&ctx, "c", &["--target", "nosuch"]);
        assert!(!ok && err.contains("target stage \"nosuch\" could not be found") && err.contains("a, b"), "{err}");
        let ctx = b.context(
            "unknown-stage",
            &[("Dockerfile", "FROM busybox AS builder\nFROM busybox\nCOPY --from=bulider /x /x\n")],
        );
        let (ok, _, err) = b.build(&ctx, "u", &[]);
        assert!(!ok && err.contains("Dockerfile:3") && err.contains("did you mean stage \"builder\"?"), "{err}");
        let ctx = b.context("escape", &[("Dockerfile", "FROM busybox\nCOPY ../../etc/passwd /\n")]);
        let (ok, _, err) = b.build(&ctx, "e", &[]);
        assert!(!ok && err.contains("outside the build context"), "{err}");
        b.assert_clean();
    }
}

#[test]
fn independent_stages_run_at_the_same_time() {
    // Each stage waits (up to 20 s) for a file the other writes into a shared cache mount: this can only
    // succeed when both run at once. With --jobs 1 it must fail.
    let wait = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,target=/sync,id=rendezvous touch /sync/{me}; i=0; \
             while [ ! -e /sync/{other} ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; test -e /sync/{other}"
        )
    };
    let dockerfile = format!(
        "FROM busybox AS a\n{}\n\nFROM busybox AS b\n{}\n\nFROM busybox\nCOPY --from=a /bin/busybox /a\nCOPY --from=b /bin/busybox /b\n",
        wait("a", "b"),
        wait("b", "a")
    );
    let b = Builder::new(false);
    let ctx = b.context("parallel", &[("Dockerfile", &dockerfile)]);
    let (ok, _, err) = b.build(&ctx, "p", &["--jobs", "2", "--progress", "rawjson"]);
    assert!(ok, "the two stages did not overlap: {err}");
    // The rawjson events show it too: each stage's RUN started before the other's finished.
    let events: Vec<serde_json::Value> =
        err.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    let interval = |stage: &str| -> (u64, u64) {
        let step = events
            .iter()
            .find(|e| e["event"] == "started" && e["stage"] == stage && e["name"].as_str().unwrap().contains("RUN"))
            .unwrap_or_else(|| panic!("no RUN of stage {stage} in {err}"))["step"]
            .clone();
        let at = |kind: &str| {
            events.iter().find(|e| e["event"] == kind && e["step"] == step).unwrap()["unix_nanos"].as_u64().unwrap()
        };
        (at("started"), at("done"))
    };
    let ((a0, a1), (b0, b1)) = (interval("a"), interval("b"));
    assert!(a0 < b1 && b0 < a1, "RUN intervals do not overlap: a {a0}..{a1}, b {b0}..{b1}");
    let b = Builder::new(false);
    let ctx = b.context(
        "sequential",
        &[("Dockerfile", &dockerfile.replace("rendezvous", "rendezvous-seq").replace("200", "10"))],
    );
    let (ok, _, _) = b.build(&ctx, "s", &["--jobs", "1"]);
    assert!(!ok, "with --jobs 1 the stages cannot overlap, so the rendezvous must fail");
}

#[test]
fn build_secrets_reach_run_steps_but_no_blob_and_labels_reach_the_image() {
    let b = Builder::new(false);
    let secret_value = "sup3r-s3cr3t-value-8f2a";
    // The Dockerfile compares hashes, so the value itself appears nowhere but in the secret sources.
    let hash = rbuild_builder::digest::Digest::of(secret_value.as_bytes()).hex().to_string();
    let dockerfile = format!(
        "FROM busybox\nRUN --mount=type=secret,id=file_tok sha256sum /run/secrets/file_tok | grep -q {hash} && echo file-ok > /ok\nRUN --mount=type=secret,id=env_tok,env=TOKEN printf %s \"$TOKEN\" | sha256sum | grep -q {hash} && echo env-ok >> /ok\n"
    );
    let ctx = b.context("secrets", &[("Dockerfile", &dockerfile), ("../token.txt", secret_value)]);
    let token_file = b.work.join("token.txt");
    let out = Command::new(rbuild_bin())
        .env("RBUILD_OFFLINE", "1")
        .args(["--root", b.root.to_str().unwrap(), "build", "-t", "sec", "--label", "org.example.built-by=rbuild"])
        .arg("--secret")
        .arg(format!("id=file_tok,src={}", token_file.display()))
        .args(["--secret", "id=env_tok,env=MY_TOKEN"])
        .arg(&ctx)
        .env("MY_TOKEN", secret_value)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(b.run("sec", &["cat", "/ok"]), "file-ok\nenv-ok\n");
    // The value is in no blob, config, cache record or snapshot of the store, and not in the progress output.
    let grep = Command::new("grep").args(["-rl", secret_value]).arg(&b.root).output().unwrap();
    assert!(grep.stdout.is_empty(), "the secret leaked into: {}", String::from_utf8_lossy(&grep.stdout));
    assert!(!err.contains(secret_value));
    let v: serde_json::Value = serde_json::from_slice(&b.rb(&["inspect", "sec"]).stdout).unwrap();
    assert_eq!(v["Config"]["config"]["Labels"]["org.example.built-by"], "rbuild");
    // A required secret that was not passed is a clear error.
    let ctx = b.context(
        "secret-missing",
        &[("Dockerfile", "FROM busybox\nRUN --mount=type=secret,id=absent,required true\n")],
    );
    let (ok, _, err) = b.build(&ctx, "x", &[]);
    assert!(!ok && err.contains("secret absent: not found (the mount requires it: pass --secret id=absent"), "{err}");
}

#[test]
fn a_stage_rebuilt_with_new_content_invalidates_copies_from_it() {
    let b = Builder::new(false);
    let ctx = b.context(
        "restamp",
        &[("Dockerfile", "FROM busybox AS gen\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n\nFROM busybox\nCOPY --from=gen /stamp /stamp\n")],
    );
    let (ok, _, err) = b.build(&ctx, "r", &[]);
    assert!(ok, "{err}");
    let first = b.run("r", &["cat", "/stamp"]);
    let (_, _, err) = b.build(&ctx, "r", &[]);
    assert_eq!(counts(&err), (0, 2), "an unchanged rebuild reads nothing: {err}");
    // The stage re-runs and writes something else: the copy must follow, though the RUN's own key is unchanged.
    let (ok, _, err) = b.build(&ctx, "r", &["--no-cache-filter", "gen"]);
    assert!(ok, "{err}");
    assert_eq!(counts(&err), (2, 0), "{err}");
    assert_ne!(b.run("r", &["cat", "/stamp"]), first);
    b.assert_clean();
}

/// A re-run COPY links the files that did not change from its previous run's snapshot; what it makes is what a
/// fresh copy makes: changed content, a new mtime, a new mode all land, and the rest is the same file for file.
#[test]
fn a_rerun_copy_links_unchanged_files_and_makes_what_a_fresh_copy_makes() {
    use rbuild_tests::image_files::ImageFiles;
    for b in builders() {
        let mut files: Vec<(String, String)> = vec![
            (
                "Dockerfile".into(),
                "FROM busybox\nWORKDIR /app\nCOPY src/ ./\nRUN cat a.txt sub/b.txt > /joined\n".into(),
            ),
            ("src/a.txt".into(), "a1".into()),
            ("src/sub/b.txt".into(), "b".into()),
            ("src/c.txt".into(), "c".into()),
            ("src/d.sh".into(), "d".into()),
        ];
        files.extend((0..20).map(|i| (format!("src/many/f{i}.txt"), format!("file {i}\n"))));
        let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        let ctx = b.context("incremental", &refs);
        let read = |b: &Builder, name: &str| -> ImageFiles {
            let layout = b.work.join(name);
            let dest = format!("type=oci,tar=false,dest={}", layout.display());
            let (ok, _, err) = b.build(&ctx, "inc", &["-o", &dest]);
            assert!(ok, "{err}");
            assert!(err.contains(" steps run"), "{err}");
            ImageFiles::from_layout(&layout).unwrap()
        };
        let first = read(&b, "first");
        assert_eq!(first.files["/app/a.txt"].content, b"a1");
        // Content changed, mtime changed (same content), mode changed.
        fs::write(ctx.join("src/a.txt"), "a2").unwrap();
        let c = fs::File::options().write(true).open(ctx.join("src/c.txt")).unwrap();
        c.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000)).unwrap();
        let chmod = b.shell(&ctx, "chmod 0700 src/d.sh");
        assert!(chmod.status.success());
        let layout = b.work.join("second");
        let dest = format!("type=oci,tar=false,dest={}", layout.display());
        let (ok, _, err) = b.build(&ctx, "inc", &["-o", &dest]);
        assert!(ok, "{err}");
        assert_eq!(counts(&err), (2, 1), "COPY and RUN re-run: {err}");
        assert!(err.contains("; 21 unchanged files linked from their COPY's previous run"), "{err}");
        let second = ImageFiles::from_layout(&layout).unwrap();
        assert_eq!(second.files["/app/a.txt"].content, b"a2");
        assert_eq!(second.files["/app/c.txt"].mtime, 1_000_000_000);
        assert_eq!(second.files["/app/d.sh"].mode & 0o7777, 0o700);
        assert_eq!(second.files["/app/sub/b.txt"].content, b"b");
        assert_eq!(b.run("inc", &["cat", "/joined", "/app/many/f7.txt"]), "a2bfile 7\n");
        // The same context copied by a store that never saw it: every file the same (kind, mode, owner, mtime,
        // content).
        let fresh = read(&Builder::new(b.as_user), "fresh");
        let app_files = |img: &ImageFiles| -> Vec<(String, rbuild_tests::image_files::FileEntry)> {
            img.files
                .iter()
                .filter(|(p, e)| p.starts_with("/app/") && e.kind == "file")
                .map(|(p, e)| (p.clone(), e.clone()))
                .collect()
        };
        assert_eq!(app_files(&second).len(), 24);
        assert_eq!(app_files(&second), app_files(&fresh));
        // The record of the copy's files goes when its snapshot is pruned.
        let records = || fs::read_dir(b.root.join("cache/copies")).unwrap().count();
        assert_eq!(records(), 1);
        assert!(b.rb(&["rmi", "inc"]).status.success());
        assert!(b.rb(&["prune"]).status.success());
        assert_eq!(records(), 0, "the record went with its snapshot");
        b.assert_clean();
    }
}

/// With one id mapped and the ownership emulation off (`RBUILD_ONE_ID=root`), a step that fails changing owners
/// gets the subordinate-id note, with a `usermod` range that overlaps none in /etc/subuid; a step that fails for
/// another reason does not. (With the emulation, the default, the chown works: tests/tests/one_id.rs.)
#[test]
fn the_subordinate_id_note_comes_only_with_a_failed_owner_change() {
    let b = Builder::new(running_as_root());
    let chown = b.context("chown-fails", &[("Dockerfile", "FROM busybox\nRUN touch /x && chown 1000 /x\n")]);
    let other = b.context("other-fails", &[("Dockerfile", "FROM busybox\nRUN echo no such thing && false\n")]);
    let out = b.rb_env(
        &["build", "--progress", "plain", "--userns", "single", chown.to_str().unwrap()],
        &[("RBUILD_ONE_ID", "root")],
    );
    let (ok, err) = (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(!ok, "chown worked with one id mapped and no emulation");
    assert!(err.contains("only one user id is mapped into the sandbox"), "{err}");
    let range = err.split("--add-subuids ").nth(1).and_then(|r| r.split_whitespace().next()).expect("a range");
    let (start, end) = range.split_once('-').expect("first-last");
    let (start, end): (u64, u64) = (start.parse().unwrap(), end.parse().unwrap());
    for line in fs::read_to_string("/etc/subuid").unwrap_or_default().lines() {
        if let [_, s, n] = line.split(':').collect::<Vec<_>>()[..] {
            let (s, n): (u64, u64) = (s.parse().unwrap(), n.parse().unwrap());
            assert!(end < s || start >= s + n, "{range} overlaps {line}");
        }
    }
    let (ok, _, err) = b.build(&other, "o", &["--userns", "single"]);
    assert!(!ok);
    assert!(!err.contains("only one user id is mapped"), "a note about ids for a step that failed otherwise: {err}");
}

/// Errors say each cause once, and an ADD URL that cannot be fetched is named as the URL it is, not a registry.
#[test]
fn errors_name_the_cause_once_and_urls_as_urls() {
    let b = Builder::new(false);
    let empty = b.context("no-dockerfile", &[("a.txt", "a")]);
    let (ok, _, err) = b.build(&empty, "x", &[]);
    assert!(!ok);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    // A port nothing listens on, on loopback.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/file.txt");
    let ctx = b.context("add-url", &[("Dockerfile", &format!("FROM busybox\nADD {url} /f\n"))]);
    let out = b.rb_env(&["build", "--progress", "plain", "-t", "u", ctx.to_str().unwrap()], &[("RBUILD_OFFLINE", "0")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("cannot download {url}")), "{err}");
    assert!(!err.contains("registry"), "{err}");
    // A registry that cannot be reached: what to do without a network.
    let image = format!("127.0.0.1:{port}/some/image:1");
    let out = b.rb_env(&["pull", &image], &[("RBUILD_OFFLINE", "0"), ("RBUILD_REGISTRY_RETRY_SECONDS", "0")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("rbuild load") && err.contains("--offline"), "{err}");
    // A file rbuild writes is named as asked, never by the temporary name it is written under.
    let dest = b.work.join("no-such-dir/saved.tar");
    let out = b.rb(&["save", "-o", dest.to_str().unwrap(), "busybox"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(dest.to_str().unwrap()) && !err.contains(".rbuild-"), "{err}");
}

/// `rbuild completion SHELL` and `rbuild man DIR` come from the parser's own definitions: every command and flag.
#[test]
fn completions_and_man_pages_come_from_the_parser() {
    let bash = Command::new(rbuild_bin()).args(["completion", "bash"]).output().unwrap();
    let script = String::from_utf8_lossy(&bash.stdout);
    assert!(bash.status.success() && script.contains("complete -F"), "{script}");
    for word in ["compose", "--build-arg", "--no-cache-filter", "--secret"] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    for shell in ["zsh", "fish"] {
        let out = Command::new(rbuild_bin()).args(["completion", shell]).output().unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("build-arg"), "{shell}");
    }
    let dir = rbuild_tests::TempDir::new("man");
    let out = Command::new(rbuild_bin()).arg("man").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let build_page = fs::read_to_string(dir.path().join("rbuild-build.1")).expect("rbuild-build.1");
    assert!(build_page.contains(".TH rbuild-build") && build_page.contains("build\\-arg"), "{build_page}");
    assert!(dir.path().join("rbuild.1").is_file() && dir.path().join("rbuild-compose.1").is_file());
}

/// An image with no layers (FROM scratch + LABEL) is a base like any other: the image built on it has only its own
/// layer and both labels (BuildKit testPullScratch, its Dockerfile part).
#[test]
fn a_layerless_image_is_a_base() {
    let b = Builder::new(false);
    let base = b.context("layerless", &[("Dockerfile", "FROM scratch\nLABEL foo=bar\n")]);
    let (ok, _, err) = b.build(&base, "moby/testpullscratch:latest", &[]);
    assert!(ok, "{err}");
    let child = b.context(
        "on-layerless",
        &[("Dockerfile", "FROM moby/testpullscratch:latest\nLABEL bar=baz\nCOPY foo .\n"), ("foo", "foo-contents")],
    );
    let (ok, _, err) = b.build(&child, "moby/testpullscratch2:latest", &[]);
    assert!(ok, "{err}");
    let out = b.rb(&["inspect", "moby/testpullscratch2:latest"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect prints JSON");
    let config = &v["Config"];
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(1), "{config}");
    assert_eq!(config["config"]["Labels"]["foo"], "bar");
    assert_eq!(config["config"]["Labels"]["bar"], "baz");
}
