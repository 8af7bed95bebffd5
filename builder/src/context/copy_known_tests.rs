//! A COPY's known files (small files written from the memory the checksum read them into) must give the same layer
//! as reading the copied tree back from the disk: same entries, same tar bytes.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::copy::{ModeSpec, select};
use super::{FileHashes, IgnoreMatcher};
use crate::layer::tar_writer::{write_tar, write_tar_with};
use crate::layer::{EntryKind, KnownFiles, TreeEntry, collect_tree, collect_tree_known};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rbuild-known-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, bytes: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A context with what a copy treats apart: empty, small and large files, modes with set-id bits, a hard-linked
/// pair, a symlink, a file with an xattr, and `x` in both sources (the second, large, replaces the first).
fn context(root: &Path) {
    write(&root.join("a/empty"), b"", 0o644);
    write(&root.join("a/small.txt"), b"small file\n", 0o644);
    write(&root.join("a/run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    write(&root.join("a/private"), b"secret-ish\n", 0o600);
    write(&root.join("a/setuid"), b"suid\n", 0o4755);
    write(&root.join("a/deep/er/file"), b"deep\n", 0o644);
    write(&root.join("a/x"), b"first x\n", 0o644);
    write(&root.join("a/linked"), b"two names\n", 0o644);
    fs::hard_link(root.join("a/linked"), root.join("a/linked-too")).unwrap();
    symlink("small.txt", root.join("a/link")).unwrap();
    write(&root.join("a/tagged"), b"has an xattr\n", 0o644);
    let _ = xattr::set(root.join("a/tagged"), "user.rbuild-test", b"1");
    write(&root.join("b/x"), &vec![b'x'; 300 * 1024], 0o644);
    write(&root.join("b/other"), b"from b\n", 0o640);
}

/// What of an entry a layer holds (the tar writes capabilities only of all xattrs).
fn layer_view(entries: &[TreeEntry]) -> Vec<(Vec<u8>, EntryKind, u32, u32, u32, i64)> {
    entries.iter().map(|e| (e.path.clone(), e.kind.clone(), e.mode, e.uid, e.gid, e.mtime)).collect()
}

fn assert_same_layer(name: &str, owner: Option<(u32, u32)>, chmod: Option<&str>) {
    let root = scratch(name);
    let ctx = root.join("ctx");
    context(&ctx);
    let selection = select(&ctx, &IgnoreMatcher::default(), &["a".into(), "b".into()]).unwrap();
    selection.checksum_with(&FileHashes::default()).unwrap();
    let layer = root.join("layer");
    fs::create_dir_all(&layer).unwrap();
    let chmod = chmod.map(|c| ModeSpec::parse(c).unwrap());
    let copied = selection.copy_into(&layer, "/dest/", owner, chmod.as_ref(), None).unwrap();

    let known = collect_tree_known(&layer, &copied.known).unwrap();
    let read = collect_tree(&layer).unwrap();
    assert_eq!(layer_view(&known), layer_view(&read), "{name}: entries");
    assert!(read.iter().any(|e| e.path == b"dest/x" && matches!(e.kind, EntryKind::File { size: 307200, .. })));
    let known_tar = write_tar_with(&known, Vec::new(), None, &copied.known).unwrap();
    let read_tar = write_tar(&read, Vec::new(), None).unwrap();
    assert!(known_tar == read_tar, "{name}: the layers differ");

    // The fast path was taken for the plain small files, and not for what it must not cover.
    let is_known = |rel: &str| copied.known.get(&layer.join(rel)).is_some();
    let owner_is_real = rustix::process::geteuid().is_root() || owner.is_none_or(|o| o == (0, 0));
    assert_eq!(is_known("dest/small.txt"), owner_is_real, "{name}");
    assert_eq!(is_known("dest/deep/er/file"), owner_is_real, "{name}");
    for not_known in ["dest/x", "dest/linked", "dest/linked-too", "dest/link", "dest/deep"] {
        assert!(!is_known(not_known), "{name}: {not_known}");
    }
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn known_files_give_the_layer_the_disk_gives() {
    assert_same_layer("plain", None, None);
    assert_same_layer("chmod", None, Some("u+s,go-w"));
    assert_same_layer("chown", Some((1000, 1001)), None);
}

#[test]
fn a_file_replaced_after_it_was_known_is_read_from_the_disk() {
    let root = scratch("replaced");
    let ctx = root.join("ctx");
    write(&ctx.join("a/x"), b"small\n", 0o644);
    let selection = select(&ctx, &IgnoreMatcher::default(), &["a".into()]).unwrap();
    selection.checksum_with(&FileHashes::default()).unwrap();
    let layer = root.join("layer");
    fs::create_dir_all(&layer).unwrap();
    let copied = selection.copy_into(&layer, "/", None, None, None).unwrap();
    assert!(copied.known.get(&layer.join("x")).is_some());
    // Something else in its place (as ADD's archives may put there): a directory is read as one.
    fs::remove_file(layer.join("x")).unwrap();
    fs::create_dir(layer.join("x")).unwrap();
    let entries = collect_tree_known(&layer, &copied.known).unwrap();
    assert!(matches!(entries[0].kind, EntryKind::Dir), "{entries:?}");
    assert!(write_tar_with(&entries, Vec::new(), None, &KnownFiles::new()).is_ok());
    let _ = fs::remove_dir_all(&root);
}
