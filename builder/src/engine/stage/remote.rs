//! ADD of remote sources through the worker's fetcher: http(s) URLs (downloaded every build, as BuildKit checks
//! them; keyed by the downloaded content) and git repositories (checked out every build; keyed by the files).

use super::copy::Generated;
use super::view::CopyFlags;
use super::*;
use crate::context::copy;
use crate::dockerfile::CopySpec;

impl StageBuilder<'_> {
    /// ADD of http(s) URLs: each is downloaded (always, as BuildKit checks them every build) into a file named by
    /// the URL's last path segment, never unpacked; `--checksum=sha256:...` must match; the file's mtime is the
    /// `Last-Modified` time. The layer is keyed by the downloaded content.
    pub(super) fn add_urls(
        &mut self,
        ins: &Instruction,
        c: &CopySpec,
        urls: &[String],
        step: usize,
        start: Instant,
    ) -> Result<()> {
        let dir = self.store.tmp().path("add-url");
        fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let outcome = (|| -> Result<()> {
            let mut names = Vec::new();
            for url in urls {
                // The URL path's last name; BuildKit's `__unnamed__` when it has none (`http://host/`).
                let name =
                    url.split(['?', '#']).next().unwrap_or(url).trim_end_matches('/').rsplit('/').next().unwrap_or("");
                let name =
                    if name.is_empty() || name.contains(':') { "__unnamed__".to_string() } else { name.to_string() };
                let file = dir.join(&name);
                let modified = self.session.worker.fetcher.url(url, &file).map_err(|e| match e {
                    Error::Fetch { message } => self.step_error(ins, StepError::Fetch(message)),
                    // The fetcher's errors name the URL ("cannot download URL: ...", "URL answered HTTP 404").
                    e => self.fail(ins, &e.to_string()),
                })?;
                if let Some(want) = &c.checksum {
                    let want = self.expand(ins, want)?;
                    if !want.contains(':') {
                        return Err(self
                            .fail(ins, &format!("invalid checksum digest format {want:?}: a URL takes sha256:<hex>")));
                    }
                    let got = Digest::of(&fs::read(&file).map_err(Error::io("read", &file))?);
                    if got.as_str() != want {
                        return Err(self.fail(ins, &format!("{url}: checksum {got} does not match --checksum={want}")));
                    }
                }
                fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .map_err(Error::io("chmod", &file))?;
                if let Some(t) = modified {
                    let _ = fs::File::options().write(true).open(&file).and_then(|f| f.set_modified(t));
                }
                names.push(name);
            }
            if c.unpack == Some(true) {
                return self.add_downloaded_archives(ins, c, &dir, &names, urls, step, start);
            }
            self.copy_generated(ins, c, "ADD", Generated::Url, &dir, &names, urls, step, start)
        })();
        let _ = crate::fsops::remove_path(&dir);
        outcome
    }

    /// `ADD --unpack=true URL`: downloaded archives are unpacked into the destination (a directory), like local
    /// ones; other downloads are copied.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_downloaded_archives(
        &mut self,
        ins: &Instruction,
        c: &CopySpec,
        dir: &Path,
        names: &[String],
        urls: &[String],
        step: usize,
        start: Instant,
    ) -> Result<()> {
        let dest = self.expand(ins, &c.dest)?;
        let (dest_key, modifiers) = self.copy_key_parts(ins, c, &dest, true)?;
        let selection = copy::select(dir, &IgnoreMatcher::default(), names)?;
        let archives = selection.archives();
        let created_by = format!("ADD --unpack=true {} {dest} # rbuild", urls.join(" "));
        let key =
            cache::generated(&self.state.cache_key, "ADD", "url-unpack", &selection.checksum()?, &dest_key, &modifiers);
        if self.reuse_cached(&key, step, &created_by)? {
            return Ok(());
        }
        let (dest_abs, CopyFlags { owner, chmod }) = self.copy_target(ins, c, &dest, true)?;
        let layer = self.commit_add_archives(ins, &selection, &archives, &dest_abs, owner, chmod.as_ref())?;
        self.finish_step(&key, layer, created_by, step, start)
    }

    /// ADD of a git repository (`URL#REF:SUBDIR`): checked out every build with the `git` binary (as BuildKit
    /// resolves the ref every build), its files copied like a context directory's contents; `.git` only with
    /// `--keep-git-dir=true`. The layer is keyed by the checked-out content.
    pub(super) fn add_git(
        &mut self,
        ins: &Instruction,
        c: &CopySpec,
        url: &str,
        step: usize,
        start: Instant,
    ) -> Result<()> {
        let dir = self.store.tmp().path("add-git");
        let outcome = (|| -> Result<()> {
            let checkout = self
                .session
                .worker
                .fetcher
                .git(url, &dir, c.keep_git_dir)
                .map_err(|e| self.fail(ins, &e.to_string()))?;
            // --checksum pins the commit (BuildKit's testAddGit): the ref must resolve to it.
            if let Some(want) = &c.checksum {
                let want = self.expand(ins, want)?;
                if !checkout.commit.eq_ignore_ascii_case(&want) {
                    return Err(
                        self.fail(ins, &format!("{url}: expected checksum to match {want}, got {}", checkout.commit))
                    );
                }
            }
            let shown = [if c.keep_git_dir { format!("--keep-git-dir=true {url}") } else { url.to_string() }];
            // The URL (with its subdirectory) and the commit say what the files are.
            let kind = Generated::Git { commit: &format!("{url} {}", checkout.commit), keep_git_dir: c.keep_git_dir };
            self.copy_generated(ins, c, "ADD", kind, &checkout.root, &[".".to_string()], &shown, step, start)
        })();
        let _ = crate::fsops::remove_path(&dir);
        outcome
    }
}
