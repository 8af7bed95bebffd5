//! The differential test against BuildKit: every Dockerfile in `tests/differential/` (Debian-based, with its
//! context files and an optional `setup.sh` run in the context first) is built by BuildKit (a private dockerd from
//! Debian's docker.io) and by rbuild as root and as the unprivileged test user; the three images are flattened
//! (`rbuild_tests::image_tree`) and compared file by file, config by config, history entry by history entry.
//! A difference fails the test unless `tests/differential/allowed.toml` lists it with the reason it is expected.
//! `apt-get` in the Dockerfiles reads a local repository served on loopback (`$APT_REPO`), so the test is offline.
//!
//! `RBUILD_DIFF=name,...` runs only those cases. Needs root (dockerd, debootstrap); skipped with a message when the
//! engine cannot start.

use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_tests::build_fixture::Builder;
use rbuild_tests::image_tree::{BaseLayers, Difference, ImageTree, differences};
use rbuild_tests::{FileServer, PrivateDockerd, TempDir, running_as_root, test_apt_repo, test_image, workspace_root};

/// What the corpus installs with apt (and the repository therefore holds, with their dependencies).
const APT_PACKAGES: &[&str] = &["iputils-ping", "libcap2-bin", "sudo", "attr"];

/// One expected difference, from `allowed.toml`.
#[derive(Debug, serde::Deserialize)]
struct Allowed {
    /// Case names, or `*`.
    cases: Vec<String>,
    /// `root`, `rootless` or `both`.
    mode: String,
    /// A path pattern (`*` matches any characters, `/` included), or `config` / `history`.
    path: String,
    /// `mode`, `owner`, `mtime`, ... or `*`.
    field: String,
    why: String,
}

#[derive(Debug, serde::Deserialize)]
struct AllowList {
    allowed: Vec<Allowed>,
}

/// `*` matches any run of characters (slashes too); everything else literally.
fn wildcard(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(after) = text.strip_prefix(head) else { return false };
            (0..=after.len()).filter(|i| after.is_char_boundary(*i)).any(|i| wildcard(rest, &after[i..]))
        }
    }
}

impl Allowed {
    fn covers(&self, case: &str, mode: &str, d: &Difference) -> bool {
        (self.cases.iter().any(|c| c == "*" || c == case))
            && (self.mode == "both" || self.mode == mode)
            && wildcard(&self.path, &d.path)
            && (self.field == "*" || self.field == d.field)
    }
}

fn corpus_dir() -> PathBuf {
    workspace_root().join("tests/differential")
}

