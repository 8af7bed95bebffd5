//! What container isolation must never touch, and whether it may run at all. It rewrites the container's own root
//! filesystem, so it refuses to start outside a container (even when asked explicitly), and keeps out of reach
//! (never removed, never replaced, never in a layer): /proc, /sys, /dev, every mount point (and, by extension, the
//! directories leading to one, which are entered but never removed), rbuild's own files (`/rbuild`, the running
//! binary), the store, and the paths the build reads (its context, Dockerfile, secrets).

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Where rbuild lives in its executor image, and the store's default in container isolation.
pub const RBUILD_HOME: &str = "/rbuild";
pub const DEFAULT_STORE: &str = "/rbuild/store";

/// Top-level directories images use: a store below one would be in reach of a step (`rm -rf /tmp/*`).
const IMAGE_PATHS: &[&str] = &[
    "/bin", "/boot", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt", "/opt", "/root", "/run",
    "/sbin", "/srv", "/tmp", "/usr", "/var",
];

/// The container runtime this process runs under, from the marks the issue names (`/.dockerenv`,
/// `/run/.containerenv`, `container=` in pid 1's environment, `KUBERNETES_SERVICE_HOST`), or None on a host.
pub fn container_mark() -> Option<String> {
    if Path::new("/.dockerenv").exists() {
        return Some("docker (/.dockerenv)".into());
    }
    if Path::new("/run/.containerenv").exists() {
        return Some("podman (/run/.containerenv)".into());
    }
    let pid1_env = std::fs::read("/proc/1/environ").unwrap_or_default();
    if let Some(v) = pid1_env.split(|b| *b == 0).find_map(|e| e.strip_prefix(b"container="))
        && !v.is_empty()
    {
        return Some(format!("container={}", String::from_utf8_lossy(v)));
    }
    if std::env::var_os("container").is_some_and(|v| !v.is_empty()) {
        return Some("container= in the environment".into());
    }
    std::env::var_os("KUBERNETES_SERVICE_HOST").map(|_| "kubernetes (KUBERNETES_SERVICE_HOST)".into())
}

/// Container isolation may run here: inside a container, as root. Checked before anything is touched.
pub fn check_may_run() -> Result<String> {
    let Some(mark) = container_mark() else {
        return Err(Error::InvalidSetting {
            name: "--isolation container".into(),
            reason: "rbuild is not inside a container (no /.dockerenv, /run/.containerenv, container= or \
                     KUBERNETES_SERVICE_HOST): container isolation rewrites the root filesystem it runs in, so it \
                     runs only in a disposable container. On a host use --isolation auto (the namespace sandbox)"
                .into(),
        });
    };
    if !rustix::process::geteuid().is_root() {
        return Err(Error::InvalidSetting {
            name: "--isolation container".into(),
            reason: "container isolation runs steps as the container's root (it switches to each step's USER): run \
                     the job as root (the executor image does), or use --isolation auto"
                .into(),
        });
    }
    Ok(mark)
}

/// The store must be out of a step's reach: not below a directory images use.
pub fn check_store(store_root: &Path) -> Result<()> {
    let abs = lexical_absolute(store_root);
    if let Some(dir) = IMAGE_PATHS.iter().find(|d| abs.starts_with(d)) {
        return Err(Error::InvalidSetting {
            name: format!("--root {}", store_root.display()),
            reason: format!(
                "in container isolation steps run in this container's own root, and {dir} is a directory images use \
                 (a step's `rm -rf {dir}/*` would delete the store): put the store under {RBUILD_HOME} (the default, \
                 {DEFAULT_STORE}) or on a volume mounted outside the image's directories (e.g. /cache)"
            ),
        });
    }
    Ok(())
}

/// `path` made absolute against the working directory, `.` and `..` resolved by name.
pub fn lexical_absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")).join(path)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// The paths kept out of reach, relative to the root (no leading `/`), as byte strings for quick prefix tests.
#[derive(Debug, Clone, Default)]
pub struct Protected {
    paths: Vec<Vec<u8>>,
}

