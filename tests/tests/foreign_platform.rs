//! Foreign-architecture RUN steps (`--platform` of another architecture than the host's): each step registers
//! qemu in a binfmt_misc of its own user namespace, or uses a registration an outer namespace holds. Built from the
//! multi-platform busybox of vendor-test-images (one OCI layout whose tag names an image index), as root, as the
//! unprivileged test user with subordinate ids and as a user without any. Nothing is ever registered on the host:
//! the host-registration path runs inside an outer user namespace that holds the registration.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use rbuild_tests::identity::{As, Workspace, identities};
use rbuild_tests::{rbuild_bin, test_image};

/// The foreign platform tested, and what `uname -m` says there and here.
fn foreign() -> (&'static str, &'static str, &'static str, &'static str) {
    if std::env::consts::ARCH == "x86_64" {
        ("linux/arm64", "arm64", "aarch64", "x86_64")
    } else {
        ("linux/amd64", "amd64", "x86_64", "aarch64")
    }
}

fn qemu_for(machine: &str) -> PathBuf {
    PathBuf::from(format!("/usr/bin/qemu-{machine}-static"))
}

/// Why this machine cannot run the tests (no emulator installed, a kernel before 6.7), if it cannot.
fn unsupported_here() -> Option<String> {
    let qemu = qemu_for(foreign().2);
    if !qemu.exists() {
        return Some(format!("{} is not installed (scripts/install-test-deps.sh installs it)", qemu.display()));
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut n = release.trim().split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse::<u32>().ok());
    if (n.next().unwrap_or(0), n.next().unwrap_or(0)) < (6, 7) {
        return Some(format!("kernel {} has no binfmt_misc per user namespace (6.7+)", release.trim()));
    }
    None
}

fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

/// The store is consistent and holds no temporary files, and no binfmt_misc is mounted here.
fn assert_clean(s: &Workspace) {
    let out = s.rbuild(&[], &["fsck"]);
    assert!(out.status.success(), "{:?}: fsck: {}{}", s.who, text(&out.stdout), text(&out.stderr));
    let tmp = s.store().join("tmp");
    let left: Vec<_> = fs::read_dir(&tmp).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{:?}: temporary entries left: {left:?}", s.who);
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(" - binfmt_misc "), "{:?}: a binfmt_misc mount is left here", s.who);
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn multi_layout() -> String {
    let layout = test_image("busybox-multi");
    // Readable by the unprivileged users (test images are made world-readable).
    format!("oci-layout://{}:latest", layout.display())
}

/// A cross-compilation Dockerfile: a native `$BUILDPLATFORM` stage whose output the target stage copies in.
fn cross_dockerfile() -> String {
    let base = multi_layout();
    format!(
        "FROM --platform=$BUILDPLATFORM {base} AS native\nARG TARGETARCH\nARG BUILDARCH\n\
         RUN uname -m > /native-arch && echo \"$TARGETARCH $BUILDARCH\" > /args\n\
         FROM {base}\nCOPY --from=native /native-arch /args /\nRUN uname -m > /arch && echo done\n"
    )
}

#[test]
fn a_foreign_build_runs_its_steps_emulated_and_its_native_stage_natively() {
    if let Some(why) = unsupported_here() {
        return skip(&why);
    }
    let (platform, arch, foreign_machine, host_machine) = foreign();
    for who in identities() {
        let s = Workspace::new(who, "foreign", &[("Dockerfile", &cross_dockerfile())]);
        let out = s.rbuild(&[], &["build", "--platform", platform, "-t", "fp", "."]);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{who:?}: {err}");
        assert!(err.contains(&format!("note: {platform} steps run under emulation")), "{who:?}: {err}");
        // The image is the foreign platform's, with the files its steps wrote.
        let run = s.rbuild(&[], &["run", "--platform", platform, "fp", "cat", "/arch", "/native-arch", "/args"]);
        assert!(run.status.success(), "{who:?}: {}", text(&run.stderr));
        let host_arch = if arch == "arm64" { "amd64" } else { "arm64" };
        assert_eq!(text(&run.stdout), format!("{foreign_machine}\n{host_machine}\n{arch} {host_arch}\n"), "{who:?}");
        // `rbuild run` of a foreign image emulates it too, with or without --platform.
        let run = s.rbuild(&[], &["run", "fp", "uname", "-m"]);
        assert_eq!(text(&run.stdout).trim(), foreign_machine, "{who:?}: {}", text(&run.stderr));
        let inspect = s.rbuild(&[], &["inspect", "fp"]);
        let config: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        let config = if config.is_array() { config[0].clone() } else { config };
        let found = serde_json::to_string(&config).unwrap();
        assert!(found.contains(&format!("\"architecture\":\"{arch}\"")), "{who:?}: {found}");
        // Asking for another platform than the image's is an error, in docker's words.
        let wrong = s.rbuild(&[], &["run", "--platform", &format!("linux/{host_arch}"), "fp", "true"]);
        assert!(!wrong.status.success());
        assert!(text(&wrong.stderr).contains("does not match the specified platform"), "{}", text(&wrong.stderr));
        // A second build is fully cached; a host-platform build of the same file is another image.
        let again = s.rbuild(&[], &["build", "--platform", platform, "-t", "fp", "."]);
        assert!(text(&again.stderr).contains("(0 steps run, 3 cached)"), "{who:?}: {}", text(&again.stderr));
        let native = s.rbuild(&[], &["build", "-t", "fp-native", "."]);
        assert!(native.status.success(), "{who:?}: {}", text(&native.stderr));
        let run = s.rbuild(&[], &["run", "fp-native", "cat", "/arch"]);
        assert_eq!(text(&run.stdout).trim(), host_machine, "{who:?}");
        assert_clean(&s);
    }
}

