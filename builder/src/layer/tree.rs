//! Layer contents as a sorted list of entries: the whole tree under a directory, the changes an overlay upper
//! directory holds (overlay whiteouts and opaque directories turned into OCI `.wh.` entries, overlay-internal
//! xattrs dropped), or the differences between two trees (for the copy-based snapshotter).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::known_files::{KnownFile, KnownFiles};
use crate::error::{Error, Result};

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file; its content is read from `source` when the layer is written.
    File {
        source: PathBuf,
        size: u64,
    },
    Dir,
    Symlink {
        target: Vec<u8>,
    },
    /// A second name for a file written earlier in the same layer.
    Hardlink {
        target: String,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
    /// `dir/.wh.name`: `name` was deleted.
    Whiteout,
    /// `dir/.wh..wh..opq`: the directory's lower contents are hidden.
    Opaque,
}

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Relative path, `/`-separated, raw bytes (names need not be UTF-8). For whiteouts and opaque markers, the
    /// path of the entry as written in the tar (`dir/.wh.name`, `dir/.wh..wh..opq`).
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The xattr that records the real owner of a file unpacked rootless with one id mapped (as umoci does).
pub const ROOTLESS_XATTR: &str = rbuild_runtime::owner_record::NAME;
/// The file capability xattr, the one a layer carries.
pub const CAPABILITY_XATTR: &str = "security.capability";
/// Where a file made rootless on the host records the capabilities it could not be given (an unprivileged user
/// cannot set `security.capability`); a layer made from the file carries them as `security.capability`.
pub const CAPABILITY_RECORD_XATTR: &str = "user.rbuild.capability";

fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

fn path_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

/// `parent/name` of relative `/`-separated byte paths (`name` alone at the top).
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        let mut p = parent.to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }
}

/// Extended attributes: (name, value), sorted by name.
type Xattrs = Vec<(String, Vec<u8>)>;

/// Read a file's xattrs (sorted), leaving out overlay-internal ones and, when `owner_xattr` is false, the
/// rootless ownership record.
fn read_xattrs(path: &Path, keep_owner_xattr: bool) -> Xattrs {
    let Ok(names) = xattr::list(path) else { return Vec::new() };
    let mut out: Vec<(String, Vec<u8>)> = names
        .filter_map(|n| n.into_string().ok())
        .filter(|n| !is_overlay_xattr(n) && (keep_owner_xattr || n != ROOTLESS_XATTR))
        .filter_map(|n| xattr::get(path, &n).ok().flatten().map(|v| (n, v)))
        .collect();
    out.sort();
    out
}

/// Tracks inodes already emitted, to turn further names of the same file into hard links.
#[derive(Default)]
struct Hardlinks(HashMap<(u64, u64), Vec<u8>>);

impl Hardlinks {
    fn kind_for(&mut self, meta: &fs::Metadata, rel: &[u8], source: &Path) -> EntryKind {
        self.link_to_earlier(meta, rel)
            .unwrap_or_else(|| EntryKind::File { source: source.to_path_buf(), size: meta.len() })
    }

    /// A hard link to the first name seen of this inode (a file's, or a symlink's: `ln -P`), or `None` for the
    /// first name, which is remembered.
    fn link_to_earlier(&mut self, meta: &fs::Metadata, rel: &[u8]) -> Option<EntryKind> {
        if meta.nlink() > 1 {
            match self.0.get(&(meta.dev(), meta.ino())) {
                Some(first) => {
                    return Some(EntryKind::Hardlink { target: String::from_utf8_lossy(first).into_owned() });
                }
                None => {
                    self.0.insert((meta.dev(), meta.ino()), rel.to_vec());
                }
            }
        }
        None
    }
}

/// How ids on disk translate to ids in the image: ranges of (id in image, id on disk, count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    pub uids: Vec<(u32, u32, u32)>,
    pub gids: Vec<(u32, u32, u32)>,
}

impl IdMap {
    /// Identity for root; rootless, the invoking user's own ids stand for 0 (umoci's rootless convention).
    pub fn for_current_user() -> IdMap {
        let (euid, egid) = (rustix::process::geteuid(), rustix::process::getegid());
        if euid.is_root() {
            return IdMap { uids: Vec::new(), gids: Vec::new() };
        }
        IdMap { uids: vec![(0, euid.as_raw(), 1)], gids: vec![(0, egid.as_raw(), 1)] }
    }

