//! The store and image formats through the real binary: every OCI document rbuild writes validates against the
//! OCI JSON schemas and is read by skopeo and umoci; save/load round trips keep bytes; the store commands work;
//! fsck finds corruption; dead processes' temporary files are swept; concurrent imports and prunes leave a
//! clean store; a real Docker engine loads and runs rbuild's Docker archive.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_builder::digest::Digest;
use rbuild_builder::export::image::{HistoryEntry, MediaTypes, write_image};
use rbuild_builder::layer::{Compression, LayerOptions, collect_tree};
use rbuild_builder::store::Store;
use rbuild_registry::Reference;
use rbuild_tests::{
    PrivateDockerd, TEST_USER, TempDir, conformance_dir, layout_blob, layout_manifest_digest, require_tool, run_rbuild,
    running_as_root, test_image,
};
use serde_json::Value;

fn rb(root: &Path, args: &[&str]) -> (bool, String, String) {
    let mut full = vec!["--root", root.to_str().unwrap()];
    full.extend_from_slice(args);
    let out = run_rbuild(&full, None, None);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rb_ok(root: &Path, args: &[&str]) -> String {
    let (ok, out, err) = rb(root, args);
    assert!(ok, "rbuild {args:?} failed: {err}");
    out
}

/// A store holding busybox and `rbuild-test/hello:1`: busybox plus an rbuild-written gzip layer with
/// `/hello.txt` and a config change.
fn store_with_built_image(dir: &Path, media: MediaTypes) -> (PathBuf, Digest) {
    let root = dir.join("store");
    rb_ok(&root, &["load", "-i", test_image("busybox").to_str().unwrap()]);
    let store = Store::open(&root).unwrap();
    let (_, base) = rbuild_builder::export::load_named(&store, "busybox").unwrap();
    let tree = dir.join("layer");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("hello.txt"), "hello from an rbuild layer\n").unwrap();
    let opts = LayerOptions { compression: Compression::Gzip { level: 6 }, threads: 0, source_date_epoch: Some(0) };
    let layer = store.write_layer(&collect_tree(&tree).unwrap(), &opts).unwrap();
    let mut config = base.config.clone();
    config["config"]["Cmd"] = serde_json::json!(["cat", "/hello.txt"]);
    config["config"]["Labels"] = serde_json::json!({"org.example": "rbuild"});
    let history = [HistoryEntry { created_by: "COPY hello.txt / # rbuild".into(), empty_layer: false }];
    let img = write_image(&store, config, &base.layers, &[layer], &history, "1970-01-01T00:00:00Z", media).unwrap();
    store.tag_image(&Reference::parse("rbuild-test/hello:1").unwrap(), &img.descriptor().unwrap()).unwrap();
    (root, img.manifest_digest)
}

// ---- schemas ----

/// Loads the OCI schemas from the conformance data, resolving their `$ref`s by file name.
struct SchemaFiles(PathBuf);

impl jsonschema::Retrieve for SchemaFiles {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.as_str().rsplit('/').next().unwrap_or_default();
        let name = if name.ends_with(".json") { name.to_string() } else { format!("{name}.json") };
        Ok(serde_json::from_slice(&fs::read(self.0.join(name))?)?)
    }
}