fn cases() -> Vec<String> {
    let only: Option<Vec<String>> =
        std::env::var("RBUILD_DIFF").ok().map(|v| v.split(',').map(str::to_string).collect());
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("read tests/differential")
        .flatten()
        .filter(|e| e.path().join("Dockerfile").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| only.as_ref().is_none_or(|o| o.contains(n)))
        .collect();
    names.sort();
    names
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copy the case's files into a fresh context directory and run its `setup.sh` there.
fn make_context(case: &str, into: &Path) -> PathBuf {
    let ctx = into.join(case);
    run(Command::new("cp").arg("-a").arg(corpus_dir().join(case)).arg(&ctx), "copy the case");
    if ctx.join("setup.sh").is_file() {
        run(Command::new("sh").args(["-e", "setup.sh"]).current_dir(&ctx), &format!("{case}/setup.sh"));
        std::fs::remove_file(ctx.join("setup.sh")).unwrap();
    }
    ctx
}

/// Build with the engine's BuildKit and save the image as a Docker archive.
fn build_with_buildkit(engine: &PrivateDockerd, ctx: &Path, tag: &str, apt: &str, out: &Path) -> Result<(), String> {
    let built = Command::new("/usr/bin/docker")
        .env("DOCKER_BUILDKIT", "1")
        .args(["-H", &engine.host(), "build", "--progress", "plain", "--network", "host"])
        .args(["--build-arg", &format!("APT_REPO={apt}"), "-t", tag])
        .arg(ctx)
        .output()
        .unwrap();
    if !built.status.success() {
        return Err(String::from_utf8_lossy(&built.stderr).into_owned());
    }
    let saved = engine.docker(&["save", "-o", out.to_str().unwrap(), tag]);
    if !saved.status.success() {
        return Err(String::from_utf8_lossy(&saved.stderr).into_owned());
    }
    Ok(())
}

fn build_with_rbuild(b: &Builder, ctx: &Path, tag: &str, apt: &str, out: &Path) -> Result<(), String> {
    let output = format!("type=docker,dest={}", out.display());
    let (ok, _, err) = b.build(ctx, tag, &["--build-arg", &format!("APT_REPO={apt}"), "-o", &output]);
    if ok { Ok(()) } else { Err(err) }
}

fn debian_builder(as_user: bool, debian: &Path) -> Builder {
    let b = Builder::empty(as_user);
    let loaded = b.rb(&["load", "-i", debian.to_str().unwrap()]);
    assert!(loaded.status.success(), "load debian: {}", String::from_utf8_lossy(&loaded.stderr));
    assert!(b.rb(&["tag", "debian", "debian:bookworm"]).status.success());
    b
}

#[test]
fn debian_images_match_buildkit_file_for_file() {
    if !running_as_root() {
        eprintln!("skipped: the differential test needs root (a private dockerd; debootstrap for the debian image)");
        return;
    }
    let engine = match PrivateDockerd::try_start() {
        Ok(engine) => engine,
        Err(why) => {
            eprintln!("skipped: the private dockerd (BuildKit) cannot start here: {why}");
            return;
        }
    };
    let allow: AllowList = toml::from_str(
        &std::fs::read_to_string(corpus_dir().join("allowed.toml")).expect("read tests/differential/allowed.toml"),
    )
    .expect("allowed.toml parses");
    let debian = test_image("debian");
    let work = TempDir::new("differential");
    let archive = work.path().join("debian.tar");
    run(
        Command::new("skopeo")
            .args(["copy", "-q"])
            .arg(format!("oci:{}", debian.display()))
            .arg(format!("docker-archive:{}:debian:bookworm", archive.display())),
        "skopeo copy debian",
    );
    let loaded = engine.docker(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.status.success(), "docker load: {}", String::from_utf8_lossy(&loaded.stderr));
    let repo = FileServer::start(&test_apt_repo(APT_PACKAGES));
    let apt = format!("http://127.0.0.1:{}/", repo.port);
    let root = debian_builder(false, &debian);
    let user = debian_builder(true, &debian);
    let contexts = work.path().join("contexts");
    let outputs = work.path().join("out");
    std::fs::create_dir_all(&contexts).unwrap();
    std::fs::create_dir_all(&outputs).unwrap();
    rbuild_tests::give_to_test_user(&outputs);
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;

    let mut base = BaseLayers::default();
    let mut used = vec![false; allow.allowed.len()];
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for case in cases() {
        let ctx = make_context(&case, &contexts);
        let tag = format!("rbuild-diff/{case}");
        let bk_out = outputs.join(format!("{case}.buildkit.tar"));
        if let Err(e) = build_with_buildkit(&engine, &ctx, &tag, &apt, &bk_out) {
            failures.push(format!("{case}: BuildKit failed: {e}"));
            continue;
        }
        let buildkit = ImageTree::from_docker_archive_cached(&bk_out, &mut base).expect("read BuildKit's image");
        let mut line = format!("{case}:");
        for (mode, b) in [("root", &root), ("rootless", &user)] {
            if b.as_user {
                rbuild_tests::give_to_test_user(&ctx);
            }
            let out = outputs.join(format!("{case}.{mode}.tar"));
            if let Err(e) = build_with_rbuild(b, &ctx, &tag, &apt, &out) {
                failures.push(format!("{case} ({mode}): rbuild failed: {e}"));
                line.push_str(&format!(" {mode} FAILED;"));
                continue;
            }
            let ours = ImageTree::from_docker_archive_cached(&out, &mut base).expect("read rbuild's image");
            let all = differences(&buildkit, &ours, started);
            let mut unexplained = Vec::new();
            let mut allowed = 0;
            for d in &all {
                match allow.allowed.iter().position(|a| a.covers(&case, mode, d)) {
                    Some(i) => {
                        used[i] = true;
                        allowed += 1;
                    }
                    None => unexplained.push(d),
                }
            }
            line.push_str(&format!(" {mode} {} unexplained, {allowed} allowed;", unexplained.len()));
            for d in unexplained {
                failures.push(format!("{case} ({mode}): {d}"));
            }
        }
        summary.push(line);
    }
    eprintln!("differential test against BuildKit (left: BuildKit, right: rbuild):");
    for line in &summary {
        eprintln!("  {line}");
    }
    assert!(allow.allowed.iter().all(|a| !a.why.trim().is_empty()), "every allowed.toml entry needs its reason");
    assert!(failures.is_empty(), "{} unexplained differences:\n{}", failures.len(), failures.join("\n"));
    // An allowance nothing needs any more (the difference went away) is removed, so the list stays true.
    if std::env::var_os("RBUILD_DIFF").is_none() {
        let stale: Vec<&str> =
            allow.allowed.iter().zip(&used).filter(|(_, u)| !**u).map(|(a, _)| a.why.as_str()).collect();
        assert!(stale.is_empty(), "allowed.toml entries that no difference needs:\n{}", stale.join("\n"));
    }
}