    /// The mapping of a user namespace that maps 0 to the caller and 1.. to subordinate ranges.
    pub fn subordinate(uid_start: u32, gid_start: u32, count: u32) -> IdMap {
        let (euid, egid) = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
        IdMap { uids: vec![(0, euid, 1), (1, uid_start, count)], gids: vec![(0, egid, 1), (1, gid_start, count)] }
    }

    fn map(ranges: &[(u32, u32, u32)], id: u32) -> u32 {
        ranges
            .iter()
            .find(|(_, host, n)| id >= *host && id - host < *n)
            .map_or(id, |(inside, host, _)| inside + (id - host))
    }

    /// The owner a file on disk has in the image.
    pub fn to_image(&self, uid: u32, gid: u32) -> (u32, u32) {
        (Self::map(&self.uids, uid), Self::map(&self.gids, gid))
    }
}

fn device_numbers(rdev: u64) -> (u32, u32) {
    (rustix::fs::major(rdev), rustix::fs::minor(rdev))
}

/// The entry for `abs` (relative path `rel`), or `None` for things a layer cannot hold (sockets).
fn entry_for(
    abs: &Path,
    rel: &[u8],
    meta: &fs::Metadata,
    links: &mut Hardlinks,
    ids: &IdMap,
) -> Result<Option<TreeEntry>> {
    entry_with_xattrs(abs, rel, meta, entry_xattrs(abs, meta), links, ids)
}

/// An entry's xattrs as a layer keeps them (the rootless owner record among them); symlinks have none.
fn entry_xattrs(abs: &Path, meta: &fs::Metadata) -> Xattrs {
    if meta.file_type().is_symlink() { Vec::new() } else { read_xattrs(abs, true) }
}

/// [`entry_for`] with the entry's xattrs (the rootless owner record among them) already read.
fn entry_with_xattrs(
    abs: &Path,
    rel: &[u8],
    meta: &fs::Metadata,
    mut xattrs: Xattrs,
    links: &mut Hardlinks,
    ids: &IdMap,
) -> Result<Option<TreeEntry>> {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        links.kind_for(meta, rel, abs)
    } else if ft.is_symlink() {
        match links.link_to_earlier(meta, rel) {
            Some(link) => link,
            None => {
                EntryKind::Symlink { target: path_bytes(&fs::read_link(abs).map_err(Error::io("read link", abs))?) }
            }
        }
    } else if ft.is_char_device() {
        let (major, minor) = device_numbers(meta.rdev());
        EntryKind::CharDevice { major, minor }
    } else if ft.is_block_device() {
        let (major, minor) = device_numbers(meta.rdev());
        EntryKind::BlockDevice { major, minor }
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else {
        return Ok(None);
    };
    // Capabilities only recorded (rootless, on the host) are the file's capabilities.
    if let Some(pos) = xattrs.iter().position(|(n, _)| n == CAPABILITY_RECORD_XATTR) {
        let (_, v) = xattrs.remove(pos);
        if !xattrs.iter().any(|(n, _)| n == CAPABILITY_XATTR) {
            xattrs.push((CAPABILITY_XATTR.to_string(), v));
            xattrs.sort();
        }
    }
    let (mut uid, mut gid) = ids.to_image(meta.uid(), meta.gid());
    // A file unpacked rootless carries its real owner in an xattr; restore it.
    if let Some(pos) = xattrs.iter().position(|(n, _)| n == ROOTLESS_XATTR) {
        let (_, v) = xattrs.remove(pos);
        if let Some((u, g)) = super::rootless_owner::decode(&v) {
            uid = u.unwrap_or(uid);
            gid = g.unwrap_or(gid);
        }
    }
    Ok(Some(TreeEntry { path: rel.to_vec(), kind, mode: meta.mode() & 0o7777, uid, gid, mtime: meta.mtime(), xattrs }))
}

/// The entries of `dir` by name: (name, path, whether it is a regular file: only with `types`, from the directory
/// itself where the filesystem says).
fn sorted_children(dir: &Path, types: bool) -> Result<Vec<(Vec<u8>, PathBuf, bool)>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out: Vec<(Vec<u8>, PathBuf, bool)> = fs::read_dir(dir)
        .map_err(Error::io("read directory", dir))?
        .map(|e| {
            e.map(|e| {
                let is_file = types && e.file_type().is_ok_and(|t| t.is_file());
                (e.file_name().as_bytes().to_vec(), e.path(), is_file)
            })
        })
        .collect::<std::io::Result<_>>()
        .map_err(Error::io("read directory", dir))?;
    out.sort();
    Ok(out)
}