fn validate(schema_dir: &Path, schema: &str, doc: &Value, what: &str) {
    let schema_json: Value = serde_json::from_slice(&fs::read(schema_dir.join(schema)).unwrap()).unwrap();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .with_retriever(SchemaFiles(schema_dir.to_path_buf()))
        .build(&schema_json)
        .unwrap_or_else(|e| panic!("schema {schema}: {e}"));
    let errors: Vec<String> = validator.iter_errors(doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{what} does not validate against {schema}:\n{}", errors.join("\n"));
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

#[test]
fn every_oci_document_validates_and_skopeo_and_umoci_read_the_layout() {
    let dir = TempDir::new("schemas");
    let (root, digest) = store_with_built_image(dir.path(), MediaTypes::Oci);
    let layout = dir.path().join("layout");
    fs::create_dir(&layout).unwrap();
    rb_ok(&root, &["save", "-o", layout.to_str().unwrap(), "rbuild-test/hello:1", "busybox"]);
    assert_eq!(layout_manifest_digest(&layout), digest.as_str());

    if let Some(conf) = conformance_dir("every_oci_document_validates") {
        let schemas = conf.join("oci-schema");
        validate(&schemas, "image-layout-schema.json", &read_json(&layout.join("oci-layout")), "oci-layout");
        validate(&schemas, "image-index-schema.json", &read_json(&layout.join("index.json")), "layout index.json");
        validate(&schemas, "image-index-schema.json", &read_json(&root.join("images/index.json")), "store index.json");
        for m in read_json(&layout.join("index.json"))["manifests"].as_array().unwrap() {
            let d = m["digest"].as_str().unwrap();
            let manifest: Value = serde_json::from_slice(&layout_blob(&layout, d)).unwrap();
            validate(&schemas, "image-manifest-schema.json", &manifest, &format!("manifest {d}"));
            let config: Value =
                serde_json::from_slice(&layout_blob(&layout, manifest["config"]["digest"].as_str().unwrap())).unwrap();
            validate(&schemas, "config-schema.json", &config, &format!("config of {d}"));
        }
    }

    // skopeo reads the image rbuild wrote, by tag.
    let skopeo = require_tool("skopeo");
    let out = Command::new(skopeo).arg("inspect").arg(format!("oci:{}:1", layout.display())).output().unwrap();
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["Digest"].as_str(), Some(digest.as_str()));
    assert_eq!(info["Labels"]["org.example"].as_str(), Some("rbuild"));
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2);

    // umoci unpacks it, and the file rbuild's layer added is there.
    let umoci = require_tool("umoci");
    let bundle = dir.path().join("bundle");
    let out = Command::new(umoci)
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:1", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read_to_string(bundle.join("rootfs/hello.txt")).unwrap(), "hello from an rbuild layer\n");
    assert!(bundle.join("rootfs/bin/busybox").is_file());
}

#[test]
fn save_and_load_round_trips_keep_bytes() {
    let dir = TempDir::new("round-trip");
    let root = dir.path().join("store");
    let busybox = test_image("busybox");
    let out = rb_ok(&root, &["load", "-i", busybox.to_str().unwrap()]);
    let original = layout_manifest_digest(&busybox);
    assert!(out.contains("Loaded image: busybox:latest") && out.contains(&original), "{out}");
    let oci = dir.path().join("busybox-oci.tar");
    let docker = dir.path().join("busybox-docker.tar");
    rb_ok(&root, &["save", "-o", oci.to_str().unwrap(), "busybox"]);
    rb_ok(&root, &["save", "--format", "docker", "-o", docker.to_str().unwrap(), "busybox"]);
    // Saving is deterministic.
    let oci_again = dir.path().join("again.tar");
    rb_ok(&root, &["save", "-o", oci_again.to_str().unwrap(), "busybox"]);
    let digest_of = |p: &Path| Digest::of(&fs::read(p).unwrap());
    // Several times: a map with random iteration order once made this flaky.
    for _ in 0..4 {
        rb_ok(&root, &["save", "-o", oci_again.to_str().unwrap(), "busybox"]);
        assert_eq!(digest_of(&oci), digest_of(&oci_again));
    }

    let config_of = |root: &Path, name: &str| -> (String, Value) {
        let v: Value = serde_json::from_str(&rb_ok(root, &["inspect", name])).unwrap();
        (v["Digest"].as_str().unwrap().to_string(), v["Config"]["rootfs"]["diff_ids"].clone())
    };
    let (_, diff_ids) = config_of(&root, "busybox");

    // OCI archive: the same manifest digest.
    let r2 = dir.path().join("store2");
    rb_ok(&r2, &["load", "-i", oci.to_str().unwrap()]);
    assert_eq!(config_of(&r2, "busybox").0, original);
    // The same archive gzip-compressed loads too.
    let gz = dir.path().join("busybox-oci.tar.gz");
    let status = Command::new("sh").arg("-c").arg(format!("gzip -c {} > {}", oci.display(), gz.display())).status();
    assert!(status.unwrap().success());
    let r3 = dir.path().join("store3");
    rb_ok(&r3, &["load", "-i", gz.to_str().unwrap()]);
    assert_eq!(config_of(&r3, "busybox").0, original);

    // Docker archive: the same diff_ids (the layers are stored uncompressed, so the manifest differs).
    let r4 = dir.path().join("store4");
    let out = rb_ok(&r4, &["load", "-i", docker.to_str().unwrap()]);
    assert!(out.contains("busybox:latest"), "{out}");
    assert_eq!(config_of(&r4, "busybox").1, diff_ids);
    // ... and it saves again to a Docker archive with the same layer files.
    let docker2 = dir.path().join("again-docker.tar");
    rb_ok(&r4, &["save", "--format", "docker", "-o", docker2.to_str().unwrap(), "busybox"]);
    assert_eq!(digest_of(&docker), digest_of(&docker2));
    for r in [&root, &r2, &r3, &r4] {
        assert!(rb_ok(r, &["fsck"]).contains("store is clean"));
    }
}

