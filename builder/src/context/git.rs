//! Git sources — build contexts and `ADD <git URL>`: recognising a git URL the way docker build does, and checking
//! out `URL#REF:SUBDIR` into a directory with the `git` binary (shallow where the server allows).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::context::clean_path;

/// Why a git source could not be checked out.
#[derive(Debug, thiserror::Error)]
#[error("git repository {repo}: {message}")]
pub struct GitError {
    pub repo: String,
    pub message: String,
}

/// `URL#REF:SUBDIR` or `URL?ref=|branch=|tag=|commit=|subdir=` (BuildKit's query form), split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// What `git fetch` is given (`github.com/x/y` becomes `https://github.com/x/y`).
    pub repo: String,
    /// A branch, tag or commit (`refs/heads/B` for `?branch=B`, `refs/tags/T` for `?tag=T`); empty for HEAD.
    pub reference: String,
    /// A directory inside the repository; empty for all of it.
    pub subdir: String,
    /// `?commit=`: the commit (or a prefix of it) the checked-out ref must be.
    pub commit: Option<String>,
    /// A URL whose parts contradict each other (`?tag=a#refs/heads/b`): the checkout fails with this.
    pub invalid: Option<String>,
}

/// Whether `s` names a git repository the way docker build recognises one: `git://`, `git@host:`, `ssh://`,
/// `github.com/...`, or an http(s) URL whose path ends in `.git` (before any `#fragment`).
pub fn is_git_url(s: &str) -> bool {
    let base = s.split('#').next().unwrap_or(s);
    let base = base.split('?').next().unwrap_or(base);
    s.starts_with("git://")
        || s.starts_with("git@")
        || s.starts_with("ssh://")
        || s.starts_with("github.com/")
        || ((base.starts_with("https://") || base.starts_with("http://")) && base.ends_with(".git"))
}

impl GitSource {
    pub fn parse(url: &str) -> GitSource {
        let (base, fragment) = url.split_once('#').unwrap_or((url, ""));
        let (frag_ref, frag_subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
        let (repo, query) = base.split_once('?').unwrap_or((base, ""));
        let repo = if repo.starts_with("github.com/") { format!("https://{repo}") } else { repo.to_string() };
        let mut out = GitSource {
            repo,
            reference: frag_ref.to_string(),
            subdir: frag_subdir.trim_matches('/').to_string(),
            commit: None,
            invalid: None,
        };
        let mut query_ref: Option<String> = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let wanted = match key {
                "ref" => value.to_string(),
                "branch" => format!("refs/heads/{value}"),
                "tag" => format!("refs/tags/{value}"),
                "commit" => {
                    out.commit = Some(value.to_string());
                    continue;
                }
                "subdir" => {
                    let sub = value.trim_matches('/').to_string();
                    if !out.subdir.is_empty() && out.subdir != sub {
                        out.invalid = Some(format!("subdir conflicts: {sub:?} and {:?}", out.subdir));
                    }
                    out.subdir = sub;
                    continue;
                }
                "keep-git-dir" | "submodules" => continue,
                other => {
                    out.invalid = Some(format!("unknown query parameter {other:?} (ref, branch, tag, commit, subdir)"));
                    continue;
                }
            };
            if query_ref.as_ref().is_some_and(|r| *r != wanted) {
                out.invalid =
                    Some(format!("ref conflicts: {wanted:?} and {:?}", query_ref.clone().unwrap_or_default()));
                break;
            }
            query_ref = Some(wanted);
        }
        if let Some(q) = query_ref {
            // A fragment ref may name the same ref in full (`?tag=v1#refs/tags/v1`) or short; anything else conflicts.
            let short = q.trim_start_matches("refs/heads/").trim_start_matches("refs/tags/");
            if !frag_ref.is_empty() && frag_ref != q && frag_ref != short {
                out.invalid = Some(format!("ref conflicts: {q:?} and {frag_ref:?}"));
            }
            out.reference = q;
        }
        // `?commit=` alone names a full commit to fetch; a prefix only checks the remote's HEAD.
        if out.reference.is_empty()
            && let Some(c) = &out.commit
            && (c.len() == 40 || c.len() == 64)
        {
            out.reference = c.clone();
        }
        out
    }

