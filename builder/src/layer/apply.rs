//! Applying (unpacking) a layer into a directory, safely: no entry may write outside the directory (absolute
//! paths, `..`, symlinked or non-directory parents, hard links to outside are all rejected with the entry named),
//! the uncompressed size is bounded, and ownership is kept (as root with chown; rootless with one id mapped, the
//! real owner goes into the `user.rootlesscontainers` xattr, as umoci does). Device nodes that cannot be created
//! rootless are skipped and counted.
//!
//! Two modes: `Merge` applies onto an existing tree (a whiteout deletes, an opaque marker empties the
//! directory), `Snapshot` writes a standalone layer directory for overlayfs (a whiteout becomes a 0:0 character
//! device, or where mknod is refused, an empty file with the `overlay.whiteout` xattr; an opaque marker becomes
//! the `overlay.opaque` xattr).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, UTIME_OMIT};

use super::rootless_owner;
use super::tree::{OPAQUE_MARKER, ROOTLESS_XATTR, WHITEOUT_PREFIX};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Onto an existing tree: whiteouts delete, opaque markers empty directories.
    Merge,
    /// A standalone layer directory for overlayfs: whiteouts and opaque markers in overlay form.
    Snapshot,
}

/// How to apply a layer.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub mode: ApplyMode,
    /// Upper bound on the uncompressed tar stream (protects against compression bombs).
    pub max_size: u64,
    /// Upper bound on uncompressed bytes per compressed byte (checked once past 64 MiB).
    pub max_ratio: u64,
    /// Name used in messages (a digest, a file name).
    pub layer_name: String,
    /// Every entry gets this owner instead of its own (`ADD --chown` of an archive).
    pub owner: Option<(u32, u32)>,
}

impl ApplyOptions {
    pub fn new(mode: ApplyMode, layer_name: impl Into<String>) -> Self {
        let max_size = std::env::var("RBUILD_MAX_LAYER_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(1 << 40);
        ApplyOptions { mode, max_size, max_ratio: 1000, layer_name: layer_name.into(), owner: None }
    }
}

/// What happened while applying.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub entries: u64,
    /// Uncompressed bytes read.
    pub bytes: u64,
    /// Device nodes that could not be created (rootless).
    pub skipped_devices: u64,
    /// Extended attributes that could not be set (e.g. `trusted.*` rootless).
    pub skipped_xattrs: u64,
    /// Symlinks whose owner could not be given or recorded (rootless: a link carries no xattr): path, uid, gid.
    pub link_owners: Vec<(PathBuf, u32, u32)>,
}

/// Open a layer blob for reading, decompressing gzip or zstd by their magic bytes.
pub fn decompressed(mut file: impl Read + 'static) -> Result<Box<dyn Read>> {
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < 4 {
        match file.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", "layer")(e)),
        }
    }
    let head = io::Cursor::new(magic[..n].to_vec());
    let stream = head.chain(file);
    Ok(if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(stream))
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::new(stream).map_err(Error::io("start zstd decoder", "layer"))?)
    } else {
        Box::new(stream)
    })
}

/// Counts bytes and enforces the size limit while the tar is read.
struct Limited<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(LIMIT_MARK));
        }
        Ok(n)
    }
}

const LIMIT_MARK: &str = "rbuild: layer size limit exceeded";

/// Apply the (uncompressed) tar stream `reader` to `dest`.
pub fn apply_tar(reader: impl Read, dest: &Path, opts: &ApplyOptions) -> Result<ApplyReport> {
    let limited = Limited { inner: reader, read: 0, limit: opts.max_size };
    let mut archive = tar::Archive::new(limited);
    let mut state = ApplyState {
        dest: dest.to_path_buf(),
        opts: opts.clone(),
        report: ApplyReport::default(),
        dirs: Vec::new(),
        rootless: !rustix::process::geteuid().is_root(),
        overlay_xattrs: overlay_xattr_namespace(),
        warned_devices: false,
        seen: HashSet::new(),
    };
    let entries = archive.entries().map_err(|e| state.read_error(e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| state.read_error(e))?;
        state.apply_entry(&mut entry)?;
    }
    state.report.bytes = archive.into_inner().read;
    state.finish_dirs()?;
    Ok(state.report)
}

