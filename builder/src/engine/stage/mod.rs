//! Building one stage: resolve its base (an image through the worker's image source, a named context, another
//! stage, or `scratch`), run the base image's ONBUILD triggers, then apply the stage's instructions in order.
//! This file holds the stage's state and the instruction loop; each concern is a file of its own: variable scope
//! ([`vars`]), metadata instructions and WORKDIR ([`meta`]), base and `--from` sources ([`sources`]), a read-only
//! view of the stage's files ([`view`]), RUN ([`run`], through the worker's executor), COPY/ADD ([`copy`]),
//! ADD of URLs and git repositories ([`remote`], through the worker's fetcher), and turning a step's files into a
//! layer, a snapshot and a cache record ([`commit`]). Every cache key comes from [`super::cache`].

mod commit;
mod copy;
mod meta;
mod remote;
mod run;
mod sources;
mod vars;
mod view;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::{Value, json};

use super::config::ImageConfig;
use super::graph::{OpKind, Source, StageNode};
use super::progress::{Event, Stream};
use super::{BuildRequest, NamedContext, Session, cache, config};
use crate::context::IgnoreMatcher;
use crate::digest::Digest;
use crate::dockerfile::{Dockerfile, Instruction, InstructionKind};
use crate::error::{Error, Result, StepError};
use crate::export::image::{LayerRef, LoadedImage, MediaTypes, write_image};
use crate::store::{Store, TreeOps};

/// The PATH of an image that sets none (BuildKit's and Docker's default for Linux).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a layer directory's files came from: whether it can become the layer's snapshot as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayerDir {
    /// An overlay upper directory written inside the sandbox: its files have their real owners.
    Sandbox,
    /// A tree rbuild wrote itself (COPY, WORKDIR): owners are real only when rbuild runs as root or without
    /// subordinate ids.
    Written,
    /// A written tree whose entries were given attributes its files do not have.
    Adjusted,
}

/// A built stage: its layers (with their snapshots, bottom first), config and cache key.
#[derive(Debug, Clone)]
pub struct StageResult {
    pub layers: Vec<LayerRef>,
    pub diff_ids: Vec<Digest>,
    pub snapshots: Vec<PathBuf>,
    pub config: ImageConfig,
    pub cache_key: String,
    /// The ARGs the stage declared (with the ones it inherited), in order: a stage built `FROM` it starts with
    /// them, values and all, as BuildKit's stages inherit their base stage's build args and environment.
    pub args: Vec<(String, Option<String>)>,
}

impl StageResult {
    /// An empty stage (`FROM scratch`), configured as BuildKit's empty image is: the default PATH and
    /// WorkingDir `/`.
    fn scratch(platform: &crate::platform::Platform) -> StageResult {
        let mut config = json!({
            "architecture": "",
            "os": "linux",
            "config": { "Env": [DEFAULT_PATH], "WorkingDir": "/" },
            "rootfs": { "type": "layers", "diff_ids": [] },
            "history": [],
        });
        platform.write_into_config(&mut config);
        let config = ImageConfig::from_json(config);
        StageResult {
            layers: Vec::new(),
            diff_ids: Vec::new(),
            snapshots: Vec::new(),
            config,
            cache_key: cache::scratch(),
            args: Vec::new(),
        }
    }

    /// Make every layer's snapshot present (remote layers fetched, missing snapshots unpacked): before anything
    /// reads the stage's files.
    pub(crate) fn ensure_files(&self, store: &Store, tree_ops: &dyn TreeOps) -> Result<()> {
        if self.snapshots.iter().all(|s| s.is_dir()) {
            return Ok(());
        }
        let layers: Vec<(Digest, Digest)> =
            self.layers.iter().zip(&self.diff_ids).map(|(l, d)| (l.digest.clone(), d.clone())).collect();
        store.ensure_snapshots(tree_ops, &layers)
    }