#[test]
fn store_commands() {
    let dir = TempDir::new("store-cmds");
    let (root, digest) = store_with_built_image(dir.path(), MediaTypes::Docker);
    let images = rb_ok(&root, &["images"]);
    assert!(images.contains("busybox:latest") && images.contains("rbuild-test/hello:1"), "{images}");
    assert!(images.contains(&digest.hex()[..12]));
    // inspect by name, by short digest, and straight from an OCI layout.
    let v: Value = serde_json::from_str(&rb_ok(&root, &["inspect", "rbuild-test/hello:1"])).unwrap();
    assert_eq!(v["Manifest"]["mediaType"].as_str(), Some("application/vnd.docker.distribution.manifest.v2+json"));
    assert_eq!(
        v["Manifest"]["layers"][1]["mediaType"].as_str(),
        Some("application/vnd.docker.image.rootfs.diff.tar.gzip")
    );
    assert_eq!(v["Config"]["config"]["Cmd"], serde_json::json!(["cat", "/hello.txt"]));
    assert_eq!(v["Config"]["history"][2]["created_by"].as_str(), Some("COPY hello.txt / # rbuild"));
    let by_digest: Value = serde_json::from_str(&rb_ok(&root, &["inspect", &digest.hex()[..12]])).unwrap();
    assert_eq!(by_digest["Digest"], v["Digest"]);
    let layout = test_image("busybox");
    let from_layout: Value =
        serde_json::from_str(&rb_ok(&root, &["inspect", &format!("oci-layout://{}:latest", layout.display())]))
            .unwrap();
    assert_eq!(from_layout["Digest"].as_str(), Some(layout_manifest_digest(&layout).as_str()));
    // tag, rmi, prune, system df.
    rb_ok(&root, &["tag", "rbuild-test/hello:1", "localhost:5000/hello:copy"]);
    assert!(rb_ok(&root, &["images"]).contains("localhost:5000/hello:copy"));
    let df = rb_ok(&root, &["system", "df"]);
    assert!(df.contains("Images") && df.contains("Reclaimable: 0B"), "{df}");
    rb_ok(&root, &["rmi", "rbuild-test/hello:1", "localhost:5000/hello:copy"]);
    let df = rb_ok(&root, &["system", "df"]);
    assert!(!df.contains("Reclaimable: 0B"), "the removed image's own blobs are reclaimable: {df}");
    let pruned = rb_ok(&root, &["prune"]);
    assert!(pruned.contains("Removed 3 blobs"), "manifest, config, new layer: {pruned}");
    assert!(rb_ok(&root, &["images"]).contains("busybox:latest"), "prune keeps named images");
    assert!(rb_ok(&root, &["fsck"]).contains("store is clean"));
    let (ok, _, err) = rb(&root, &["inspect", "nope:1"]);
    assert!(!ok && err.contains("image \"nope:1\" not found in the store"), "{err}");
    let (ok, _, err) = rb(&root, &["tag", "busybox", "Bad Name"]);
    assert!(!ok && err.contains("invalid image reference"), "{err}");
}

#[test]
fn fsck_reports_a_corrupt_blob_by_digest() {
    let dir = TempDir::new("fsck");
    let (root, digest) = store_with_built_image(dir.path(), MediaTypes::Oci);
    let store = Store::open(&root).unwrap();
    let img = rbuild_builder::export::load_image(&store, &digest).unwrap();
    let victim = store.blob_path(&img.layers[1].digest);
    drop(store);
    let mut bytes = fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&victim, bytes).unwrap();
    let (ok, out, _) = rb(&root, &["fsck"]);
    assert!(!ok, "fsck passed a corrupt store:\n{out}");
    assert!(out.contains(&format!("blob {} is corrupt", img.layers[1].digest)), "{out}");
}

