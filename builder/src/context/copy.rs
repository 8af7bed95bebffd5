//! COPY from a build context: resolving sources (relative to the context, never leaving it; `*`, `?` and `[...]`
//! within a path segment; `.dockerignore`d files invisible), copying them under a layer directory at their
//! destination with Docker's rules (a directory's contents, not the directory; a trailing `/` or several sources
//! make the destination a directory), and a checksum of exactly what was selected (for cache keys: path, type,
//! mode, link target, content; not mtimes or owners on disk).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use super::FileHashes;
use super::copy_reuse::{FreshFile, Incremental};
use super::file_hashes::KeptFile;
use super::ignore::{IgnoreMatcher, clean_path};
use crate::error::{Error, Result};
use crate::glob::ShellPattern;
use crate::layer::{KnownFile, KnownFiles};

/// One selected source: its path in the context and the relative path it gets under the destination.
#[derive(Debug, Clone)]
struct Selected {
    abs: PathBuf,
    /// Path relative to the context (for ignore checks and the checksum).
    rel: String,
    /// What `--exclude` patterns are relative to: the source directory itself, or a file source's directory.
    base: String,
    /// For `--parents`: the part of `rel` below the pattern's `/./` pivot (all of `rel` without one).
    keep: String,
}

pub(crate) fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `rel` under `root` with every symlink on the way followed as if `root` were `/`: absolute targets and `..`
/// never leave it, as BuildKit resolves COPY sources. `None` when something on the way is missing or links loop.
pub(crate) fn resolve_scoped(root: &Path, rel: &str) -> Option<PathBuf> {
    use std::ffi::OsString;
    use std::path::Component;
    let mut pending: Vec<OsString> = Path::new(rel).components().rev().map(|c| c.as_os_str().to_os_string()).collect();
    let mut resolved = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match Path::new(&part).components().next() {
            None | Some(Component::CurDir | Component::RootDir | Component::Prefix(_)) => continue,
            Some(Component::ParentDir) => {
                resolved.pop();
                continue;
            }
            Some(Component::Normal(_)) => {}
        }
        let candidate = root.join(&resolved).join(&part);
        let meta = fs::symlink_metadata(&candidate).ok()?;
        if !meta.file_type().is_symlink() {
            resolved.push(&part);
            continue;
        }
        hops += 1;
        if hops > 40 {
            return None;
        }
        let target = fs::read_link(&candidate).ok()?;
        if target.is_absolute() {
            resolved = PathBuf::new();
        }
        pending.extend(target.components().rev().map(|c| c.as_os_str().to_os_string()));
    }
    Some(root.join(resolved))
}

/// `rel` (cleaned, relative) with the first symlink on its way under `root` replaced by where it leads, the rest
/// kept, as [`resolve_scoped`] follows it (`/` is `root`); `None` when no symlink is on the way (or a part is
/// missing).
pub(crate) fn first_symlink_followed(root: &Path, rel: &str) -> Option<String> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for i in 0..parts.len() {
        let here = parts[..=i].join("/");
        let meta = fs::symlink_metadata(root.join(&here)).ok()?;
        if !meta.file_type().is_symlink() {
            continue;
        }
        let target = fs::read_link(root.join(&here)).ok()?;
        let target = target.to_str()?;
        let base = if target.starts_with('/') { String::new() } else { parts[..i].join("/") };
        let rest = parts[i + 1..].join("/");
        let joined = clean_path(&format!("/{base}/{target}/{rest}"));
        return Some(joined.trim_start_matches('/').to_string());
    }
    None
}

/// Everything below `dir` (whose context-relative path is `rel`), parents before children, by name; symlinked
/// directories are not entered.
fn descendants(dir: &Path, rel: &str, out: &mut Vec<(PathBuf, String)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
    names.sort();
    for n in names {
        let (abs, child) = (dir.join(&n), if rel.is_empty() { n.clone() } else { format!("{rel}/{n}") });
        let is_dir = fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir());
        out.push((abs.clone(), child.clone()));
        if is_dir {
            descendants(&abs, &child, out);
        }
    }
}

/// Resolve one source pattern to context paths.
fn resolve(context: &Path, ignore: &IgnoreMatcher, exclude: &IgnoreMatcher, src: &str) -> Result<Vec<Selected>> {
    let cleaned = clean_path(src.trim_start_matches('/'));
    if cleaned == ".." || cleaned.starts_with("../") {
        return Err(Error::SourceOutside {
            what: format!("COPY source {src:?}"),
            reason: "it is outside the build context; only files in the context can be copied".into(),
        });
    }
    // `--parents` keeps the path below the first `/./` of the pattern (or the whole path): the components before
    // it are dropped, whatever wildcards matched them (BuildKit's testCopyRelativeParents).
    let pivot_depth = src
        .trim_start_matches('/')
        .split_once("/./")
        .map(|(before, _)| clean_path(before))
        .filter(|p| p != ".")
        .map_or(0, |p| p.split('/').count());
    let keep_of = |rel: &str| -> String { rel.split('/').skip(pivot_depth).collect::<Vec<_>>().join("/") };
    let mut current: Vec<(PathBuf, String)> = vec![(context.to_path_buf(), String::new())];
    if cleaned != "." {
        for part in cleaned.split('/') {
            let mut next = Vec::new();
            for (_, rel) in &current {
                // Directories on the way are read where their symlinks lead, inside the context.
                let Some(dir) = resolve_scoped(context, rel) else { continue };
                let dir = &dir;
                let join = |n: &str| if rel.is_empty() { n.to_string() } else { format!("{rel}/{n}") };
                if part == "**" {
                    // Any depth, none included.
                    next.push((dir.clone(), rel.clone()));
                    descendants(dir, rel, &mut next);
                } else if has_glob(part) {
                    let pat = ShellPattern::parse(part);
                    let Ok(entries) = fs::read_dir(dir) else { continue };
                    let mut names: Vec<String> =
                        entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
                    names.sort();
                    for n in names.into_iter().filter(|n| pat.trim_prefix(n, true).is_empty()) {
                        next.push((dir.join(&n), join(&n)));
                    }
                } else if fs::symlink_metadata(dir.join(part)).is_ok() {
                    next.push((dir.join(part), join(part)));
                }
            }
            current = next;
        }
    }
    let found: Vec<Selected> = current
        .into_iter()
        .filter(|(_, rel)| rel.is_empty() || !ignore.is_excluded(rel))
        // A source that is a symlink is followed (inside the context); symlinks below a copied directory are not.
        .filter_map(|(_, rel)| resolve_scoped(context, &rel).map(|abs| (abs, rel)))
        .filter_map(|(abs, rel)| {
            if abs.is_dir() && fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir()) {
                return Some(Selected { abs, base: rel.clone(), keep: keep_of(&rel), rel });
            }
            let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
            if exclude.is_excluded(name) {
                return None;
            }
            Some(Selected { abs, base: parent.to_string(), keep: keep_of(&rel), rel })
        })
        .collect();
    // As BuildKit's (AllowEmptyWildcard): a wildcard matching nothing copies nothing; a plain source must exist.
    if found.is_empty() && !has_glob(src) {
        return Err(Error::SourceNotFound { src: src.to_string() });
    }
    Ok(found)
}