impl Protected {
    /// What this container must keep: the kernel's file systems, every mount point, rbuild's own files, the
    /// store, and `keep` (the build's inputs; symlinks resolved too).
    pub fn for_container(store_root: &Path, keep: &[PathBuf]) -> Protected {
        let mut p = Protected::default();
        for fixed in ["/proc", "/sys", "/dev", RBUILD_HOME, "/.dockerenv", "/run/.containerenv"] {
            p.add(Path::new(fixed));
        }
        for m in mount_points() {
            p.add(&m);
        }
        // The executor image's `/busybox -> rbuild/bin` (where CI runners look for a shell) is rbuild's too.
        if std::fs::canonicalize("/busybox").is_ok_and(|t| t.starts_with(RBUILD_HOME)) {
            p.add(Path::new("/busybox"));
        }
        if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
            p.add(&exe);
        }
        p.add(&lexical_absolute(store_root));
        if let Ok(real) = store_root.canonicalize() {
            p.add(&real);
        }
        if let Ok(cwd) = std::env::current_dir() {
            p.add(&cwd);
        }
        for k in keep {
            p.add(&lexical_absolute(k));
            if let Ok(real) = k.canonicalize() {
                p.add(&real);
            }
        }
        p
    }

    /// Keep `abs` (an absolute path; `/` itself is never kept whole).
    pub fn add(&mut self, abs: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let rel = abs.as_os_str().as_bytes().trim_ascii_start();
        let rel: Vec<u8> = rel.strip_prefix(b"/").unwrap_or(rel).to_vec();
        let rel = rel.strip_suffix(b"/").map(<[u8]>::to_vec).unwrap_or(rel);
        if !rel.is_empty() && !self.paths.contains(&rel) {
            self.paths.push(rel);
        }
    }

    /// Keep `rel` (relative to the root, `/`-separated).
    pub fn add_relative(&mut self, rel: &[u8]) {
        if !rel.is_empty() && !self.paths.iter().any(|p| p.as_slice() == rel) {
            self.paths.push(rel.to_vec());
        }
    }

    /// Whether `rel` (relative to the root) is kept, or lies inside something kept.
    pub fn is_kept(&self, rel: &[u8]) -> bool {
        self.paths.iter().any(|p| rel == p.as_slice() || (rel.starts_with(p) && rel.get(p.len()) == Some(&b'/')))
    }

    /// Whether something kept lies strictly below `rel` (`rel` may be entered, never removed or replaced).
    pub fn holds_kept(&self, rel: &[u8]) -> bool {
        self.paths.iter().any(|p| rel.is_empty() || (p.starts_with(rel) && p.get(rel.len()) == Some(&b'/')))
    }
}

/// Every mount point of this process's mount namespace but `/` (mountinfo's fifth field, octal escapes undone).
fn mount_points() -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m != "/")
        .map(|m| PathBuf::from(std::ffi::OsString::from_vec(unescape_octal(m))))
        .collect()
}

/// mountinfo's `\040`-style escapes.
fn unescape_octal(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_paths_and_their_parents_are_told_apart() {
        let mut p = Protected::default();
        p.add(Path::new("/etc/hosts"));
        p.add(Path::new("/rbuild/"));
        assert!(p.is_kept(b"etc/hosts"));
        assert!(p.is_kept(b"rbuild/store/x"));
        assert!(!p.is_kept(b"etc"));
        assert!(!p.is_kept(b"etc/hostsx"));
        assert!(p.holds_kept(b"etc"));
        assert!(p.holds_kept(b""));
        assert!(!p.holds_kept(b"etc/hosts"));
        assert!(!p.holds_kept(b"et"));
    }

    #[test]
    fn a_store_under_a_directory_images_use_is_refused() {
        for bad in ["/tmp/store", "/var/lib/rbuild", "/root/.local/share/rbuild", "/home/u/s"] {
            let e = check_store(Path::new(bad)).unwrap_err().to_string();
            assert!(e.contains("/rbuild/store") && e.contains("rm -rf"), "{bad}: {e}");
        }
        for good in ["/rbuild/store", "/cache/store", "/store"] {
            check_store(Path::new(good)).unwrap();
        }
        assert_eq!(lexical_absolute(Path::new("/rbuild/../tmp/s")), PathBuf::from("/tmp/s"));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_octal(r"/a\040b"), b"/a b");
        assert_eq!(unescape_octal(r"/plain"), b"/plain");
    }
}
