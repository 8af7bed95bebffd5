//! rbuild inside CI containers (issue 22): a private Docker engine (Debian's docker.io, its own data root, no
//! bridge) runs the static rbuild in a busybox container, with the store on the container's own filesystem,
//! under the settings CI jobs get — Docker's defaults, seccomp unconfined, /proc unmasked, CAP_SYS_ADMIN — as
//! root and as uid 1000. Each row builds a Dockerfile with RUN, COPY, a cache mount, a secret, an opaque directory
//! and a whiteout (and, where the tier keeps ids, `chown 1000:1000`, `COPY --chown` and `USER`), then the test
//! reads the image it wrote with its own reader: contents, owners, what the whiteouts hid, no secret in any
//! layer; and the progress says what the tier gave up. Where the host allows no namespace, the refusal names
//! the cause and the settings that lift it. Needs root (dockerd); skipped where the engine cannot start.

use std::path::Path;
use std::process::Output;

use rbuild_tests::docker_jobs::{BASE, IDS, check_image};
use rbuild_tests::{PrivateDockerd, TempDir, test_image};

/// What the progress says when a tier gives something up.
const TIER_NOTES: [&str; 3] =
    ["user namespace mapping every id", "share this container's /proc", "pivot_root was refused"];

/// One row of the matrix: the `docker run` settings, the job's user, and whether ownership changes are built.
struct Row {
    name: &'static str,
    docker: &'static [&'static str],
    user: Option<&'static str>,
    ids: bool,
    /// A line the progress must show (the tier's note), or None: nothing given up.
    note: Option<&'static str>,
    /// The store on a volume (a host directory) instead of the container's overlayfs: overlay snapshots work.
    store_volume: bool,
}

fn sh(engine: &PrivateDockerd, args: &[&str]) -> Output {
    engine.docker(args)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// One `rbuild build` in a container: its context, the host directory for its output (and volume stores), the
/// store's name, extra build flags, and where in `out` the image goes.
struct Job<'a> {
    ctx: &'a Path,
    out: &'a Path,
    store_name: &'a str,
    extra: &'a [&'a str],
    dest: &'a str,
}

