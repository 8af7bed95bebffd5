//! `RUN --mount` (and `rbuild run --mount`) turned into the runtime's mounts: cache directories kept in the
//! store under `mounts/` (shared, private: one directory per concurrent user, or locked: one user at a time),
//! tmpfs, secrets (a 0400 copy bound read-only at `/run/secrets/<id>`, or an environment variable; never in a
//! layer), the SSH agent socket, and bind mounts of host paths (read-only, or with `rw` writable with the
//! writes discarded).

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rbuild_runtime::Mount;

use crate::digest::Digest;
use crate::dockerfile::{CacheSharing, MountType, RunMount};
use crate::error::{Error, Result};
use crate::store::Store;

/// The mounts of one run, with what must live as long as the run: cache locks.
#[derive(Debug, Default)]
pub struct PreparedMounts {
    pub mounts: Vec<Mount>,
    /// `KEY=value` entries to add to the step's environment (secrets with `env=`, `SSH_AUTH_SOCK`).
    pub env: Vec<String>,
    /// Cache-mount locks held until the run ends.
    locks: Vec<File>,
    /// SSH agent sockets forwarding to `--ssh` agents, until the run ends.
    ssh_proxies: Vec<super::ssh_proxy::SshProxy>,
    /// New cache directories and secret copies whose `uid`/`gid` this process could not set (it is not root): the
    /// caller sets them inside the sandbox's user namespace.
    pub owners_to_set: Vec<(PathBuf, u32, u32)>,
}

impl PreparedMounts {
    /// Release the cache locks (also done on drop).
    pub fn release(&mut self) {
        self.locks.clear();
        self.ssh_proxies.clear();
    }
}

fn bad(spec: &str, reason: impl Into<String>) -> Error {
    Error::BadMount { what: format!("mount {spec}"), reason: reason.into() }
}

fn lock_file(path: &Path) -> Result<File> {
    File::options().create(true).truncate(false).write(true).open(path).map_err(Error::io("open", path))
}

/// The name of a cache mount's directory under the store's `mounts/`: from its id (default: its target).
pub fn cache_dir_name(m: &RunMount) -> String {
    let id = m.id.clone().or_else(|| m.target.clone()).unwrap_or_default();
    format!("cache-{}", &Digest::of(id.as_bytes()).hex()[..20])
}

/// A mount's `mode` (octal; `default_mode` without one), `uid` and `gid` on `path`: set now as root, else left
/// in `owners_to_set` for the caller to set inside the user namespace.
fn set_attributes(path: &Path, m: &RunMount, default_mode: u32, out: &mut PreparedMounts) -> Result<()> {
    let mode = m.mode.as_deref().and_then(|v| u32::from_str_radix(v, 8).ok()).unwrap_or(default_mode);
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(Error::io("chmod", path))?;
    let uid = m.uid.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
    let gid = m.gid.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(Error::io("chown", path))?;
    } else if uid != 0 || gid != 0 {
        out.owners_to_set.push((path.to_path_buf(), uid, gid));
    }
    Ok(())
}

/// A cache mount's directory, locked as its sharing mode asks.
fn cache_dir(store: &Store, m: &RunMount, out: &mut PreparedMounts) -> Result<PathBuf> {
    let locks = &mut out.locks;
    let base = cache_dir_name(m);
    let mounts = store.root().join("mounts");
    let dir = match m.sharing.unwrap_or(CacheSharing::Shared) {
        CacheSharing::Shared => mounts.join(&base),
        CacheSharing::Locked => {
            let lock = lock_file(&mounts.join(format!("{base}.lock")))?;
            lock.lock().map_err(Error::io("lock cache mount", &mounts))?;
            locks.push(lock);
            mounts.join(&base)
        }
        CacheSharing::Private => {
            // The first copy nobody else is using.
            let mut n = 0;
            loop {
                let lock = lock_file(&mounts.join(format!("{base}-{n}.lock")))?;
                if lock.try_lock().is_ok() {
                    locks.push(lock);
                    break mounts.join(format!("{base}-{n}"));
                }
                n += 1;
            }
        }
    };
    if !dir.is_dir() {
        fs::create_dir_all(&dir).map_err(Error::io("create cache mount", &dir))?;
        set_attributes(&dir, m, 0o755, out)?;
        // `from=`: the builder resolved the seed's directory.
        if let Some(seed) = &m.seed {
            copy_tree(Path::new(seed), &dir)?;
        }
    }
    // Used now: prune's least-recently-used order sees it.
    let _ = File::open(&dir).and_then(|f| f.set_modified(std::time::SystemTime::now()));
    match m.source.as_deref().map(crate::context::clean_path) {
        Some(sub) if sub != "." && sub != "/" => cache_subdir(&dir, &sub),
        _ => Ok(dir),
    }
}

/// `source=` of a cache mount: a directory inside the cache, made when missing. Followed through symlinks, it must
/// stay inside the cache: a link leading out (`sel -> /etc`) fails the step (BuildKit's testCacheMountSourceEscape)
/// rather than mount the host's files.
fn cache_subdir(cache: &Path, sub: &str) -> Result<PathBuf> {
    let root = fs::canonicalize(cache).map_err(Error::io("resolve", cache))?;
    let escapes = |p: &Path| -> Result<bool> {
        Ok(!fs::canonicalize(p).map_err(Error::io("resolve cache mount source", p))?.starts_with(&root))
    };
    let wanted = root.join(sub.trim_start_matches('/'));
    // The nearest existing part of the path must be inside before anything is created below it.
    let mut existing = wanted.as_path();
    while fs::symlink_metadata(existing).is_err() {
        existing = existing.parent().unwrap_or(&root);
    }
    let refuse = || Error::BadMount {
        what: format!("cache mount source {sub:?}"),
        reason: "it leads outside the cache through a symbolic link".into(),
    };
    if escapes(existing)? {
        return Err(refuse());
    }
    fs::create_dir_all(&wanted).map_err(Error::io("create cache mount source", &wanted))?;
    if escapes(&wanted)? {
        return Err(refuse());
    }
    fs::canonicalize(&wanted).map_err(Error::io("resolve", &wanted))
}

