//! Multi-platform builds (`--platform linux/amd64,linux/arm64`): one build makes one image per platform and an
//! image index of them; a `$BUILDPLATFORM` stage with the same inputs runs once, natively; the index goes to the
//! store, an OCI layout (buildx's nested index), a registry (read by skopeo, pulled back per platform), a
//! directory per platform, and Compose `platforms:`. From the multi-platform busybox of vendor-test-images, as
//! root and as the unprivileged users with and without subordinate ids.

use std::fs;
use std::path::Path;
use std::process::Command;

use rbuild_tests::identity::{As, Workspace, identities};
use rbuild_tests::registry_fixture::{RegistryAuth, RegistryServer};
use rbuild_tests::{require_tool, test_image};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Why this machine cannot run foreign steps, if it cannot (see foreign_platform.rs).
fn unsupported_here() -> Option<String> {
    if std::env::consts::ARCH != "x86_64" {
        return Some("these tests pair linux/amd64 (the host) with linux/arm64".into());
    }
    if !Path::new("/usr/bin/qemu-aarch64-static").exists() {
        return Some("qemu-aarch64-static is not installed (scripts/install-test-deps.sh installs it)".into());
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut n = release.trim().split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse::<u32>().ok());
    if (n.next().unwrap_or(0), n.next().unwrap_or(0)) < (6, 7) {
        return Some(format!("kernel {} has no binfmt_misc per user namespace (6.7+)", release.trim()));
    }
    None
}

fn base() -> String {
    format!("oci-layout://{}:latest", test_image("busybox-multi").display())
}

/// The cross-compilation pattern: a native `$BUILDPLATFORM` stage (no TARGET* args: the same for every target),
/// and the target stage that copies its output and runs a step of its own.
fn cross_dockerfile() -> String {
    let base = base();
    format!(
        "FROM --platform=$BUILDPLATFORM {base} AS native\nRUN uname -m > /native-arch\n\
         FROM {base}\nARG TARGETARCH\nCOPY --from=native /native-arch /\n\
         RUN uname -m > /arch && echo \"$TARGETARCH\" > /targetarch\n"
    )
}