/// Run rbuild in a busybox container of `engine` with `row`'s settings.
fn build_in_container(engine: &PrivateDockerd, bin: &Path, row: &Row, job: &Job<'_>) -> Output {
    let (ctx, out, store_name, extra, dest) = (job.ctx, job.out, job.store_name, job.extra, job.dest);
    let mut mounts = vec![
        format!("{}:/rbuild:ro", bin.display()),
        format!("{}:/ctx:ro", ctx.display()),
        format!("{}:/bb:ro", test_image("busybox").display()),
        format!("{}:/out", out.display()),
    ];
    let store = if row.store_volume {
        let volume = out.join(store_name);
        std::fs::create_dir_all(&volume).unwrap();
        mounts.push(format!("{}:/store", volume.display()));
        "/store".to_string()
    } else {
        format!("/tmp/{store_name}")
    };
    let mut args: Vec<String> = vec!["run".into(), "--rm".into(), "--network".into(), "none".into()];
    for m in &mounts {
        args.extend(["-v".into(), m.clone()]);
    }
    args.extend(row.docker.iter().map(|s| s.to_string()));
    if let Some(u) = row.user {
        args.extend(["--user".into(), u.into(), "-e".into(), "HOME=/tmp".into()]);
    }
    args.extend(["-e".into(), "RBUILD_OFFLINE=1".into(), "-e".into(), "TOKEN=s3cret-value".into()]);
    args.extend(["busybox".into(), "/rbuild".into(), "--root".into(), store, "build".into()]);
    args.extend(["--progress", "plain", "--secret", "id=token,env=TOKEN"].iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend([
        "-t".into(),
        "built".into(),
        "-o".into(),
        format!("type=oci,tar=false,dest=/out/{dest}"),
        "/ctx".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sh(engine, &args)
}

/// A `--platform linux/arm64` build from the multi-platform busybox in a container with `row`'s settings, qemu
/// bound in read-only (`RBUILD_QEMU_DIR`): its RUN step must run emulated, in the step's own binfmt_misc.
fn foreign_build_in_container(engine: &PrivateDockerd, bin: &Path, row: &Row, dir: &Path) -> Result<(), String> {
    let qemu = Path::new("/usr/bin/qemu-aarch64-static");
    if !qemu.exists() || std::env::consts::ARCH != "x86_64" {
        eprintln!("skipped the linux/arm64 row: no qemu-aarch64-static, or not an amd64 host");
        return Ok(());
    }
    let (ctx, qemu_dir) = (dir.join("ctx"), dir.join("qemu"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::create_dir_all(&qemu_dir).unwrap();
    std::fs::copy(qemu, qemu_dir.join("qemu-aarch64-static")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM oci-layout:///multi:latest\nRUN uname -m > /m && echo \"machine: $(cat /m)\"\n",
    )
    .unwrap();
    let mounts = [
        format!("{}:/rbuild:ro", bin.display()),
        format!("{}:/ctx:ro", ctx.display()),
        format!("{}:/multi:ro", test_image("busybox-multi").display()),
        format!("{}:/qemu:ro", qemu_dir.display()),
    ];
    let mut args: Vec<&str> = vec!["run", "--rm", "--network", "none"];
    for m in &mounts {
        args.extend(["-v", m.as_str()]);
    }
    args.extend(row.docker);
    if let Some(u) = row.user {
        args.extend(["--user", u, "-e", "HOME=/tmp"]);
    }
    args.extend(["-e", "RBUILD_OFFLINE=1", "-e", "RBUILD_QEMU_DIR=/qemu", "busybox", "/rbuild", "--root", "/tmp/fs"]);
    args.extend(["build", "--progress", "plain", "--platform", "linux/arm64", "/ctx"]);
    let out = sh(engine, &args);
    let said = text(&out);
    if out.status.success() && said.contains("machine: aarch64") { Ok(()) } else { Err(said) }
}

/// `rbuild info` in a container with `row`'s settings.
fn info_in_container(engine: &PrivateDockerd, bin: &Path, row: &Row, isolation: &str) -> Output {
    let mount = format!("{}:/rbuild:ro", bin.display());
    let env = format!("RBUILD_ISOLATION={isolation}");
    let mut args: Vec<&str> = vec!["run", "--rm", "--network", "none", "-v", &mount, "-e", &env];
    args.extend(row.docker);
    if let Some(u) = row.user {
        args.extend(["--user", u, "-e", "HOME=/tmp"]);
    }
    args.extend(["busybox", "/rbuild", "--root", "/tmp/info-store", "info"]);
    sh(engine, &args)
}

#[test]
fn rbuild_builds_inside_ci_containers_with_what_each_allows() {
    let (engine, bin) = match rbuild_tests::docker_jobs::engine_and_static_rbuild() {
        Ok(found) => found,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let work = TempDir::new("ci-containers");

    let rows = [
        Row {
            name: "docker defaults, uid 1000",
            docker: &[],
            user: Some("1000:1000"),
            ids: false,
            note: None,
            store_volume: false,
        },
        Row {
            name: "seccomp=unconfined, root",
            docker: &["--security-opt", "seccomp=unconfined"],
            user: None,
            ids: true,
            note: Some("user namespace mapping every id"),
            store_volume: false,
        },
        Row {
            name: "seccomp=unconfined, root, store on a volume",
            docker: &["--security-opt", "seccomp=unconfined"],
            user: None,
            ids: true,
            note: Some("user namespace mapping every id"),
            store_volume: true,
        },
        Row {
            name: "seccomp=unconfined, uid 1000",
            docker: &["--security-opt", "seccomp=unconfined"],
            user: Some("1000:1000"),
            ids: true,
            note: Some("share this container's /proc"),
            store_volume: false,
        },
        Row {
            name: "seccomp=unconfined + systempaths=unconfined, uid 1000",
            docker: &["--security-opt", "seccomp=unconfined", "--security-opt", "systempaths=unconfined"],
            user: Some("1000:1000"),
            ids: true,
            note: None,
            store_volume: false,
        },
        Row {
            name: "--cap-add SYS_ADMIN, root",
            docker: &["--cap-add", "SYS_ADMIN"],
            user: None,
            ids: true,
            note: Some("pivot_root was refused"),
            store_volume: false,
        },
    ];
    let mut failures = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let ctx = work.path().join(format!("ctx-{i}"));
        let out = work.path().join(format!("out-{i}"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let dockerfile = if row.ids { format!("{BASE}{IDS}") } else { BASE.to_string() };
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        std::fs::write(ctx.join("f"), "context\n").unwrap();
        let job = Job {
            ctx: &ctx,
            out: &out,
            store_name: "store",
            extra: &["--build-context", "busybox=oci-layout:///bb"],
            dest: "layout",
        };
        let info = info_in_container(&engine, &bin, row, "auto");
        let told = text(&info);
        let info_ok = if i == 0 {
            info.status.code() == Some(1) && told.contains("RUN steps cannot run here") && told.contains("seccomp")
        } else {
            info.status.success() && told.contains("isolation") && row.note.is_none_or(|n| told.contains(n))
        };
        if !info_ok {
            failures.push(format!("{}: rbuild info ({:?}):\n{told}", row.name, info.status.code()));
        }
        if row.note.is_some() {
            // --isolation sandbox takes nothing less than the full sandbox.
            let strict = info_in_container(&engine, &bin, row, "sandbox");
            if strict.status.code() != Some(1)
                || !text(&strict).contains("--isolation sandbox, but this host allows less")
            {
                failures.push(format!("{}: RBUILD_ISOLATION=sandbox was not refused:\n{}", row.name, text(&strict)));
            }
        }
        let built = build_in_container(&engine, &bin, row, &job);
        let said = text(&built);
        if i == 0 {
            // Docker's defaults: its seccomp profile forbids namespaces; the refusal says so and what lifts it.
            let wanted =
                ["seccomp profile", "seccomp=unconfined", "seccompProfile", "procMount: Unmasked", "security_opt"];
            if built.status.success() || wanted.iter().any(|w| !said.contains(w)) || said.contains("sysctl") {
                failures.push(format!("{}: expected the seccomp refusal:\n{said}", row.name));
            }
            continue;
        }
        if !built.status.success() {
            failures.push(format!("{}: the build failed:\n{said}", row.name));
            continue;
        }
        match row.note {
            Some(n) if !said.contains(n) => {
                failures.push(format!("{}: the progress does not say {n:?}:\n{said}", row.name))
            }
            None if TIER_NOTES.iter().any(|n| said.contains(n)) => {
                failures.push(format!("{}: expected the full sandbox:\n{said}", row.name))
            }
            _ => {}
        }
        if let Err(e) = foreign_build_in_container(&engine, &bin, row, &work.path().join(format!("foreign-{i}"))) {
            failures.push(format!("{}: a linux/arm64 build: {e}", row.name));
        }
        if row.store_volume && said.contains("snapshotter was refused") {
            failures.push(format!("{}: overlay snapshots were refused on a volume:\n{said}", row.name));
        }
        if let Err(e) = check_image(&out.join("layout"), row.ids) {
            failures.push(format!("{}: {e}\n{said}", row.name));
        }
        if row.store_volume {
            // `rbuild run` gets the same tier: the image's files and owners as built.
            let store = format!("{}:/store", out.join("store").display());
            let mount = format!("{}:/rbuild:ro", bin.display());
            let mut args: Vec<&str> = vec!["run", "--rm", "--network", "none", "-v", &mount, "-v", &store];
            args.extend(row.docker);
            args.extend([
                "busybox", "/rbuild", "--root", "/store", "run", "built", "stat", "-c", "%u:%g %n", "/owned/f",
            ]);
            let ran = sh(&engine, &args);
            let said_run = text(&ran);
            if !ran.status.success() || !said_run.contains("1000:1000 /owned/f") || !said_run.contains(TIER_NOTES[0]) {
                failures.push(format!("{}: rbuild run:\n{said_run}", row.name));
            }
            // The image as the base of another build on a new store: its layers are unpacked into snapshots by
            // rbuild (not written by a mount), and the opaque directory and whiteout must hold there too.
            let ctx2 = work.path().join(format!("ctx-{i}-child"));
            std::fs::create_dir_all(&ctx2).unwrap();
            std::fs::write(
                ctx2.join("Dockerfile"),
                "FROM base\nRUN test ! -e /d/a && test ! -e /gone && echo ok > /home/app/second\n",
            )
            .unwrap();
            let job = Job {
                ctx: &ctx2,
                out: &out,
                store_name: "store2",
                extra: &["--build-context", "base=oci-layout:///out/layout"],
                dest: "child",
            };
            let child = build_in_container(&engine, &bin, row, &job);
            if !child.status.success() {
                failures.push(format!("{}: a build on the image failed:\n{}", row.name, text(&child)));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