/// Every entry below `root` (not `root` itself), parents before children, siblings in byte order.
pub fn collect_tree(root: &Path) -> Result<Vec<TreeEntry>> {
    collect_tree_mapped(root, &IdMap::for_current_user())
}

/// [`collect_tree`] of a tree written through a user namespace with mapping `ids`.
pub fn collect_tree_mapped(root: &Path, ids: &IdMap) -> Result<Vec<TreeEntry>> {
    let mut out = Vec::new();
    let mut links = Hardlinks::default();
    walk(root, b"", &mut links, ids, &mut out, &mut |_, _, _| Ok(Visit::Keep), None)?;
    Ok(out)
}

/// [`collect_tree`] of a tree this process wrote, taking the entries of the regular files `known` holds from
/// there instead of from the disk.
pub fn collect_tree_known(root: &Path, known: &KnownFiles) -> Result<Vec<TreeEntry>> {
    let mut out = Vec::new();
    let mut links = Hardlinks::default();
    let ids = IdMap::for_current_user();
    walk(root, b"", &mut links, &ids, &mut out, &mut |_, _, _| Ok(Visit::Keep), Some(known))?;
    Ok(out)
}

/// The entries below `root` that `include` picks (it sees each path's metadata first; a directory it leaves out
/// is not entered), parents before children. Container isolation reads a step's changes with it.
pub fn collect_tree_picked(
    root: &Path,
    include: &mut dyn FnMut(&Path, &[u8], &fs::Metadata) -> bool,
) -> Result<Vec<TreeEntry>> {
    let mut out = Vec::new();
    let mut links = Hardlinks::default();
    let ids = IdMap { uids: Vec::new(), gids: Vec::new() };
    walk(
        root,
        b"",
        &mut links,
        &ids,
        &mut out,
        &mut |abs, rel, meta| Ok(if include(abs, rel, meta) { Visit::Keep } else { Visit::Skip }),
        None,
    )?;
    Ok(out)
}

enum Visit {
    Keep,
    Replace(Vec<TreeEntry>),
    /// Leave the entry (and what is below it) out.
    Skip,
}

type Visitor<'a> = dyn FnMut(&Path, &[u8], &fs::Metadata) -> Result<Visit> + 'a;

/// A child of a directory being walked: read from the disk, or a regular file whose entry is known.
enum Child<'k> {
    Read(fs::Metadata, Xattrs),
    Known(&'k KnownFile),
}

/// The layer entry of a known file at `rel` in the layer, read from `abs`.
fn known_entry(file: &KnownFile, abs: &Path, rel: Vec<u8>) -> TreeEntry {
    TreeEntry {
        path: rel,
        kind: EntryKind::File { source: abs.to_path_buf(), size: file.data.len() as u64 },
        mode: file.mode,
        uid: file.uid,
        gid: file.gid,
        mtime: file.mtime,
        xattrs: Vec::new(),
    }
}

/// The entries below `dir`, depth first; `visit` sees each read entry first. Regular files `known` holds are
/// taken from there (without a visit).
fn walk(
    dir: &Path,
    rel: &[u8],
    links: &mut Hardlinks,
    ids: &IdMap,
    out: &mut Vec<TreeEntry>,
    visit: &mut Visitor,
    known: Option<&KnownFiles>,
) -> Result<()> {
    // The children's metadata and xattrs are read on all CPUs (most of a walk's time is these calls).
    let children: Vec<(Vec<u8>, PathBuf, Child)> = sorted_children(dir, known.is_some_and(|k| !k.is_empty()))?
        .into_par_iter()
        .map(|(name, abs, is_file)| {
            if is_file && let Some(file) = known.and_then(|k| k.get(&abs)) {
                return Ok((name, abs, Child::Known(file)));
            }
            let meta = fs::symlink_metadata(&abs).map_err(Error::io("stat", &abs))?;
            let xattrs = entry_xattrs(&abs, &meta);
            Ok((name, abs, Child::Read(meta, xattrs)))
        })
        .collect::<Result<_>>()?;
    for (name, abs, child) in children {
        let child_rel = join(rel, &name);
        let (meta, xattrs) = match child {
            Child::Known(file) => {
                out.push(known_entry(file, &abs, child_rel));
                continue;
            }
            Child::Read(meta, xattrs) => (meta, xattrs),
        };
        match visit(&abs, &child_rel, &meta)? {
            Visit::Skip => continue,
            Visit::Replace(entries) => out.extend(entries),
            Visit::Keep => {
                if let Some(e) = entry_with_xattrs(&abs, &child_rel, &meta, xattrs, links, ids)? {
                    out.push(e);
                }
            }
        }
        if meta.is_dir() {
            walk(&abs, &child_rel, links, ids, out, visit, known)?;
        }
    }
    Ok(())
}

