//! Where a build context comes from, and making it a directory: a directory (read in place), `-` (a tar of the
//! context, or a bare Dockerfile with an empty context, on standard input), a git repository (`https://…/repo.git
//! #ref:subdir`, `git@host:repo`, `git://…`, `github.com/…`) or an http(s) URL of a tarball (or of a bare
//! Dockerfile). Remote ones come through the engine's [`Fetcher`] port; archives are unpacked by the tar reader
//! here, never outside their directory. A fetched context also says when it last changed (the commit's time, the
//! server's `Last-Modified`, else the archive's newest file), for `SOURCE_DATE_EPOCH=context`. Named contexts
//! (`--build-context NAME=URL`) are fetched here too: a git URL is checked out, an http(s) URL is one file named
//! `context`, as in BuildKit.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::engine::NamedContext;
use crate::engine::ports::Fetcher;
use crate::error::{Error, Result};
use crate::store::Store;

/// What a context argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    Dir(PathBuf),
    /// `-`: a tar or a bare Dockerfile on standard input.
    Stdin,
    Git(String),
    /// An http(s) URL of a tarball or a Dockerfile.
    Tarball(String),
}

impl ContextSource {
    pub fn parse(context: &str) -> ContextSource {
        if context == "-" {
            ContextSource::Stdin
        } else if super::git::is_git_url(context) {
            ContextSource::Git(context.to_string())
        } else if is_http_url(context) {
            ContextSource::Tarball(context.to_string())
        } else {
            ContextSource::Dir(PathBuf::from(context))
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, ContextSource::Git(_) | ContextSource::Tarball(_))
    }
}

/// Whether `s` is an http(s) URL.
pub fn is_http_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

/// A context made a directory.
#[derive(Debug)]
pub struct ResolvedContext {
    /// The directory to build from.
    pub dir: PathBuf,
    /// A directory to remove when this is dropped (a fetched or unpacked context).
    pub temporary: Option<PathBuf>,
    /// For a bare Dockerfile (on standard input or at a URL): its text; the context is then empty.
    pub dockerfile_text: Option<String>,
    /// When a fetched context last changed (seconds since 1970); None for local ones.
    pub modified: Option<i64>,
}

impl Drop for ResolvedContext {
    fn drop(&mut self) {
        if let Some(t) = &self.temporary {
            let _ = crate::fsops::remove_path(t);
        }
    }
}

/// Make `source` a directory. `stdin` is read for [`ContextSource::Stdin`]; `offline` refuses remote sources.
pub fn resolve(
    store: &Store,
    source: &ContextSource,
    stdin: &mut dyn Read,
    fetcher: &dyn Fetcher,
    offline: bool,
) -> Result<ResolvedContext> {
    refuse_offline(source, offline)?;
    match source {
        ContextSource::Dir(dir) => {
            if !dir.is_dir() {
                return Err(Error::BadContext {
                    what: format!("build context {}", dir.display()),
                    reason: "not a directory (nor -, a git URL or an http(s) URL of a tarball)".into(),
                });
            }
            Ok(ResolvedContext { dir: dir.clone(), temporary: None, dockerfile_text: None, modified: None })
        }
        ContextSource::Stdin => {
            let mut resolved = temporary(store, "context")?;
            let file = resolved.dir.with_extension("input");
            let mut out = std::fs::File::create(&file).map_err(Error::io("create", &file))?;
            let copied = std::io::copy(stdin, &mut out).map_err(Error::io("read the build context from", "stdin"));
            drop(out);
            let unpacked = copied.and_then(|_| fill_from_file(&mut resolved, &file));
            let _ = std::fs::remove_file(&file);
            unpacked.map(|_| resolved)
        }
        ContextSource::Git(url) => {
            let mut resolved = temporary(store, "git-context")?;
            let checkout = fetcher.git(url, &resolved.dir, false)?;
            resolved.dir = checkout.root;
            resolved.modified = checkout.commit_time;
            Ok(resolved)
        }
        ContextSource::Tarball(url) => {
            let mut resolved = temporary(store, "url-context")?;
            let file = resolved.dir.with_extension("download");
            let fetched = fetcher.url(url, &file);
            let unpacked = fetched.and_then(|last_modified| {
                resolved.modified = last_modified.map(unix_seconds);
                fill_from_file(&mut resolved, &file)
            });
            let _ = std::fs::remove_file(&file);
            unpacked.map(|_| resolved)
        }
    }
}

/// The context a command-line argument names (`-`, a git URL, an http(s) URL of a tarball or a directory); a
/// tarball that cannot be fetched says which.
pub fn resolve_arg(
    store: &Store,
    context: &str,
    stdin: &mut dyn Read,
    fetcher: &dyn Fetcher,
    offline: bool,
) -> Result<ResolvedContext> {
    let source = ContextSource::parse(context);
    resolve(store, &source, stdin, fetcher, offline).map_err(|e| match source {
        ContextSource::Tarball(_) => {
            Error::BadContext { what: format!("cannot fetch the build context {context}"), reason: e.to_string() }
        }
        _ => e,
    })
}