/// Modes a copy's layer entries take that their files on disk do not have: directories whose mode would shut the
/// copying process (not root) out, by path.
pub type EntryModes = Vec<(PathBuf, EntryAttr)>;

/// What a copy leaves beside the files it made.
#[derive(Debug, Default)]
pub struct Copied {
    /// The attributes the layer's entries take that their files on disk do not have.
    pub modes: EntryModes,
    /// The files it wrote from memory, with what it gave them: the layer is made from there.
    pub known: KnownFiles,
}

/// An attribute a layer entry takes that its file on disk does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryAttr {
    /// A mode that would shut this (rootless) process out of a directory.
    Mode(u32),
    /// The owner of a symlink made rootless, which cannot carry the xattr that records owners.
    Owner(u32, u32),
    /// An attribute only recorded on disk (file capabilities, rootless): the entry has it, the file not.
    Recorded,
}

/// What a COPY selected, resolved: ready to checksum and to copy.
#[derive(Debug)]
pub struct CopySelection {
    sources: Vec<Selected>,
    ignore: IgnoreMatcher,
    /// `--exclude` patterns, relative to each source.
    exclude: IgnoreMatcher,
    /// Each source's walk, kept from the checksum for the copy (the context is read once).
    /// Keyed by path and context-relative path (two sources may reach one directory by different paths).
    walks: std::sync::Mutex<std::collections::HashMap<(PathBuf, String), WalkedTree>>,
    /// See [`CopySelection::keeping_owners`].
    keep_owners: bool,
    /// Bytes of small files' contents the checksum may still keep for the copy (see [`KeptFile`]).
    keep_budget: std::sync::atomic::AtomicU64,
}

/// What a selection keeps in memory of the small files its checksum reads, at most: the copy writes them from
/// there, and the layer writer tars them from there (a cold COPY of many small files opens each once, not thrice).
const KEEP_BUDGET: u64 = 64 << 20;

/// Resolve the sources of a COPY.
pub fn select(context: &Path, ignore: &IgnoreMatcher, sources: &[String]) -> Result<CopySelection> {
    select_excluding(context, ignore, &IgnoreMatcher::default(), sources)
}

/// Resolve the sources of a COPY with `--exclude` patterns (matched relative to each source, as BuildKit does).
pub fn select_excluding(
    context: &Path,
    ignore: &IgnoreMatcher,
    exclude: &IgnoreMatcher,
    sources: &[String],
) -> Result<CopySelection> {
    let mut out = Vec::new();
    for s in sources {
        out.extend(resolve(context, ignore, exclude, s)?);
    }
    Ok(CopySelection {
        sources: out,
        ignore: ignore.clone(),
        exclude: exclude.clone(),
        walks: Default::default(),
        keep_owners: false,
        keep_budget: KEEP_BUDGET.into(),
    })
}

impl CopySelection {
    /// Copies of these sources keep their owners unless `--chown` names one: files from another stage or an image
    /// (testCopyChownExistingDir), where context files become root's.
    pub fn keeping_owners(mut self) -> Self {
        self.keep_owners = true;
        self
    }

    /// The selected regular files that are tar archives (plain, gzip, bzip2, xz or zstd; by content), which ADD
    /// unpacks instead of copying. Directories' contents are never unpacked.
    pub fn archives(&self) -> Vec<PathBuf> {
        self.sources.iter().filter(|s| s.abs.is_file() && is_archive(&s.abs)).map(|s| s.abs.clone()).collect()
    }

