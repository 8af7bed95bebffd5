//! Container isolation (issue 24): rbuild building inside unmodified CI containers — a private Docker engine with
//! Docker's DEFAULT security settings (its seccomp profile forbids namespaces), the job as root — where steps run in
//! the container's own root, as Kaniko did. In the executor image (`scripts/dist image`, preset to
//! `auto+container`) and in a plain busybox container with `RBUILD_ISOLATION=container` (store in the container or
//! on a volume): RUN, `chown 1000:1000`, `COPY --chown`, `USER app` + `id -u`, a cache mount, a secret, an opaque
//! directory, a whiteout and a multi-stage `COPY --from` build; the image has the right owners and contents and no
//! secret; a second build is fully cached. A merged-/usr Debian installs a package with apt and switches users.
//! The refusals: a store below a directory images use, and `--isolation container` outside a container, before
//! anything is touched. Needs root (dockerd, chroot); skipped where the engine cannot start.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rbuild_tests::docker_jobs::{BASE, IDS, check_image};
use rbuild_tests::image_files::ImageFiles;
use rbuild_tests::{PrivateDockerd, TempDir, running_as_root, static_rbuild_bin, test_apt_repo, test_image};

/// A stage built before [`BASE`] and [`IDS`] (the container's root is made anew for the next stage), whose file
/// the last stage takes with `COPY --from`.
const SIDE_STAGE: &str = "FROM busybox AS side
RUN echo side > /side-file && chown 1000:1000 /side-file && echo 'not in the final image' > /side-only
";
const FROM_SIDE: &str = "COPY --from=side /side-file /side-file
";

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// One container job: its image and `docker run` flags, and the shell script it runs.
struct Job<'a> {
    image: &'a str,
    flags: Vec<String>,
    script: String,
}

fn run_job(engine: &PrivateDockerd, job: &Job<'_>) -> Output {
    let mut args: Vec<&str> = vec!["run", "--rm", "--network", "none", "--entrypoint", "sh"];
    args.extend(job.flags.iter().map(String::as_str));
    args.extend([job.image, "-c", &job.script]);
    engine.docker(&args)
}

/// The volumes every job gets: the context, the busybox and debian layouts, the apt repository, the output.
fn volumes(ctx: &Path, out: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for (host, inside, mode) in [
        (ctx.to_path_buf(), "/ctx", "ro"),
        (test_image("busybox"), "/bb", "ro"),
        (test_image("debian"), "/deb", "ro"),
        (test_apt_repo(&["attr"]), "/repo", "ro"),
        (out.to_path_buf(), "/out", "rw"),
    ] {
        v.extend(["-v".to_string(), format!("{}:{inside}:{mode}", host.display())]);
    }
    v.extend(["-e".into(), "RBUILD_OFFLINE=1".into(), "-e".into(), "TOKEN=s3cret-value".into()]);
    v
}

/// `rbuild build` of the context's Dockerfile into `/out/<dest>` (with `rbuild` on the job's PATH or at `bin`).
fn build_cmd(bin: &str, dest: &str) -> String {
    format!(
        "{bin} build --progress plain --secret id=token,env=TOKEN --build-context busybox=oci-layout:///bb \
         --build-context debian=oci-layout:///deb -t built -o type=oci,tar=false,dest=/out/{dest} /ctx"
    )
}

/// Both builds' output, and whether the second one ran no step.
fn second_is_cached(said: &str) -> bool {
    said.lines().filter(|l| l.starts_with("built ")).nth(1).is_some_and(|l| l.contains("(0 steps run"))
}

fn check_multi_stage(layout: &Path) -> Result<(), String> {
    check_image(layout, true)?;
    let image = ImageFiles::from_layout(layout).map_err(|e| e.to_string())?;
    let side = image.files.get("/side-file").map(|f| (String::from_utf8_lossy(&f.content).into_owned(), f.uid));
    if side != Some(("side\n".into(), 1000)) || image.files.contains_key("/side-only") {
        return Err(format!("COPY --from=side: {side:?} (or the side stage's other files leaked in)"));
    }
    Ok(())
}

/// The executor image, made by `scripts/dist image` from the static rbuild (into `dir`).
fn executor_image(bin: &Path, dir: &Path) -> Result<PathBuf, String> {
    let root = rbuild_tests::workspace_root();
    // The busybox-static package the busybox test image was made from (no download).
    test_image("busybox");
    let out = Command::new(root.join("scripts/dist"))
        .arg("image")
        .env("RBUILD_BIN", bin)
        .env("DIST_DIR", dir)
        .env("DEB_CACHE", rbuild_tests::test_images_dir().join("debs"))
        .current_dir(&root)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(text(&out));
    }
    Ok(dir.join("rbuild-image.tar"))
}