#[test]
fn a_base_of_another_platform_warns_and_runs_as_its_binaries_need() {
    if let Some(why) = unsupported_here() {
        return skip(&why);
    }
    let (platform, _, foreign_machine, _) = foreign();
    // The foreign image alone, extracted from the index, used by a host-platform build.
    let s = Workspace::new(
        As::Root,
        "foreign",
        &[("Dockerfile", &format!("FROM {}\nRUN uname -m > /m\n", multi_layout()))],
    );
    let out = s.rbuild(&[], &["build", "--platform", platform, "-t", "foreign-only", "."]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    s.dir.write("ctx/Dockerfile", "FROM foreign-only\nRUN uname -m > /again\n");
    let out = s.rbuild(&["RBUILD_OFFLINE=1"], &["build", "-t", "mixed", "."]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("InvalidBaseImagePlatform: Base image foreign-only was pulled with platform"), "{err}");
    let run = s.rbuild(&[], &["run", "mixed", "cat", "/again"]);
    assert_eq!(text(&run.stdout).trim(), foreign_machine);
}

#[test]
fn every_way_of_failing_says_why_before_any_step_and_leaves_nothing() {
    if let Some(why) = unsupported_here() {
        return skip(&why);
    }
    let (platform, _, machine, _) = foreign();
    for who in identities() {
        let s = Workspace::new(who, "foreign", &[("Dockerfile", &cross_dockerfile())]);
        // An empty directory, and one with a dynamically linked program under the emulator's name.
        let none = s.dir.path().join("qemu-none");
        fs::create_dir_all(&none).unwrap();
        let dynamic = s.dir.path().join("qemu-dynamic");
        fs::create_dir_all(&dynamic).unwrap();
        fs::copy("/bin/ls", dynamic.join(format!("qemu-{machine}-static"))).unwrap();
        who.own(&none);
        who.own(&dynamic);
        let cases: [(Vec<String>, &str); 3] = [
            (vec![format!("RBUILD_QEMU_DIR={}", none.display()), format!("PATH={}", none.display())], "no qemu-"),
            (
                vec![format!("RBUILD_QEMU_DIR={}", dynamic.display()), format!("PATH={}", none.display())],
                "is dynamically linked",
            ),
            (vec!["RBUILD_BINFMT=host-only".into()], "skipped (RBUILD_BINFMT=host-only)"),
        ];
        for (env, said) in cases {
            let env: Vec<&str> = env.iter().map(String::as_str).collect();
            let out = s.rbuild(&env, &["build", "--platform", platform, "-t", "never", "."]);
            let err = text(&out.stderr);
            assert!(!out.status.success(), "{who:?} {env:?}: built");
            assert!(err.contains(&format!("cannot run {platform} binaries")), "{who:?} {env:?}: {err}");
            assert!(err.contains(said), "{who:?} {env:?}: {err}");
            assert!(err.contains("no registration for it in the host's binfmt_misc"), "{who:?} {env:?}: {err}");
            assert!(err.contains("remedies: install a static qemu-"), "{who:?} {env:?}: {err}");
            // Before any step: not even the native stage's.
            assert!(!err.contains("RUN uname"), "{who:?} {env:?}: a step ran: {err}");
        }
        assert_clean(&s);
    }
}

/// The host-registration path: an outer user namespace (standing in for the host, which tests never touch) mounts
/// binfmt_misc and registers the emulator with flag F, as Debian's qemu-user-static registers it; rbuild, told not
/// to register its own (`RBUILD_BINFMT=host-only`, as on a kernel before 6.7), finds it and its steps inherit it.
#[test]
fn a_registration_held_by_an_outer_namespace_is_used() {
    if let Some(why) = unsupported_here() {
        return skip(&why);
    }
    let (platform, _, machine, _) = foreign();
    let (magic, mask) = match machine {
        "aarch64" => (
            r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
            r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
        ),
        _ => (
            r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00",
            r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
        ),
    };
    for who in identities() {
        let s = Workspace::new(who, "foreign", &[("Dockerfile", &cross_dockerfile())]);
        let mount_point = s.dir.path().join("outer-binfmt");
        fs::create_dir_all(&mount_point).unwrap();
        who.own(&mount_point);
        let script = format!(
            "set -e\nmount -t binfmt_misc binfmt_misc {mp}\n\
             printf '%s' ':outer-{machine}:M::{magic}:{mask}:{qemu}:OPF' > {mp}/register\n\
             exec env -u RBUILD_USERNS RBUILD_BINFMT=host-only {rbuild} --root {root} build --platform {platform} \
             -t outer .\n",
            mp = mount_point.display(),
            qemu = qemu_for(machine).display(),
            rbuild = rbuild_bin().display(),
            root = s.store().display(),
        );
        let mut cmd = match who.user() {
            None => Command::new("unshare"),
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", "unshare"]);
                c
            }
        };
        let out =
            cmd.args(["-Urm", "--fork", "sh", "-c", &script]).current_dir(s.dir.path().join("ctx")).output().unwrap();
        let err = text(&out.stderr);
        assert!(out.status.success(), "{who:?}: {err}");
        assert!(err.contains(&format!("the host's binfmt_misc handler outer-{machine}")), "{who:?}: {err}");
        // The registration was the outer namespace's alone: gone with it.
        assert!(!fs::read_to_string("/proc/self/mountinfo").unwrap().contains(" - binfmt_misc "));
        let image = s.rbuild(&[], &["run", "outer", "cat", "/arch", "/native-arch"]);
        assert_eq!(text(&image.stdout), format!("{machine}\n{}\n", foreign().3), "{who:?}: {}", text(&image.stderr));
    }
}