/// Copy the contents of `from` into the directory `to` (files, directories, symlinks; modes kept).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in fs::read_dir(from).map_err(Error::io("read", from))? {
        let entry = entry.map_err(Error::io("read", from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = fs::symlink_metadata(&src).map_err(Error::io("stat", &src))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&src).map_err(Error::io("read link", &src))?;
            std::os::unix::fs::symlink(target, &dst).map_err(Error::io("create link", &dst))?;
        } else if meta.is_dir() {
            fs::create_dir(&dst).map_err(Error::io("create", &dst))?;
            copy_tree(&src, &dst)?;
            fs::set_permissions(&dst, meta.permissions()).map_err(Error::io("chmod", &dst))?;
        } else if meta.is_file() {
            fs::copy(&src, &dst).map_err(Error::io("copy", &src))?;
        }
    }
    Ok(())
}

/// Turn mount specifications into the runtime's mounts; `scratch` is a directory of this run for secret copies.
pub fn prepare(store: &Store, specs: &[RunMount], scratch: &Path) -> Result<PreparedMounts> {
    let mut out = PreparedMounts::default();
    for (i, m) in specs.iter().enumerate() {
        let spec = format!("#{}", i + 1);
        match m.kind {
            MountType::Bind => {
                let target = m.target.clone().ok_or_else(|| bad(&spec, "no target"))?;
                let source =
                    PathBuf::from(m.source.clone().ok_or_else(|| bad(&spec, "a bind mount needs source=PATH"))?);
                let source = fs::canonicalize(&source).map_err(Error::io("bind mount source", &source))?;
                // Read-only by default; with rw the step may write, and its writes are discarded.
                out.mounts.push(match m.read_only {
                    Some(false) => Mount::BindDiscardingWrites { source, target },
                    _ => Mount::Bind { source, target, read_only: true },
                });
            }
            MountType::Cache => {
                let target = m.target.clone().ok_or_else(|| bad(&spec, "no target"))?;
                let source = cache_dir(store, m, &mut out)?;
                out.mounts.push(Mount::Bind { source, target, read_only: m.read_only.unwrap_or(false) });
            }
            MountType::Tmpfs => {
                let target = m.target.clone().ok_or_else(|| bad(&spec, "no target"))?;
                let size = match &m.size {
                    Some(s) => crate::size::parse_size(s).map_err(|e| bad(&spec, e.to_string()))?,
                    None => 0,
                };
                out.mounts.push(Mount::Tmpfs { target, size });
            }
            MountType::Secret => {
                let id =
                    m.id.clone().or_else(|| m.target.as_ref().and_then(|t| t.rsplit('/').next().map(str::to_string)));
                let id = id.ok_or_else(|| bad(&spec, "a secret needs id= or target="))?;
                let source = m.source.clone().map(PathBuf::from);
                let data = match source.as_ref().map(fs::read) {
                    Some(Ok(d)) => d,
                    Some(Err(_)) | None if m.required != Some(true) => continue,
                    Some(Err(e)) => return Err(Error::io("read secret", source.clone().unwrap_or_default())(e)),
                    None => return Err(bad(&spec, format!("secret {id:?} is required but was not provided"))),
                };
                if let Some(var) = &m.env {
                    out.env.push(format!("{var}={}", String::from_utf8_lossy(&data)));
                    if m.target.is_none() {
                        continue;
                    }
                }
                let copy = scratch.join(format!("secret-{i}"));
                fs::create_dir_all(scratch).map_err(Error::io("create", scratch))?;
                fs::write(&copy, &data).map_err(Error::io("write secret", &copy))?;
                // BuildKit's defaults: 0400, root; `mode`, `uid`, `gid` change them.
                set_attributes(&copy, m, 0o400, &mut out)?;
                let target = m.target.clone().unwrap_or_else(|| format!("/run/secrets/{id}"));
                out.mounts.push(Mount::Bind { source: copy, target, read_only: true });
            }
            MountType::Ssh => {
                // The socket comes from the build's `--ssh` (the builder fills `source`); never implicitly.
                let sock = m.source.clone().map(PathBuf::from).filter(|p| p.exists());
                let Some(sock) = sock else {
                    if m.required == Some(true) {
                        return Err(bad(&spec, "an SSH agent is required: pass --ssh default (or ID=SOCKET)"));
                    }
                    continue;
                };
                let target = m.target.clone().unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{i}"));
                out.env.push(format!("SSH_AUTH_SOCK={target}"));
                // A socket of the run's own, with the mount's mode and owner, forwarding to the agent.
                fs::create_dir_all(scratch).map_err(Error::io("create", scratch))?;
                let proxy = super::ssh_proxy::SshProxy::start(&scratch.join(format!("ssh-{i}.sock")), &sock)?;
                set_attributes(proxy.path(), m, 0o600, &mut out)?;
                out.mounts.push(Mount::Bind { source: proxy.path().to_path_buf(), target, read_only: false });
                out.ssh_proxies.push(proxy);
            }
        }
    }
    Ok(out)
}