#[test]
fn temporary_files_of_dead_processes_are_swept_and_live_ones_kept() {
    let dir = TempDir::new("sweep");
    let root = dir.path().join("store");
    drop(Store::open(&root).unwrap());
    let tmp = root.join("tmp");
    // A dead writer: its lock file is not locked by anyone.
    fs::create_dir_all(tmp.join("4000000-0/partial")).unwrap();
    fs::write(tmp.join("4000000-0/partial/blob"), "half").unwrap();
    fs::write(tmp.join("4000000-0.lock"), "").unwrap();
    fs::write(tmp.join("stray-file"), "x").unwrap();
    // A live writer (this test) holds its lock.
    fs::create_dir_all(tmp.join("4000001-0")).unwrap();
    let live = fs::File::create(tmp.join("4000001-0.lock")).unwrap();
    live.lock().unwrap();
    let out = rb_ok(&root, &["images"]);
    assert!(out.contains("IMAGE"));
    assert!(!tmp.join("4000000-0").exists() && !tmp.join("4000000-0.lock").exists(), "dead entry kept");
    assert!(!tmp.join("stray-file").exists());
    assert!(tmp.join("4000001-0").exists() && tmp.join("4000001-0.lock").exists(), "a live entry was removed");
    drop(live);
    rb_ok(&root, &["images"]);
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "everything swept once the owner is gone");
}

#[test]
fn concurrent_loads_and_prunes_leave_a_clean_store() {
    let dir = TempDir::new("concurrency");
    let seed = dir.path().join("seed");
    rb_ok(&seed, &["load", "-i", test_image("busybox").to_str().unwrap()]);
    let archive = dir.path().join("bb.tar");
    rb_ok(&seed, &["save", "--format", "docker", "-o", archive.to_str().unwrap(), "busybox"]);
    let root = dir.path().join("store");
    let bin = rbuild_tests::rbuild_bin();
    let script = |body: String| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("set -e; for i in 1 2 3 4 5; do {body}; done"))
            .env("RBUILD_ROOT", &root)
            .spawn()
            .unwrap()
    };
    let mut children = vec![
        script(format!("{b} load -i {a} >/dev/null; {b} tag busybox one:$i", b = bin.display(), a = archive.display())),
        script(format!(
            "{b} load -i {l} >/dev/null; {b} tag busybox two:$i",
            b = bin.display(),
            l = test_image("busybox").display()
        )),
        script(format!("{b} prune >/dev/null; {b} rmi one:$i two:$i >/dev/null 2>&1 || true", b = bin.display())),
        script(format!("{b} prune >/dev/null", b = bin.display())),
    ];
    for c in &mut children {
        assert!(c.wait().unwrap().success(), "a concurrent rbuild failed");
    }
    let out = rb_ok(&root, &["fsck"]);
    assert!(out.contains("store is clean"), "{out}");
    assert!(rb_ok(&root, &["images"]).contains("busybox:latest"));
}