    /// The selection without the given files.
    pub fn without(&self, files: &[PathBuf]) -> CopySelection {
        CopySelection {
            sources: self.sources.iter().filter(|s| !files.contains(&s.abs)).cloned().collect(),
            ignore: self.ignore.clone(),
            exclude: self.exclude.clone(),
            walks: Default::default(),
            keep_owners: self.keep_owners,
            keep_budget: KEEP_BUDGET.into(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// A checksum of exactly what would be copied: relative paths, types, modes, owners, link targets, contents.
    pub fn checksum(&self) -> Result<String> {
        self.checksum_with(&FileHashes::default())
    }

    /// [`Self::checksum`], taking file contents' hashes from `hashes` where it knows them. Files are read (when
    /// `hashes` does not know them) on all CPUs.
    pub fn checksum_with(&self, hashes: &FileHashes) -> Result<String> {
        let mut h = Sha256::new();
        for s in &self.sources {
            // Where a source lands with --parents (its `/./` pivot) is part of what the copy makes.
            h.update(s.keep.as_bytes());
            h.update([0]);
            let walked = self.walk(s)?;
            let contents: Vec<Option<String>> = walked
                .par_iter()
                .map(|w| if w.meta.is_file() { self.hash_keeping(w, hashes).map(Some) } else { Ok(None) })
                .collect::<Result<_>>()?;
            for (w, content) in walked.iter().zip(contents) {
                if let Some(c) = &content {
                    // Kept for the copy: an unchanged file may be linked from the previous run's.
                    let _ = w.content.set(c.clone());
                }
                h.update(w.rel.as_bytes());
                h.update([0]);
                // The raw name too: two names that are not UTF-8 may read the same once converted.
                h.update(w.abs.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
                h.update([0]);
                // The owner only where the files keep it: context files become root's (unless --chown, which is in
                // the key), so the same checkout owned by another user (another CI runner) is the same copy.
                if self.keep_owners {
                    h.update(format!("{:o} {}:{}", w.meta.mode(), w.meta.uid(), w.meta.gid()).as_bytes());
                } else {
                    h.update(format!("{:o}", w.meta.mode()).as_bytes());
                }
                if w.meta.file_type().is_symlink() {
                    h.update(
                        fs::read_link(&w.abs).map_err(Error::io("read link", &w.abs))?.as_os_str().as_encoded_bytes(),
                    );
                }
                if let Some(content) = content {
                    h.update(content.as_bytes());
                }
                h.update([1]);
            }
        }
        Ok(hex::encode(h.finalize()))
    }

    /// A walked file's content hash; its content is kept for the copy while the budget lasts.
    fn hash_keeping(&self, w: &Walked, hashes: &FileHashes) -> Result<String> {
        use std::sync::atomic::Ordering;
        let size = w.meta.len();
        let keep = size <= SMALL_FILE
            && self
                .keep_budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(size))
                .is_ok();
        let (hash, kept) = hashes.hash_keeping(&w.abs, &w.meta, keep)?;
        match kept {
            Some(kept) => {
                let _ = w.kept.set(kept);
            }
            None if keep => {
                self.keep_budget.fetch_add(size, Ordering::Relaxed);
            }
            None => {}
        }
        Ok(hash)
    }

    /// A source and, for a directory, everything visible below it, parents before children, siblings by name.
    /// Walked once per selection.
    fn walk(&self, s: &Selected) -> Result<WalkedTree> {
        let key = (s.abs.clone(), s.rel.clone());
        if let Some(w) = self.walks.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(w);
        }
        let walked = std::sync::Arc::new(self.walk_uncached(s)?);
        if let Ok(mut m) = self.walks.lock() {
            m.insert(key, walked.clone());
        }
        Ok(walked)
    }

    fn walk_uncached(&self, s: &Selected) -> Result<Vec<Walked>> {
        let meta = fs::symlink_metadata(&s.abs).map_err(Error::io("stat", &s.abs))?;
        let mut out = vec![Walked {
            abs: s.abs.clone(),
            rel: s.rel.clone(),
            meta,
            content: Default::default(),
            kept: Default::default(),
        }];
        self.walk_below(0, &s.base, &mut out)?;
        Ok(out)
    }

    /// Append what is visible below `out[dir]` (if it is a directory), depth first; its entries are stat'ed on all
    /// CPUs.
    fn walk_below(&self, dir: usize, base: &str, out: &mut Vec<Walked>) -> Result<()> {
        if !out[dir].meta.is_dir() {
            return Ok(());
        }
        let children: Vec<Walked> = self
            .visible_children(&out[dir].abs, &out[dir].rel, base)?
            .into_par_iter()
            .map(|(abs, rel)| {
                let meta = fs::symlink_metadata(&abs).map_err(Error::io("stat", &abs))?;
                Ok(Walked { abs, rel, meta, content: Default::default(), kept: Default::default() })
            })
            .collect::<Result<_>>()?;
        for child in children {
            out.push(child);
            self.walk_below(out.len() - 1, base, out)?;
        }
        Ok(())
    }

    /// Copy into `layer_root` at `dest` (absolute in the image, already resolved against WORKDIR), with an
    /// optional owner and mode; with `reuse`, unchanged files are linked from the copy's previous run. Returns the
    /// modes the layer's entries must take that their files on disk do not have (directories this process would
    /// be shut out of).
    pub fn copy_into(
        &self,
        layer_root: &Path,
        dest: &str,
        owner: Option<(u32, u32)>,
        chmod: Option<&ModeSpec>,
        reuse: Option<&Incremental>,
    ) -> Result<Copied> {
        let dest_is_dir = dest.ends_with('/') || self.sources.len() > 1 || self.sources.iter().any(|s| s.abs.is_dir());
        let dest_path = dest_in(layer_root, dest);
        let parent =
            if dest_is_dir { dest_path.clone() } else { dest_path.parent().map(Path::to_path_buf).unwrap_or_default() };
        let attrs = Attributes::new(owner, chmod, self.keep_owners);
        make_dirs(layer_root, &parent, &attrs)?;
        for s in &self.sources {
            let walked = self.walk(s)?;
            if walked[0].meta.is_dir() {
                // A directory's contents, not the directory itself.
                self.copy_dir_contents(s, &dest_path, &attrs, reuse)?;
            } else {
                // A symlink source is copied under its own name, holding what it leads to (testCopySymlinks).
                let name = Path::new(&s.rel).file_name().or(s.abs.file_name()).map(PathBuf::from).unwrap_or_default();
                let target = if dest_is_dir { dest_path.join(name) } else { dest_path.clone() };
                copy_walked(&walked[0], &target, &attrs, reuse, &DirHandles::default())?;
            }
        }
        Ok(attrs.finish())
    }

    /// `COPY --parents`: each source lands under the destination directory at its path (below the pattern's `/./`
    /// pivot, if any), parent directories created; a directory's contents go under its own path.
    pub fn copy_into_with_parents(
        &self,
        layer_root: &Path,
        dest: &str,
        owner: Option<(u32, u32)>,
        chmod: Option<&ModeSpec>,
        reuse: Option<&Incremental>,
    ) -> Result<Copied> {
        let dest_path = dest_in(layer_root, dest);
        let attrs = Attributes::new(owner, chmod, self.keep_owners);
        // The destination directory is made even when a wildcard matched nothing (testCopyParentsMissingDirectory).
        make_dirs(layer_root, &dest_path, &attrs)?;
        for s in &self.sources {
            let target = if s.keep.is_empty() { dest_path.clone() } else { dest_path.join(&s.keep) };
            let parent = target.parent().map(Path::to_path_buf).unwrap_or_else(|| dest_path.clone());
            make_dirs(layer_root, &parent, &attrs)?;
            let walked = self.walk(s)?;
            if walked[0].meta.is_dir() {
                make_dirs(layer_root, &target, &attrs)?;
                self.copy_dir_contents(s, &target, &attrs, reuse)?;
            } else {
                copy_walked(&walked[0], &target, &attrs, reuse, &DirHandles::default())?;
            }
        }
        Ok(attrs.finish())
    }

    /// The children of `dir` that .dockerignore leaves visible, sorted by name, with their context-relative
    /// paths. Names need not be UTF-8: the path keeps the bytes, the relative path is for matching.
    fn visible_children(&self, dir: &Path, rel: &str, base: &str) -> Result<Vec<(PathBuf, String)>> {
        let mut names: Vec<std::ffi::OsString> =
            fs::read_dir(dir).map_err(Error::io("read", dir))?.flatten().map(|e| e.file_name()).collect();
        names.sort();
        Ok(names
            .into_iter()
            .filter_map(|n| {
                let name = n.to_string_lossy();
                let child_rel = if rel.is_empty() { name.into_owned() } else { format!("{rel}/{name}") };
                let below_base = child_rel.strip_prefix(base).map_or(child_rel.as_str(), |r| r.trim_start_matches('/'));
                let hidden = self.ignore.is_excluded(&child_rel)
                    || (!self.exclude.is_empty() && self.exclude.is_excluded(below_base));
                (!hidden).then(|| (dir.join(&n), child_rel))
            })
            .collect())
    }

    /// Copy what is below the directory source `s` into `to`: directories first, then files and symlinks on all
    /// CPUs, then the directories' own attributes (deepest first, so that filling them does not change them).
    fn copy_dir_contents(
        &self,
        s: &Selected,
        to: &Path,
        attrs: &Attributes,
        reuse: Option<&Incremental>,
    ) -> Result<()> {
        fs::create_dir_all(to).map_err(Error::io("create", to))?;
        let walked = self.walk(s)?;
        // Targets by the raw names (`rel` is for matching and may have lost bytes that are not UTF-8).
        let below: Vec<(&Walked, PathBuf)> = walked
            .iter()
            .skip(1)
            .map(|w| match w.abs.strip_prefix(&s.abs) {
                Ok(inside) => Ok((w, to.join(inside))),
                Err(_) => Err(Error::SourceOutside {
                    what: format!("COPY source {}", w.abs.display()),
                    reason: "not below its source directory".into(),
                }),
            })
            .collect::<Result<_>>()?;
        for (_, target) in below.iter().filter(|(w, _)| w.meta.is_dir()) {
            make_dir(target)?;
        }
        // Files are made relative to their directory's handle: no walk of the whole path for each one.
        let dirs = DirHandles::open(
            std::iter::once(to).chain(below.iter().filter(|(w, _)| w.meta.is_dir()).map(|(_, t)| t.as_path())),
        );
        below
            .par_iter()
            .filter(|(w, _)| !w.meta.is_dir())
            .try_for_each(|(w, target)| copy_walked(w, target, attrs, reuse, &dirs))?;
        for (w, target) in below.iter().rev().filter(|(w, _)| w.meta.is_dir()) {
            attrs.apply_to_dir(target, &w.abs, &w.meta)?;
        }
        Ok(())
    }
}

/// A source's walk, shared between the checksum and the copy.
type WalkedTree = std::sync::Arc<Vec<Walked>>;

/// A context entry found by [`CopySelection::walk`].
#[derive(Debug)]
struct Walked {
    abs: PathBuf,
    rel: String,
    meta: fs::Metadata,
    /// A regular file's content hash, once the checksum has it.
    content: std::sync::OnceLock<String>,
    /// A small file's content, when the checksum read it and kept it.
    kept: std::sync::OnceLock<KeptFile>,
}

/// [`make_dirs`] for a destination directory an ADD unpacks archives into.
pub(crate) fn make_dest_dirs(
    root: &Path,
    dir: &Path,
    owner: Option<(u32, u32)>,
    chmod: Option<&ModeSpec>,
) -> Result<EntryModes> {
    let attrs = Attributes::new(owner, chmod, false);
    make_dirs(root, dir, &attrs)?;
    Ok(attrs.finish().modes)
}

/// Create the missing directories from `root` down to `dir`, as BuildKit creates a copy's destination path: owned
/// by the `--chown` owner (root without one), mode 0755 or an octal `--chmod`'s (testCopyChownCreateDest,
/// testCopyChmod). Directories the layer has already are left as they are.
fn make_dirs(root: &Path, dir: &Path, attrs: &Attributes) -> Result<()> {
    let Ok(below) = dir.strip_prefix(root) else { return Ok(()) };
    let mut path = root.to_path_buf();
    for part in below.components() {
        path.push(part);
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        make_dir(&path)?;
        attrs.apply_to_created_dir(&path)?;
    }
    Ok(())
}

/// Copy a walked file or symlink; a regular file whose content the checksum hashed is linked from the copy's
/// previous run instead when it is unchanged there, and noted for the next run.
fn copy_walked(
    w: &Walked,
    target: &Path,
    attrs: &Attributes,
    reuse: Option<&Incremental>,
    dirs: &DirHandles,
) -> Result<()> {
    // Hard links among the copied files stay hard links (as BuildKit copies them): the second name of a file is
    // linked to the first's copy.
    let link_key = (w.meta.is_file() && w.meta.nlink() > 1).then(|| (w.meta.dev(), w.meta.ino()));
    attrs.forget(target);
    // Held while the first name is copied, so that a name copied meanwhile (directories are copied in
    // parallel) waits for it and links to it.
    let mut links = match link_key {
        Some(_) => {
            Some(attrs.hard_links.lock().map_err(|_| Error::WorkerPanicked { what: "a copying thread".into() })?)
        }
        None => None,
    };
    if let (Some(key), Some(map)) = (link_key, links.as_ref())
        && let Some(first) = map.get(&key)
    {
        crate::fsops::replacing(target, || fs::hard_link(first, target)).map_err(Error::io("link", target))?;
        if let Some((reuse, hash)) = reuse.zip(w.content.get()) {
            reuse.record(target, hash);
        }
        return Ok(());
    }
    match reuse.zip(w.content.get()).filter(|_| w.meta.is_file()) {
        None => copy_entry_with(&w.abs, &w.meta, target, attrs, w.kept.get(), dirs)?,
        Some((reuse, hash)) => {
            if !attrs.fresh_file(&w.meta).is_some_and(|fresh| reuse.try_link(target, hash, &fresh)) {
                copy_entry_with(&w.abs, &w.meta, target, attrs, w.kept.get(), dirs)?;
            }
            reuse.record(target, hash);
        }
    }
    if let (Some(key), Some(map)) = (link_key, links.as_mut()) {
        map.insert(key, target.to_path_buf());
    }
    Ok(())
}

/// What a copied entry gets: its owner (the given one or root) and mode (`--chmod` applied to its own).
struct Attributes<'a> {
    owner: (u32, u32),
    chmod: Option<&'a ModeSpec>,
    as_root: bool,
    /// Running as root:root, so a file this copy creates is root-owned already (its directories are root-owned
    /// while it fills them).
    created_as_root: bool,
    /// Without `--chown`, each entry keeps its source's owner (see [`CopySelection::keeping_owners`]).
    keep_source_owner: bool,
    /// Directories whose mode would keep this process (not root) out of them (`--chmod=0644` on a directory): on
    /// disk they stay open to it, and the layer's entries take these modes instead.
    entry_modes: std::sync::Mutex<EntryModes>,
    /// The copy of each source file with other names, by (device, inode): its other names are linked to it.
    hard_links: std::sync::Mutex<std::collections::HashMap<(u64, u64), PathBuf>>,
    /// The files written from memory, with what they were given (for the layer).
    known: std::sync::Mutex<KnownFiles>,
}

impl<'a> Attributes<'a> {
    fn new(owner: Option<(u32, u32)>, chmod: Option<&'a ModeSpec>, keep_owners: bool) -> Self {
        let as_root = rustix::process::geteuid().is_root();
        let created_as_root = as_root && rustix::process::getegid().is_root();
        let keep_source_owner = keep_owners && owner.is_none();
        Attributes {
            owner: owner.unwrap_or((0, 0)),
            chmod,
            as_root,
            created_as_root,
            keep_source_owner,
            entry_modes: Default::default(),
            hard_links: Default::default(),
            known: Default::default(),
        }
    }