/// How many times a step whose name contains `needle` ran (started and not answered from the cache), and the
/// names of those that ran, from rawjson progress.
fn runs_of(stderr: &str, needle: &str) -> Vec<String> {
    let events: Vec<serde_json::Value> = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    events
        .iter()
        .filter(|e| e["event"] == "started" && e["name"].as_str().is_some_and(|n| n.contains(needle)))
        .filter(|s| !events.iter().any(|e| e["event"] == "cached" && e["step"] == s["step"]))
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn one_build_makes_every_platform_and_runs_the_buildplatform_stage_once() {
    if let Some(why) = unsupported_here() {
        return eprintln!("SKIPPED: {why}");
    }
    for who in identities() {
        let s = Workspace::new(who, "multi", &[("Dockerfile", &cross_dockerfile())]);
        let out = s.rbuild(
            &[],
            &["build", "--progress", "rawjson", "--platform", "linux/amd64,linux/arm64", "-t", "multi", "."],
        );
        let err = text(&out.stderr);
        assert!(out.status.success(), "{who:?}: {err}");
        // The native stage's step ran once, for one of the platforms; the other took it from the cache.
        let native = runs_of(&err, "native 2/2] RUN uname -m");
        assert_eq!(native.len(), 1, "{who:?}: {native:?}\n{err}");
        // Each platform's own step ran, named with its platform.
        for p in ["linux/amd64", "linux/arm64"] {
            let own = runs_of(&err, &format!("[{p} stage-1 3/3] RUN uname -m"));
            assert_eq!(own.len(), 1, "{who:?} {p}: {err}");
        }
        for (p, machine, arch) in [("linux/arm64", "aarch64", "arm64"), ("linux/amd64", "x86_64", "amd64")] {
            let got = s.ok(&[], &["run", "--platform", p, "multi", "cat", "/arch", "/native-arch", "/targetarch"]);
            // The native stage never ran under emulation: x86_64 in both images.
            assert!(got.starts_with(&format!("{machine}\nx86_64\n{arch}\n")), "{who:?} {p}: {got}");
        }
        let images = s.ok(&[], &["images"]);
        let line = images.lines().find(|l| l.starts_with("multi:latest")).unwrap_or_default().to_string();
        assert!(line.ends_with("linux/amd64,linux/arm64"), "{who:?}: {images}");
        let inspect: serde_json::Value =
            serde_json::from_str(&text(&s.rbuild(&[], &["inspect", "--platform", "linux/arm64", "multi"]).stdout))
                .unwrap();
        assert_eq!(inspect["Config"]["architecture"], "arm64", "{who:?}: {inspect}");
        assert_eq!(inspect["Platforms"], serde_json::json!(["linux/amd64", "linux/arm64"]), "{who:?}");
        // Nothing changed: every step of both platforms from the cache, the same index.
        let again = s.ok(&[], &["build", "--platform", "linux/amd64,linux/arm64", "-t", "multi", "."]);
        assert!(again.contains("(0 steps run, 6 cached)"), "{who:?}: {again}");
        // One image per platform goes where one image can: a clear error.
        for (args, said) in [
            (vec!["-o", "type=docker,dest=x.tar"], "type=docker: the build made images for several platforms"),
            (vec!["--load"], "--load: the build made images for several platforms"),
        ] {
            let mut all = vec!["build", "--platform", "linux/amd64,linux/arm64"];
            all.extend(args);
            all.push(".");
            let out = s.rbuild(&[], &all);
            assert!(!out.status.success());
            assert!(text(&out.stderr).contains(said), "{who:?}: {}", text(&out.stderr));
        }
    }
}

/// The OCI layout holds ONE descriptor, a nested index listing each platform's manifest with its platform, as
/// buildx writes; each platform extracted into a layout of its own is unpacked by umoci; `-o type=local` makes a
/// directory per platform; SOURCE_DATE_EPOCH makes the whole index reproducible.
#[test]
fn outputs_of_a_multi_platform_build() {
    if let Some(why) = unsupported_here() {
        return eprintln!("SKIPPED: {why}");
    }
    for who in identities() {
        outputs_as(who);
    }
}

fn outputs_as(who: As) {
    let s = Workspace::new(who, "multi", &[("Dockerfile", &cross_dockerfile())]);
    let out_dir = s.dir.path().join("out");
    let layout = out_dir.join("layout");
    let local = out_dir.join("local");
    fs::create_dir_all(&layout).unwrap();
    who.own(&out_dir);
    let oci = format!("type=oci,dest={},tar=false,name=multi:1", layout.display());
    let local_spec = format!("type=local,dest={}", local.display());
    let said = s.ok(
        &["SOURCE_DATE_EPOCH=1700000000"],
        &["build", "-q", "--platform", "linux/amd64,linux/arm64", "-o", &oci, "-o", &local_spec, "."],
    );
    let index_digest = said.lines().next().unwrap().trim().to_string();
    let top: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entries = top["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{top}");
    assert_eq!(entries[0]["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(entries[0]["digest"], index_digest.as_str());
    assert_eq!(entries[0]["annotations"]["org.opencontainers.image.ref.name"], "1");
    let blob = |d: &str| fs::read(layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&blob(&index_digest)).unwrap();
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap())
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    require_tool("umoci");
    for (m, machine) in index["manifests"].as_array().unwrap().iter().zip(["x86_64", "aarch64"]) {
        // A layout of this platform's image alone (umoci cannot choose a platform from an index).
        let one = out_dir.join(format!("one-{machine}"));
        fs::create_dir_all(&one).unwrap();
        Command::new("cp").arg("-r").arg(layout.join("blobs")).arg(&one).status().unwrap();
        fs::write(one.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let mut entry = m.clone();
        entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "one"});
        entry.as_object_mut().unwrap().remove("platform");
        let idx = serde_json::json!({"schemaVersion": 2, "manifests": [entry]});
        fs::write(one.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
        let bundle = out_dir.join(format!("bundle-{machine}"));
        let out = Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:one", one.display()))
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(out.status.success(), "umoci: {}", text(&out.stderr));
        assert_eq!(fs::read_to_string(bundle.join("rootfs/arch")).unwrap(), format!("{machine}\n"));
        assert_eq!(fs::read_to_string(bundle.join("rootfs/native-arch")).unwrap(), "x86_64\n");
    }
    for (dir, machine) in [("linux_amd64", "x86_64"), ("linux_arm64", "aarch64")] {
        assert_eq!(fs::read_to_string(local.join(dir).join("arch")).unwrap(), format!("{machine}\n"), "{dir}");
    }
    // Reproducible: the same index from an empty store, every step run again.
    let other = Workspace::new(As::Root, "multi", &[("Dockerfile", &cross_dockerfile())]);
    let again = other.ok(
        &["SOURCE_DATE_EPOCH=1700000000"],
        &["build", "-q", "--no-cache", "--platform", "linux/amd64,linux/arm64", "."],
    );
    assert_eq!(again.lines().next().unwrap().trim(), index_digest);
}

/// The index pushed to a registry (by the build, and by Compose `platforms:`) is read by skopeo per platform, and
/// pulled back into an empty store per platform: the index is kept, each pull adds its platform's image.
#[test]
fn a_multi_platform_image_in_a_registry() {
    if let Some(why) = unsupported_here() {
        return eprintln!("SKIPPED: {why}");
    }
    require_tool("skopeo");
    let reg = RegistryServer::start(RegistryAuth::None, false);
    for who in identities() {
        registry_round_trip(&reg, who);
    }
}

fn registry_round_trip(reg: &RegistryServer, who: As) {
    let target = format!("{}/{who:?}/multi:1", reg.host()).to_lowercase();
    let compose_image = format!("{}/{who:?}/composed:1", reg.host()).to_lowercase();
    let compose = format!(
        "services:\n  app:\n    image: {compose_image}\n    build:\n      context: .\n      platforms: [linux/amd64, linux/arm64]\n"
    );
    let s = Workspace::new(who, "multi", &[("Dockerfile", &cross_dockerfile()), ("compose.yaml", &compose)]);
    let online = ["RBUILD_OFFLINE=0"];
    s.ok(&online, &["build", "--platform", "linux/amd64,linux/arm64", "-t", &target, "--push", "."]);
    s.ok(&online, &["compose", "build"]);
    s.ok(&online, &["compose", "push"]);
    for image in [&target, &compose_image] {
        let raw = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{image}"))
            .output()
            .unwrap();
        let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap_or_default();
        assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json", "{image}: {}", text(&raw.stderr));
        assert_eq!(index["manifests"].as_array().map(Vec::len), Some(2), "{image}: {index}");
        let arm = Command::new("skopeo")
            .args(["--override-arch", "arm64", "inspect", "--tls-verify=false"])
            .arg(format!("docker://{image}"))
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&arm.stdout).unwrap_or_default();
        assert_eq!(v["Architecture"], "arm64", "{image}: {}", text(&arm.stderr));
    }
    // An empty store: pull the host's image, then arm64's; both run, the name holds the index.
    let empty = Workspace::new(who, "multi", &[("Dockerfile", "FROM scratch\n")]);
    empty.ok(&online, &["pull", &target]);
    let images = empty.ok(&[], &["images"]);
    assert!(images.contains("linux/amd64,(linux/arm64)"), "{images}");
    let missing = empty.rbuild(&[], &["run", "--platform", "linux/arm64", &target, "cat", "/arch"]);
    assert!(!missing.status.success(), "ran a platform never pulled");
    empty.ok(&online, &["pull", "--platform", "linux/arm64", &target]);
    let out = empty.ok(&[], &["run", "--platform", "linux/arm64", &target, "cat", "/arch"]);
    assert!(out.starts_with("aarch64\n"), "{out}");
    let out = empty.ok(&[], &["run", &target, "cat", "/arch"]);
    assert!(out.starts_with("x86_64\n"), "{out}");
    // A store with one platform of the index pushes what it has, as a new index, and says so.
    let partial = Workspace::new(who, "multi", &[("Dockerfile", "FROM scratch\n")]);
    partial.ok(&online, &["pull", &target]);
    let copy = format!("{}/{who:?}/partial:1", reg.host()).to_lowercase();
    let said = partial.ok(&online, &["push", &target, &copy]);
    assert!(said.contains("the index pushed leaves out linux/arm64"), "{said}");
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{copy}"))
        .output()
        .unwrap();
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap_or_default();
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(1), "{index}");
}

