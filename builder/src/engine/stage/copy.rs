//! COPY and ADD of local files: from the context, a named directory context, another stage or an image (only the
//! paths named are merged out of its snapshots), and heredocs; `--chown`, `--chmod`, `--exclude`, `--parents`,
//! `--link`; ADD's unpacking of local archives; incremental COPY (files unchanged since the same COPY's previous
//! run are linked from its snapshot). URLs and git sources go to [`super::remote`].

use std::os::unix::ffi::OsStrExt;

use super::sources::describe;
use super::view::CopyFlags;
use super::*;
use crate::context::clean_path;
use crate::context::copy;
use crate::context::copy_reuse::{Incremental, PriorCopy};
use crate::context::git::is_git_url;
use crate::dockerfile::CopySpec;
use crate::layer::{ApplyMode, ApplyOptions, apply_tar, collect_tree_known};
use crate::sandbox::snapshotter::merge_snapshots_for;

/// What wrote the files of a [`Stage::copy_generated`] step, and so what keys them.
#[derive(Debug, Clone, Copy)]
pub(super) enum Generated<'a> {
    Heredoc,
    Url,
    /// A git checkout: keyed by `commit` (the URL and the commit checked out), not by its files.
    Git {
        commit: &'a str,
        keep_git_dir: bool,
    },
}

