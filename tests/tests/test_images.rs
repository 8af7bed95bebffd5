//! The offline test images from `vendor-test-images/`: reproducible (same inputs, same manifest digest), accepted
//! by independent tools (`skopeo inspect`, `umoci unpack`), with the expected contents, and readable by the
//! unprivileged test user.

use std::process::Command;

use rbuild_tests::{
    TEST_USER, TempDir, layout_blob, layout_manifest_digest, make_test_image, require_tool, running_as_root, test_image,
};

#[test]
fn busybox_builds_twice_with_the_same_digest() {
    let dir = TempDir::new("busybox-twice");
    let first = make_test_image("busybox", &dir.path().join("a"));
    let second = make_test_image("busybox", &dir.path().join("b"));
    assert!(first.starts_with("sha256:") && first.len() == 71, "script printed {first:?}");
    assert_eq!(first, second, "two builds from the same .deb differ");
    assert_eq!(layout_manifest_digest(&dir.path().join("a")), first);
    let a = std::fs::read(dir.path().join("a/index.json")).unwrap();
    let b = std::fs::read(dir.path().join("b/index.json")).unwrap();
    assert_eq!(a, b);
    // The cached fixture was made from the same cached .deb, so it is the same image.
    assert_eq!(layout_manifest_digest(&test_image("busybox")), first);
}

#[test]
fn skopeo_inspects_the_busybox_layout() {
    let skopeo = require_tool("skopeo");
    let layout = test_image("busybox");
    let out = Command::new(skopeo)
        .arg("inspect")
        .arg(format!("oci:{}:latest", layout.display()))
        .output()
        .expect("run skopeo");
    assert!(out.status.success(), "skopeo inspect failed: {}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo prints JSON");
    assert_eq!(info["Digest"].as_str(), Some(layout_manifest_digest(&layout).as_str()));
    assert_eq!(info["Os"].as_str(), Some("linux"));
    assert_eq!(info["Layers"].as_array().map(Vec::len), Some(1));
}

#[test]
fn umoci_unpacks_busybox_with_the_expected_files() {
    let umoci = require_tool("umoci");
    let layout = test_image("busybox");
    let dir = TempDir::new("umoci");
    // umoci takes a lock inside the layout: unpack from a copy so the shared fixture stays read-only.
    let copy = dir.path().join("layout");
    let status = Command::new("cp").arg("-a").arg(&layout).arg(&copy).status().expect("cp");
    assert!(status.success());
    let bundle = dir.path().join("bundle");
    let out = Command::new(umoci)
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:latest", copy.display()))
        .arg(&bundle)
        .output()
        .expect("run umoci");
    assert!(out.status.success(), "umoci unpack failed: {}", String::from_utf8_lossy(&out.stderr));
    let rootfs = bundle.join("rootfs");
    // Laid out as docker.io's busybox: applets are hard links to the binary in /bin, its users and groups.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let busybox = std::fs::metadata(rootfs.join("bin/busybox")).unwrap();
    let sh = std::fs::symlink_metadata(rootfs.join("bin/sh")).unwrap();
    assert!(sh.is_file() && sh.ino() == busybox.ino() && busybox.nlink() > 100, "/bin/sh is a hard link");
    assert!(rootfs.join("bin/adduser").is_file());
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    assert!(passwd.contains("\ndaemon:x:1:1:") && passwd.contains("\nnobody:x:65534:65534:"), "{passwd}");
    assert!(!passwd.contains(":1000:"), "no user 1000 until a Dockerfile adds one: {passwd}");
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap();
    assert!(group.contains("\nwheel:x:10:root\n") && group.contains("\nnogroup:x:65534:"), "{group}");
    let mode_of = |p: &str| std::fs::metadata(rootfs.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!((mode_of("tmp"), mode_of("root")), (0o1777, 0o700));
    // The image config names the shell as its command.
    let manifest: serde_json::Value =
        serde_json::from_slice(&layout_blob(&layout, &layout_manifest_digest(&layout))).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&layout_blob(&layout, manifest["config"]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(config["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        config["history"][1],
        serde_json::json!({"created": "1970-01-01T00:00:00Z", "created_by": "CMD [\"sh\"]", "empty_layer": true})
    );
}

#[test]
fn cached_images_are_readable_by_the_unprivileged_user() {
    let layout = test_image("busybox");
    let manifest = layout.join("blobs/sha256").join(&layout_manifest_digest(&layout)[7..]);
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", TEST_USER, "--", "cat"]);
        c
    } else {
        Command::new("cat")
    };
    let out = cmd.arg(&manifest).output().expect("run cat");
    assert!(
        out.status.success(),
        "{} cannot read {} (does the user exist? scripts/install-test-deps.sh creates it): {}",
        TEST_USER,
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, std::fs::read(&manifest).unwrap());
}