/// A file of a tar stream, by path.
fn tar_member(tar: &Path, member: &str) -> Option<String> {
    let out = Command::new("tar").arg("-xOf").arg(tar).arg(member).output().unwrap();
    out.status.success().then(|| text(&out.stdout))
}

/// BuildKit testTarExporterMulti: `-o type=tar` of one platform holds its files at the root; of several, each
/// platform's under a directory named for it — also for another OS, whose stage runs nothing.
#[test]
fn buildkit_tar_exporter_multi() {
    let df = "FROM scratch AS stage-linux\nCOPY foo forlinux\nFROM scratch AS stage-darwin\nCOPY bar fordarwin\n\
              FROM stage-$TARGETOS\n";
    let s = Workspace::new(As::Root, "multi", &[("Dockerfile", df), ("foo", "data"), ("bar", "data2")]);
    let one = s.dir.path().join("one.tar");
    s.ok(&[], &["build", "-o", &format!("type=tar,dest={}", one.display()), "."]);
    assert_eq!(tar_member(&one, "forlinux").as_deref(), Some("data"));
    let multi = s.dir.path().join("multi.tar");
    s.ok(
        &[],
        &["build", "--platform", "linux/amd64,darwin/amd64", "-o", &format!("type=tar,dest={}", multi.display()), "."],
    );
    assert_eq!(tar_member(&multi, "linux_amd64/forlinux").as_deref(), Some("data"));
    assert_eq!(tar_member(&multi, "darwin_amd64/fordarwin").as_deref(), Some("data2"));
}