/// Whether a directory of an overlay upper (or a snapshot) is opaque: lower layers' contents are hidden.
pub fn overlay_opaque(abs: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|n| matches!(xattr::get(abs, n), Ok(Some(v)) if v == b"y"))
}

/// Whether an entry of an overlay upper (or a snapshot) is a whiteout: a 0/0 device, or an xattr-marked file.
pub fn overlay_whiteout(abs: &Path, meta: &fs::Metadata) -> bool {
    (meta.file_type().is_char_device() && meta.rdev() == 0)
        || (meta.is_file()
            && meta.len() == 0
            && ["trusted.overlay.whiteout", "user.overlay.whiteout"]
                .iter()
                .any(|n| matches!(xattr::get(abs, n), Ok(Some(_)))))
}

fn whiteout_entry(rel: &[u8], marker_name: Option<&[u8]>, mtime: i64) -> TreeEntry {
    let (parent, name) = match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&rel[..0], rel),
    };
    let (path, kind) = match marker_name {
        Some(m) => (join(rel, m), EntryKind::Opaque),
        None => (join(parent, &[WHITEOUT_PREFIX, name].concat()), EntryKind::Whiteout),
    };
    TreeEntry { path, kind, mode: 0o600, uid: 0, gid: 0, mtime, xattrs: Vec::new() }
}

/// The changes an overlay upper directory records: its entries, with whiteout devices (or whiteout xattrs)
/// turned into `.wh.` entries and opaque directories into `.wh..wh..opq` markers.
pub fn diff_overlay_upper(upper: &Path) -> Result<Vec<TreeEntry>> {
    diff_overlay_upper_mapped(upper, &IdMap::for_current_user())
}

/// [`diff_overlay_upper`] for an upper directory written through a user namespace with mapping `ids`.
pub fn diff_overlay_upper_mapped(upper: &Path, ids: &IdMap) -> Result<Vec<TreeEntry>> {
    diff_upper(upper, ids, None)
}

/// [`diff_overlay_upper_mapped`] of the paths `within` only (relative, `/`-separated): each one's ancestors and
/// itself (whiteouts and opaque markers included) and everything below it. The rest of the tree is not read.
pub fn diff_overlay_upper_within(upper: &Path, within: &[Vec<u8>], ids: &IdMap) -> Result<Vec<TreeEntry>> {
    diff_upper(upper, ids, Some(within))
}

/// Whether `rel` is on the way to `path`, is it, or is below it.
fn on_or_below(rel: &[u8], path: &[u8]) -> bool {
    let under = |inner: &[u8], outer: &[u8]| inner.starts_with(outer) && inner.get(outer.len()) == Some(&b'/');
    path.is_empty() || rel == path || under(path, rel) || under(rel, path)
}

fn diff_upper(upper: &Path, ids: &IdMap, within: Option<&[Vec<u8>]>) -> Result<Vec<TreeEntry>> {
    let mut out = Vec::new();
    let mut links = Hardlinks::default();
    let mut visit = |abs: &Path, rel: &[u8], meta: &fs::Metadata| {
        if within.is_some_and(|w| !w.iter().any(|p| on_or_below(rel, p))) {
            return Ok(Visit::Skip);
        }
        if overlay_whiteout(abs, meta) {
            return Ok(Visit::Replace(vec![whiteout_entry(rel, None, meta.mtime())]));
        }
        if meta.is_dir() && overlay_opaque(abs) {
            let mut links = Hardlinks::default();
            let dir = entry_for(abs, rel, meta, &mut links, ids)?.into_iter().collect::<Vec<_>>();
            let mut entries = dir;
            entries.push(whiteout_entry(rel, Some(OPAQUE_MARKER), meta.mtime()));
            return Ok(Visit::Replace(entries));
        }
        Ok(Visit::Keep)
    };
    walk(upper, b"", &mut links, ids, &mut out, &mut visit, None)?;
    Ok(out)
}