    /// Whether the remote repository's objects are named by sha256 (`git ls-remote` lists 64-hex ids); false when
    /// it cannot be asked (the fetch then says why).
    fn remote_uses_sha256(&self) -> bool {
        Command::new("git")
            .args(["ls-remote", &self.repo])
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .is_some_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .any(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            })
    }

    /// Check the source out into the empty directory `dir` (submodules too); `.git` is removed unless
    /// `keep_git_dir`. Returns the directory to use: `dir` or its SUBDIR.
    pub fn checkout(&self, dir: &Path, keep_git_dir: bool) -> Result<GitCheckout, GitError> {
        let fail = |message: String| GitError { repo: self.repo.clone(), message };
        if let Some(why) = &self.invalid {
            return Err(fail(why.clone()));
        }
        let git = |args: &[&str]| -> Result<(), GitError> {
            let out = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .env("GIT_TERMINAL_PROMPT", "0")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .map_err(|e| fail(format!("cannot run git ({e}); install git to use git sources")))?;
            if !out.status.success() {
                return Err(fail(format!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
            }
            Ok(())
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        // A sha256 repository needs a sha256 clone (git's fetch does not convert): its refs name 64-hex objects.
        if self.remote_uses_sha256() {
            git(&["init", "-q", "--object-format=sha256"])?;
        } else {
            git(&["init", "-q"])?;
        }
        git(&["remote", "add", "origin", &self.repo])?;
        let want = if self.reference.is_empty() { "HEAD" } else { &self.reference };
        // Shallow when the server can (dumb HTTP cannot), else the whole history of that ref.
        git(&["fetch", "-q", "--depth", "1", "origin", want])
            .or_else(|_| git(&["fetch", "-q", "origin", want]))
            .map_err(|e| fail(format!("repository does not contain ref {want:?} (git fetch: {})", e.message)))?;
        git(&["checkout", "-q", "FETCH_HEAD"])?;
        let head = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["show", "-s", "--format=%H %ct", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .ok_or_else(|| fail("cannot read the commit checked out".into()))?;
        let (commit, commit_time) = match head.split_once(' ') {
            Some((c, t)) => (c.to_string(), t.parse().ok()),
            None => (head, None),
        };
        if let Some(want) = self.commit.as_ref().filter(|w| !commit.starts_with(w.as_str())) {
            return Err(fail(format!("expected checksum to match {want}, got {commit}")));
        }
        git(&["submodule", "update", "-q", "--init", "--recursive", "--depth", "1"])?;
        if keep_git_dir {
            // Like BuildKit: the checkout's branch is named after the ref asked for.
            if !self.reference.is_empty() {
                let branch = self.reference.trim_start_matches("refs/heads/").trim_start_matches("refs/tags/");
                let _ = git(&["checkout", "-q", "-B", branch]);
            }
        } else {
            let git_dir = dir.join(".git");
            std::fs::remove_dir_all(&git_dir).map_err(|e| fail(format!("cannot remove {}: {e}", git_dir.display())))?;
        }
        if self.subdir.is_empty() {
            return Ok(GitCheckout { root: dir.to_path_buf(), commit, commit_time });
        }
        let clean = clean_path(&self.subdir);
        if clean.starts_with("..") {
            return Err(fail(format!("the subdirectory {:?} leaves the repository", self.subdir)));
        }
        let sub = dir.join(&clean);
        if !sub.is_dir() {
            return Err(fail(format!("there is no directory {:?} at {want}", self.subdir)));
        }
        Ok(GitCheckout { root: sub, commit, commit_time })
    }
}

/// A checked-out git source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitCheckout {
    /// The directory whose files are the source's (the subdirectory asked for, if any).
    pub root: PathBuf,
    /// The commit checked out (full hex, SHA-1 or SHA-256 as the repository has them).
    pub commit: String,
    /// The commit's committer time (seconds since 1970), for `SOURCE_DATE_EPOCH=context`.
    pub commit_time: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_are_recognised_like_docker_build() {
        for yes in ["git://h/r", "git@github.com:a/b", "https://h/r.git", "https://h/r.git#main:sub", "github.com/a/b"]
        {
            assert!(is_git_url(yes), "{yes}");
        }
        for no in ["https://h/file.txt", "http://h/r.git.txt", "./r.git", "r.git"] {
            assert!(!is_git_url(no), "{no}");
        }
        for yes in ["https://h/r.git?ref=main", "https://h/r.git?tag=v1&subdir=docs"] {
            assert!(is_git_url(yes), "{yes}");
        }
        let q = GitSource::parse("https://h/r.git?tag=v1&commit=abc123&subdir=/docs/");
        assert_eq!(
            (q.repo.as_str(), q.reference.as_str(), q.subdir.as_str()),
            ("https://h/r.git", "refs/tags/v1", "docs")
        );
        assert_eq!((q.commit.as_deref(), q.invalid.as_deref()), (Some("abc123"), None));
        assert_eq!(GitSource::parse("https://h/r.git?branch=b").reference, "refs/heads/b");
        assert_eq!(GitSource::parse("https://h/r.git?tag=v1#refs/tags/v1").invalid, None);
        assert!(
            GitSource::parse("https://h/r.git?tag=v1#refs/heads/master").invalid.unwrap().contains("ref conflicts")
        );
        let full = "0123456789012345678901234567890123456789";
        assert_eq!(GitSource::parse(&format!("https://h/r.git?commit={full}")).reference, full);
        assert_eq!(GitSource::parse("https://h/r.git?commit=0123abcd").reference, "");
        let s = GitSource::parse("github.com/a/b#v1:/docs/");
        assert_eq!(
            (s.repo.as_str(), s.reference.as_str(), s.subdir.as_str()),
            ("https://github.com/a/b", "v1", "docs")
        );
    }
}