/// BuildKit testExportMultiPlatform: `-o type=local` of three platforms (one of them Windows) makes a directory
/// each; `-o type=oci` a nested index listing each platform's manifest, in the order asked, with its platform, one
/// layer of its file, and a config naming its os and architecture with the TARGETPLATFORM label.
#[test]
fn buildkit_export_multi_platform() {
    let df = "FROM scratch\nARG TARGETARCH\nARG TARGETPLATFORM\nLABEL target=$TARGETPLATFORM\nCOPY arch-$TARGETARCH whoami\n";
    let s = Workspace::new(
        As::Root,
        "multi",
        &[
            ("Dockerfile", df),
            ("arch-arm", "i am arm"),
            ("arch-amd64", "i am amd64"),
            ("arch-s390x", "i am s390x"),
            ("arch-ppc64le", "i am ppc64le"),
        ],
    );
    let local = s.dir.path().join("local");
    s.ok(
        &[],
        &[
            "build",
            "--platform",
            "windows/amd64,linux/arm,linux/s390x",
            "-o",
            &format!("type=local,dest={}", local.display()),
            ".",
        ],
    );
    for (dir, said) in [("windows_amd64", "i am amd64"), ("linux_arm_v7", "i am arm"), ("linux_s390x", "i am s390x")] {
        assert_eq!(fs::read_to_string(local.join(dir).join("whoami")).unwrap(), said, "{dir}");
    }
    let oci = s.dir.path().join("out.tar");
    s.ok(
        &[],
        &[
            "build",
            "--platform",
            "windows/amd64,linux/arm/v6,linux/ppc64le",
            "-o",
            &format!("type=oci,dest={}", oci.display()),
            ".",
        ],
    );
    let unpacked = s.dir.path().join("oci");
    fs::create_dir_all(&unpacked).unwrap();
    assert!(Command::new("tar").arg("-xf").arg(&oci).arg("-C").arg(&unpacked).status().unwrap().success());
    let read = |d: &str| -> serde_json::Value {
        serde_json::from_slice(&fs::read(unpacked.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap())
            .unwrap()
    };
    let top: serde_json::Value = serde_json::from_slice(&fs::read(unpacked.join("index.json")).unwrap()).unwrap();
    let index = read(top["manifests"][0]["digest"].as_str().unwrap());
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let expected = [
        ("windows/amd64", "windows", "amd64", "i am amd64"),
        ("linux/arm/v6", "linux", "arm", "i am arm"),
        ("linux/ppc64le", "linux", "ppc64le", "i am ppc64le"),
    ];
    for (entry, (p, os, arch, said)) in entries.iter().zip(expected) {
        let pl = &entry["platform"];
        let mut formatted = format!("{}/{}", pl["os"].as_str().unwrap(), pl["architecture"].as_str().unwrap());
        if let Some(v) = pl["variant"].as_str() {
            formatted = format!("{formatted}/{v}");
        }
        assert_eq!(formatted, p);
        let manifest = read(entry["digest"].as_str().unwrap());
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 1, "{p}");
        let layer = unpacked
            .join("blobs/sha256")
            .join(manifest["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:"));
        let out = Command::new("tar").arg("-xzOf").arg(&layer).arg("whoami").output().unwrap();
        assert_eq!(text(&out.stdout), said, "{p}");
        let config = read(manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(config["os"], os, "{p}");
        assert_eq!(config["architecture"], arch, "{p}");
        assert_eq!(config["config"]["Labels"]["target"], p, "{p}");
    }
}

/// BuildKit testNamedImageContextPlatform: an index made with BUILDKIT_MULTI_PLATFORM=1 (an index of one
/// platform) and pushed, then given as a named context to a `FROM --platform=$BUILDPLATFORM` stage that runs a
/// step, in a build whose target platform exists nowhere (darwin/ppc64le): the context's image is the stage's
/// platform's, not the target's.
#[test]
fn buildkit_named_image_context_platform() {
    if let Some(why) = unsupported_here() {
        return eprintln!("SKIPPED: {why}");
    }
    let reg = RegistryServer::start(RegistryAuth::None, false);
    let target = format!("{}/buildkit/testnamedimagecontextplatform:latest", reg.host());
    let online = ["RBUILD_OFFLINE=0"];
    let s =
        Workspace::new(As::Root, "multi", &[("Dockerfile", &format!("FROM --platform=$BUILDPLATFORM {}\n", base()))]);
    s.ok(&online, &["build", "--build-arg", "BUILDKIT_MULTI_PLATFORM=true", "-t", &target, "--push", "."]);
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{target}"))
        .output()
        .unwrap();
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap_or_default();
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(1), "{index}");
    s.dir.write("ctx/Dockerfile", "FROM --platform=$BUILDPLATFORM busybox AS target\nRUN echo hello\n");
    let out = s.ok(
        &online,
        &["build", "--build-context", &format!("busybox=docker-image://{target}"), "--platform", "darwin/ppc64le", "."],
    );
    assert!(out.contains("hello"), "{out}");
}

