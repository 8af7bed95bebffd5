//! Where a stage's files come from besides its own steps: its base (scratch, another stage, an image through the
//! worker's image source, a named context), `--from` sources of COPY and RUN mounts, and the directory a source's
//! files are read from.

use super::*;
use crate::context::copy;
use crate::layer::collect_tree;
use crate::sandbox::snapshotter::merge_snapshots;

impl StageBuilder<'_> {
    /// A source as a stage state: scratch, a built stage, an image, or a named context (a directory becomes a
    /// one-layer image of its files).
    pub(super) fn resolve_source_image(&self, source: &Source, ins: &Instruction) -> Result<StageResult> {
        match source {
            Source::Scratch => Ok(StageResult::scratch(&self.node.platform)),
            Source::Stage(i) => {
                self.inputs.get(i).cloned().ok_or_else(|| self.fail(ins, &format!("stage {i} was not built")))
            }
            Source::Image(r) => self.resolve_image(r, ins),
            Source::NamedContext(n) => match self.req.named_contexts.get(n) {
                // `docker-image://scratch` is the empty image, as in BuildKit (testNamedImageContextScratch).
                Some(NamedContext::Image(r)) if r.eq_ignore_ascii_case("scratch") => {
                    Ok(StageResult::scratch(&self.node.platform))
                }
                Some(NamedContext::Image(r)) => self.resolve_image(r, ins),
                Some(NamedContext::Dir(dir)) => {
                    let mut state = StageResult::scratch(&self.node.platform);
                    let selection = copy::select(dir, &named_context_ignore(dir)?, &[".".to_string()])
                        .map_err(|e| self.fail(ins, &e.to_string()))?;
                    let layer_dir = self.store.tmp().path("context-image");
                    fs::create_dir_all(&layer_dir).map_err(Error::io("create", &layer_dir))?;
                    selection.copy_into(&layer_dir, "/", None, None, None)?;
                    let layer = self.commit_dir(&layer_dir, collect_tree(&layer_dir)?, LayerDir::Written)?;
                    if let Some((l, diff_id, snap)) = layer {
                        state.config.set_only_diff_id(&diff_id);
                        state.layers.push(l);
                        state.diff_ids.push(diff_id);
                        state.snapshots.push(snap);
                    }
                    state.cache_key = cache::context_image(&selection.checksum()?);
                    Ok(state)
                }
                None => Err(self.fail(ins, &format!("build context {n:?} was not given"))),
            },
        }
    }

    pub(super) fn resolve_image(&self, base: &str, ins: &Instruction) -> Result<StageResult> {
        let images = &self.session.worker.images;
        let image = match images.resolve(base, &self.node.platform, self.req.pull) {
            Ok(image) => image,
            Err(Error::ImageNotFound { .. }) => {
                return Err(self.fail(
                    ins,
                    &format!(
                        "image {base:?} is not in the store and no registry may be used: load it first \
                         (rbuild load -i FILE|DIR) or name a layout (oci-layout://PATH:TAG){}",
                        self.stage_hint(base)
                    ),
                ));
            }
            Err(Error::Registry(e)) => {
                let hint = match *e {
                    rbuild_registry::RegistryError::Offline { .. } => {
                        "; load it first (rbuild load -i FILE|DIR), name a layout (oci-layout://PATH:TAG) or \
                         build without --offline"
                    }
                    _ => "",
                };
                return Err(self.fail(ins, &format!("cannot pull {base}: {e}{hint}{}", self.stage_hint(base))));
            }
            Err(e) => return Err(e),
        };
        if let Some(actual) = crate::platform::Platform::of_config(&image.config).filter(|p| *p != self.node.platform) {
            self.warn_platform(ins, base, &actual)?;
        }
        let digest = image.manifest_digest.clone();
        let diff_ids = image.diff_ids()?;
        // Made present when the stage's files are first read (`ensure_files`): the layers may be remote.
        let snapshots = diff_ids.iter().map(|d| self.store.snapshot_path(d)).collect();
        let config = super::config::ImageConfig::from_json(image.config.clone());
        Ok(StageResult {
            layers: image.layers,
            diff_ids,
            snapshots,
            config,
            cache_key: digest.to_string(),
            args: Vec::new(),
        })
    }

    /// BuildKit's InvalidBaseImagePlatform: the image found is of another platform than the stage's (its RUN steps
    /// then run as the image's binaries need, emulated when foreign).
    fn warn_platform(&self, ins: &Instruction, base: &str, actual: &crate::platform::Platform) -> Result<()> {
        let message = format!(
            "Base image {base} was pulled with platform \"{actual}\", expected \"{}\" for current build",
            self.node.platform
        );
        self.raise_check(ins, "InvalidBaseImagePlatform", &message)
    }

    /// ` (did you mean stage "x"?)` when an image name is close to a stage name.
    pub(super) fn stage_hint(&self, name: &str) -> String {
        let names = self.df.stages.iter().filter_map(|s| s.name.as_deref());
        crate::dockerfile::suggest::closest(&name.to_ascii_lowercase(), names)
            .map(|s| format!(" (did you mean stage {s:?}?)"))
            .unwrap_or_default()
    }

    /// Whether a source's files are read from a merge of its snapshots (a stage or an image), not a directory.
    pub(super) fn source_is_merged(&self, source: &Source) -> bool {
        !matches!(source, Source::NamedContext(n) if matches!(self.req.named_contexts.get(n), Some(NamedContext::Dir(_))))
    }

    /// The root directory a source's files are read from, its cache identity, and a temporary directory to remove
    /// afterwards (a stage's or image's merged snapshots). `None` is the build context.
    pub(super) fn source_root(
        &self,
        ins: &Instruction,
        source: Option<&Source>,
    ) -> Result<(PathBuf, String, Option<PathBuf>)> {
        let merged = |result: &StageResult| -> Result<(PathBuf, String, Option<PathBuf>)> {
            result.ensure_files(self.store, self.tree_ops)?;
            let dir = self.store.tmp().path("from");
            merge_snapshots(&result.snapshots, &dir)?;
            Ok((dir.clone(), result.cache_key.clone(), Some(dir)))
        };
        match source {
            None => Ok((self.req.context.clone(), "context".into(), None)),
            Some(Source::NamedContext(n)) if matches!(self.req.named_contexts.get(n), Some(NamedContext::Dir(_))) => {
                let Some(NamedContext::Dir(d)) = self.req.named_contexts.get(n) else { unreachable!() };
                Ok((d.clone(), format!("context {n}"), None))
            }
            Some(s) => merged(&self.resolve_source_image(s, ins)?),
        }
    }
}

/// The ignore rules of a named directory context: its own `.dockerignore`, if any.
pub(super) fn named_context_ignore(dir: &Path) -> Result<IgnoreMatcher> {
    crate::context::load_ignore(dir, &dir.join("Dockerfile")).map(|(matcher, _)| matcher)
}

/// Name a source for messages.
pub(super) fn describe(source: Option<&Source>) -> String {
    match source {
        None => "the build context".into(),
        Some(Source::Scratch) => "scratch".into(),
        Some(Source::Stage(i)) => format!("stage {i}"),
        Some(Source::NamedContext(n)) => format!("build context {n:?}"),
        Some(Source::Image(r)) => format!("image {r}"),
    }
}