struct PendingDir {
    path: PathBuf,
    mtime: i64,
    /// The mode to restore at the end, when it was widened to keep the directory writable.
    restrictive_mode: Option<u32>,
}

struct ApplyState {
    dest: PathBuf,
    opts: ApplyOptions,
    report: ApplyReport,
    /// Directories to finish last: creating children changes a directory's mtime, and a directory whose mode
    /// denies the owner write access is kept writable until the end.
    dirs: Vec<PendingDir>,
    rootless: bool,
    /// `trusted` as real root, `user` otherwise (also as root of a user namespace, where overlays are mounted
    /// with `userxattr` and `trusted.*` cannot be set).
    overlay_xattrs: &'static str,
    warned_devices: bool,
    seen: HashSet<Vec<u8>>,
}

impl ApplyState {
    fn read_error(&self, e: io::Error) -> Error {
        if e.to_string().contains(LIMIT_MARK) {
            return Error::LayerTooLarge { layer: self.opts.layer_name.clone(), limit: self.opts.max_size };
        }
        Error::Malformed { what: format!("layer {}", self.opts.layer_name), reason: format!("cannot read it: {e}") }
    }

    fn unsafe_entry(&self, entry: &[u8], reason: &str) -> Error {
        Error::UnsafeLayer {
            layer: self.opts.layer_name.clone(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.to_string(),
        }
    }

    /// The normalised relative path of an entry name: no absolute paths, no `..`, `.` and empty parts dropped.
    fn relative(&self, raw: &[u8]) -> Result<PathBuf> {
        let p = Path::new(OsStr::from_bytes(raw));
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                Component::Normal(n) => out.push(n),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.unsafe_entry(raw, "absolute paths are not allowed in a layer"));
                }
                Component::ParentDir => return Err(self.unsafe_entry(raw, "'..' would leave the layer's root")),
            }
        }
        Ok(out)
    }

    /// Check that every parent of `rel` inside dest is a real directory (not a symlink, not a file), creating
    /// missing ones; returns the absolute path.
    fn safe_target(&self, raw: &[u8], rel: &Path) -> Result<PathBuf> {
        let mut cur = self.dest.clone();
        let parts: Vec<_> = rel.components().collect();
        for c in &parts[..parts.len().saturating_sub(1)] {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.unsafe_entry(
                        raw,
                        "a parent directory is a symbolic link; writing through it could leave the layer's root",
                    ));
                }
                Ok(m) if !m.is_dir() => {
                    return Err(self.unsafe_entry(
                        raw,
                        "a parent path is not a directory (a file replaced by a directory within the layer)",
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&cur).map_err(Error::io("create directory", &cur))?;
                }
                Err(e) => return Err(Error::io("stat", &cur)(e)),
            }
        }
        Ok(self.dest.join(rel))
    }

    /// One tar entry, checked and applied. Kept whole on purpose: it is the security-critical path (every check
    /// on a hostile entry happens here, in order), and reading it in one place is what reviews it.
    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let rel = self.relative(&raw)?;
        if rel.as_os_str().is_empty() {
            return Ok(()); // the root itself ("./")
        }
        self.report.entries += 1;
        let target = self.safe_target(&raw, &rel)?;
        let name = rel.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
        let header = entry.header().clone();
        let etype = header.entry_type();

        if name == OPAQUE_MARKER {
            let dir = target.parent().map(Path::to_path_buf).unwrap_or_else(|| self.dest.clone());
            return self.opaque(&dir);
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(self.unsafe_entry(&raw, "malformed whiteout name"));
            }
            let victim = target.with_file_name(OsStr::from_bytes(hidden));
            return self.whiteout(&victim);
        }

        // The last entry for a path wins: clear what an earlier entry (or a lower layer) put there, unless both
        // are directories.
        if let Ok(existing) = fs::symlink_metadata(&target)
            && !(existing.is_dir() && etype.is_dir())
        {
            crate::fsops::remove_path(&target).map_err(Error::io("replace", &target))?;
        }
        self.seen.insert(raw.clone());

        let mode = header.mode().map_err(|e| self.read_error(e))? & 0o7777;
        let uid = header.uid().map_err(|e| self.read_error(e))?;
        let gid = header.gid().map_err(|e| self.read_error(e))?;
        let mtime = header.mtime().map_err(|e| self.read_error(e))? as i64;
        let (uid, gid) = (u32::try_from(uid).unwrap_or(u32::MAX), u32::try_from(gid).unwrap_or(u32::MAX));
        let (uid, gid) = self.opts.owner.unwrap_or((uid, gid));
        let xattrs = pax_xattrs(entry).map_err(|e| self.read_error(e))?;

        match etype {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut f = fs::File::create(&target).map_err(Error::io("create", &target))?;
                io::copy(entry, &mut f).map_err(|e| self.read_error(e))?;
            }
            tar::EntryType::Directory => {
                if !target.is_dir() {
                    fs::create_dir(&target).map_err(Error::io("create directory", &target))?;
                }
                self.dirs.push(PendingDir { path: target.clone(), mtime, restrictive_mode: None });
            }
            tar::EntryType::Symlink => {
                let link = entry.link_name_bytes().ok_or_else(|| self.unsafe_entry(&raw, "symlink without target"))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target).map_err(Error::io("symlink", &target))?;
            }
            tar::EntryType::Link => {
                let link =
                    entry.link_name_bytes().ok_or_else(|| self.unsafe_entry(&raw, "hard link without target"))?;
                let link_rel = self
                    .relative(&link)
                    .map_err(|_| self.unsafe_entry(&raw, "hard link target is outside the layer's root"))?;
                let source = self.safe_target(&raw, &link_rel)?;
                match fs::symlink_metadata(&source) {
                    Ok(m) if !m.is_dir() => {}
                    _ => return Err(self.unsafe_entry(&raw, "hard link target does not exist in the layer")),
                }
                fs::hard_link(&source, &target).map_err(Error::io("hard link", &target))?;
                return Ok(()); // metadata belongs to the target inode
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let ft = match etype {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(major, minor);
                if let Err(e) = rustix::fs::mknodat(CWD, &target, ft, Mode::from_raw_mode(mode), dev) {
                    if self.rootless && ft != FileType::Fifo {
                        self.report.skipped_devices += 1;
                        if !self.warned_devices {
                            self.warned_devices = true;
                            eprintln!(
                                "warning: layer {}: device nodes cannot be created without root; skipping them ({})",
                                self.opts.layer_name, e
                            );
                        }
                        return Ok(());
                    }
                    return Err(Error::io("create device node", &target)(e.into()));
                }
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(()),
            other => {
                return Err(self.unsafe_entry(&raw, &format!("unsupported tar entry type {other:?}")));
            }
        }

        self.set_owner(&target, uid, gid)?;
        if !matches!(etype, tar::EntryType::Symlink) {
            fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(Error::io("chmod", &target))?;
            // A directory the owner cannot write into must stay usable while the layer is applied.
            if etype == tar::EntryType::Directory && mode & 0o700 != 0o700 {
                fs::set_permissions(&target, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(Error::io("chmod", &target))?;
                if let Some(d) = self.dirs.iter_mut().rev().find(|d| d.path == target) {
                    d.restrictive_mode = Some(mode);
                }
            }
        }
        for (k, v) in &xattrs {
            if xattr::set(&target, k, v).is_err() {
                // Rootless on the host, capabilities are recorded where a layer made from the file finds them.
                let recorded = k == super::tree::CAPABILITY_XATTR
                    && xattr::set(&target, super::tree::CAPABILITY_RECORD_XATTR, v).is_ok();
                if !recorded {
                    self.report.skipped_xattrs += 1;
                }
            }
        }
        if etype != tar::EntryType::Directory {
            set_mtime(&target, mtime)?;
        }
        Ok(())
    }

    fn set_owner(&mut self, target: &Path, uid: u32, gid: u32) -> Result<()> {
        if !self.rootless {
            return rustix::fs::chownat(
                CWD,
                target,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| Error::io("chown", target)(e.into()));
        }
        let is_link = fs::symlink_metadata(target).map(|m| m.file_type().is_symlink()).unwrap_or(false);
        if (uid, gid) != (0, 0) && is_link {
            self.report.link_owners.push((target.to_path_buf(), uid, gid));
        }
        if (uid, gid) != (0, 0) && !is_link {
            // Rootless with one id: keep the real owner where a later export (and umoci) finds it.
            if xattr::set(target, ROOTLESS_XATTR, &rootless_owner::encode(uid, gid)).is_err() {
                self.report.skipped_xattrs += 1;
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, victim: &Path) -> Result<()> {
        match self.opts.mode {
            ApplyMode::Merge => crate::fsops::remove_path(victim).map_err(Error::io("remove (whiteout)", victim)),
            ApplyMode::Snapshot => {
                let _ = crate::fsops::remove_path(victim);
                let dev = rustix::fs::makedev(0, 0);
                if rustix::fs::mknodat(CWD, victim, FileType::CharacterDevice, Mode::empty(), dev).is_ok() {
                    return Ok(());
                }
                // Without CAP_MKNOD: overlayfs (>= 6.7) also honours an xattr whiteout in a marked directory.
                fs::File::create(victim).map_err(Error::io("create whiteout", victim))?;
                let ns = self.overlay_xattrs;
                xattr::set(victim, format!("{ns}.overlay.whiteout"), b"y")
                    .map_err(Error::io("mark whiteout", victim))?;
                if let Some(parent) = victim.parent() {
                    let _ = xattr::set(parent, format!("{ns}.overlay.whiteouts"), b"y");
                }
                Ok(())
            }
        }
    }

    fn opaque(&mut self, dir: &Path) -> Result<()> {
        match self.opts.mode {
            ApplyMode::Merge => {
                // Hide what lower layers put here; keep what this layer already wrote.
                let entries = match fs::read_dir(dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(Error::io("read directory", dir)(e)),
                };
                for e in entries.flatten() {
                    let p = e.path();
                    let rel = p.strip_prefix(&self.dest).map(|r| r.as_os_str().as_bytes().to_vec()).unwrap_or_default();
                    if !self.seen.contains(&rel) && !self.seen.contains(&[rel.clone(), b"/".to_vec()].concat()) {
                        crate::fsops::remove_path(&p).map_err(Error::io("remove (opaque)", &p))?;
                    }
                }
                Ok(())
            }
            ApplyMode::Snapshot => {
                let ns = self.overlay_xattrs;
                fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
                xattr::set(dir, format!("{ns}.overlay.opaque"), b"y").map_err(Error::io("mark opaque", dir))
            }
        }
    }

    fn finish_dirs(&mut self) -> Result<()> {
        // Deepest first, so setting a child's mtime does not disturb its parent's.
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
        for d in dirs {
            if !d.path.is_dir() {
                continue; // replaced or whited out later in the layer
            }
            set_mtime(&d.path, d.mtime)?;
            if let Some(mode) = d.restrictive_mode {
                fs::set_permissions(&d.path, fs::Permissions::from_mode(mode)).map_err(Error::io("chmod", &d.path))?;
            }
        }
        Ok(())
    }
}

fn set_mtime(path: &Path, mtime: i64) -> Result<()> {
    let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
    let ts = Timestamps { last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT }, last_modification: t };
    rustix::fs::utimensat(CWD, path, &ts, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| Error::io("set mtime", path)(e.into()))
}

/// The `SCHILY.xattr.*` PAX records of an entry.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Ok(key) = ext.key()
                && let Some(name) = key.strip_prefix("SCHILY.xattr.")
            {
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// Set when this process's sandboxes mount overlays in a user namespace although it is real root (a container's
/// root without CAP_SYS_ADMIN): its snapshots then need `user.*` markers too.
static USER_OVERLAY_XATTRS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Write overlay markers in the `user` namespace from now on (see [`overlay_xattr_namespace`]).
pub fn use_user_overlay_xattrs() {
    USER_OVERLAY_XATTRS.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// The xattr namespace overlay markers are written in: `trusted` for real root (outside any user namespace)
/// whose overlays are mounted outside one too, `user` for everyone else.
pub fn overlay_xattr_namespace() -> &'static str {
    if USER_OVERLAY_XATTRS.load(std::sync::atomic::Ordering::SeqCst) {
        return "user";
    }
    let real_root = rustix::process::geteuid().is_root()
        && std::fs::read_to_string("/proc/self/uid_map")
            .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
            .unwrap_or(true);
    if real_root { "trusted" } else { "user" }
}