impl StageBuilder<'_> {
    pub(super) fn copy_step(
        &mut self,
        ins: &Instruction,
        c: &CopySpec,
        is_add: bool,
        from: Option<&Source>,
    ) -> Result<()> {
        let step = self.start(&ins.original);
        let start = Instant::now();
        self.copy_step_inner(ins, c, is_add, from, step, start).map_err(|e| self.step_failed(step, e))
    }

    pub(super) fn copy_step_inner(
        &mut self,
        ins: &Instruction,
        c: &CopySpec,
        is_add: bool,
        from: Option<&Source>,
        step: usize,
        start: Instant,
    ) -> Result<()> {
        let keyword = if is_add { "ADD" } else { "COPY" };
        if is_add && c.inline_sources.is_empty() {
            let expanded: Vec<String> = c.sources.iter().map(|s| self.expand(ins, s)).collect::<Result<_>>()?;
            let remote = |s: &String| is_git_url(s) || s.starts_with("http://") || s.starts_with("https://");
            if expanded.iter().any(remote) {
                if expanded.len() > 1 {
                    return Err(self.fail(ins, "ADD of a URL or git repository takes one source per instruction"));
                }
                if is_git_url(&expanded[0]) {
                    return self.add_git(ins, c, &expanded[0], step, start);
                }
                return self.add_urls(ins, c, &expanded, step, start);
            }
        }
        if is_add && c.checksum.is_some() && c.inline_sources.is_empty() {
            return Err(self.fail(ins, "ADD --checksum: checksum requires HTTP(S) or Git sources"));
        }
        let excludes: Vec<String> = c.excludes.iter().map(|e| self.expand_quiet(ins, e)).collect::<Result<_>>()?;
        let excluded = IgnoreMatcher::from_patterns(&excludes).map_err(|e| self.fail(ins, &e.to_string()))?;
        // --link: the layer does not depend on the stage below it (its cache record neither), and the
        // destination is not looked up in it.
        let parent_key = self.state.cache_key.clone();
        let base_key = if c.link { cache::LINK_BASE.to_string() } else { parent_key.clone() };
        let sources: Vec<String> = c.sources.iter().map(|s| self.expand(ins, s)).collect::<Result<_>>()?;
        if !c.inline_sources.is_empty() {
            return self.copy_inline(ins, c, keyword, step, start);
        }
        let dest = self.expand(ins, &c.dest)?;
        let (dest_key, flags_key) = self.copy_key_parts(ins, c, &dest, false)?;
        let created_by = format!("{keyword} {} {dest} # rbuild", sources.join(" "));
        let modifiers = format!("{flags_key}{excludes:?}{}", if c.parents { " parents" } else { "" });
        // Where the files go and their owner, looked up in the stage's files: only when the step runs.
        let target = |this: &Self| -> Result<(String, CopyFlags)> {
            let (dest_abs, flags) = this.copy_target(ins, c, &dest, false)?;
            let dest_abs = if c.parents && !dest_abs.ends_with('/') { format!("{dest_abs}/") } else { dest_abs };
            Ok((dest_abs, flags))
        };
        // From a stage or an image, the source's key stands for its files (it follows their content), so a
        // cache hit needs no file read. From the context (or a named directory), the selected files' checksum.
        let image_source = match from {
            Some(s @ (Source::Stage(_) | Source::Image(_))) => Some(self.resolve_source_image(s, ins)?),
            Some(s @ Source::NamedContext(n))
                if matches!(self.req.named_contexts.get(n), Some(NamedContext::Image(_))) =>
            {
                Some(self.resolve_source_image(s, ins)?)
            }
            _ => None,
        };
        if let Some(src) = &image_source {
            let key = cache::copy_from_image(&base_key, keyword, &src.cache_key, &sources, &dest_key, &modifiers);
            if !self.reuse_cached(&key, step, &created_by)? {
                let (dest_abs, CopyFlags { owner, chmod }) = target(self)?;
                src.ensure_files(self.store, self.tree_ops)?;
                let dir = self.store.tmp().path("from");
                // With the image's owners (the snapshots hold the executor's host ids): a copy keeps them.
                merge_snapshots_for(&src.snapshots, &sources, &dir, &self.session.worker.id_map)?;
                let outcome = copy::select_excluding(&dir, &IgnoreMatcher::default(), &excluded, &sources)
                    .map(copy::CopySelection::keeping_owners)
                    .map_err(|e| self.fail(ins, &format!("{e} in {}", describe(from))))
                    .and_then(|selection| {
                        self.commit_copy(ins, &selection, &dest_abs, owner, chmod.as_ref(), c.parents, None)
                    });
                let _ = crate::fsops::remove_path(&dir);
                self.finish_step(&key, outcome?, created_by, step, start)?;
            }
            self.chain_linked(c.link, &parent_key);
            return Ok(());
        }
        let (root, _, _) = self.source_root(ins, from)?;
        let ignore = if from.is_none() { self.ignore.clone() } else { IgnoreMatcher::default() };
        let selection = copy::select_excluding(&root, &ignore, &excluded, &sources).map_err(|e| {
            let hint = if from.is_none() && !self.ignore.is_empty() { " (or .dockerignore excludes it)" } else { "" };
            self.fail(ins, &format!("{e} in {}{hint}", describe(from)))
        })?;
        // Context files (the build's own or a named directory's) are hashed incrementally.
        let checksum = selection.checksum_with(&self.session.file_hashes).map_err(|e| {
            let hint = if from.is_none() { " (make it readable, or leave it out with .dockerignore)" } else { "" };
            self.fail(ins, &format!("{e}{hint}"))
        })?;
        // ADD unpacks local tar archives (by content) into the destination directory.
        let archives = if is_add && c.unpack != Some(false) { selection.archives() } else { Vec::new() };
        let key =
            cache::copy_from_context(&base_key, keyword, &checksum, &dest_key, &modifiers, &format!("{archives:?}"));
        if !self.reuse_cached(&key, step, &created_by)? {
            let (dest_abs, CopyFlags { owner, chmod }) = target(self)?;
            let dest_abs =
                if !archives.is_empty() && !dest_abs.ends_with('/') { format!("{dest_abs}/") } else { dest_abs };
            let layer = if archives.is_empty() {
                // The same COPY's previous result (any content) lends its unchanged files.
                let record_name = cache::copy_record(&root.to_string_lossy(), &sources, &dest_abs, &modifiers);
                let record = self.store.root().join("cache/copies").join(record_name);
                self.commit_copy(ins, &selection, &dest_abs, owner, chmod.as_ref(), c.parents, Some(&record))?
            } else {
                self.commit_add_archives(ins, &selection, &archives, &dest_abs, owner, chmod.as_ref())?
            };
            self.finish_step(&key, layer, created_by, step, start)?;
        }
        self.chain_linked(c.link, &parent_key);
        Ok(())
    }

    /// What of a COPY/ADD's destination and `--chown`/`--chmod` goes into its cache key: as written (made absolute
    /// against WORKDIR, variables expanded), since the stage's key already stands for the files they are resolved
    /// in — so a cache hit reads none of the stage's files (which may be remote layers). A `--link` copy's key
    /// does not follow the stage: its owner is resolved (`--chown=app` means the stage's app).
    pub(super) fn copy_key_parts(
        &self,
        ins: &Instruction,
        c: &CopySpec,
        dest: &str,
        into_dir: bool,
    ) -> Result<(String, String)> {
        if c.link {
            let CopyFlags { owner, chmod } = self.copy_flags(ins, c)?;
            return Ok((self.copy_destination(dest, true, into_dir), format!("{owner:?}{chmod:?}")));
        }
        let chown = c.chown.as_ref().map(|o| self.expand(ins, o)).transpose()?;
        let chmod = self.copy_chmod(ins, c)?;
        Ok((
            format!("{}{}", self.in_workdir(dest), if into_dir { " (into)" } else { "" }),
            format!("{chown:?}{chmod:?}"),
        ))
    }

    /// Where a step that runs writes its files and their `--chown`/`--chmod`, looked up in the stage's files
    /// (the counterpart of [`Self::copy_key_parts`]).
    pub(super) fn copy_target(
        &self,
        ins: &Instruction,
        c: &CopySpec,
        dest: &str,
        into_dir: bool,
    ) -> Result<(String, CopyFlags)> {
        Ok((self.copy_destination(dest, c.link, into_dir), self.copy_flags(ins, c)?))
    }

    /// Where a COPY/ADD writes: `dest` made absolute against WORKDIR, with the stage's symlinks on its way
    /// resolved (not with `--link`, which does not look at the stage). A destination ending in `/` or `/.`,
    /// naming a directory the stage has (through links too), or `into_dir`, receives the sources inside (it ends
    /// in `/`).
    pub(super) fn copy_destination(&self, dest: &str, link: bool, into_dir: bool) -> String {
        let abs = self.in_workdir(dest);
        let named_dir = into_dir || dest.ends_with('/') || dest == "." || dest.ends_with("/.");
        if link {
            return if named_dir && !abs.ends_with('/') { format!("{abs}/") } else { abs };
        }
        let full = self.resolve_in_stage(&abs, true);
        if named_dir || self.path_meta(full.trim_start_matches('/')).is_some_and(|m| m.is_dir()) {
            return format!("{}/", full.trim_end_matches('/'));
        }
        self.resolve_in_stage(&abs, false)
    }

    /// After a `--link` copy, whose record does not depend on the stage below, the stage's key still chains:
    /// what follows depends on both.
    pub(super) fn chain_linked(&mut self, link: bool, parent_key: &str) {
        if link {
            self.state.cache_key = cache::after_link(parent_key, &self.state.cache_key);
        }
    }

    /// COPY/ADD of heredocs: each becomes a file named by its delimiter (variables expanded unless the delimiter
    /// was quoted), copied like context files (mode 0644, owner root unless --chown).
    pub(super) fn copy_inline(
        &mut self,
        ins: &Instruction,
        c: &CopySpec,
        keyword: &str,
        step: usize,
        start: Instant,
    ) -> Result<()> {
        let dir = self.store.tmp().path("heredocs");
        fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let outcome = (|| -> Result<()> {
            let mut names = Vec::new();
            for src in &c.inline_sources {
                let data = if src.expand { self.expand_text(ins, &src.data)? } else { src.data.clone() };
                let file = dir.join(src.path.replace('/', "_"));
                fs::write(&file, data).map_err(Error::io("write", &file))?;
                fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                    .map_err(Error::io("chmod", &file))?;
                names.push(src.path.replace('/', "_"));
            }
            let shown: Vec<String> = names.iter().map(|n| format!("<<{n}")).collect();
            self.copy_generated(ins, c, keyword, Generated::Heredoc, &dir, &names, &shown, step, start)
        })();
        let _ = crate::fsops::remove_path(&dir);
        outcome
    }

    /// The shared end of ADD URLs and COPY/ADD heredocs: files rbuild wrote into `dir` (named `names`) are copied to
    /// the destination like context files (several, or a destination ending in `/` or `.`, make it a directory),
    /// with --chown/--chmod, keyed by their checksum — a git checkout by its commit instead: its `.git` holds the
    /// fetch's own files and times, and the commit says what the files are (BuildKit keys git sources so).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_generated(
        &mut self,
        ins: &Instruction,
        c: &CopySpec,
        keyword: &str,
        kind: Generated<'_>,
        dir: &Path,
        names: &[String],
        shown_sources: &[String],
        step: usize,
        start: Instant,
    ) -> Result<()> {
        let dest = self.expand(ins, &c.dest)?;
        let (dest_key, modifiers) = self.copy_key_parts(ins, c, &dest, names.len() > 1)?;
        let selection = copy::select(dir, &IgnoreMatcher::default(), names)?;
        let (kind, checksum) = match kind {
            Generated::Heredoc => ("heredoc", selection.checksum()?),
            Generated::Url => ("url", selection.checksum()?),
            Generated::Git { commit, keep_git_dir } => ("git", format!("{commit} {keep_git_dir}")),
        };
        let created_by = format!("{keyword} {} {dest} # rbuild", shown_sources.join(" "));
        let key = cache::generated(&self.state.cache_key, keyword, kind, &checksum, &dest_key, &modifiers);
        if self.reuse_cached(&key, step, &created_by)? {
            return Ok(());
        }
        let (dest_abs, CopyFlags { owner, chmod }) = self.copy_target(ins, c, &dest, names.len() > 1)?;
        let layer = self.commit_copy(ins, &selection, &dest_abs, owner, chmod.as_ref(), false, None)?;
        self.finish_step(&key, layer, created_by, step, start)
    }

    /// ADD with archives: the other sources are copied, each archive is unpacked (safely: nothing may land
    /// outside the destination) into the destination directory.
    pub(super) fn commit_add_archives(
        &self,
        ins: &Instruction,
        selection: &copy::CopySelection,
        archives: &[PathBuf],
        dest_abs: &str,
        owner: Option<(u32, u32)>,
        chmod: Option<&copy::ModeSpec>,
    ) -> Result<Option<(LayerRef, Digest, PathBuf)>> {
        let layer_dir = self.store.tmp().path("add");
        fs::create_dir_all(&layer_dir).map_err(Error::io("create", &layer_dir))?;
        let outcome = (|| -> Result<copy::Copied> {
            let rest = selection.without(archives);
            let mut copied = copy::Copied::default();
            if !rest.is_empty() {
                copied = rest
                    .copy_into(&layer_dir, dest_abs, owner, chmod, None)
                    .map_err(|e| self.fail(ins, &e.to_string()))?;
            }
            // What the archives unpack may replace copied files: the layer reads them all from the disk.
            copied.known = crate::layer::KnownFiles::new();
            let dest = layer_dir.join(clean_path(dest_abs.trim_start_matches('/')));
            copied.modes.extend(copy::make_dest_dirs(&layer_dir, &dest, owner, chmod)?);
            for a in archives {
                // --chown gives every unpacked entry its owner (testDockerfileAddChownArchive).
                let opts = ApplyOptions { owner, ..ApplyOptions::new(ApplyMode::Merge, a.display().to_string()) };
                let report = apply_tar(copy::archive_reader(a)?, &dest, &opts)
                    .map_err(|e| self.fail(ins, &format!("cannot unpack {}: {e}", a.display())))?;
                // Rootless, links keep their owners in the layer's entries.
                copied.modes.extend(report.link_owners.into_iter().map(|(p, u, g)| (p, copy::EntryAttr::Owner(u, g))));
            }
            Ok(copied)
        })();
        match outcome {
            Ok(copied) => self.commit_copied(&layer_dir, dest_abs, &copied),
            Err(e) => {
                let _ = crate::fsops::remove_path(&layer_dir);
                Err(e)
            }
        }
    }

    /// Commit a directory a COPY/ADD filled for `dest_abs`. The destination's parents that the stage already has
    /// keep their attributes; what the copy itself brings keeps its own; `copied.modes` are the entries' modes the
    /// files on disk could not have (the layer's snapshot is then unpacked from it).
    pub(super) fn commit_copied(
        &self,
        layer_dir: &Path,
        dest_abs: &str,
        copied: &copy::Copied,
    ) -> Result<Option<(LayerRef, Digest, PathBuf)>> {
        let modes = &copied.modes;
        let mut entries = collect_tree_known(layer_dir, &copied.known)?;
        for e in entries.iter_mut() {
            let path = layer_dir.join(std::ffi::OsStr::from_bytes(&e.path));
            for (_, fix) in modes.iter().filter(|(p, _)| *p == path) {
                match *fix {
                    copy::EntryAttr::Mode(mode) => e.mode = mode,
                    copy::EntryAttr::Owner(uid, gid) => (e.uid, e.gid) = (uid, gid),
                    copy::EntryAttr::Recorded => {}
                }
            }
        }
        let dest_rel = dest_abs.trim_matches('/');
        // The destination directory too, when the copy goes into it (`/dir/`): an existing one is left as it is.
        let into_dir = dest_abs.ends_with('/');
        let origin = self.keep_existing_dirs(layer_dir, &mut entries, None, &|p| {
            dest_rel.starts_with(&format!("{p}/")) || (into_dir && p == dest_rel)
        });
        let origin = if modes.is_empty() { origin } else { LayerDir::Adjusted };
        self.commit_dir_with(layer_dir, entries, origin, &copied.known)
    }

    /// Copy a selection into a new layer directory and commit it. With `record` (a COPY from a context), the files
    /// this COPY made in its previous run are linked where unchanged, and this run's are recorded for the next.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn commit_copy(
        &self,
        ins: &Instruction,
        selection: &copy::CopySelection,
        dest_abs: &str,
        owner: Option<(u32, u32)>,
        chmod: Option<&copy::ModeSpec>,
        parents: bool,
        record: Option<&Path>,
    ) -> Result<Option<(LayerRef, Digest, PathBuf)>> {
        let layer_dir = self.store.tmp().path("copy");
        fs::create_dir_all(&layer_dir).map_err(Error::io("create", &layer_dir))?;
        let snapshot_of = |diff_id: &str| {
            let snap = self.store.snapshot_path(&Digest::parse(diff_id).ok()?);
            snap.is_dir().then_some(snap)
        };
        let reuse = record.map(|r| Incremental::new(&layer_dir, PriorCopy::load(r, &snapshot_of)));
        let copied = if parents {
            selection.copy_into_with_parents(&layer_dir, dest_abs, owner, chmod, reuse.as_ref())
        } else {
            selection.copy_into(&layer_dir, dest_abs, owner, chmod, reuse.as_ref())
        };
        let copied = match copied {
            Ok(copied) => copied,
            Err(e) => {
                let _ = crate::fsops::remove_path(&layer_dir);
                return Err(self.fail(ins, &e.to_string()));
            }
        };
        let layer = self.commit_copied(&layer_dir, dest_abs, &copied)?;
        if let (Some(reuse), Some(record), Some((_, diff_id, _))) = (&reuse, record, &layer) {
            self.session.files_linked.fetch_add(reuse.linked(), Ordering::Relaxed);
            // Only a hint for the next run: one that cannot be written costs that run copies, not this build.
            let _ = reuse.save(record, diff_id.as_str());
        }
        Ok(layer)
    }
}
