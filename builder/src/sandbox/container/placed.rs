//! A step's `RUN --mount`s without mounting (a container's root has no CAP_SYS_ADMIN): each is placed at its target
//! in the root for the step and taken away after it. What was at the target is moved aside and put back; the
//! directories made to reach a target are removed again (when the step left them empty), and the times of the
//! directories placing touched are restored, so the step's layer holds none of it. A cache directory is moved into
//! place and back (copied in and out across file systems); read-only binds, binds whose writes are discarded and
//! secrets are copies; tmpfs is an empty directory; an SSH agent socket is a hard link to rbuild's proxy socket
//! (across file systems, a proxy of its own at the target).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rbuild_runtime::Mount;

use super::guard::Protected;
use super::root_sync::copy_tree;
use crate::error::{Error, Result};

/// A directory's access and modification times: (path, (seconds, nanoseconds) twice).
type DirTimes = (PathBuf, (i64, i64), (i64, i64));

/// One placed mount, and how to take it away.
#[derive(Debug)]
struct Placed {
    target: PathBuf,
    /// What was at the target, moved aside.
    aside: Option<PathBuf>,
    /// A cache directory to give back its contents: (its place in the store, whether it was moved rather than copied).
    give_back: Option<(PathBuf, bool)>,
    /// Directories made to reach the target, the deepest last.
    made: Vec<PathBuf>,
}

/// The mounts placed for one step (taken away by [`PlacedMounts::take_away`]).
#[derive(Debug, Default)]
pub struct PlacedMounts {
    placed: Vec<Placed>,
    /// Directories whose times placing changed, restored last.
    times: Vec<DirTimes>,
    /// `/etc/hosts` as it was before `--add-host` entries were added.
    hosts: Option<(PathBuf, Vec<u8>)>,
    /// SSH agent proxies listening at their targets, stopped when the mounts are taken away.
    proxies: Vec<crate::sandbox::ssh_proxy::SshProxy>,
}

impl PlacedMounts {
    /// Place `mounts` (and a heredoc script, `--add-host` entries) under `root`; what is refused is undone.
    pub fn place(
        root: &Path,
        protected: &Protected,
        mounts: &[Mount],
        script: Option<(&str, &str)>,
        extra_hosts: &[(String, String)],
    ) -> Result<PlacedMounts> {
        let mut placed = PlacedMounts::default();
        let result = placed.place_all(root, protected, mounts, script, extra_hosts);
        if let Err(e) = result {
            let _ = placed.take_away();
            return Err(e);
        }
        Ok(placed)
    }

    fn place_all(
        &mut self,
        root: &Path,
        protected: &Protected,
        mounts: &[Mount],
        script: Option<(&str, &str)>,
        extra_hosts: &[(String, String)],
    ) -> Result<()> {
        for m in mounts {
            let target = self.prepare_target(root, protected, m.target(), false)?;
            match m {
                Mount::Tmpfs { .. } => {
                    fs::create_dir(&target).map_err(Error::io("create", &target))?;
                    fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
                        .map_err(Error::io("chmod", &target))?;
                }
                Mount::Bind { source, read_only, .. } => {
                    let meta = fs::metadata(source).map_err(Error::io("stat", source))?;
                    if meta.file_type().is_socket() {
                        // The proxy's socket itself (its mode and owner as the mount asks), or where the store is
                        // on another file system, one more proxy listening at the target, given the same.
                        if fs::hard_link(source, &target).is_err() {
                            let proxy = crate::sandbox::ssh_proxy::SshProxy::start(&target, source)?;
                            std::os::unix::fs::chown(&target, Some(meta.uid()), Some(meta.gid()))
                                .map_err(Error::io("chown", &target))?;
                            fs::set_permissions(&target, fs::Permissions::from_mode(meta.mode() & 0o7777))
                                .map_err(Error::io("chmod", &target))?;
                            self.proxies.push(proxy);
                        }
                    } else if !read_only && meta.is_dir() {
                        let moved = fs::rename(source, &target).is_ok();
                        if !moved {
                            copy_tree(source, &target)?;
                        }
                        if let Some(p) = self.placed.last_mut() {
                            p.give_back = Some((source.clone(), moved));
                        }
                    } else {
                        copy_tree(source, &target)?;
                    }
                }
                Mount::BindDiscardingWrites { source, .. } => copy_tree(source, &target)?,
            }
        }
        if let Some((target, content)) = script {
            // BuildKit's place for it is /dev/pipes/, in the container's own /dev (a tmpfs, never in a layer).
            let target = self.prepare_target(root, protected, target, true)?;
            fs::write(&target, content).map_err(Error::io("write", &target))?;
            fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(Error::io("chmod", &target))?;
        }
        if !extra_hosts.is_empty() {
            let hosts = root.join("etc/hosts");
            let before = fs::read(&hosts).unwrap_or_default();
            let mut now = before.clone();
            if !now.is_empty() && !now.ends_with(b"\n") {
                now.push(b'\n');
            }
            for (name, addr) in extra_hosts {
                now.extend_from_slice(format!("{addr}\t{name}\n").as_bytes());
            }
            self.hosts = Some((hosts.clone(), before));
            fs::write(&hosts, now).map_err(Error::io("write", &hosts))?;
        }
        Ok(())
    }