/// `rbuild save --format docker` of an image index takes one platform's image (a Docker archive holds one):
/// the host's by default, the one `--platform` names otherwise; a platform the index lacks is an error naming it.
#[test]
fn save_as_a_docker_archive_takes_the_platform_asked_for() {
    let s = Workspace::new(identities()[0], "save-platform", &[]);
    let layout = test_image("busybox-multi");
    s.ok(&[], &["load", "-i", layout.to_str().unwrap(), "--name", "multi"]);
    let dir = s.dir.path();
    let arch_in = |tar: &Path| {
        let manifest: serde_json::Value = serde_json::from_str(&tar_member(tar, "manifest.json").unwrap()).unwrap();
        let config: serde_json::Value =
            serde_json::from_str(&tar_member(tar, manifest[0]["Config"].as_str().unwrap()).unwrap()).unwrap();
        config["architecture"].as_str().unwrap().to_string()
    };
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    for (platform, want) in [(None, host), (Some("linux/arm64"), "arm64"), (Some("linux/s390x"), "s390x")] {
        let out = dir.join(format!("{want}-{}.tar", platform.is_some()));
        let mut args = vec!["save", "--format", "docker", "-o", out.to_str().unwrap()];
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        }
        args.push("multi");
        s.ok(&[], &args);
        assert_eq!(arch_in(&out), want, "{platform:?}");
    }
    let out = s.rbuild(&[], &["save", "--format", "docker", "--platform", "linux/riscv64", "-o", "x.tar", "multi"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("linux/riscv64"), "{}", text(&out.stderr));
}
