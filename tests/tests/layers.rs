//! Layers: an overlay upper directory diffs to exactly the expected tar entries (files, dirs, symlinks, hard
//! links, xattrs, a deleted file, an opaque directory, a setuid file); applying the layer to the lower tree gives
//! the merged view; the same tree exports to the same digest with 1 thread and with all; and hostile tars are
//! rejected with the entry named, writing nothing outside the destination.

use rbuild_tests::raw_tar::{finish, gzip, raw_entry};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use rbuild_builder::Error;
use rbuild_builder::layer::{
    ApplyMode, ApplyOptions, Compression, LayerOptions, apply_tar, collect_tree, decompressed, diff_overlay_upper,
    diff_trees, write_layer,
};
use rbuild_builder::store::{InProcess, Store};
use rbuild_tests::{TempDir, running_as_root};

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

/// Mark `rel` in an overlay upper dir as deleted: a 0:0 character device as root, else the xattr form.
fn overlay_whiteout(upper: &Path, rel: &str) {
    let p = upper.join(rel);
    if running_as_root() {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .unwrap();
    } else {
        fs::write(&p, "").unwrap();
        xattr::set(&p, "user.overlay.whiteout", b"y").unwrap();
    }
}

fn overlay_opaque(upper: &Path, rel: &str) {
    let ns = if running_as_root() { "trusted" } else { "user" };
    xattr::set(upper.join(rel), format!("{ns}.overlay.opaque"), b"y").unwrap();
}

/// (path, type, mode, link target, size, xattrs) of every entry of a tar stream.
fn tar_listing(tar_bytes: &[u8]) -> Vec<(String, char, u32, String, u64, Vec<String>)> {
    let mut a = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                if let Some(n) = x.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push(format!("{n}={}", String::from_utf8_lossy(x.value_bytes())));
                }
            }
        }
        let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let link = e.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned()).unwrap_or_default();
        out.push((path, h.entry_type().as_byte() as char, h.mode().unwrap(), link, h.size().unwrap(), xattrs));
    }
    out
}

/// A comparable view of a tree: path -> (kind, mode, content or link, user xattrs).
fn view(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in collect_tree(root).unwrap() {
        let path = String::from_utf8_lossy(&e.path).into_owned();
        let what = match &e.kind {
            rbuild_builder::layer::EntryKind::File { source, .. } => {
                format!("file {}", fs::read_to_string(source).unwrap())
            }
            rbuild_builder::layer::EntryKind::Hardlink { target } => {
                format!("file {}", fs::read_to_string(root.join(target)).unwrap())
            }
            other => format!("{other:?}"),
        };
        let xattrs: Vec<String> =
            e.xattrs.iter().filter(|(n, _)| n.starts_with("user.")).map(|(n, _)| n.clone()).collect();
        out.insert(path, format!("{what} mode={:o} xattrs={xattrs:?}", e.mode));
    }
    out
}