    /// The owner the copy of `from` gets: the given one, or the source's own (rootless, as its xattr records it).
    fn owner_of(&self, from: &Path, meta: &fs::Metadata) -> (u32, u32) {
        if !self.keep_source_owner {
            return self.owner;
        }
        if self.as_root {
            return (meta.uid(), meta.gid());
        }
        xattr::get(from, crate::layer::tree::ROOTLESS_XATTR)
            .ok()
            .flatten()
            .and_then(|v| crate::layer::rootless_owner::decode(&v))
            .map_or((0, 0), |(u, g)| (u.unwrap_or(0), g.unwrap_or(0)))
    }

    fn mode(&self, meta: &fs::Metadata) -> u32 {
        match self.chmod {
            Some(spec) => spec.apply(meta.mode() & 0o7777, meta.is_dir()),
            None => meta.mode() & 0o7777,
        }
    }

    /// Whether the owner is only recorded (in an xattr, rootless), not given.
    fn records_owner(&self) -> bool {
        !self.as_root && (self.owner != (0, 0) || self.keep_source_owner)
    }

    /// What a copy of a regular file with `meta` gets on disk, when its owner is real there (as root, or root's
    /// rootless: not one only recorded in an xattr).
    fn fresh_file(&self, meta: &fs::Metadata) -> Option<FreshFile> {
        if self.records_owner() || self.keep_source_owner {
            return None;
        }
        let (uid, gid) = if self.as_root {
            self.owner
        } else {
            (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw())
        };
        Some(FreshFile { size: meta.len(), mode: self.mode(meta), uid, gid, mtime: (meta.mtime(), meta.mtime_nsec()) })
    }