/// What must change in `lower` to get `upper`: new and changed entries (with their parent directories), and
/// whiteouts for what `upper` no longer has. For the copy-based snapshotter, where there is no overlay.
pub fn diff_trees(lower: &Path, upper: &Path) -> Result<Vec<TreeEntry>> {
    diff_trees_mapped(lower, upper, &IdMap::for_current_user())
}

/// [`diff_trees`] of trees written through a user namespace with mapping `ids`.
pub fn diff_trees_mapped(lower: &Path, upper: &Path, ids: &IdMap) -> Result<Vec<TreeEntry>> {
    let old: BTreeMap<Vec<u8>, TreeEntry> =
        collect_tree_mapped(lower, ids)?.into_iter().map(|e| (e.path.clone(), e)).collect();
    let new = collect_tree_mapped(upper, ids)?;
    let new_paths: BTreeSet<&[u8]> = new.iter().map(|e| e.path.as_slice()).collect();
    let mut changed: BTreeMap<Vec<u8>, TreeEntry> = BTreeMap::new();
    let by_path: HashMap<&[u8], &TreeEntry> = new.iter().map(|e| (e.path.as_slice(), e)).collect();
    for e in &new {
        let differs = match old.get(&e.path) {
            None => true,
            Some(o) => !same_entry(o, e)?,
        };
        if differs {
            changed.insert(e.path.clone(), e.clone());
            // Parent directories come along, so the layer carries their metadata.
            let mut p = e.path.as_slice();
            while let Some(i) = p.iter().rposition(|&b| b == b'/') {
                p = &p[..i];
                if let Some(parent) = by_path.get(p) {
                    changed.entry(p.to_vec()).or_insert_with(|| (*parent).clone());
                }
            }
        }
    }
    for (path, o) in &old {
        if new_paths.contains(path.as_slice()) {
            continue;
        }
        // Only the topmost deleted path needs a whiteout.
        let parent_gone = path.iter().rposition(|&b| b == b'/').is_some_and(|i| !new_paths.contains(&path[..i]));
        if !parent_gone {
            let w = whiteout_entry(path, None, o.mtime);
            changed.insert(w.path.clone(), w);
            // The parent directory comes along, as for additions (and as overlay's copy-up has it).
            if let Some(i) = path.iter().rposition(|&b| b == b'/')
                && let Some(parent) = by_path.get(&path[..i])
            {
                changed.entry(path[..i].to_vec()).or_insert_with(|| (*parent).clone());
            }
        }
    }
    Ok(changed.into_values().collect())
}

fn same_entry(a: &TreeEntry, b: &TreeEntry) -> Result<bool> {
    if (a.mode, a.uid, a.gid, &a.xattrs) != (b.mode, b.uid, b.gid, &b.xattrs) {
        return Ok(false);
    }
    Ok(match (&a.kind, &b.kind) {
        (EntryKind::File { source: sa, size: za }, EntryKind::File { source: sb, size: zb }) => {
            za == zb && (a.mtime == b.mtime || same_content(sa, sb)?)
        }
        (EntryKind::Dir, EntryKind::Dir) => true,
        (x, y) => x == y && a.mtime == b.mtime,
    })
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read;
    let mut fa = fs::File::open(a).map_err(Error::io("open", a))?;
    let mut fb = fs::File::open(b).map_err(Error::io("open", b))?;
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let na = fa.read(&mut ba).map_err(Error::io("read", a))?;
        let mut nb = 0;
        while nb < na {
            let n = fb.read(&mut bb[nb..na]).map_err(Error::io("read", b))?;
            if n == 0 {
                return Ok(false);
            }
            nb += n;
        }
        if na == 0 {
            return Ok(fb.read(&mut bb[..1]).map_err(Error::io("read", b))? == 0);
        }
        if ba[..na] != bb[..na] {
            return Ok(false);
        }
    }
}