    /// Write the stage as an image into the store.
    pub fn write(&self, store: &Store, media: MediaTypes) -> Result<LoadedImage> {
        let created = self.config.created().unwrap_or("1970-01-01T00:00:00Z").to_string();
        write_image(store, self.config.json().clone(), &self.layers, &[], &[], &created, media)
    }
}

/// Builds one stage of one build.
pub(crate) struct StageBuilder<'a> {
    session: &'a Session<'a>,
    store: &'a Store,
    req: &'a BuildRequest,
    df: &'a Dockerfile,
    index: usize,
    node: &'a StageNode,
    ignore: &'a IgnoreMatcher,
    /// The results of the stages this one uses.
    inputs: BTreeMap<usize, StageResult>,
    tree_ops: &'a dyn TreeOps,
    /// ARGs in scope and their values, in declaration order.
    args: Vec<(String, Option<String>)>,
    state: StageResult,
    /// The global ARGs, for `ARG NAME` redeclarations without a default.
    meta: Vec<(String, String)>,
    /// A CMD was set in this stage (an ENTRYPOINT then does not reset it).
    cmd_set: bool,
    /// This build's time (SOURCE_DATE_EPOCH when set): when the steps it runs are made.
    created: String,
    /// The newest time one of the stage's steps was made (see `stamp_created`).
    newest_step: Option<String>,
    /// Steps shown so far and in all (FROM, RUN, COPY, ADD, WORKDIR), for `[stage i/n]`.
    shown: usize,
    total: usize,
    /// `--no-cache-filter` names this stage.
    no_cache: bool,
    pub(crate) executed: usize,
    pub(crate) cached: usize,
    /// The key of the step being executed, claimed until its result is in the cache.
    claimed: Option<super::sharing::StepGuard>,
    /// Undefined variables reported already, by line and name (an instruction's words may be expanded twice).
    reported: std::cell::RefCell<std::collections::BTreeSet<(usize, String)>>,
    /// How many of the stage's snapshots are known to be present: a cached step's or a base image's layer may be
    /// remote, or its snapshot pruned, and is made present only when the stage's files are first read.
    files_ready: std::cell::Cell<usize>,
    /// Making them present failed while the view looked at the stage (which cannot fail): raised at the next
    /// cache lookup or step result, so nothing is keyed or recorded on a view that could not be read.
    files_error: std::cell::RefCell<Option<Error>>,
}

impl<'a> StageBuilder<'a> {
    pub(crate) fn new(session: &'a Session<'a>, node: &'a StageNode, inputs: BTreeMap<usize, StageResult>) -> Self {
        let req = session.req;
        let stage = &session.df.stages[node.index];
        // FROM is a step unless it is scratch (nothing to resolve), as BuildKit numbers them (testStepNames).
        let total = usize::from(node.base != Source::Scratch)
            + node.ops.iter().filter(|o| o.kind != OpKind::Config).count()
            + stage.instructions.iter().filter(|i| matches!(i.kind, InstructionKind::Workdir(_))).count();
        let no_cache = req.no_cache
            || req.no_cache_filter.iter().any(|f| {
                stage.name.as_deref() == Some(f.to_ascii_lowercase().as_str()) || f == &node.index.to_string()
            });
        StageBuilder {
            session,
            store: session.store,
            req,
            df: session.df,
            index: node.index,
            node,
            ignore: session.ignore,
            inputs,
            tree_ops: session.worker.tree_ops.as_ref(),
            args: Vec::new(),
            state: StageResult::scratch(&node.platform),
            meta: Vec::new(),
            cmd_set: false,
            created: config::created(req.layers.source_date_epoch),
            newest_step: None,
            shown: 0,
            total,
            no_cache,
            executed: 0,
            cached: 0,
            claimed: None,
            reported: Default::default(),
            files_ready: Default::default(),
            files_error: Default::default(),
        }
    }

    /// Make the stage's files present (see `files_ready`): every step that reads or runs on them calls this first.
    fn ensure_files(&self) -> Result<()> {
        let n = self.state.snapshots.len();
        if self.files_ready.get() >= n {
            return Ok(());
        }
        self.state.ensure_files(self.store, self.tree_ops)?;
        self.files_ready.set(n);
        Ok(())
    }

