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

/// `URL#REF:SUBDIR`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// What `git fetch` is given (`github.com/x/y` becomes `https://github.com/x/y`).
    pub repo: String,
    /// A branch, tag or commit; empty for the remote's HEAD.
    pub reference: String,
    /// A directory inside the repository; empty for all of it.
    pub subdir: String,
}

/// Whether `s` names a git repository the way docker build recognises one: `git://`, `git@host:`, `ssh://`,
/// `github.com/...`, or an http(s) URL whose path ends in `.git` (before any `#fragment`).
pub fn is_git_url(s: &str) -> bool {
    let base = s.split('#').next().unwrap_or(s);
    s.starts_with("git://")
        || s.starts_with("git@")
        || s.starts_with("ssh://")
        || s.starts_with("github.com/")
        || ((base.starts_with("https://") || base.starts_with("http://")) && base.ends_with(".git"))
}

impl GitSource {
    pub fn parse(url: &str) -> GitSource {
        let (repo, fragment) = url.split_once('#').unwrap_or((url, ""));
        let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
        let repo = if repo.starts_with("github.com/") { format!("https://{repo}") } else { repo.to_string() };
        GitSource { repo, reference: reference.to_string(), subdir: subdir.trim_matches('/').to_string() }
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
            .map_err(|e| fail(format!("cannot fetch {want:?}: {}", e.message)))?;
        git(&["checkout", "-q", "FETCH_HEAD"])?;
        let commit = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["rev-parse", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .ok_or_else(|| fail("cannot read the commit checked out".into()))?;
        git(&["submodule", "update", "-q", "--init", "--recursive", "--depth", "1"])?;
        if keep_git_dir {
            // Like BuildKit: the checkout's branch is named after the ref asked for.
            if !self.reference.is_empty() {
                let _ = git(&["checkout", "-q", "-B", &self.reference]);
            }
        } else {
            let git_dir = dir.join(".git");
            std::fs::remove_dir_all(&git_dir).map_err(|e| fail(format!("cannot remove {}: {e}", git_dir.display())))?;
        }
        if self.subdir.is_empty() {
            return Ok(GitCheckout { root: dir.to_path_buf(), commit });
        }
        let clean = clean_path(&self.subdir);
        if clean.starts_with("..") {
            return Err(fail(format!("the subdirectory {:?} leaves the repository", self.subdir)));
        }
        let sub = dir.join(&clean);
        if !sub.is_dir() {
            return Err(fail(format!("there is no directory {:?} at {want}", self.subdir)));
        }
        Ok(GitCheckout { root: sub, commit })
    }
}

/// A checked-out git source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitCheckout {
    /// The directory whose files are the source's (the subdirectory asked for, if any).
    pub root: PathBuf,
    /// The commit checked out (full hex, SHA-1 or SHA-256 as the repository has them).
    pub commit: String,
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
        let s = GitSource::parse("github.com/a/b#v1:/docs/");
        assert_eq!(
            (s.repo.as_str(), s.reference.as_str(), s.subdir.as_str()),
            ("https://github.com/a/b", "v1", "docs")
        );
    }
}