#[test]
fn the_store_works_for_the_unprivileged_user() {
    if !running_as_root() {
        // Already unprivileged: every other test here covers this user.
        return;
    }
    let dir = TempDir::new("unprivileged");
    let root = dir.path().join("store");
    fs::create_dir_all(&root).unwrap();
    let status = Command::new("chown").args(["-R", TEST_USER]).arg(dir.path()).status().unwrap();
    assert!(status.success());
    let layout = test_image("busybox");
    let run = |args: &str| {
        Command::new("runuser")
            .args(["-u", TEST_USER, "--", "sh", "-c"])
            .arg(format!("{} --root {} {args}", rbuild_tests::rbuild_bin().display(), root.display()))
            .output()
            .unwrap()
    };
    let out = run(&format!("load -i {}", layout.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&format!("save --format docker -o {}/bb.tar busybox", dir.path().display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run("fsck");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("store is clean"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_docker_engine_loads_and_runs_rbuilds_docker_archive() {
    if !running_as_root() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED a_docker_engine_loads_and_runs_rbuilds_docker_archive: a private dockerd needs root\n",
        );
        return;
    }
    let dir = TempDir::new("docker-load");
    let (root, _) = store_with_built_image(dir.path(), MediaTypes::Oci);
    let archive = dir.path().join("hello.tar");
    rb_ok(&root, &["save", "--format", "docker", "-o", archive.to_str().unwrap(), "rbuild-test/hello:1"]);
    let engine = PrivateDockerd::start();
    let out = engine.docker(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.status.success(), "docker load: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("rbuild-test/hello:1"));
    let out = engine.docker(&["run", "--rm", "--network", "none", "rbuild-test/hello:1"]);
    assert!(out.status.success(), "docker run: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from an rbuild layer\n");
    let out =
        engine.docker(&["run", "--rm", "--network", "none", "rbuild-test/hello:1", "sh", "-c", "id -u; ls /bin/sh"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n/bin/sh\n");
}

#[test]
fn prune_waits_while_another_process_uses_the_store() {
    let dir = TempDir::new("prune-waits");
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    // An unreferenced blob, as a build in progress holds before it names its image.
    let in_flight = store.put_blob_bytes(b"layer of a build in progress").unwrap();
    let mut prune = Command::new(rbuild_tests::rbuild_bin())
        .args(["--root", root.to_str().unwrap(), "prune"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(prune.try_wait().unwrap().is_none(), "prune ran while the store was in use");
    assert!(store.has_blob(&in_flight));
    drop(store);
    let out = prune.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Removed 1 blobs"));
    assert!(!root.join("blobs/sha256").join(in_flight.hex()).exists());
}

#[test]
fn prune_keep_storage_drops_oldest_first_and_all_drops_cache_mounts() {
    let dir = TempDir::new("prune-budget");
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    let mut blobs = Vec::new();
    for i in 0..4u8 {
        let d = store.put_blob_bytes(&vec![i; 100_000]).unwrap();
        // Oldest first: blob 0 was used longest ago.
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + u64::from(i) * 1000);
        fs::File::options().write(true).open(store.blob_path(&d)).unwrap().set_modified(t).unwrap();
        blobs.push(d);
    }
    fs::create_dir_all(root.join("mounts/cache-a")).unwrap();
    fs::write(root.join("mounts/cache-a/data"), vec![0u8; 1000]).unwrap();
    drop(store);
    let out = rb_ok(&root, &["prune", "--keep-storage", "250KB"]);
    assert!(out.contains("Removed 2 blobs"), "{out}");
    let exists: Vec<bool> = blobs.iter().map(|d| root.join("blobs/sha256").join(d.hex()).exists()).collect();
    assert_eq!(exists, [false, false, true, true], "the two oldest go first");
    assert!(root.join("mounts/cache-a").exists(), "cache mounts stay without --all");
    let out = rb_ok(&root, &["prune", "--all"]);
    assert!(out.contains("Removed 2 blobs, 0 snapshots, 1 cache mounts"), "{out}");
    let (ok, _, err) = rb(&root, &["prune", "--keep-storage", "lots"]);
    assert!(!ok && err.contains("invalid size"), "{err}");
}

#[test]
fn default_store_locations() {
    let dir = TempDir::new("default-root");
    let bin = rbuild_tests::rbuild_bin();
    let env_root = dir.path().join("from-env");
    let out = Command::new(&bin).arg("images").env("RBUILD_ROOT", &env_root).output().unwrap();
    assert!(out.status.success());
    assert!(env_root.join("blobs/sha256").is_dir() && env_root.join("images").is_dir());
    if !running_as_root() {
        return; // the per-user defaults are checked as the unprivileged user below, when running as root
    }
    assert!(Command::new("chown").arg(TEST_USER).arg(dir.path()).status().unwrap().success());
    let as_user = |env: &str| {
        Command::new("runuser")
            .args(["-u", TEST_USER, "--", "env", "-u", "RBUILD_ROOT"])
            .args(env.split(' '))
            .arg(&bin)
            .arg("images")
            .output()
            .unwrap()
    };
    let home = dir.path();
    let out = as_user(&format!("HOME={} XDG_DATA_HOME=", home.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(home.join(".local/share/rbuild/blobs/sha256").is_dir());
    let out = as_user(&format!("HOME={} XDG_DATA_HOME={}/xdg", home.display(), home.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(home.join("xdg/rbuild/blobs/sha256").is_dir());
}

#[test]
fn compressed_docker_archives_load() {
    let dir = TempDir::new("docker-gz");
    let root = dir.path().join("store");
    rb_ok(&root, &["load", "-i", test_image("busybox").to_str().unwrap()]);
    let tar = dir.path().join("bb.tar");
    rb_ok(&root, &["save", "--format", "docker", "-o", tar.to_str().unwrap(), "busybox"]);
    for (tool, ext) in [("gzip", "gz"), ("zstd", "zst")] {
        if Command::new(tool).arg("--version").output().is_err() {
            continue;
        }
        let packed = dir.path().join(format!("bb.tar.{ext}"));
        let cmd = format!("{tool} -c {} > {}", tar.display(), packed.display());
        assert!(Command::new("sh").arg("-c").arg(cmd).status().unwrap().success());
        let r = dir.path().join(format!("store-{ext}"));
        let out = rb_ok(&r, &["load", "-i", packed.to_str().unwrap()]);
        assert!(out.contains("busybox:latest"), "{out}");
        assert!(rb_ok(&r, &["fsck"]).contains("store is clean"));
    }
    // And from standard input, as `docker load` reads it.
    let r = dir.path().join("store-stdin");
    let out = run_rbuild(&["--root", r.to_str().unwrap(), "load"], Some(&fs::read(&tar).unwrap()), None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("busybox:latest"));
}