    /// The view's way to `ensure_files`: a failure is kept for [`Self::files_failed`].
    fn ensure_files_for_view(&self) {
        if let Err(e) = self.ensure_files() {
            self.files_error.borrow_mut().get_or_insert(e);
        }
    }

    /// A failure to make the stage's files present while the view read them.
    fn files_failed(&self) -> Result<()> {
        match self.files_error.borrow_mut().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The instruction cannot be carried out: `message` says why, at the instruction.
    fn fail(&self, ins: &Instruction, message: &str) -> Error {
        self.step_error(ins, StepError::Invalid(message.to_string()))
    }

    /// A step failure at the instruction.
    fn step_error(&self, ins: &Instruction, source: StepError) -> Error {
        let at = crate::dockerfile::Location::new(&self.req.dockerfile_name, &self.req.dockerfile_text, ins.span);
        Error::Step { at: Box::new(at), source }
    }

    fn stage_name(&self) -> String {
        self.df.stages[self.index].name.clone().unwrap_or_else(|| format!("stage-{}", self.index))
    }

    /// Announce a step: `[stage i/n] TEXT`; returns its number.
    fn start(&mut self, text: &str) -> usize {
        self.shown += 1;
        let step = self.session.next_step();
        let stage = self.stage_name();
        let name = format!("[{stage} {}/{}] {}", self.shown, self.total, text.lines().next().unwrap_or("").trim());
        self.session.progress.event(&Event::Started { step, stage: &stage, name: &name });
        step
    }

    fn done(&self, step: usize, start: Instant) {
        self.session.progress.event(&Event::Done { step, elapsed: start.elapsed() });
    }

    /// Report a step's failure and return the error.
    fn step_failed(&self, step: usize, e: Error) -> Error {
        let message = e.to_string();
        let first = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("failed");
        self.session.progress.event(&Event::Failed { step, message: first });
        e
    }

    /// Resolve the base and run every instruction.
    pub(crate) fn run(&mut self) -> Result<StageResult> {
        let stage = &self.df.stages[self.index];
        let meta = self.meta_args()?;
        let base_ins =
            Instruction { kind: InstructionKind::Arg(Vec::new()), span: stage.span, original: String::new() };
        let base_text = match &self.node.base {
            Source::Scratch => "scratch".to_string(),
            Source::Stage(i) => self.df.stages[*i].name.clone().unwrap_or_else(|| i.to_string()),
            Source::NamedContext(n) | Source::Image(n) => n.clone(),
        };
        let base = self.node.base.clone();
        if base == Source::Scratch {
            self.state = StageResult::scratch(&self.node.platform);
        } else {
            let step = self.start(&format!("FROM {base_text}"));
            let start = Instant::now();
            self.state = self.resolve_source_image(&base, &base_ins).map_err(|e| self.step_failed(step, e))?;
            self.files_ready.set(0);
            self.done(step, start);
            // A stage of this Dockerfile as the base: its ARGs (and their values) are this stage's too.
            if matches!(base, Source::Stage(_)) {
                self.args = self.state.args.clone();
            }
        }
        let history_from = self.state.config.history_len();
        self.meta = meta;
        self.run_onbuild_triggers(&base_ins)?;
        for ins in &stage.instructions {
            if self.session.cancel.load(Ordering::SeqCst) {
                return Err(Error::Cancelled);
            }
            self.instruction(ins)?;
        }
        self.stamp_created(history_from);
        self.state.args = self.args.clone();
        Ok(self.state.clone())
    }

    /// On a cache hit (and unless the cache is off for this stage): report the step CACHED, add its layer and
    /// advance the stage's key; returns whether it hit.
    fn reuse_cached(&mut self, key: &str, step: usize, created_by: &str) -> Result<bool> {
        self.files_failed()?;
        // Another stage or build executing this very step finishes first; then its record is a hit.
        self.claimed = None;
        self.claimed = Some(super::sharing::StepLocks::claim(&self.session.worker.step_locks, key));
        if self.no_cache {
            return Ok(false);
        }
        let Some(hit) = self.cache_get(key) else { return Ok(false) };
        self.claimed = None;
        self.session.progress.event(&Event::Cached { step });
        let diff_id = self.apply_cached(hit, created_by.to_string())?;
        self.advance(key, diff_id.as_ref());
        Ok(true)
    }

    /// The base image's ONBUILD triggers run first, in order, as if they followed FROM; the new image does not
    /// keep them (as in Docker and BuildKit).
    fn run_onbuild_triggers(&mut self, from: &Instruction) -> Result<()> {
        let triggers = self.state.config.onbuild();
        if triggers.is_empty() {
            return Ok(());
        }
        self.state.config.clear_onbuild();
        let texts: Vec<&str> = triggers.iter().map(String::as_str).collect();
        let parsed = super::graph::parse_triggers(&texts)
            .map_err(|e| self.fail(from, &format!("the base image's ONBUILD triggers do not parse: {e}")))?;
        let named: std::collections::BTreeSet<String> = self.req.named_contexts.keys().cloned().collect();
        for (n, mut ins) in parsed.into_iter().enumerate() {
            // Errors point at the FROM line that brought the trigger in.
            ins.span = from.span;
            ins.original = format!("ONBUILD {}", ins.original.trim());
            // A base stage's triggers had their reads resolved with the graph; an image's are resolved now, and
            // may name images, named contexts or stages this stage already depends on.
            let reads = match self.node.trigger_reads.get(n) {
                Some(r) => r.clone(),
                None => super::graph::reads_of(self.df, &ins, self.index, &named, &|_, m| self.fail(from, &m))?,
            };
            if let Some(Source::Stage(i)) =
                reads.iter().find(|r| matches!(r, Source::Stage(i) if !self.node.deps.contains(i)))
            {
                return Err(self.fail(
                    from,
                    &format!(
                        "{}: the base image's trigger reads stage {:?}, which this stage does not depend on \
                         (copy from it in a stage of its own, or base the stage on it)",
                        ins.original,
                        self.df.stages[*i].name.clone().unwrap_or_else(|| i.to_string())
                    ),
                ));
            }
            self.dispatch(&ins, &reads)?;
        }
        Ok(())
    }

    /// A cache lookup, remembered (with its result) for `--cache-to`.
    fn cache_get(&self, key: &str) -> Option<cache::Cached> {
        let hit = cache::get(self.store, key)?;
        self.session.note_cache_use(self.index, key, &hit);
        Some(hit)
    }

    /// Store a step's result in the cache, remembered for `--cache-to`.
    fn cache_put(&self, key: &str, cached: &cache::Cached) -> Result<()> {
        cache::put(self.store, key, cached)?;
        self.session.note_cache_use(self.index, key, cached);
        Ok(())
    }

    /// An instruction of the stage, with what the graph resolved it to read.
    fn instruction(&mut self, ins: &Instruction) -> Result<()> {
        let reads = self
            .node
            .ops
            .iter()
            .find(|o| std::ptr::eq(&self.df.stages[self.index].instructions[o.instruction], ins))
            .map(|o| o.reads.clone())
            .unwrap_or_default();
        self.dispatch(ins, &reads)
    }

    /// Carry out one instruction, given what it reads from other stages, images or contexts.
    fn dispatch(&mut self, ins: &Instruction, reads: &[Source]) -> Result<()> {
        match &ins.kind {
            InstructionKind::Run(run) => return self.run_step(ins, run, reads),
            InstructionKind::Copy(c) => return self.copy_step(ins, c, false, reads.first()),
            InstructionKind::Add(c) => return self.copy_step(ins, c, true, reads.first()),
            InstructionKind::Workdir(w) => return self.workdir_step(ins, w),
            _ => {}
        }
        self.metadata(ins)
    }
}