    /// Owner first (a change of owner clears set-id bits), then the mode (unless the file was created with it:
    /// `mode_set`), then the mtime; on an open file or directory. Whether the mtime could be set.
    fn apply_to_file(&self, f: &fs::File, to: &Path, from: &Path, meta: &fs::Metadata, mode_set: bool) -> Result<bool> {
        self.give_owner(f, to, self.owner_of(from, meta))?;
        if !mode_set {
            f.set_permissions(fs::Permissions::from_mode(self.mode(meta))).map_err(Error::io("chmod", to))?;
        }
        Ok(f.set_modified(filetime_of(meta)).is_ok())
    }

    /// Give an entry this process made its owner: as root for real (nothing to do for root's own), rootless in the
    /// xattr that records it (root's is the invoking user's, needing none).
    fn give_owner(&self, f: &fs::File, to: &Path, (uid, gid): (u32, u32)) -> Result<()> {
        if self.created_as_root && (uid, gid) == (0, 0) {
            // Already so.
        } else if self.as_root {
            std::os::unix::fs::fchown(f, Some(uid), Some(gid)).map_err(Error::io("chown", to))?;
        } else if (uid, gid) != (0, 0) {
            let _ = xattr::set(to, crate::layer::tree::ROOTLESS_XATTR, &crate::layer::rootless_owner::encode(uid, gid));
        }
        Ok(())
    }