fn make_lower_and_upper(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let lower = dir.join("lower");
    let upper = dir.join("upper");
    write(&lower, "a.txt", "a");
    write(&lower, "dir/keep", "keep");
    write(&lower, "dir/gone", "gone");
    write(&lower, "opq/old1", "old1");
    write(&lower, "opq/old2", "old2");
    // The upper dir as overlayfs leaves it after: a new file with an xattr, a deleted file, a directory made
    // opaque (rm -rf + mkdir), a symlink, two hard links, a setuid file.
    fs::create_dir_all(upper.join("dir")).unwrap();
    write(&upper, "new.txt", "new");
    xattr::set(upper.join("new.txt"), "user.test", b"1").unwrap();
    overlay_whiteout(&upper, "dir/gone");
    fs::create_dir_all(upper.join("opq")).unwrap();
    overlay_opaque(&upper, "opq");
    write(&upper, "opq/fresh", "fresh");
    symlink("a.txt", upper.join("link")).unwrap();
    write(&upper, "hard1", "hard");
    fs::hard_link(upper.join("hard1"), upper.join("hard2")).unwrap();
    write(&upper, "suid", "suid");
    fs::set_permissions(upper.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    for d in ["dir", "opq"] {
        fs::set_permissions(upper.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    // A socket cannot be in a layer: it is skipped.
    let _listener = std::os::unix::net::UnixListener::bind(upper.join("sock")).unwrap();
    (lower, upper)
}

#[test]
fn overlay_upper_diffs_to_exact_entries_and_applies_to_the_merged_view() {
    let dir = TempDir::new("layer-diff");
    let (lower, upper) = make_lower_and_upper(dir.path());
    let entries = diff_overlay_upper(&upper).unwrap();
    let opts = LayerOptions { compression: Compression::None, threads: 1, source_date_epoch: Some(0) };
    let (_, tar_bytes) = write_layer(&entries, Vec::new(), &opts).unwrap();
    let listing = tar_listing(&tar_bytes);
    let summary: Vec<(String, char, u32, String)> =
        listing.iter().map(|(p, t, m, l, _, _)| (p.clone(), *t, *m & 0o7777, l.clone())).collect();
    let file_mode = 0o644;
    let expected: Vec<(String, char, u32, String)> = vec![
        ("dir/".into(), '5', 0o755, String::new()),
        ("dir/.wh.gone".into(), '0', 0o600, String::new()),
        ("hard1".into(), '0', file_mode, String::new()),
        ("hard2".into(), '1', file_mode, "hard1".into()),
        ("link".into(), '2', 0o777, "a.txt".into()),
        ("new.txt".into(), '0', file_mode, String::new()),
        ("opq/".into(), '5', 0o755, String::new()),
        ("opq/.wh..wh..opq".into(), '0', 0o600, String::new()),
        ("opq/fresh".into(), '0', file_mode, String::new()),
        ("suid".into(), '0', 0o4755, String::new()),
    ];
    assert_eq!(summary, expected);
    // A `user.*` xattr stays on the builder's disk, overlay-internal ones too: a layer carries only file
    // capabilities (as BuildKit's and containerd's differs write them).
    let new_txt = listing.iter().find(|e| e.0 == "new.txt").unwrap();
    assert!(new_txt.5.is_empty(), "{new_txt:?}");
    assert!(listing.iter().all(|e| e.5.iter().all(|x| !x.contains("overlay"))), "{listing:?}");
    // Every mtime is clamped to SOURCE_DATE_EPOCH.
    let mut a = tar::Archive::new(&tar_bytes[..]);
    assert!(a.entries().unwrap().all(|e| e.unwrap().header().mtime().unwrap() == 0));

    // Applying the layer onto the lower tree gives the view the overlay mount showed.
    let merged = dir.path().join("merged");
    fs::create_dir(&merged).unwrap();
    apply_tar(&tar_bytes[..], &merged, &ApplyOptions::new(ApplyMode::Merge, "lower")).unwrap();
    let lower_layer = write_layer(&collect_tree(&lower).unwrap(), Vec::new(), &opts).unwrap().1;
    let fresh = dir.path().join("fresh");
    fs::create_dir(&fresh).unwrap();
    apply_tar(&lower_layer[..], &fresh, &ApplyOptions::new(ApplyMode::Merge, "lower")).unwrap();
    apply_tar(&tar_bytes[..], &fresh, &ApplyOptions::new(ApplyMode::Merge, "upper")).unwrap();
    let got = view(&fresh);
    let paths: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(paths, ["a.txt", "dir", "dir/keep", "hard1", "hard2", "link", "new.txt", "opq", "opq/fresh", "suid"]);
    assert!(got["new.txt"].contains("file new") && !got["new.txt"].contains("user.test"), "{}", got["new.txt"]);
    assert!(got["suid"].contains("mode=4755"), "{}", got["suid"]);
    assert!(got["link"].contains("Symlink"), "{}", got["link"]);
    let h1 = fs::metadata(fresh.join("hard1")).unwrap();
    let h2 = fs::metadata(fresh.join("hard2")).unwrap();
    assert_eq!(h1.ino(), h2.ino(), "hard links stay links");
}

#[test]
fn tree_diff_matches_the_overlay_diff_in_content() {
    // The copy snapshotter's diff (lower vs a full copy with the changes) yields the same merged result.
    let dir = TempDir::new("tree-diff");
    let lower = dir.path().join("lower");
    write(&lower, "a.txt", "a");
    write(&lower, "dir/gone", "gone");
    write(&lower, "dir/keep", "keep");
    write(&lower, "deep/x/y", "y");
    let upper = dir.path().join("upper");
    let status = std::process::Command::new("cp").arg("-a").arg(&lower).arg(&upper).status().unwrap();
    assert!(status.success());
    fs::remove_file(upper.join("dir/gone")).unwrap();
    fs::remove_dir_all(upper.join("deep")).unwrap();
    write(&upper, "a.txt", "changed");
    write(&upper, "dir/new", "n");
    let entries = diff_trees(&lower, &upper).unwrap();
    let paths: Vec<String> = entries.iter().map(|e| String::from_utf8_lossy(&e.path).into_owned()).collect();
    assert_eq!(paths, [".wh.deep", "a.txt", "dir", "dir/.wh.gone", "dir/new"]);
    let opts = LayerOptions { compression: Compression::Gzip { level: 1 }, threads: 2, source_date_epoch: None };
    let (_, layer) = write_layer(&entries, Vec::new(), &opts).unwrap();
    let target = dir.path().join("target");
    fs::create_dir(&target).unwrap();
    let status =
        std::process::Command::new("cp").arg("-a").arg(format!("{}/.", lower.display())).arg(&target).status().unwrap();
    assert!(status.success());
    apply_tar(decompressed(std::io::Cursor::new(layer)).unwrap(), &target, &ApplyOptions::new(ApplyMode::Merge, "d"))
        .unwrap();
    assert_eq!(view(&target), view(&upper));
}

#[test]
fn same_tree_same_digest_with_one_thread_and_all() {
    let dir = TempDir::new("determinism");
    let tree = dir.path().join("tree");
    // About 6 MB, half compressible text, half pseudo-random bytes: several gzip blocks.
    let mut seed: u64 = 42;
    for i in 0..12 {
        let mut data = Vec::with_capacity(256 * 1024);
        for j in 0..(256 * 1024) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            data.push(if i % 2 == 0 { (seed & 0xff) as u8 } else { b"rbuild layer text "[j % 18] });
        }
        let p = tree.join(format!("d{}/f{i}", i % 3));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::File::create(&p).unwrap().write_all(&data).unwrap();
    }
    let store = Store::open(&dir.path().join("store")).unwrap();
    let entries = collect_tree(&tree).unwrap();
    let all = std::thread::available_parallelism().map_or(4, |n| n.get()).max(4);
    for compression in [Compression::Gzip { level: 6 }, Compression::Zstd { level: 3 }, Compression::None] {
        let one = LayerOptions { compression, threads: 1, source_date_epoch: Some(0) };
        let many = LayerOptions { threads: all, ..one };
        let a = store.write_layer(&entries, &one).unwrap();
        let b = store.write_layer(&entries, &many).unwrap();
        assert_eq!(a, b, "{compression:?} differs between 1 and {all} threads");
        // The blob decompresses to the tar whose digest is the diff_id.
        let (diff_id, _) =
            rbuild_builder::digest::digest_reader(decompressed(store.open_blob(&a.digest).unwrap()).unwrap()).unwrap();
        assert_eq!(diff_id, a.diff_id);
    }
}

// ---- hostile tars ----

/// A raw ustar header + data, with any name (the tar crate refuses to write the hostile ones).
fn hostile_cases() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let file = |n: &[u8]| raw_entry(n, b'0', b"pwned", b"", None);
    let mut bomb = Vec::new();
    {
        // One entry claiming 64 MiB of zeros: about 64 KiB compressed, past the 16 MiB limit uncompressed.
        let mut e = flate2::write::GzEncoder::new(&mut bomb, flate2::Compression::best());
        e.write_all(&raw_entry(b"bomb", b'0', b"", b"", Some(64 << 20))).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            e.write_all(&zeros).unwrap();
        }
        e.finish().unwrap();
    }
    let mut truncated_gzip = gzip(&finish(vec![file(b"ok.txt")]));
    truncated_gzip.truncate(truncated_gzip.len() / 2);
    let mut bad_checksum = finish(vec![file(b"x")]);
    bad_checksum[148] = b'7';
    vec![
        ("dot-dot", finish(vec![file(b"../escaped")]), "'..'"),
        ("dot-dot-inner", finish(vec![file(b"a/../../escaped")]), "'..'"),
        ("absolute", finish(vec![file(b"/etc/escaped")]), "absolute"),
        (
            "symlink-then-write-through",
            finish(vec![raw_entry(b"evil", b'2', b"", b"..", None), file(b"evil/escaped")]),
            "symbolic link",
        ),
        (
            "symlink-absolute-then-write-through",
            finish(vec![raw_entry(b"evil", b'2', b"", b"/tmp", None), file(b"evil/escaped")]),
            "symbolic link",
        ),
        ("hardlink-outside", finish(vec![raw_entry(b"h", b'1', b"", b"../escaped-target", None)]), "outside"),
        ("hardlink-absolute", finish(vec![raw_entry(b"h", b'1', b"", b"/etc/passwd", None)]), "outside"),
        ("hardlink-missing", finish(vec![raw_entry(b"h", b'1', b"", b"nothing-here", None)]), "does not exist"),
        ("huge-header-size", finish(vec![raw_entry(b"big", b'0', b"tiny", b"", Some(0o77777777777))]), "cannot read"),
        ("truncated-gzip", truncated_gzip, "cannot read"),
        ("file-then-directory", finish(vec![file(b"x"), file(b"x/y")]), "not a directory"),
        ("malformed-whiteout", finish(vec![file(b"d/.wh..")]), "whiteout"),
        ("bad-checksum", bad_checksum, "cannot read"),
        ("gzip-bomb", bomb, "limit"),
    ]
}