    /// Make `target` (an absolute path in the step) free: what is there moved aside, missing directories made.
    /// `in_dev`: a place below /dev is allowed (the heredoc script's).
    fn prepare_target(&mut self, root: &Path, protected: &Protected, target: &str, in_dev: bool) -> Result<PathBuf> {
        let rel = crate::context::clean_path(target);
        let rel = rel.trim_start_matches('/');
        let dev_file = in_dev && rel.starts_with("dev/") && !rel.contains("/../");
        if rel.is_empty() || (!dev_file && (protected.is_kept(rel.as_bytes()) || protected.holds_kept(rel.as_bytes())))
        {
            return Err(Error::BadMount {
                what: format!("mount target {target}"),
                reason: "in container isolation a mount cannot be placed over the container's mounts, /proc, /sys, \
                         /dev or rbuild's own files"
                    .into(),
            });
        }
        let path = root.join(rel);
        let mut made = Vec::new();
        let mut missing = Vec::new();
        let mut up = path.parent();
        while let Some(dir) = up {
            if fs::symlink_metadata(dir).is_ok() {
                self.remember_times(dir);
                break;
            }
            missing.push(dir.to_path_buf());
            up = dir.parent();
        }
        for dir in missing.into_iter().rev() {
            fs::create_dir(&dir).map_err(Error::io("create mount point", &dir))?;
            made.push(dir);
        }
        let aside = if fs::symlink_metadata(&path).is_ok() {
            let aside = path.with_file_name(format!(
                ".rbuild-aside-{}-{}",
                std::process::id(),
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ));
            fs::rename(&path, &aside).map_err(Error::io("move aside", &path))?;
            Some(aside)
        } else {
            None
        };
        self.placed.push(Placed { target: path.clone(), aside, give_back: None, made });
        Ok(path)
    }

    fn remember_times(&mut self, dir: &Path) {
        if self.times.iter().any(|(p, _, _)| p == dir) {
            return;
        }
        if let Ok(m) = fs::symlink_metadata(dir) {
            self.times.push((dir.to_path_buf(), (m.atime(), m.atime_nsec()), (m.mtime(), m.mtime_nsec())));
        }
    }

    /// Take every mount away (the last placed first), giving caches their contents back and putting back what was
    /// moved aside. Every mount is taken away even when one fails; the first failure is returned.
    pub fn take_away(&mut self) -> Result<()> {
        let mut first_error = None;
        self.proxies.clear();
        if let Some((hosts, before)) = self.hosts.take()
            && let Err(e) = fs::write(&hosts, before)
        {
            first_error.get_or_insert(Error::io("restore", &hosts)(e));
        }
        while let Some(p) = self.placed.pop() {
            if let Err(e) = take_away_one(&p) {
                first_error.get_or_insert(e);
            }
        }
        for (dir, atime, mtime) in self.times.drain(..).rev() {
            use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};
            let times = Timestamps {
                last_access: Timespec { tv_sec: atime.0, tv_nsec: atime.1 },
                last_modification: Timespec { tv_sec: mtime.0, tv_nsec: mtime.1 },
            };
            let _ = rustix::fs::utimensat(CWD, &dir, &times, AtFlags::SYMLINK_NOFOLLOW);
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn take_away_one(p: &Placed) -> Result<()> {
    let present = fs::symlink_metadata(&p.target).is_ok();
    match &p.give_back {
        Some((cache, true)) if present => {
            fs::rename(&p.target, cache).map_err(Error::io("give back cache", &p.target))?;
        }
        Some((cache, false)) if present => {
            crate::fsops::remove_path(cache).map_err(Error::io("remove", cache))?;
            copy_tree(&p.target, cache)?;
            crate::fsops::remove_path(&p.target).map_err(Error::io("remove", &p.target))?;
        }
        Some((cache, true)) => {
            // The step removed the cache directory itself: the cache starts empty again.
            fs::create_dir_all(cache).map_err(Error::io("create", cache))?;
        }
        _ => crate::fsops::remove_path(&p.target).map_err(Error::io("remove mount", &p.target))?,
    }
    if let Some(aside) = &p.aside {
        fs::rename(aside, &p.target).map_err(Error::io("put back", aside))?;
    }
    for dir in p.made.iter().rev() {
        // Left when the step put files of its own there.
        let _ = fs::remove_dir(dir);
    }
    Ok(())
}