/// A named context's value (`--build-context NAME=VALUE`, Compose `additional_contexts`) made a request's named
/// context: a git URL checked out or an http(s) URL downloaded as the one file `context` (with the fetched files,
/// to keep until the build ends, and their time for SOURCE_DATE_EPOCH=NAME), else a directory or an image.
pub fn named_context(
    store: &Store,
    value: &str,
    fetcher: &dyn Fetcher,
    offline: bool,
) -> Result<(NamedContext, Option<ResolvedContext>)> {
    if ContextSource::parse(value).is_remote() {
        let fetched = resolve_named_url(store, value, fetcher, offline)?;
        return Ok((NamedContext::Dir(fetched.dir.clone()), Some(fetched)));
    }
    let nc = NamedContext::parse(value);
    if let NamedContext::Dir(d) = &nc
        && !d.is_dir()
    {
        return Err(Error::BadContext {
            what: String::new(),
            reason: "not a directory (nor docker-image://, oci-layout://, a git or http(s) URL)".into(),
        });
    }
    Ok((nc, None))
}

/// A named context given as a URL (`--build-context NAME=URL`, Compose `additional_contexts`): a git repository
/// checked out, or an http(s) URL downloaded as the single file `context` (BuildKit's named-context rule).
pub fn resolve_named_url(store: &Store, url: &str, fetcher: &dyn Fetcher, offline: bool) -> Result<ResolvedContext> {
    let source = ContextSource::parse(url);
    refuse_offline(&source, offline)?;
    match source {
        ContextSource::Git(_) => resolve(store, &source, &mut std::io::empty(), fetcher, offline),
        _ => {
            let mut resolved = temporary(store, "named-context")?;
            let file = resolved.dir.join("context");
            let last_modified = fetcher.url(url, &file)?;
            resolved.modified = match last_modified {
                Some(t) => Some(unix_seconds(t)),
                None => newest_file_time(&file)?,
            };
            Ok(resolved)
        }
    }
}

fn refuse_offline(source: &ContextSource, offline: bool) -> Result<()> {
    match source {
        ContextSource::Git(url) | ContextSource::Tarball(url) if offline => Err(Error::Fetch {
            message: format!(
                "build context {url}: rbuild is offline (--offline or RBUILD_OFFLINE=1) and fetches no URL"
            ),
        }),
        _ => Ok(()),
    }
}

fn temporary(store: &Store, what: &str) -> Result<ResolvedContext> {
    let dir = store.tmp().path(what);
    std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
    Ok(ResolvedContext { dir: dir.clone(), temporary: Some(dir), dockerfile_text: None, modified: None })
}

/// `file` (a download or standard input) into `resolved`: an archive (plain or compressed) is unpacked into its
/// directory, anything else is a bare Dockerfile, as `docker build` reads them.
fn fill_from_file(resolved: &mut ResolvedContext, file: &Path) -> Result<()> {
    if !super::copy::is_archive(file) {
        let bytes = std::fs::read(file).map_err(Error::io("read", file))?;
        resolved.dockerfile_text = Some(crate::dockerfile::decode(&bytes));
        return Ok(());
    }
    if resolved.modified.is_none() {
        resolved.modified = newest_file_time(file)?;
    }
    let mut archive = tar::Archive::new(super::copy::archive_reader(file)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    archive.unpack(&resolved.dir).map_err(|e| Error::Malformed {
        what: "the build context archive".into(),
        reason: format!("cannot be unpacked: {e}"),
    })
}

/// The newest mtime of the regular files in the archive `file` (BuildKit's rule for an archive's time); None when
/// it is no archive or has no regular file.
pub(crate) fn newest_file_time(file: &Path) -> Result<Option<i64>> {
    if !super::copy::is_archive(file) {
        return Ok(None);
    }
    let mut archive = tar::Archive::new(super::copy::archive_reader(file)?);
    let bad =
        |e: std::io::Error| Error::Malformed { what: format!("archive {}", file.display()), reason: e.to_string() };
    let mut newest = None;
    for entry in archive.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        if entry.header().entry_type().is_file() {
            let mtime = entry.header().mtime().map_err(bad)? as i64;
            newest = Some(newest.map_or(mtime, |n: i64| n.max(mtime)));
        }
    }
    Ok(newest)
}

pub(crate) fn unix_seconds(t: std::time::SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_told_apart_like_docker_build() {
        assert_eq!(ContextSource::parse("-"), ContextSource::Stdin);
        assert_eq!(ContextSource::parse("."), ContextSource::Dir(PathBuf::from(".")));
        assert!(matches!(ContextSource::parse("https://h/r.git#main"), ContextSource::Git(_)));
        assert!(matches!(ContextSource::parse("http://h/ctx.tar.gz"), ContextSource::Tarball(_)));
        assert!(ContextSource::parse("git@github.com:a/b").is_remote());
    }

    #[test]
    fn an_archives_time_is_its_newest_regular_file() {
        let dir = std::env::temp_dir().join(format!("rbuild-newest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&file).unwrap());
        for (name, mtime, kind) in [("old", 100, tar::EntryType::Regular), ("d/", 900, tar::EntryType::Directory)] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mtime(mtime);
            h.set_size(0);
            h.set_mode(0o644);
            b.append_data(&mut h, name, std::io::empty()).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_mtime(300);
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "new", &b"new"[..]).unwrap();
        b.into_inner().unwrap();
        assert_eq!(newest_file_time(&file).unwrap(), Some(300), "directories do not count");
        std::fs::write(dir.join("plain"), "FROM scratch\n").unwrap();
        assert_eq!(newest_file_time(&dir.join("plain")).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