#[test]
fn builds_in_unmodified_ci_containers_as_kaniko_did() {
    let (engine, bin) = match rbuild_tests::docker_jobs::engine_and_static_rbuild() {
        Ok(found) => found,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let work = TempDir::new("container-isolation");
    let archive = executor_image(&bin, &work.path().join("dist")).expect("scripts/dist image");
    let loaded = engine.docker(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.status.success(), "docker load: {}", text(&loaded));
    let version = env!("CARGO_PKG_VERSION");
    let executor = format!("rbuild:{version}");
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("{SIDE_STAGE}{BASE}{IDS}{FROM_SIDE}")).unwrap();
    std::fs::write(ctx.join("f"), "context\n").unwrap();
    let bin_volume = format!("{}:/rbuild/bin/rbuild:ro", bin.display());
    // The jobs are independent: they run at once, each in its own containers.
    // 1. The executor image: nothing but `rbuild build`; two builds in one job, the second fully cached.
    let job1 = || {
        let mut failures = Vec::new();
        let out = work.path().join("out-executor");
        std::fs::create_dir_all(&out).unwrap();
        let job = Job {
            image: &executor,
            flags: volumes(&ctx, &out),
            script: format!(
                "rbuild info | grep ^isolation && {} && {}",
                build_cmd("rbuild", "layout"),
                build_cmd("rbuild", "again")
            ),
        };
        let ran = run_job(&engine, &job);
        let said = text(&ran);
        let told = said.contains("container: steps run in this container's own root");
        if !ran.status.success() || !told || !said.contains("container isolation") || !second_is_cached(&said) {
            failures.push(format!("the executor image: {said}"));
        } else if let Err(e) = check_multi_stage(&out.join("layout")) {
            failures.push(format!("the executor image: {e}\n{said}"));
        }
        failures
    };

    // 2. A plain busybox container with RBUILD_ISOLATION=container, the store in the container (its default).
    let job2 = || {
        let mut failures = Vec::new();
        let out = work.path().join("out-busybox");
        std::fs::create_dir_all(&out).unwrap();
        let mut flags = volumes(&ctx, &out);
        flags.extend(["-v".into(), bin_volume.clone(), "-e".into(), "RBUILD_ISOLATION=container".into()]);
        let job = Job { image: "busybox", flags, script: build_cmd("/rbuild/bin/rbuild", "layout") };
        let ran = run_job(&engine, &job);
        let said = text(&ran);
        if !ran.status.success() {
            failures.push(format!("busybox, store in the container: {said}"));
        } else if let Err(e) = check_multi_stage(&out.join("layout")) {
            failures.push(format!("busybox, store in the container: {e}\n{said}"));
        }
        failures
    };

    // 3. The store on a volume: a second job (a new container) on the same store runs no step.
    let job3 = || {
        let mut failures = Vec::new();
        let out = work.path().join("out-volume");
        std::fs::create_dir_all(out.join("store")).unwrap();
        let mut flags = volumes(&ctx, &out);
        let store_volume = format!("{}:/ci-cache", out.join("store").display());
        flags.extend([
            "-v".into(),
            bin_volume.clone(),
            "-v".into(),
            store_volume,
            "-e".into(),
            "RBUILD_ROOT=/ci-cache/store".into(),
        ]);
        flags.extend(["-e".into(), "RBUILD_ISOLATION=container".into()]);
        for (dest, cached) in [("layout", false), ("again", true)] {
            let job = Job { image: "busybox", flags: flags.clone(), script: build_cmd("/rbuild/bin/rbuild", dest) };
            let ran = run_job(&engine, &job);
            let said = text(&ran);
            let none_run = said.lines().any(|l| l.starts_with("built ") && l.contains("(0 steps run"));
            if !ran.status.success() || none_run != cached {
                failures.push(format!("busybox, store on a volume ({dest}): {said}"));
            }
        }
        if let Err(e) = check_multi_stage(&out.join("layout")) {
            failures.push(format!("busybox, store on a volume: {e}"));
        }
        failures
    };

    // 4. A merged-/usr Debian (/bin -> usr/bin, where the busybox container has a /bin directory): apt installs a
    // package from a file repository, useradd, su to the new user; a cache mount over /var/cache/apt, which the
    // image has, leaves it as it was.
    let job4 = || {
        let mut failures = Vec::new();
        let dctx = work.path().join("ctx-debian");
        std::fs::create_dir_all(&dctx).unwrap();
        std::fs::write(
            dctx.join("Dockerfile"),
            "FROM debian\n\
             RUN echo 'deb [trusted=yes] file:/repo ./' > /etc/apt/sources.list && rm -f /etc/apt/sources.list.d/* \
             && apt-get update && apt-get install -y --no-install-recommends attr && getfattr --version\n\
             RUN useradd -m -u 1234 bob && su bob -c 'id -u > /home/bob/me && touch /home/bob/mine'\n\
             RUN --mount=type=cache,target=/var/cache/apt ls /var/cache/apt > /apt-cache-seen\n",
        )
        .unwrap();
        let out = work.path().join("out-debian");
        std::fs::create_dir_all(&out).unwrap();
        let mut flags = volumes(&dctx, &out);
        flags.extend(["-v".into(), bin_volume.clone(), "-e".into(), "RBUILD_ISOLATION=container".into()]);
        let job = Job { image: "busybox", flags, script: build_cmd("/rbuild/bin/rbuild", "layout") };
        let ran = run_job(&engine, &job);
        let said = text(&ran);
        match ImageFiles::from_layout(&out.join("layout")) {
            Ok(image) if ran.status.success() => {
                let content = |p: &str| image.files.get(p).map(|f| String::from_utf8_lossy(&f.content).into_owned());
                let owner = |p: &str| image.files.get(p).map(|f| (f.uid, f.gid));
                if !image.files.contains_key("/usr/bin/getfattr")
                    || content("/home/bob/me").as_deref() != Some("1234\n")
                    || owner("/home/bob/mine") != Some((1234, 1234))
                    || image.files.get("/bin").map(|f| f.kind) != Some("symlink")
                    || image.files.contains_key("/repo")
                    || image.files.contains_key("/ctx")
                {
                    failures.push(format!("debian: the image is not as built: {said}"));
                }
            }
            _ => failures.push(format!("debian: {said}")),
        }
        failures
    };

    // 5. A store below a directory images use is refused, naming the fix, before any step.
    let job5 = || {
        let mut failures = Vec::new();
        let out = work.path().join("out-job5");
        std::fs::create_dir_all(&out).unwrap();
        let mut flags = volumes(&ctx, &out);
        flags.extend(["-v".into(), bin_volume.clone(), "-e".into(), "RBUILD_ISOLATION=container".into()]);
        let job = Job { image: "busybox", flags, script: "/rbuild/bin/rbuild --root /tmp/store build /ctx".into() };
        let ran = run_job(&engine, &job);
        let said = text(&ran);
        if ran.status.code() != Some(1) || !said.contains("/rbuild/store") || said.contains("#1 ") {
            failures.push(format!("a store under /tmp was not refused: {said}"));
        }
        failures
    };

    // 6. A job that is not root: container isolation is refused, naming why; the executor image's auto+container
    // keeps the namespace refusal, which names what lifts it (and container isolation for root jobs).
    let job6 = || {
        let mut failures = Vec::new();
        let out = work.path().join("out-job6");
        std::fs::create_dir_all(&out).unwrap();
        let user_store = work.path().join("user-store");
        std::fs::create_dir_all(&user_store).unwrap();
        std::fs::set_permissions(&user_store, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        for (image, isolation, wanted) in
            [("busybox", "container", "run the job as root"), (executor.as_str(), "auto+container", "seccomp")]
        {
            let mut flags = volumes(&ctx, &out);
            flags.extend(["-v".into(), format!("{}:/rbuild/bin/rbuild:ro", bin.display())]);
            flags.extend(["-v".into(), format!("{}:/user-store", user_store.display())]);
            flags.extend(["--user".into(), "1000:1000".into(), "-e".into(), "HOME=/user-store".into()]);
            flags.extend(["-e".into(), format!("RBUILD_ISOLATION={isolation}")]);
            let script = "/rbuild/bin/rbuild --root /user-store/s build --build-context busybox=oci-layout:///bb /ctx";
            let ran = run_job(&engine, &Job { image, flags, script: script.into() });
            let said = text(&ran);
            if ran.status.success() || !said.contains(wanted) {
                failures
                    .push(format!("uid 1000, {isolation} in {image}: expected a refusal saying {wanted:?}: {said}"));
            }
        }
        failures
    };

    // 7. `rbuild compose build` in container isolation: a service built FROM another (additional_contexts:
    // service:), both in one graph; the second run builds nothing; a build on the result sees its files and owners.
    let job7 = || {
        let mut failures = Vec::new();
        let out = work.path().join("out-job7");
        std::fs::create_dir_all(&out).unwrap();
        let project = work.path().join("compose");
        for (path, content) in [
            (
                "compose.yaml",
                "services:\n  base:\n    image: base:ci\n    build: ./base\n  app:\n    image: app:ci\n    build:\n      \
                 context: ./app\n      additional_contexts:\n        base: service:base\n",
            ),
            ("base/Dockerfile", "FROM oci-layout:///bb\nRUN echo from-base > /base-file\n"),
            ("app/Dockerfile", "FROM base\nRUN cp /base-file /app-file && chown 1000:1000 /app-file\n"),
            (
                "check/Dockerfile",
                "FROM app:ci\nRUN test \"$(cat /app-file)\" = from-base && test \"$(stat -c %u /app-file)\" = 1000\n",
            ),
        ] {
            std::fs::create_dir_all(project.join(path).parent().unwrap()).unwrap();
            std::fs::write(project.join(path), content).unwrap();
        }
        let mut flags = volumes(&project, &out);
        flags.extend(["-v".into(), format!("{}:/rbuild/bin/rbuild:ro", bin.display())]);
        flags.extend(["-e".into(), "RBUILD_ISOLATION=container".into(), "-w".into(), "/ctx".into()]);
        let compose = "/rbuild/bin/rbuild compose build --progress plain";
        let check = "/rbuild/bin/rbuild build --progress plain /ctx/check";
        let script = format!("{compose} && {compose} && {check}");
        let ran = run_job(&engine, &Job { image: "busybox", flags, script });
        let said = text(&ran);
        let services: Vec<&str> = said.lines().filter(|l| l.starts_with("service ")).collect();
        let second_cached = services.len() == 4 && services[2..].iter().all(|l| l.ends_with("(CACHED)"));
        if !ran.status.success() || !second_cached {
            failures.push(format!("compose build in container isolation: {said}"));
        }
        failures
    };
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles = vec![
            scope.spawn(job1),
            scope.spawn(job2),
            scope.spawn(job3),
            scope.spawn(job4),
            scope.spawn(job5),
            scope.spawn(job6),
            scope.spawn(job7),
        ];
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Outside a container (a chroot without any container's marks), `--isolation container` is refused before
/// anything is touched: no store is made, no file of the root changes.
#[test]
fn container_isolation_is_refused_outside_a_container() {
    if !running_as_root() {
        eprintln!("skipped: chroot needs root");
        return;
    }
    let Some(bin) = static_rbuild_bin() else {
        eprintln!("skipped: no static rbuild here (scripts/test builds it static)");
        return;
    };
    let dir = TempDir::new("not-a-container");
    let root = dir.path();
    std::fs::copy(&bin, root.join("rb")).unwrap();
    std::fs::create_dir_all(root.join("ctx")).unwrap();
    std::fs::write(root.join("ctx/Dockerfile"), "FROM scratch\nCOPY canary /\n").unwrap();
    std::fs::write(root.join("canary"), "untouched").unwrap();
    std::fs::write(root.join("ctx/canary"), "untouched").unwrap();
    for (how, args) in [
        ("RBUILD_ISOLATION=container", vec!["/rb", "build", "/ctx"]),
        ("--isolation container", vec!["/rb", "--isolation", "container", "build", "/ctx"]),
    ] {
        let out = Command::new(rbuild_tests::require_tool("chroot"))
            .arg(root)
            .args(&args)
            .env_clear()
            .env("PATH", "/")
            .env("RBUILD_ISOLATION", if how.starts_with("RBUILD") { "container" } else { "auto" })
            .output()
            .unwrap();
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{how}: {said}");
        assert!(said.contains("not inside a container") && said.contains("--isolation auto"), "{how}: {said}");
        assert!(!root.join("rbuild/store").exists(), "{how}: a store was made");
        let entries: Vec<String> =
            std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(entries.len(), 3, "{how}: the root changed: {entries:?}");
        assert_eq!(std::fs::read_to_string(root.join("canary")).unwrap(), "untouched");
    }
}