    /// Give a symlink this process made its owner: as root for real, rootless as the layer entry's.
    fn give_link_owner(&self, to: &Path, (uid, gid): (u32, u32)) -> Result<()> {
        if self.created_as_root && (uid, gid) == (0, 0) {
            Ok(())
        } else if self.as_root {
            std::os::unix::fs::lchown(to, Some(uid), Some(gid)).map_err(Error::io("chown", to))
        } else {
            if (uid, gid) != (0, 0)
                && let Ok(mut fixes) = self.entry_modes.lock()
            {
                fixes.push((to.to_path_buf(), EntryAttr::Owner(uid, gid)));
            }
            Ok(())
        }
    }

    /// A directory the copy made on the way to its destination: the owner, and the mode an octal `--chmod` gives
    /// (0755 otherwise).
    fn apply_to_created_dir(&self, to: &Path) -> Result<()> {
        let dir = fs::File::open(to).map_err(Error::io("open", to))?;
        self.give_owner(&dir, to, self.owner)?;
        let mode = match self.chmod {
            Some(ModeSpec::Octal(m)) => *m,
            _ => 0o755,
        };
        self.set_dir_mode(&dir, to, mode)
    }

    /// A directory's mode; one that would shut this process out (not root) is kept for the layer's entry instead.
    fn set_dir_mode(&self, dir: &fs::File, to: &Path, mode: u32) -> Result<()> {
        let on_disk = if self.as_root || mode & 0o700 == 0o700 {
            mode
        } else {
            if let Ok(mut modes) = self.entry_modes.lock() {
                modes.push((to.to_path_buf(), EntryAttr::Mode(mode)));
            }
            mode | 0o700
        };
        dir.set_permissions(fs::Permissions::from_mode(on_disk)).map_err(Error::io("chmod", to))
    }

    /// A regular file written with `kept`'s content (and no xattrs): its layer entry is known without reading it
    /// back, when its owner is one the layer reads from the disk (not only recorded).
    fn wrote_from_memory(&self, to: &Path, from: &Path, meta: &fs::Metadata, kept: &KeptFile) {
        let owner = self.owner_of(from, meta);
        if !self.as_root && owner != (0, 0) {
            return;
        }
        let file = KnownFile {
            data: kept.data.clone(),
            mode: self.mode(meta),
            uid: owner.0,
            gid: owner.1,
            mtime: meta.mtime(),
        };
        if let Ok(mut known) = self.known.lock() {
            known.insert(to.to_path_buf(), file);
        }
    }

    /// Something other than a known file is written at `to`.
    fn forget(&self, to: &Path) {
        if let Ok(mut known) = self.known.lock() {
            known.remove(to);
        }
    }

    /// What the copy leaves beside its files (see [`Copied`]).
    fn finish(self) -> Copied {
        Copied {
            modes: self.entry_modes.into_inner().unwrap_or_default(),
            known: self.known.into_inner().unwrap_or_default(),
        }
    }

    fn apply_to_dir(&self, to: &Path, from: &Path, meta: &fs::Metadata) -> Result<()> {
        let dir = fs::File::open(to).map_err(Error::io("open", to))?;
        self.apply_to_file(&dir, to, from, meta, true)?;
        self.set_dir_mode(&dir, to, self.mode(meta))?;
        // The mode change must not move the mtime the copy gave it.
        let _ = dir.set_modified(filetime_of(meta));
        Ok(())
    }
}

/// Create a directory, replacing whatever non-directory is in its place (an earlier source's file).
fn make_dir(to: &Path) -> Result<()> {
    match fs::create_dir(to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if fs::symlink_metadata(to).is_ok_and(|m| m.is_dir()) {
                return Ok(());
            }
            crate::fsops::replacing(to, || fs::create_dir(to)).map_err(Error::io("create", to))
        }
        Err(e) => Err(Error::io("create", to)(e)),
    }
}

/// Files up to this size are copied through memory.
const SMALL_FILE: u64 = 256 * 1024;