#[test]
fn hostile_tars_are_rejected_naming_the_entry_and_write_nothing_outside() {
    let cases = hostile_cases();
    assert!(cases.len() >= 10);
    for (name, bytes, reason) in cases {
        let dir = TempDir::new("hostile");
        let dest = dir.path().join("a/b/dest");
        fs::create_dir_all(&dest).unwrap();
        let mut opts = ApplyOptions::new(ApplyMode::Snapshot, name);
        opts.max_size = 16 << 20;
        let err = apply_tar(decompressed(std::io::Cursor::new(bytes)).unwrap(), &dest, &opts)
            .expect_err(&format!("{name}: accepted"));
        let msg = err.to_string();
        assert!(msg.contains(reason), "{name}: {msg}");
        assert!(
            matches!(err, Error::UnsafeLayer { .. } | Error::Malformed { .. } | Error::LayerTooLarge { .. }),
            "{name}: {err:?}"
        );
        // Nothing landed outside the destination.
        for outside in ["a/b/escaped", "a/escaped", "escaped", "a/b/escaped-target"] {
            assert!(!dir.path().join(outside).exists(), "{name}: wrote {outside}");
        }
        assert!(!Path::new("/etc/escaped").exists() && !Path::new("/tmp/escaped").exists(), "{name}");
    }
}

