//! Where a build's context comes from: a directory (read in place), `-` (a tar of the context, or a bare
//! Dockerfile with an empty context, on standard input), a git repository (`https://…/repo.git#ref:subdir`,
//! `git@host:repo`, `git://…`, `github.com/…`; fetched with the `git` binary), or an http(s) URL of a tarball
//! (fetched with `curl`). Fetched contexts are unpacked into the store's tmp area and removed after the build.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use rbuild_builder::store::Store;

/// A resolved context: the directory to build from, and a Dockerfile found in the input itself (stdin).
#[derive(Debug)]
pub struct ResolvedContext {
    pub dir: PathBuf,
    /// A directory to remove after the build (a fetched or unpacked context).
    pub temporary: Option<PathBuf>,
    /// For `-` with a bare Dockerfile: its text.
    pub dockerfile_text: Option<String>,
}

impl Drop for ResolvedContext {
    fn drop(&mut self) {
        if let Some(t) = &self.temporary {
            let _ = rbuild_builder::store::remove_path(t);
        }
    }
}

pub use rbuild_builder::context::git::is_git_url;

/// The context `context` names: `-`, a git URL, an http(s) tarball URL or a directory. `offline`: URLs are refused,
/// as ADD of the same URL is (no network at all).
pub fn resolve(store: &Store, context: &str, offline: bool) -> anyhow::Result<ResolvedContext> {
    let remote = is_git_url(context) || context.starts_with("https://") || context.starts_with("http://");
    if offline && remote {
        bail!("build context {context}: rbuild is offline (--offline or RBUILD_OFFLINE=1) and fetches no URL");
    }
    if context == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).context("cannot read the build context from standard input")?;
        return from_stdin(store, bytes);
    }
    if is_git_url(context) {
        return from_git(store, context);
    }
    if context.starts_with("https://") || context.starts_with("http://") {
        return from_tarball_url(store, context);
    }
    let dir = PathBuf::from(context);
    if !dir.is_dir() {
        bail!("build context {context:?} is not a directory (nor -, a git URL or an http(s) URL of a tarball)");
    }
    Ok(ResolvedContext { dir, temporary: None, dockerfile_text: None })
}

fn temporary_dir(store: &Store, what: &str) -> anyhow::Result<PathBuf> {
    let dir = store.tmp().path(what);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// A tar (plain, gzip, bzip2 or xz — detected by content) or else a bare Dockerfile.
fn from_stdin(store: &Store, bytes: Vec<u8>) -> anyhow::Result<ResolvedContext> {
    if !looks_like_archive(&bytes) {
        let dir = temporary_dir(store, "context")?;
        let text = rbuild_builder::dockerfile::decode(&bytes);
        return Ok(ResolvedContext { dir: dir.clone(), temporary: Some(dir), dockerfile_text: Some(text) });
    }
    let dir = temporary_dir(store, "context")?;
    let resolved = ResolvedContext { dir: dir.clone(), temporary: Some(dir.clone()), dockerfile_text: None };
    unpack_archive(&bytes, &dir)?;
    Ok(resolved)
}

fn looks_like_archive(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
        || b.starts_with(b"BZh")
        || b.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (b.len() >= 262 && &b[257..262] == b"ustar")
}

/// Unpack a context archive with the system `tar` (it knows every compression), never outside `dir`.
fn unpack_archive(bytes: &[u8], dir: &Path) -> anyhow::Result<()> {
    let compression = if bytes.starts_with(&[0x1f, 0x8b]) {
        "-z"
    } else if bytes.starts_with(b"BZh") {
        "-j"
    } else if bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        "-J"
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "--zstd"
    } else {
        "--no-auto-compress"
    };
    let mut child = Command::new("tar")
        .args(["-x", compression, "--no-same-owner", "--no-same-permissions", "-C"])
        .arg(dir)
        .arg("-f")
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run tar to unpack the context")?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(bytes).context("cannot feed the context archive to tar")?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("the context archive could not be unpacked: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// `URL#REF:SUBDIR`: fetch REF (a branch, tag or commit; default HEAD) shallowly, then use SUBDIR.
fn from_git(store: &Store, url: &str) -> anyhow::Result<ResolvedContext> {
    let dir = temporary_dir(store, "git-context")?;
    let mut resolved = ResolvedContext { dir: dir.clone(), temporary: Some(dir.clone()), dockerfile_text: None };
    resolved.dir = rbuild_builder::context::git::GitSource::parse(url).checkout(&dir, false)?.root;
    Ok(resolved)
}

fn from_tarball_url(store: &Store, url: &str) -> anyhow::Result<ResolvedContext> {
    let out = Command::new("curl")
        .args(["-fsSL", "--proto", "=http,https", "--max-redirs", "5", url])
        .output()
        .context("cannot run curl to fetch the context (install curl)")?;
    if !out.status.success() {
        bail!("cannot fetch the build context {url}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    // Like docker build: a URL of a plain text file is a Dockerfile with an empty context.
    from_stdin(store, out.stdout)
}