/// Copy a file or symlink whose metadata is known; what is in its place already (an earlier source's) is
/// replaced. A socket becomes an empty file; devices and fifos in a context are not copied.
/// `kept`: the source's content and capabilities as the checksum read them (the source is not opened again);
/// a regular file is created through its directory's handle when `dirs` has it.
fn copy_entry_with(
    from: &Path,
    meta: &fs::Metadata,
    to: &Path,
    attrs: &Attributes,
    kept: Option<&KeptFile>,
    dirs: &DirHandles,
) -> Result<()> {
    if meta.file_type().is_symlink() {
        let target = fs::read_link(from).map_err(Error::io("read link", from))?;
        crate::fsops::replacing(to, || symlink(&target, to)).map_err(Error::io("symlink", to))?;
        // `--chown` owns links too (BuildKit lchowns them); the link keeps its mtime, as files do.
        attrs.give_link_owner(to, attrs.owner_of(from, meta))?;
        let mtime = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
            last_modification: rustix::fs::Timespec { tv_sec: meta.mtime(), tv_nsec: meta.mtime_nsec() },
        };
        let _ = rustix::fs::utimensat(rustix::fs::CWD, to, &mtime, rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
        return Ok(());
    }
    if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
        // A socket becomes an empty regular file with its mode, as BuildKit's context transfer makes it.
        let dst = crate::fsops::replacing(to, || fs::OpenOptions::new().write(true).create_new(true).open(to))
            .map_err(Error::io("create", to))?;
        return attrs.apply_to_file(&dst, to, from, meta, false).map(drop);
    }
    if !meta.is_file() {
        return Ok(());
    }
    // Created with its final mode where the umask leaves it whole (no chmod needed after); else private until set.
    let mode = attrs.mode(meta);
    let mode_at_create = !attrs.records_owner() && mode & (0o777 & !process_umask()) == mode;
    let create_mode = if mode_at_create { mode } else { 0o600 };
    let mut dst = crate::fsops::replacing(to, || dirs.create_file(to, create_mode)).map_err(Error::io("create", to))?;
    use std::io::Write;
    let caps = match kept {
        Some(kept) => {
            dst.write_all(&kept.data).map_err(Error::io("write", to))?;
            kept.capabilities.clone()
        }
        None => {
            let mut src = fs::File::open(from).map_err(Error::io("open", from))?;
            if meta.len() <= SMALL_FILE {
                // A read and a write: cheaper than copy_file_range's in-kernel splice for the many small files of
                // a context.
                let data = crate::fsops::read_known_size(&mut src, meta.len()).map_err(Error::io("read", from))?;
                dst.write_all(&data).map_err(Error::io("write", to))?;
            } else {
                std::io::copy(&mut src, &mut dst).map_err(Error::io("copy", from))?;
            }
            super::file_hashes::capabilities_of(&src)
        }
    };
    let mtime_set = attrs.apply_to_file(&dst, to, from, meta, mode_at_create)?;
    if let Some(kept) = kept
        && caps.is_none()
        && mtime_set
        && meta.nlink() == 1
    {
        attrs.wrote_from_memory(to, from, meta, kept);
    }
    // File capabilities come along (the one xattr BuildKit's layers carry), set after the owner, which clears
    // them. Rootless on the host they cannot be set: they are recorded, and the layer's entry carries them.
    use crate::layer::tree::{CAPABILITY_RECORD_XATTR, CAPABILITY_XATTR};
    if let Some(caps) = caps
        && xattr::set(to, CAPABILITY_XATTR, &caps).is_err()
        && xattr::set(to, CAPABILITY_RECORD_XATTR, &caps).is_ok()
        && let Ok(mut fixes) = attrs.entry_modes.lock()
    {
        // Not the file's on disk: the layer's snapshot is unpacked from the layer instead.
        fixes.push((to.to_path_buf(), EntryAttr::Recorded));
    }
    Ok(())
}

/// The process's umask (read once; it does not change while rbuild runs).
fn process_umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string())))
            .and_then(|v| u32::from_str_radix(&v, 8).ok())
            // Unknown: assume everything masked, so every mode is set explicitly.
            .unwrap_or(0o777)
    })
}

fn filetime_of(meta: &fs::Metadata) -> std::time::SystemTime {
    meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH)
}

/// A `--chmod` value: octal (`0755`) or symbolic (`u+x,go=r`, as chmod(1) takes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeSpec {
    Octal(u32),
    Symbolic(Vec<(u32, char, String)>),
}

impl ModeSpec {
    pub fn parse(s: &str) -> Option<ModeSpec> {
        if !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777).map(ModeSpec::Octal);
        }
        let mut clauses = Vec::new();
        for clause in s.split(',') {
            let op_at = clause.find(['+', '-', '='])?;
            let (who, rest) = clause.split_at(op_at);
            let mut mask = 0;
            for c in who.chars() {
                mask |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o0007,
                    'a' => 0o6777,
                    _ => return None,
                };
            }
            if mask == 0 {
                mask = 0o6777;
            }
            let op = rest.chars().next()?;
            let perms = &rest[1..];
            if !perms.chars().all(|c| "rwxXst".contains(c)) {
                return None;
            }
            clauses.push((mask, op, perms.to_string()));
        }
        (!clauses.is_empty()).then_some(ModeSpec::Symbolic(clauses))
    }

    /// The mode a file (or directory) gets, from the mode it has.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match self {
            ModeSpec::Octal(m) => return *m,
            ModeSpec::Symbolic(c) => c,
        };
        let mut mode = mode & 0o7777;
        for (who, op, perms) in clauses {
            let mut bits = 0;
            for p in perms.chars() {
                bits |= match p {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' if is_dir || mode & 0o111 != 0 => 0o111,
                    's' => 0o6000,
                    't' => 0o1000,
                    _ => 0,
                };
            }
            let who = if *who == 0o6777 && perms.contains('t') { who | 0o1000 } else { *who };
            let bits = bits & who;
            match op {
                '+' => mode |= bits,
                '-' => mode &= !bits,
                _ => mode = (mode & !who) | bits,
            }
        }
        mode
    }
}