#[test]
fn a_rejected_layer_leaves_no_snapshot_and_no_temporary_files() {
    let dir = TempDir::new("hostile-store");
    let store = Store::open(&dir.path().join("store")).unwrap();
    for (name, bytes, _) in hostile_cases().into_iter().take(6) {
        let (digest, _) = store.put_blob(&bytes[..], None).unwrap();
        let diff_id = rbuild_builder::digest::Digest::of(name.as_bytes());
        let err = store.ensure_snapshot(&InProcess, &diff_id, &digest).expect_err(name);
        assert!(err.to_string().contains("rejected") || err.to_string().contains("malformed"), "{name}: {err}");
        assert!(!store.snapshot_path(&diff_id).exists(), "{name}: a snapshot appeared");
        assert_eq!(fs::read_dir(store.tmp().dir()).unwrap().count(), 0, "{name}: temporary files left");
    }
    assert!(store.fsck().unwrap().is_clean());
}

#[test]
fn snapshots_hold_overlay_whiteouts() {
    let dir = TempDir::new("snapshot");
    let store = Store::open(&dir.path().join("store")).unwrap();
    let bytes = finish(vec![
        raw_entry(b"d/", b'5', b"", b"", None),
        raw_entry(b"d/.wh.gone", b'0', b"", b"", None),
        raw_entry(b"o/", b'5', b"", b"", None),
        raw_entry(b"o/.wh..wh..opq", b'0', b"", b"", None),
        raw_entry(b"o/new", b'0', b"new", b"", None),
    ]);
    let (digest, _) = store.put_blob(&bytes[..], None).unwrap();
    let diff_id = rbuild_builder::digest::Digest::of(&bytes);
    let snap = store.ensure_snapshot(&InProcess, &diff_id, &digest).unwrap();
    let gone = fs::symlink_metadata(snap.join("d/gone")).unwrap();
    let is_device_whiteout = std::os::unix::fs::FileTypeExt::is_char_device(&gone.file_type()) && gone.rdev() == 0;
    let is_xattr_whiteout = xattr::get(snap.join("d/gone"), "user.overlay.whiteout").ok().flatten().is_some();
    assert!(is_device_whiteout || is_xattr_whiteout, "d/gone is not an overlay whiteout");
    let ns = if running_as_root() { "trusted" } else { "user" };
    assert_eq!(xattr::get(snap.join("o"), format!("{ns}.overlay.opaque")).unwrap().as_deref(), Some(&b"y"[..]));
    assert_eq!(fs::read_to_string(snap.join("o/new")).unwrap(), "new");
    // Re-exporting the snapshot as an overlay upper gives back the OCI whiteouts.
    let entries = diff_overlay_upper(&snap).unwrap();
    let paths: Vec<String> = entries.iter().map(|e| String::from_utf8_lossy(&e.path).into_owned()).collect();
    assert_eq!(paths, ["d", "d/.wh.gone", "o", "o/.wh..wh..opq", "o/new"]);
    let mut content = String::new();
    fs::File::open(snap.join("o/new")).unwrap().read_to_string(&mut content).unwrap();
    assert_eq!(content, "new");
}