#[test]
fn a_compose_service_with_a_foreign_platform_is_built_for_it() {
    if let Some(why) = unsupported_here() {
        return skip(&why);
    }
    let (platform, _, machine, _) = foreign();
    let s = Workspace::new(
        As::Root,
        "foreign",
        &[("Dockerfile", &format!("FROM {}\nRUN uname -m > /m\n", multi_layout()))],
    );
    s.dir.write(
        "ctx/compose.yaml",
        &format!("services:\n  app:\n    image: app:foreign\n    platform: {platform}\n    build:\n      context: .\n"),
    );
    let out = s.rbuild(&[], &["compose", "build"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let run = s.rbuild(&[], &["run", "app:foreign", "cat", "/m"]);
    assert_eq!(text(&run.stdout).trim(), machine, "{}", text(&run.stderr));
}

/// An image index loaded into the store (`rbuild load` of the multi-platform layout) and one in a registry (pushed
/// there by skopeo): every stage gets the manifest of its platform, and every architecture of the test image runs.
#[test]
fn an_index_in_the_store_or_a_registry_gives_each_stage_its_platform() {
    if let Some(why) = unsupported_here() {
        return skip(&why);
    }
    let (platform, _, machine, host_machine) = foreign();
    let layout = test_image("busybox-multi");
    let reg = rbuild_tests::registry_fixture::RegistryServer::start(
        rbuild_tests::registry_fixture::RegistryAuth::None,
        false,
    );
    rbuild_tests::require_tool("skopeo");
    let pushed = Command::new("skopeo")
        .args(["copy", "-q", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{}/multi/busybox:latest", reg.host()))
        .output()
        .unwrap();
    assert!(pushed.status.success(), "skopeo copy: {}", text(&pushed.stderr));
    let from_registry = format!("{}/multi/busybox", reg.host());
    for base in ["busybox-multi".to_string(), from_registry] {
        let others = [("linux/s390x", "s390x"), ("linux/arm/v7", "armv7l"), ("linux/ppc64le", "ppc64le")];
        let mut df = format!("FROM --platform=$BUILDPLATFORM {base} AS native\nRUN uname -m > /n\n");
        for (i, (p, _)) in others.iter().enumerate() {
            df.push_str(&format!("FROM --platform={p} {base} AS other{i}\nRUN uname -m > /m\n"));
        }
        df.push_str(&format!("FROM {base}\nCOPY --from=native /n /n\n"));
        for i in 0..others.len() {
            df.push_str(&format!("COPY --from=other{i} /m /m{i}\n"));
        }
        df.push_str("RUN uname -m > /m\n");
        let s = Workspace::new(As::Root, "foreign", &[("Dockerfile", &df)]);
        let env = ["RBUILD_OFFLINE=0"];
        if base == "busybox-multi" {
            let out = s.rbuild(&env, &["load", "-i", layout.to_str().unwrap(), "--name", "busybox-multi"]);
            assert!(out.status.success(), "load: {}", text(&out.stderr));
        }
        let out = s.rbuild(&env, &["build", "--platform", platform, "-t", "all", "."]);
        assert!(out.status.success(), "{base}: {}", text(&out.stderr));
        let run = s.rbuild(&env, &["run", "all", "cat", "/n", "/m0", "/m1", "/m2", "/m"]);
        assert_eq!(
            text(&run.stdout),
            format!("{host_machine}\ns390x\narmv7l\nppc64le\n{machine}\n"),
            "{base}: {}",
            text(&run.stderr)
        );
        assert_clean(&s);
    }
}