/// Where an image path lands under a layer directory.
fn dest_in(layer_root: &Path, dest: &str) -> PathBuf {
    let dest_rel = clean_path(dest.trim_start_matches('/'));
    if dest_rel == "." { layer_root.to_path_buf() } else { layer_root.join(&dest_rel) }
}

/// Whether a file is a tar archive, compressed or not, as Docker and BuildKit decide for ADD: its (decompressed)
/// first block is a tar header with a valid checksum. A compressed file that is not a tar (`notes.txt.gz`) is
/// copied as it is.
pub fn is_archive(path: &Path) -> bool {
    use std::io::Read;
    let Ok(reader) = archive_reader(path) else { return false };
    let mut head = Vec::with_capacity(512);
    if reader.take(512).read_to_end(&mut head).is_err() || head.len() < 512 {
        return false;
    }
    tar_header_checksum_ok(&head)
}

/// A tar header's checksum field (octal, bytes 148..156) equals the sum of its bytes with that field as spaces.
fn tar_header_checksum_ok(header: &[u8]) -> bool {
    let field = String::from_utf8_lossy(&header[148..156]);
    let Ok(recorded) = u32::from_str_radix(field.trim_matches(|c: char| c == ' ' || c == '\0'), 8) else {
        return false;
    };
    let sum: u32 = header.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { *b as u32 }).sum();
    sum == recorded
}

/// A reader of an archive's tar stream: gzip and zstd decoded here, bzip2 and xz by the system's `bzip2`/`xz`.
pub fn archive_reader(path: &Path) -> Result<Box<dyn std::io::Read>> {
    use std::io::Read;
    let mut head = [0u8; 6];
    let n = fs::File::open(path).and_then(|mut f| f.read(&mut head)).map_err(Error::io("read", path))?;
    let tool = if head[..n].starts_with(b"BZh") {
        Some("bzip2")
    } else if head[..n].starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else {
        None
    };
    match tool {
        Some(tool) => {
            let out =
                std::process::Command::new(tool).arg("-dc").arg(path).output().map_err(|e| Error::BadArchive {
                    path: path.to_path_buf(),
                    reason: format!("cannot run {tool} to unpack it (install {tool}): {e}"),
                })?;
            if !out.status.success() {
                return Err(Error::BadArchive {
                    path: path.to_path_buf(),
                    reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            Ok(Box::new(std::io::Cursor::new(out.stdout)))
        }
        None => crate::layer::decompressed(fs::File::open(path).map_err(Error::io("open", path))?),
    }
}

/// Handles of the directories a copy fills, by path: files are created relative to them.
#[derive(Default)]
struct DirHandles(std::collections::HashMap<PathBuf, std::os::fd::OwnedFd>);

/// At most this many directory handles are held (well within the usual limit of 1,024 open files, which the
/// copying threads' files share); files of the directories beyond are created by path.
const MAX_DIR_HANDLES: usize = 128;

impl DirHandles {
    /// Handles of the first of `dirs` that open (the others' files are created by path).
    fn open<'a>(dirs: impl Iterator<Item = &'a Path>) -> DirHandles {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let handles = dirs
            .take(MAX_DIR_HANDLES)
            .filter_map(|d| Some((d.to_path_buf(), rustix::fs::open(d, flags, Mode::empty()).ok()?)));
        DirHandles(handles.collect())
    }

    /// Create the new file `to` with `mode` (less the umask), open for writing.
    fn create_file(&self, to: &Path, mode: u32) -> std::io::Result<fs::File> {
        use rustix::fs::{Mode, OFlags};
        if let (Some(dir), Some(name)) = (to.parent().and_then(|p| self.0.get(p)), to.file_name()) {
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            return Ok(rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(mode))?.into());
        }
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(to)
    }
}

#[cfg(test)]
mod mode_tests {
    use super::ModeSpec;

    #[test]
    fn octal_and_symbolic_modes() {
        let m = |s: &str| ModeSpec::parse(s).unwrap();
        assert_eq!(m("0755").apply(0o644, false), 0o755);
        assert_eq!(m("u+x").apply(0o644, false), 0o744);
        assert_eq!(m("go-r").apply(0o644, false), 0o600);
        assert_eq!(m("a=r").apply(0o755, false), 0o444);
        assert_eq!(m("u=rwx,g=rx,o=").apply(0o600, false), 0o750);
        assert_eq!(m("+X").apply(0o644, true), 0o755);
        assert_eq!(m("+X").apply(0o644, false), 0o644);
        assert_eq!(m("u+s").apply(0o755, false), 0o4755);
        assert!(ModeSpec::parse("u*x").is_none() && ModeSpec::parse("9").is_none() && ModeSpec::parse("").is_none());
    }
}

#[cfg(test)]
mod scoped_tests {
    use super::resolve_scoped;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root_only() {
        let root = std::env::temp_dir().join(format!("rbuild-scoped-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("dir")).unwrap();
        std::fs::write(root.join("dir/file"), "x").unwrap();
        symlink("dir/file", root.join("rel")).unwrap();
        symlink("/dir", root.join("abs")).unwrap();
        symlink("../../../dir/file", root.join("dir/up")).unwrap();
        symlink("/etc/passwd", root.join("outside")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(resolve_scoped(&root, "rel"), Some(root.join("dir/file")));
        assert_eq!(resolve_scoped(&root, "abs/file"), Some(root.join("dir/file")));
        assert_eq!(resolve_scoped(&root, "dir/up"), Some(root.join("dir/file")));
        // The host's /etc/passwd is never reached: inside the root, /etc/passwd does not exist.
        assert_eq!(resolve_scoped(&root, "outside"), None);
        assert_eq!(resolve_scoped(&root, "loop"), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