#[test]
fn several_layers_export_concurrently_with_the_same_results() {
    let dir = TempDir::new("concurrent-export");
    let store = Store::open(&dir.path().join("store")).unwrap();
    let trees: Vec<_> = (0..4)
        .map(|i| {
            let t = dir.path().join(format!("t{i}"));
            for j in 0..20 {
                write(&t, &format!("d{}/f{j}", j % 4), &format!("layer {i} file {j} ").repeat(5000));
            }
            collect_tree(&t).unwrap()
        })
        .collect();
    let opts = LayerOptions { compression: Compression::Gzip { level: 6 }, threads: 2, source_date_epoch: Some(0) };
    let sequential: Vec<_> = trees.iter().map(|t| store.write_layer(t, &opts).unwrap()).collect();
    let parallel: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = trees.iter().map(|t| s.spawn(|| store.write_layer(t, &opts).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(sequential, parallel);
    assert!(store.fsck().unwrap().is_clean());
}

#[test]
fn rootless_unpack_records_owners_in_an_xattr_and_repacking_restores_them() {
    use rbuild_tests::{TEST_USER, run_rbuild};
    if !running_as_root() {
        let _ = std::io::stderr()
            .write_all(b"SKIPPED rootless_unpack_records_owners...: creating files of other owners needs root\n");
        return;
    }
    let dir = TempDir::new("rootless-owners");
    let tree = dir.path().join("tree");
    write(&tree, "own1000", "a");
    write(&tree, "own2000", "b");
    write(&tree, "rootfile", "c");
    std::os::unix::fs::chown(tree.join("own1000"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(tree.join("own2000"), Some(2000), Some(3000)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        tree.join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    let layer = dir.path().join("layer.tar");
    let out = run_rbuild(
        &["debug", "pack", tree.to_str().unwrap(), "-o", layer.to_str().unwrap(), "--compression", "uncompressed"],
        None,
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    assert!(Command::new("chown").arg(TEST_USER).arg(&work).status().unwrap().success());
    let as_user = |args: String| {
        Command::new("runuser")
            .args(["-u", TEST_USER, "--", "sh", "-c"])
            .arg(format!("{} {args}", rbuild_tests::rbuild_bin().display()))
            .output()
            .unwrap()
    };
    let unpacked = work.join("unpacked");
    let out = as_user(format!("debug unpack {} {}", layer.display(), unpacked.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["skipped_devices"], 1, "{report}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("device nodes cannot be created without root"));
    // Files belong to the user; their real owners are in user.rootlesscontainers (umoci's format).
    let user_uid = fs::metadata(&work).unwrap().uid();
    assert_eq!(fs::metadata(unpacked.join("own1000")).unwrap().uid(), user_uid);
    let owner = |f: &str| {
        xattr::get(unpacked.join(f), rbuild_builder::layer::tree::ROOTLESS_XATTR)
            .unwrap()
            .map(|v| rbuild_builder::layer::rootless_owner::decode(&v).unwrap())
    };
    assert_eq!(owner("own1000"), Some((Some(1000), Some(1000))));
    assert_eq!(owner("own2000"), Some((Some(2000), Some(3000))));
    assert_eq!(owner("rootfile"), None);
    // Packing the tree again as the user gives back the original owners.
    let repacked = work.join("re.tar");
    let out =
        as_user(format!("debug pack {} -o {} --compression uncompressed", unpacked.display(), repacked.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut a = tar::Archive::new(fs::File::open(&repacked).unwrap());
    let owners: BTreeMap<String, (u64, u64)> = a
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (String::from_utf8_lossy(&e.path_bytes()).into_owned(), (h.uid().unwrap(), h.gid().unwrap()))
        })
        .collect();
    assert_eq!(owners["own1000"], (1000, 1000));
    assert_eq!(owners["own2000"], (2000, 3000));
    // Rootless, the user is root inside the image: its own files are 0:0 again.
    assert_eq!(owners["rootfile"], (0, 0));
}
