//! Building one stage: resolve its base (an image in the store, `oci-layout://`, a named context, another stage,
//! or `scratch`), then apply its instructions in order. RUN runs in the sandbox over the stage's snapshots; its
//! upper directory is diffed into a layer and then becomes that layer's snapshot. COPY builds a layer directory
//! from the context (or a named context's, an image's or another stage's files). WORKDIR creates its directory
//! when missing. Metadata instructions change the config and add an empty-layer history entry, as BuildKit's do.
//! Variables are expanded with the stage's ENV and the ARGs in scope.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use rbuild_runtime::{NetworkMode, OutputMode, OutputStream, Rootfs, RunSpec, Runtime, UsernsMode};
use serde_json::{Value, json};

use super::graph::{OpKind, Source, StageNode};
use super::progress::{Event, Stream};
use super::{BuildOptions, NamedContext, Shared, cache, config};
use crate::context::copy;
use crate::context::copy_reuse::{Incremental, PriorCopy};
use crate::context::git::is_git_url;
use crate::context::{IgnoreMatcher, clean_path, find_ignore_file};
use crate::digest::Digest;
use crate::dockerfile::shell::Lexer;
use crate::dockerfile::{CommandLine, CopySpec, Dockerfile, Instruction, InstructionKind, MountType, RunMount};
use crate::error::{Error, Result};
use crate::export::image::{LayerRef, LoadedImage, MediaTypes, load_image, write_image};
use crate::layer::{ApplyMode, ApplyOptions, apply_tar, collect_tree, diff_overlay_upper_mapped, export_layer};
use crate::run_image::id_map_for;
use crate::snapshotter::{merge_snapshots, merge_snapshots_for};
use crate::store::{Store, TreeOps};
use crate::userns_tree_ops::tree_ops_for;

/// A heredoc script run as a file: where it is mounted in the step, and its content.
type HeredocScript = (String, String);

/// A built stage: its layers (with their snapshots, bottom first), config and cache key.
#[derive(Debug, Clone)]
pub struct StageResult {
    pub layers: Vec<LayerRef>,
    pub diff_ids: Vec<Digest>,
    pub snapshots: Vec<PathBuf>,
    pub config: Value,
    pub cache_key: String,
}

impl StageResult {
    fn scratch() -> StageResult {
        let config = json!({
            "architecture": crate::export::image::host_architecture(),
            "os": "linux",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": [] },
            "history": [],
        });
        StageResult {
            layers: Vec::new(),
            diff_ids: Vec::new(),
            snapshots: Vec::new(),
            config,
            cache_key: cache::key(&["scratch"]),
        }
    }

    /// Write the stage as an image into the store.
    pub fn write(&self, store: &Store, media: MediaTypes) -> Result<LoadedImage> {
        let created = self.config["created"].as_str().unwrap_or("1970-01-01T00:00:00Z").to_string();
        write_image(store, self.config.clone(), &self.layers, &[], &[], &created, media)
    }
}

pub(crate) struct StageBuilder<'a> {
    sh: &'a Shared<'a>,
    store: &'a Store,
    runtime: &'a Runtime,
    opts: &'a BuildOptions,
    df: &'a Dockerfile,
    index: usize,
    node: &'a StageNode,
    ignore: &'a IgnoreMatcher,
    /// The results of the stages this one uses.
    done: BTreeMap<usize, StageResult>,
    ops: Box<dyn TreeOps + 'a>,
    /// ARGs in scope and their values, in declaration order.
    args: Vec<(String, Option<String>)>,
    state: StageResult,
    /// The global ARGs, for `ARG NAME` redeclarations without a default.
    meta: Vec<(String, String)>,
    /// A CMD was set in this stage (an ENTRYPOINT then does not reset it).
    cmd_set: bool,
    created: String,
    /// Steps shown so far and in all (FROM, RUN, COPY, ADD, WORKDIR), for `[stage i/n]`.
    shown: usize,
    total: usize,
    /// `--no-cache-filter` names this stage.
    no_cache: bool,
    pub(crate) executed: usize,
    pub(crate) cached: usize,
    /// The key of the step being executed, claimed until its result is in the cache.
    claimed: Option<super::sharing::StepGuard>,
}

impl<'a> StageBuilder<'a> {
    pub(crate) fn new(sh: &'a Shared<'a>, node: &'a StageNode, done: BTreeMap<usize, StageResult>) -> Self {
        let opts = sh.opts;
        let stage = &sh.df.stages[node.index];
        let total = 1
            + node.ops.iter().filter(|o| o.kind != OpKind::Config).count()
            + stage.instructions.iter().filter(|i| matches!(i.kind, InstructionKind::Workdir(_))).count();
        let no_cache = opts.no_cache
            || opts.no_cache_filter.iter().any(|f| {
                stage.name.as_deref() == Some(f.to_ascii_lowercase().as_str()) || f == &node.index.to_string()
            });
        StageBuilder {
            sh,
            store: sh.store,
            runtime: sh.runtime,
            opts,
            df: sh.df,
            index: node.index,
            node,
            ignore: sh.ignore,
            done,
            ops: tree_ops_for(sh.runtime, opts.userns),
            args: Vec::new(),
            state: StageResult::scratch(),
            meta: Vec::new(),
            cmd_set: false,
            created: config::created(opts.layers.source_date_epoch),
            shown: 0,
            total,
            no_cache,
            executed: 0,
            cached: 0,
            claimed: None,
        }
    }

    /// The global ARGs (predefined and declared before the first FROM) with build-arg overrides.
    fn meta_args(&self) -> Result<Vec<(String, String)>> {
        let fail = |span, message: String| -> Error {
            crate::dockerfile::DockerfileError::new(
                &self.opts.dockerfile_name,
                &self.opts.dockerfile_text,
                span,
                message,
            )
            .into()
        };
        super::graph::global_args(self.df, &self.opts.build_args, &fail)
    }

    fn expand_with(&self, ins: &Instruction, word: &str, env: &[(String, String)]) -> Result<String> {
        Lexer::new(self.df.escape).process_word(word, &env.to_vec()).map_err(|e| self.fail(ins, &e.to_string()))
    }

    /// The ARGs in scope that have values.
    fn arg_values(&self) -> Vec<(String, String)> {
        self.args.iter().filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone()))).collect()
    }

    /// The variables an instruction sees: ARGs in scope, overridden by ENV.
    fn vars(&self) -> Vec<(String, String)> {
        let env = config::env_pairs(&self.state.config);
        let mut v: Vec<(String, String)> =
            self.arg_values().into_iter().filter(|(k, _)| !env.iter().any(|(e, _)| e == k)).collect();
        v.extend(env);
        v
    }

    fn expand(&self, ins: &Instruction, word: &str) -> Result<String> {
        self.expand_with(ins, word, &self.vars())
    }

    fn fail(&self, ins: &Instruction, message: &str) -> Error {
        let e = crate::dockerfile::DockerfileError::new(
            &self.opts.dockerfile_name,
            &self.opts.dockerfile_text,
            ins.span,
            message.to_string(),
        );
        Error::from(e)
    }

    fn stage_name(&self) -> String {
        self.df.stages[self.index].name.clone().unwrap_or_else(|| format!("stage-{}", self.index))
    }

    /// Announce a step: `[stage i/n] TEXT`; returns its number.
    fn start(&mut self, text: &str) -> usize {
        self.shown += 1;
        let step = self.sh.next_step();
        let stage = self.stage_name();
        let name = format!("[{stage} {}/{}] {}", self.shown, self.total, text.lines().next().unwrap_or("").trim());
        self.sh.progress.event(&Event::Started { step, stage: &stage, name: &name });
        step
    }

    fn done(&self, step: usize, start: Instant) {
        self.sh.progress.event(&Event::Done { step, elapsed: start.elapsed() });
    }

    /// Report a step's failure and return the error.
    fn step_failed(&self, step: usize, e: Error) -> Error {
        let message = e.to_string();
        let first = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("failed");
        self.sh.progress.event(&Event::Failed { step, message: first });
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
        let step = self.start(&format!("FROM {base_text}"));
        let start = Instant::now();
        let base = self.node.base.clone();
        self.state = self.resolve_source_image(&base, &base_ins).map_err(|e| self.step_failed(step, e))?;
        self.done(step, start);
        self.meta = meta;
        self.run_onbuild_triggers(&base_ins)?;
        for ins in &stage.instructions {
            if self.sh.cancel.load(Ordering::SeqCst) {
                return Err(Error::Cancelled);
            }
            self.instruction(ins)?;
        }
        self.state.config["created"] = Value::String(self.created.clone());
        Ok(self.state.clone())
    }

    /// A source as a stage state: scratch, a built stage, an image, or a named context (a directory becomes a
    /// one-layer image of its files).
    fn resolve_source_image(&self, source: &Source, ins: &Instruction) -> Result<StageResult> {
        match source {
            Source::Scratch => Ok(StageResult::scratch()),
            Source::Stage(i) => {
                self.done.get(i).cloned().ok_or_else(|| self.fail(ins, &format!("stage {i} was not built")))
            }
            Source::Image(r) => self.resolve_image(r, ins),
            Source::NamedContext(n) => match self.opts.named_contexts.get(n) {
                Some(NamedContext::Image(r)) => self.resolve_image(r, ins),
                Some(NamedContext::Dir(dir)) => {
                    let mut state = StageResult::scratch();
                    let selection = copy::select(dir, &named_context_ignore(dir)?, &[".".to_string()])
                        .map_err(|e| self.fail(ins, &e.to_string()))?;
                    let layer_dir = self.store.tmp().path("context-image");
                    fs::create_dir_all(&layer_dir).map_err(Error::io("create", &layer_dir))?;
                    selection.copy_into(&layer_dir, "/", None, None, None)?;
                    let layer = self.commit_dir(&layer_dir, collect_tree(&layer_dir)?, LayerDir::Written)?;
                    if let Some((l, diff_id, snap)) = layer {
                        state.config["rootfs"]["diff_ids"] = json!([diff_id.to_string()]);
                        state.layers.push(l);
                        state.diff_ids.push(diff_id);
                        state.snapshots.push(snap);
                    }
                    state.cache_key = cache::key(&["context", &selection.checksum()?]);
                    Ok(state)
                }
                None => Err(self.fail(ins, &format!("build context {n:?} was not given"))),
            },
        }
    }

    fn resolve_image(&self, base: &str, ins: &Instruction) -> Result<StageResult> {
        let image = if base.starts_with("oci-layout://") {
            let digest = crate::export::import_layout_reference(self.store, base)?;
            load_image(self.store, &digest)?
        } else {
            let client = self.opts.registry.as_deref();
            match crate::distribution::ensure_image(self.store, client, base, self.opts.pull) {
                Ok((image, _)) => image,
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
            }
        };
        let digest = image.manifest_digest.clone();
        let diff_ids = image.diff_ids()?;
        let mut snapshots = Vec::new();
        for (l, d) in image.layers.iter().zip(&diff_ids) {
            snapshots.push(self.store.ensure_snapshot(self.ops.as_ref(), d, &l.digest)?);
        }
        let mut config = image.config.clone();
        if !config["config"].is_object() {
            config["config"] = json!({});
        }
        Ok(StageResult { layers: image.layers, diff_ids, snapshots, config, cache_key: digest.to_string() })
    }

    /// On a cache hit (and unless the cache is off for this stage): report the step CACHED, add its layer and
    /// advance the stage's key; returns whether it hit.
    fn reuse_cached(&mut self, key: &str, step: usize, created_by: &str) -> Result<bool> {
        // Another stage or build executing this very step finishes first; then its record is a hit.
        self.claimed = None;
        self.claimed = Some(super::sharing::StepLocks::claim(&self.opts.step_locks, key));
        if self.no_cache {
            return Ok(false);
        }
        let Some(hit) = self.cache_get(key) else { return Ok(false) };
        self.claimed = None;
        self.sh.progress.event(&Event::Cached { step });
        let diff_id = self.apply_cached(hit, created_by.to_string())?;
        self.advance(key, diff_id.as_ref());
        Ok(true)
    }

    /// The base image's ONBUILD triggers run first, in order, as if they followed FROM; the new image does not
    /// keep them (as in Docker and BuildKit).
    fn run_onbuild_triggers(&mut self, from: &Instruction) -> Result<()> {
        let triggers: Vec<String> = self.state.config["config"]["OnBuild"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if triggers.is_empty() {
            return Ok(());
        }
        self.state.config["config"]["OnBuild"] = Value::Null;
        let texts: Vec<&str> = triggers.iter().map(String::as_str).collect();
        let parsed = super::graph::parse_triggers(&texts)
            .map_err(|e| self.fail(from, &format!("the base image's ONBUILD triggers do not parse: {e}")))?;
        let named: std::collections::BTreeSet<String> = self.opts.named_contexts.keys().cloned().collect();
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
        self.sh.note_cache_use(self.index, key, &hit);
        Some(hit)
    }

    /// Store a step's result in the cache, remembered for `--cache-to`.
    fn cache_put(&self, key: &str, cached: &cache::Cached) -> Result<()> {
        cache::put(self.store, key, cached)?;
        self.sh.note_cache_use(self.index, key, cached);
        Ok(())
    }

    /// ` (did you mean stage "x"?)` when an image name is close to a stage name.
    fn stage_hint(&self, name: &str) -> String {
        let names = self.df.stages.iter().filter_map(|s| s.name.as_deref());
        crate::dockerfile::suggest::closest(&name.to_ascii_lowercase(), names)
            .map(|s| format!(" (did you mean stage {s:?}?)"))
            .unwrap_or_default()
    }

    fn history(&mut self, created_by: String, empty_layer: bool) {
        let mut e = json!({ "created": self.created, "created_by": created_by, "comment": "rbuild" });
        if empty_layer {
            e["empty_layer"] = Value::Bool(true);
        }
        let mut h = self.state.config["history"].as_array().cloned().unwrap_or_default();
        h.push(e);
        self.state.config["history"] = Value::Array(h);
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
        let mut created_by: Option<String> = None;
        match &ins.kind {
            InstructionKind::Run(_)
            | InstructionKind::Copy(_)
            | InstructionKind::Add(_)
            | InstructionKind::Workdir(_) => {}
            InstructionKind::Arg(decls) => {
                for d in decls {
                    let value = match (self.opts.build_args.get(&d.name), &d.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(def)) => Some(self.expand(ins, def)?),
                        (None, None) => self.meta.iter().rev().find(|(k, _)| *k == d.name).map(|(_, v)| v.clone()),
                    };
                    self.args.retain(|(k, _)| *k != d.name);
                    self.args.push((d.name.clone(), value));
                }
            }
            InstructionKind::Env(kvs) => {
                let mut text = String::from("ENV");
                // Every value of one ENV line sees the environment from before the line (as in Docker).
                let values: Vec<String> = kvs.iter().map(|kv| self.expand(ins, &kv.value)).collect::<Result<_>>()?;
                for (kv, v) in kvs.iter().zip(values) {
                    config::set_env(&mut self.state.config, &kv.key, &v);
                    text.push_str(&format!(" {}={v}", kv.key));
                }
                created_by = Some(text);
            }
            InstructionKind::Label(kvs) => {
                let mut text = String::from("LABEL");
                for kv in kvs {
                    let (k, v) = (self.expand(ins, &kv.key)?, self.expand(ins, &kv.value)?);
                    config::set_label(&mut self.state.config, &k, &v);
                    text.push_str(&format!(" {k}={v}"));
                }
                created_by = Some(text);
            }
            InstructionKind::Maintainer(m) => self.state.config["author"] = Value::String(m.clone()),
            InstructionKind::User(u) => {
                let u = self.expand(ins, u)?;
                created_by = Some(format!("USER {u}"));
                self.state.config["config"]["User"] = Value::String(u);
            }
            InstructionKind::Cmd(c) => {
                let argv = self.argv(c);
                self.state.config["config"]["Cmd"] = json!(argv);
                self.cmd_set = true;
            }
            InstructionKind::Entrypoint(e) => {
                let argv = e.as_ref().map(|c| self.argv(c)).unwrap_or_default();
                self.state.config["config"]["Entrypoint"] = if argv.is_empty() { Value::Null } else { json!(argv) };
                // ENTRYPOINT resets a CMD inherited from the base image.
                if !self.cmd_set {
                    self.state.config["config"]["Cmd"] = Value::Null;
                }
            }
            InstructionKind::Expose(ports) => {
                let mut keys = std::collections::BTreeSet::new();
                for p in ports {
                    for key in config::port_keys(&self.expand(ins, p)?) {
                        config::add_to_set(&mut self.state.config, "ExposedPorts", &key);
                        keys.insert(key);
                    }
                }
                // BuildKit's wording: the Go map of the ports.
                let shown: Vec<String> = keys.iter().map(|k| format!("{k}:{{}}")).collect();
                created_by = Some(format!("EXPOSE map[{}]", shown.join(" ")));
            }
            InstructionKind::Volume(vols) => {
                let mut all = Vec::new();
                for v in vols {
                    let v = self.expand(ins, v)?;
                    config::add_to_set(&mut self.state.config, "Volumes", &v);
                    all.push(v);
                }
                created_by = Some(format!("VOLUME {}", serde_json::to_string(&all).unwrap_or_default()));
            }
            InstructionKind::StopSignal(s) => {
                let s = self.expand(ins, s)?;
                created_by = Some(format!("STOPSIGNAL {s}"));
                self.state.config["config"]["StopSignal"] = Value::String(s);
            }
            InstructionKind::Healthcheck(h) => {
                let mut v = json!({ "Test": h.test });
                for (k, n) in [
                    ("Interval", h.interval),
                    ("Timeout", h.timeout),
                    ("StartPeriod", h.start_period),
                    ("StartInterval", h.start_interval),
                ] {
                    if n != 0 {
                        v[k] = json!(n);
                    }
                }
                if h.retries != 0 {
                    v["Retries"] = json!(h.retries);
                }
                self.state.config["config"]["Healthcheck"] = v;
            }
            InstructionKind::Shell(s) => self.state.config["config"]["Shell"] = json!(s),
            InstructionKind::Onbuild(expr) => {
                let mut ob = self.state.config["config"]["OnBuild"].as_array().cloned().unwrap_or_default();
                ob.push(Value::String(expr.clone()));
                self.state.config["config"]["OnBuild"] = Value::Array(ob);
            }
        }
        // Metadata instructions are not steps of their own in the progress (as in BuildKit). Their history
        // entry is the instruction with its variables expanded where BuildKit expands them.
        self.history(created_by.unwrap_or_else(|| ins.original.trim().to_string()), true);
        Ok(())
    }

    /// WORKDIR: set the working directory, and create it (a layer of its own) when the stage lacks it.
    fn workdir_step(&mut self, ins: &Instruction, w: &str) -> Result<()> {
        let w = self.expand(ins, w)?;
        let cur = self.state.config["config"]["WorkingDir"].as_str().unwrap_or("/").to_string();
        let joined = if w.starts_with('/') { w } else { format!("{}/{w}", cur.trim_end_matches('/')) };
        let joined = clean_path(&joined);
        let joined = if joined.starts_with('/') { joined } else { format!("/{joined}") };
        self.state.config["config"]["WorkingDir"] = Value::String(joined.clone());
        let created_by = format!("WORKDIR {joined}");
        let rel = joined.trim_start_matches('/').to_string();
        if rel.is_empty() || self.path_exists(&rel) {
            self.history(created_by, true);
            return Ok(());
        }
        let step = self.start(&ins.original);
        let start = Instant::now();
        let key = cache::key(&[&self.state.cache_key, "WORKDIR", &joined]);
        if self.reuse_cached(&key, step, &created_by)? {
            return Ok(());
        }
        // BuildKit creates a missing WORKDIR as the stage's USER.
        let owner = self.user_ids(ins).map_err(|e| self.step_failed(step, e))?;
        let layer_dir = self.store.tmp().path("workdir");
        let dir = layer_dir.join(&rel);
        fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let mut entries = collect_tree(&layer_dir)?;
        let origin = self.keep_existing_dirs(&layer_dir, &mut entries, owner, &|_| true);
        let layer = self.commit_dir(&layer_dir, entries, origin)?;
        self.finish_step(&key, layer, created_by, step, start)
    }

    /// What `rel` is in the stage's filesystem (without following a final symlink): the topmost snapshot that
    /// has it (or a whiteout of it, or an opaque parent hiding it) decides.
    fn path_meta(&self, rel: &str) -> Option<fs::Metadata> {
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
        for snap in self.state.snapshots.iter().rev() {
            let mut p = snap.clone();
            let mut hidden_below = false;
            for (i, comp) in comps.iter().enumerate() {
                p.push(comp);
                match fs::symlink_metadata(&p) {
                    Ok(m) if crate::layer::overlay_whiteout(&p, &m) => return None,
                    Ok(m) if i + 1 == comps.len() => return Some(m),
                    Ok(m) => hidden_below |= m.is_dir() && crate::layer::overlay_opaque(&p),
                    Err(_) if hidden_below => return None,
                    Err(_) => break,
                }
            }
        }
        None
    }

    fn path_exists(&self, rel: &str) -> bool {
        self.path_meta(rel).is_some()
    }

    /// The image-side (mode, uid, gid) of a directory the stage has at `rel`: owners recorded in the
    /// rootless xattr, else the on-disk owner mapped back through the sandbox's id map.
    fn stage_dir_attrs(&self, rel: &str) -> Option<(u32, u32, u32)> {
        let meta = self.path_meta(rel).filter(|m| m.is_dir())?;
        use std::os::unix::fs::MetadataExt;
        let path = self.state.snapshots.iter().rev().map(|s| s.join(rel)).find(|p| p.is_dir())?;
        let recorded = xattr::get(&path, crate::layer::tree::ROOTLESS_XATTR)
            .ok()
            .flatten()
            .and_then(|b| crate::layer::rootless_owner::decode(&b));
        let (uid, gid) = id_map_for(self.opts.userns).to_image(meta.uid(), meta.gid());
        let (uid, gid) = match recorded {
            Some((u, g)) => (u.unwrap_or(uid), g.unwrap_or(gid)),
            None => (uid, gid),
        };
        Some((meta.mode() & 0o7777, uid, gid))
    }

    /// Directories of a new layer that the stage already has keep their mode and owner (a COPY or WORKDIR
    /// into `/home/user/x` must not make `/home/user` root's); `new_owner` is given to the ones that are new.
    /// The directories in `layer_dir` are given the same attributes where this process can give them, so that
    /// the tree stays usable as the layer's snapshot; `Adjusted` when one could not be.
    fn keep_existing_dirs(
        &self,
        layer_dir: &Path,
        entries: &mut [crate::layer::TreeEntry],
        new_owner: Option<(u32, u32)>,
        which: &dyn Fn(&str) -> bool,
    ) -> LayerDir {
        use std::os::unix::ffi::OsStrExt;
        let mut origin = LayerDir::Written;
        for e in entries.iter_mut().filter(|e| matches!(e.kind, crate::layer::EntryKind::Dir)) {
            let rel = String::from_utf8_lossy(&e.path).into_owned();
            if !which(&rel) {
                continue;
            }
            let want = match self.stage_dir_attrs(&rel) {
                Some(attrs) => attrs,
                None => match new_owner {
                    Some((uid, gid)) => (e.mode, uid, gid),
                    None => continue,
                },
            };
            if (e.mode, e.uid, e.gid) != want {
                (e.mode, e.uid, e.gid) = want;
                if !set_written_dir_attrs(&layer_dir.join(std::ffi::OsStr::from_bytes(&e.path)), want) {
                    origin = LayerDir::Adjusted;
                }
            }
        }
        origin
    }

    /// The (uid, gid) the stage's USER resolves to in its own /etc/passwd and /etc/group (`None`: root).
    fn user_ids(&self, ins: &Instruction) -> Result<Option<(u32, u32)>> {
        let Some(user) = self.state.config["config"]["User"].as_str().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let text = |f: &str| String::from_utf8_lossy(&self.read_stage_file(f).unwrap_or_default()).into_owned();
        let r = rbuild_runtime::user::resolve_in(&text("etc/passwd"), &text("etc/group"), Some(user))
            .map_err(|m| self.fail(ins, &m))?;
        Ok(Some((r.uid, r.gid)).filter(|ids| *ids != (0, 0)))
    }

    /// A RUN's argv, with its heredocs as BuildKit runs them: a command that is only a heredoc is the script (run
    /// by the shell, or, starting with `#!`, as a file of its own — returned as (mount path, content)); any other
    /// command goes to the shell with its heredocs written out after it, for the shell to read.
    fn run_argv(&self, ins: &Instruction, cmd: &CommandLine) -> Result<(Vec<String>, Option<HeredocScript>)> {
        if cmd.heredocs.is_empty() {
            return Ok((self.argv(cmd), None));
        }
        if !cmd.prepend_shell {
            return Err(self.fail(ins, "heredocs need the shell form of RUN"));
        }
        let text = cmd.args.join(" ");
        let only_heredoc = cmd.heredocs.len() == 1 && {
            let t = text.trim();
            t.starts_with("<<") && !t.contains(char::is_whitespace)
        };
        let shell = self.argv(&CommandLine { args: Vec::new(), prepend_shell: true, heredocs: Vec::new() });
        if only_heredoc {
            let doc = &cmd.heredocs[0];
            let content =
                if doc.chomp { crate::dockerfile::chomp_heredoc_content(&doc.content) } else { doc.content.clone() };
            if content.starts_with("#!") {
                let target = format!("/dev/pipes/{}", doc.name.replace('/', "_"));
                return Ok((vec![target.clone()], Some((target, content))));
            }
            let mut argv = shell;
            argv.push(content);
            return Ok((argv, None));
        }
        let mut script = text;
        for doc in &cmd.heredocs {
            script.push('\n');
            script.push_str(&doc.content);
            script.push_str(&doc.name);
        }
        let mut argv = shell;
        argv.push(script);
        Ok((argv, None))
    }

    /// The argv of a command line: exec form as is, shell form through the stage's SHELL.
    fn argv(&self, c: &CommandLine) -> Vec<String> {
        if !c.prepend_shell {
            return c.args.clone();
        }
        let mut shell: Vec<String> = self.state.config["config"]["Shell"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        shell.extend(c.args.iter().cloned());
        shell
    }

    /// Add a layer (or none) to the stage; returns its diff_id.
    fn push_layer(&mut self, layer: Option<(LayerRef, Digest, PathBuf)>, created_by: String) -> Option<Digest> {
        match layer {
            Some((l, diff_id, snapshot)) => {
                let mut ids = self.state.config["rootfs"]["diff_ids"].as_array().cloned().unwrap_or_default();
                ids.push(Value::String(diff_id.to_string()));
                self.state.config["rootfs"]["diff_ids"] = Value::Array(ids);
                self.state.layers.push(l);
                self.state.diff_ids.push(diff_id.clone());
                self.state.snapshots.push(snapshot);
                self.history(created_by, false);
                Some(diff_id)
            }
            None => {
                self.history(created_by, true);
                None
            }
        }
    }

    /// The stage's key after a step: the step's key and what it produced, so the key of a stage's files follows
    /// their content (a step re-run with `--no-cache-filter` that writes something else changes it), and a
    /// `COPY --from` that stage can be keyed without reading its files.
    fn advance(&mut self, step_key: &str, diff_id: Option<&Digest>) {
        self.state.cache_key = cache::key(&[step_key, diff_id.map_or("-", Digest::as_str)]);
    }

    /// A cache hit: the layer (re-unpacked if its snapshot was pruned).
    fn apply_cached(&mut self, hit: cache::Cached, created_by: String) -> Result<Option<Digest>> {
        let layer = match hit.layer {
            Some((l, diff_id)) => {
                let snap = self.store.ensure_snapshot(self.ops.as_ref(), &diff_id, &l.digest)?;
                Some((l, diff_id, snap))
            }
            None => None,
        };
        let diff_id = self.push_layer(layer, created_by);
        self.cached += 1;
        Ok(diff_id)
    }

    /// Export a layer directory (an overlay upper or a COPY tree) and make it the layer's snapshot. A tree rbuild
    /// wrote itself cannot become the snapshot as it is under subordinate ids when it has owners other than root
    /// (they are only recorded, not real), nor one whose entries were given other attributes than its files
    /// have: the snapshot is then unpacked from the layer (inside the user namespace when there is one).
    fn commit_dir(
        &self,
        dir: &Path,
        entries: Vec<crate::layer::TreeEntry>,
        origin: LayerDir,
    ) -> Result<Option<(LayerRef, Digest, PathBuf)>> {
        let usable_as_snapshot = match origin {
            LayerDir::Sandbox => true,
            // Under subordinate ids the caller's own ids are root's, and only those are real on disk.
            LayerDir::Written => {
                rustix::process::geteuid().is_root()
                    || !matches!(self.opts.userns, UsernsMode::Subuid { .. })
                    || entries.iter().all(|e| (e.uid, e.gid) == (0, 0))
            }
            LayerDir::Adjusted => false,
        };
        if entries.is_empty() {
            self.ops.remove(dir)?;
            return Ok(None);
        }
        let info = export_layer(&entries, self.store, &self.opts.layers)?;
        let media_type = match self.opts.media_types {
            MediaTypes::Oci => info.compression.oci_media_type(),
            MediaTypes::Docker => info.compression.docker_media_type(),
        };
        let layer = LayerRef { digest: info.digest.clone(), size: info.size, media_type: media_type.to_string() };
        let snap = self.store.snapshot_path(&info.diff_id);
        if !usable_as_snapshot || snap.exists() || fs::rename(dir, &snap).is_err() {
            self.ops.remove(dir)?;
        }
        let snap = self.store.ensure_snapshot(self.ops.as_ref(), &info.diff_id, &info.digest)?;
        Ok(Some((layer, info.diff_id, snap)))
    }

    /// BuildKit's history text for RUN: the build args in scope as `|N K=V ...`, then the command.
    fn run_created_by(&self, argv: &[String]) -> String {
        let args = self.arg_values();
        let prefix = if args.is_empty() {
            String::new()
        } else {
            let kv: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("|{} {} ", kv.len(), kv.join(" "))
        };
        // BuildKit joins the arguments with spaces for both forms.
        format!("RUN {prefix}{} # rbuild", argv.join(" "))
    }

    fn run_step(&mut self, ins: &Instruction, run: &crate::dockerfile::RunSpec, reads: &[Source]) -> Result<()> {
        let step = self.start(&ins.original);
        let start = Instant::now();
        self.run_step_inner(ins, run, reads, step, start).map_err(|e| self.step_failed(step, e))
    }

    fn run_step_inner(
        &mut self,
        ins: &Instruction,
        run: &crate::dockerfile::RunSpec,
        reads: &[Source],
        step: usize,
        start: Instant,
    ) -> Result<()> {
        let cmd = &run.command;
        let (argv, script) = self.run_argv(ins, cmd)?;
        let created_by = self.run_created_by(&argv);
        let network = match run.network.as_deref() {
            None | Some("default") => self.opts.network,
            Some("none") => NetworkMode::None,
            Some("host") if self.opts.allow.contains("network.host") => NetworkMode::Host,
            Some("host") => {
                return Err(self.fail(ins, "RUN --network=host needs the entitlement: pass --allow network.host"));
            }
            Some(other) => return Err(self.fail(ins, &format!("RUN --network={other}: use default, none or host"))),
        };
        if run.security.as_deref() == Some("insecure") && !self.opts.allow.contains("security.insecure") {
            return Err(self.fail(ins, "RUN --security=insecure needs the entitlement: pass --allow security.insecure"));
        }
        let mut env: Vec<String> = self.vars().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.dedup_by(|a, b| a.split('=').next() == b.split('=').next());
        let workdir =
            self.state.config["config"]["WorkingDir"].as_str().filter(|w| !w.is_empty()).unwrap_or("/").to_string();
        let user = self.state.config["config"]["User"].as_str().filter(|u| !u.is_empty()).map(str::to_string);
        let run_dir = self.store.tmp().path("step");
        // Bind mounts read from the context, a named context, an image or another stage.
        let mut mounts = Vec::new();
        let mut mount_keys = Vec::new();
        let mut reads = reads.iter();
        let mut scratch_dirs = Vec::new();
        for m in &run.mounts {
            let mut m = m.clone();
            let from = m.from.as_ref().and_then(|_| reads.next());
            if m.kind == MountType::Bind {
                let (root, key, tmp) = self.source_root(ins, from)?;
                scratch_dirs.extend(tmp);
                let source = clean_path(m.source.as_deref().unwrap_or("."));
                let path = root.join(source.trim_start_matches('/'));
                let real = fs::canonicalize(&path).map_err(|_| {
                    self.fail(ins, &format!("bind mount source {source:?} does not exist in {}", describe(from)))
                })?;
                let real_root = fs::canonicalize(&root).map_err(Error::io("resolve", &root))?;
                if !real.starts_with(&real_root) {
                    return Err(self.fail(ins, &format!("bind mount source {source:?} leaves its context")));
                }
                mount_keys.push(format!("bind {source} from {key}"));
                m.source = Some(real.display().to_string());
                m.from = None;
            } else {
                if m.kind == MountType::Cache && m.from.is_some() {
                    // A cache seeded from a stage, image or context: a cache of its own (per id and seed), filled
                    // with the seed's files when first made.
                    let (root, key, tmp) = self.source_root(ins, from)?;
                    scratch_dirs.extend(tmp);
                    let source = clean_path(m.source.as_deref().unwrap_or("."));
                    let path = root.join(source.trim_start_matches('/'));
                    if !path.is_dir() {
                        return Err(self.fail(
                            ins,
                            &format!("cache mount source {source:?} is not a directory in {}", describe(from)),
                        ));
                    }
                    let id = m.id.clone().or_else(|| m.target.clone()).unwrap_or_default();
                    m.id = Some(format!("{id} from {key} {source}"));
                    m.source = Some(path.display().to_string());
                    m.from = None;
                }
                mount_keys.push(format!("{:?} {:?} {:?} {:?}", m.kind, m.target, m.id, m.read_only));
            }
            mounts.push(m);
        }
        let key = cache::key(&[
            &self.state.cache_key,
            "RUN",
            &serde_json::to_string(&argv).unwrap_or_default(),
            &env.join("\n"),
            &workdir,
            user.as_deref().unwrap_or(""),
            &mount_keys.join("\n"),
            &format!("{network:?}"),
            script.as_ref().map_or("", |(_, content)| content.as_str()),
        ]);
        // Proxy build args reach the step without an ARG, and stay out of its cache key.
        for (k, v) in self.opts.build_args.iter().filter(|(k, _)| super::graph::is_proxy_arg(k)) {
            if !env.iter().any(|e| e.split('=').next() == Some(k.as_str())) {
                env.push(format!("{k}={v}"));
            }
        }
        let cleanup = |me: &Self, dirs: &[PathBuf]| {
            for d in dirs {
                let _ = crate::store::remove_path(d);
            }
            let _ = me.runtime.remove_tree(&run_dir, me.opts.userns);
        };
        if self.reuse_cached(&key, step, &created_by)? {
            cleanup(self, &scratch_dirs);
            return Ok(());
        }
        let (upper, work, state) = (run_dir.join("upper"), run_dir.join("work"), run_dir.join("state"));
        for d in [&upper, &work, &state] {
            fs::create_dir_all(d).map_err(Error::io("create", d))?;
        }
        let mounts = self.with_agent_sources(ins, &mounts, &run_dir.join("secrets"))?;
        for m in mounts.iter().filter(|m| m.kind == MountType::Cache) {
            if let Ok(mut used) = self.sh.mounts_used.lock() {
                used.insert(crate::run_mounts::cache_dir_name(m));
            }
        }
        let mut prepared = crate::run_mounts::prepare(self.store, &mounts, &run_dir.join("scratch"))?;
        for (dir, uid, gid) in &prepared.owners_to_set {
            if self.opts.userns != UsernsMode::Single {
                tree_ops_for(self.runtime, self.opts.userns).chown(dir, *uid, *gid)?;
            }
        }
        env.extend(prepared.env.iter().cloned());
        if let Some((target, content)) = &script {
            // A heredoc script with a shebang runs as a file of its own, as in BuildKit.
            let file = run_dir.join("heredoc-script");
            fs::write(&file, content).map_err(Error::io("write", &file))?;
            fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(Error::io("chmod", &file))?;
            prepared.mounts.push(rbuild_runtime::Mount::Bind { source: file, target: target.clone(), read_only: true });
        }
        let mut lowers = self.state.snapshots.clone();
        lowers.reverse();
        let rootfs = if lowers.is_empty() {
            Rootfs::Dir(upper.clone())
        } else {
            Rootfs::Overlay { lowers, upper: upper.clone(), work }
        };
        let spec = RunSpec {
            rootfs,
            argv,
            env,
            cwd: workdir,
            user,
            hostname: "rbuild".into(),
            network,
            extra_hosts: self.opts.extra_hosts.clone(),
            userns: self.opts.userns,
            mounts: prepared.mounts.clone(),
            rlimits: self.opts.ulimits.clone(),
            shm_size: self.opts.shm_size,
            state_dir: state,
            all_capabilities: run.security.as_deref() == Some("insecure"),
        };
        // Output lines go through a channel (the runtime's sink must be 'static) to this step's progress events;
        // the last 20 are kept for the error message.
        let (tx, rx) = std::sync::mpsc::channel::<(Stream, String)>();
        let sink = std::sync::Arc::new(move |stream: OutputStream, line: &[u8]| {
            let text = String::from_utf8_lossy(line).trim_end_matches('\n').to_string();
            let stream = if stream == OutputStream::Stdout { Stream::Stdout } else { Stream::Stderr };
            let _ = tx.send((stream, text));
        });
        let progress = self.sh.progress;
        let (outcome, tail) = std::thread::scope(|scope| {
            let forwarder = scope.spawn(move || {
                let mut tail = std::collections::VecDeque::<String>::new();
                for (stream, line) in rx {
                    progress.event(&Event::Output { step, stream, line: &line });
                    tail.push_back(line);
                    if tail.len() > 20 {
                        tail.pop_front();
                    }
                }
                tail
            });
            let outcome = self.runtime.run(&spec, OutputMode::Lines(sink));
            (outcome, forwarder.join().unwrap_or_default())
        });
        prepared.release();
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                cleanup(self, &scratch_dirs);
                // The sandbox could not start the step (an unknown USER, a bad mount target...): say which.
                return Err(self.fail(ins, &e.to_string()));
            }
        };
        if !outcome.status.success() {
            // A step that filled the disk fails with whatever its program says (often "I/O error"): say why,
            // measured before its files are removed.
            let free = rustix::fs::statvfs(self.store.root()).map(|s| s.f_bavail.saturating_mul(s.f_frsize)).ok();
            cleanup(self, &scratch_dirs);
            let last: Vec<String> = tail.into_iter().collect();
            let mut msg = format!("RUN failed with exit code {}", outcome.status.code());
            if !last.is_empty() {
                msg.push_str(&format!("; its last output:\n{}", last.join("\n")));
            }
            if free.is_some_and(|f| f < 1 << 20) {
                msg.push_str(&format!(
                    "\n(note: no space left on the store's filesystem ({}): free some, `rbuild prune`, or use another --root)",
                    self.store.root().display()
                ));
            }
            if self.opts.userns == UsernsMode::Single {
                msg.push_str(&format!("\n(note: {})", rbuild_runtime::userns::SUBUID_HINT));
            }
            return Err(self.fail(ins, &msg));
        }
        for d in &scratch_dirs {
            let _ = crate::store::remove_path(d);
        }
        let entries = diff_overlay_upper_mapped(&upper, &id_map_for(self.opts.userns))?;
        let layer = self.commit_dir(&upper, entries, LayerDir::Sandbox)?;
        let _ = self.runtime.remove_tree(&run_dir, self.opts.userns);
        self.finish_step(&key, layer, created_by, step, start)
    }

    /// The root directory a source's files are read from, its cache identity, and a temporary directory to remove
    /// afterwards (a stage's or image's merged snapshots). `None` is the build context.
    fn source_root(&self, ins: &Instruction, source: Option<&Source>) -> Result<(PathBuf, String, Option<PathBuf>)> {
        let merged = |result: &StageResult| -> Result<(PathBuf, String, Option<PathBuf>)> {
            let dir = self.store.tmp().path("from");
            merge_snapshots(&result.snapshots, &dir)?;
            Ok((dir.clone(), result.cache_key.clone(), Some(dir)))
        };
        match source {
            None => Ok((self.opts.context.clone(), "context".into(), None)),
            Some(Source::NamedContext(n)) if matches!(self.opts.named_contexts.get(n), Some(NamedContext::Dir(_))) => {
                let Some(NamedContext::Dir(d)) = self.opts.named_contexts.get(n) else { unreachable!() };
                Ok((d.clone(), format!("context {n}"), None))
            }
            Some(s) => merged(&self.resolve_source_image(s, ins)?),
        }
    }

    /// Secret mounts take their values from `--secret` (a file, or an environment variable written to a file
    /// in the step's private directory, removed with it); SSH mounts take their socket from `--ssh`. The cache
    /// key never sees them.
    fn with_agent_sources(&self, ins: &Instruction, mounts: &[RunMount], dir: &Path) -> Result<Vec<RunMount>> {
        let mut out = Vec::new();
        for m in mounts {
            let mut m = m.clone();
            if m.kind == MountType::Ssh {
                let id = m.id.clone().unwrap_or_else(|| "default".into());
                match self.opts.ssh.get(&id) {
                    Some(sock) => m.source = Some(sock.display().to_string()),
                    None if m.required == Some(true) => {
                        return Err(self.fail(ins, &format!("SSH agent {id:?} is required: pass --ssh {id}")));
                    }
                    None => continue,
                }
            }
            if m.kind == MountType::Secret && m.source.is_none() {
                let id =
                    m.id.clone().or_else(|| m.target.as_ref().and_then(|t| t.rsplit('/').next().map(str::to_string)));
                let Some(source) = id.as_ref().and_then(|id| self.opts.secrets.get(id)) else {
                    if m.required == Some(true) {
                        return Err(self.fail(
                            ins,
                            &format!("secret {:?} is required: pass --secret id={0},src=FILE", id.unwrap_or_default()),
                        ));
                    }
                    out.push(m);
                    continue;
                };
                let value = match source {
                    super::SecretSource::File(p) => {
                        m.source = Some(p.display().to_string());
                        out.push(m);
                        continue;
                    }
                    super::SecretSource::Env(var) => std::env::var(var)
                        .map_err(|_| self.fail(ins, &format!("--secret env={var}: the variable is not set")))?,
                    super::SecretSource::Value(v) => v.clone(),
                };
                // A value is written to a file of the step's private directory (removed with it).
                fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
                let f = dir.join(format!("env-{}", id.clone().unwrap_or_default().replace('/', "_")));
                fs::write(&f, value).map_err(Error::io("write", &f))?;
                m.source = Some(f.display().to_string());
            }
            out.push(m);
        }
        Ok(out)
    }

    fn copy_step(&mut self, ins: &Instruction, c: &CopySpec, is_add: bool, from: Option<&Source>) -> Result<()> {
        let step = self.start(&ins.original);
        let start = Instant::now();
        self.copy_step_inner(ins, c, is_add, from, step, start).map_err(|e| self.step_failed(step, e))
    }

    fn copy_step_inner(
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
        let excludes: Vec<String> = c.excludes.iter().map(|e| self.expand(ins, e)).collect::<Result<_>>()?;
        let excluded = IgnoreMatcher::from_patterns(&excludes).map_err(|e| self.fail(ins, &e.to_string()))?;
        // --link: the layer does not depend on the stage below it (its cache record neither), and the
        // destination is not looked up in it.
        let parent_key = self.state.cache_key.clone();
        let base_key = if c.link { "link".to_string() } else { parent_key.clone() };
        let sources: Vec<String> = c.sources.iter().map(|s| self.expand(ins, s)).collect::<Result<_>>()?;
        if !c.inline_sources.is_empty() {
            return self.copy_inline(ins, c, keyword, step, start);
        }
        let dest = self.expand(ins, &c.dest)?;
        let dest_abs = self.in_workdir(&dest);
        // A destination ending in `/` or `/.`, or naming a directory the stage has, receives the sources inside.
        let into_dir = dest.ends_with('/')
            || dest == "."
            || dest.ends_with("/.")
            || (!c.link && self.path_meta(&clean_path(dest_abs.trim_start_matches('/'))).is_some_and(|m| m.is_dir()));
        let dest_abs = if into_dir && !dest_abs.ends_with('/') { format!("{dest_abs}/") } else { dest_abs };
        let owner = match &c.chown {
            None => None,
            Some(o) => Some(self.resolve_owner(ins, o)?),
        };
        let chmod = match &c.chmod {
            None => None,
            Some(m) => {
                let m = self.expand(ins, m)?;
                Some(copy::ModeSpec::parse(&m).ok_or_else(|| {
                    self.fail(ins, &format!("--chmod={m}: expected an octal mode (0755) or a symbolic one (u+x,go-w)"))
                })?)
            }
        };
        let created_by = format!("{keyword} {} {dest} # rbuild", sources.join(" "));
        let modifiers = format!("{owner:?}{chmod:?}{excludes:?}{}", if c.parents { " parents" } else { "" });
        let dest_abs = if c.parents && !dest_abs.ends_with('/') { format!("{dest_abs}/") } else { dest_abs };
        // From a stage or an image, the source's key stands for its files (it follows their content), so a
        // cache hit needs no file read. From the context (or a named directory), the selected files' checksum.
        let image_source = match from {
            Some(s @ (Source::Stage(_) | Source::Image(_))) => Some(self.resolve_source_image(s, ins)?),
            Some(s @ Source::NamedContext(n))
                if matches!(self.opts.named_contexts.get(n), Some(NamedContext::Image(_))) =>
            {
                Some(self.resolve_source_image(s, ins)?)
            }
            _ => None,
        };
        if let Some(src) = &image_source {
            let sources_json = serde_json::to_string(&sources).unwrap_or_default();
            let key = cache::key(&[&base_key, keyword, "from", &src.cache_key, &sources_json, &dest_abs, &modifiers]);
            if !self.reuse_cached(&key, step, &created_by)? {
                let dir = self.store.tmp().path("from");
                merge_snapshots_for(&src.snapshots, &sources, &dir)?;
                let outcome = copy::select_excluding(&dir, &IgnoreMatcher::default(), &excluded, &sources)
                    .map_err(|e| self.fail(ins, &format!("{e} in {}", describe(from))))
                    .and_then(|selection| {
                        self.commit_copy(ins, &selection, &dest_abs, owner, chmod.as_ref(), c.parents, None)
                    });
                let _ = crate::store::remove_path(&dir);
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
        let checksum = selection.checksum_with(&self.sh.file_hashes)?;
        // ADD unpacks local tar archives (by content) into the destination directory.
        let archives = if is_add && c.unpack != Some(false) { selection.archives() } else { Vec::new() };
        let dest_abs = if !archives.is_empty() && !dest_abs.ends_with('/') { format!("{dest_abs}/") } else { dest_abs };
        let key = cache::key(&[&base_key, keyword, &checksum, &dest_abs, &modifiers, &format!("{archives:?}")]);
        if !self.reuse_cached(&key, step, &created_by)? {
            let layer = if archives.is_empty() {
                // The same COPY's previous result (any content) lends its unchanged files.
                let record = self.store.root().join("cache/copies").join(cache::key(&[
                    "copy-files",
                    &root.to_string_lossy(),
                    &serde_json::to_string(&sources).unwrap_or_default(),
                    &dest_abs,
                    &modifiers,
                ]));
                self.commit_copy(ins, &selection, &dest_abs, owner, chmod.as_ref(), c.parents, Some(&record))?
            } else {
                self.commit_add_archives(ins, &selection, &archives, &dest_abs, owner, chmod.as_ref())?
            };
            self.finish_step(&key, layer, created_by, step, start)?;
        }
        self.chain_linked(c.link, &parent_key);
        Ok(())
    }

    /// After a `--link` copy, whose record does not depend on the stage below, the stage's key still chains:
    /// what follows depends on both.
    fn chain_linked(&mut self, link: bool, parent_key: &str) {
        if link {
            self.state.cache_key = cache::key(&[parent_key, "linked", &self.state.cache_key]);
        }
    }

    /// A COPY/ADD destination made absolute against the stage's WORKDIR.
    fn in_workdir(&self, dest: &str) -> String {
        if dest.starts_with('/') {
            return dest.to_string();
        }
        let workdir = self.state.config["config"]["WorkingDir"].as_str().unwrap_or("/");
        format!("{}/{dest}", workdir.trim_end_matches('/'))
    }

    /// `--chown=USER[:GROUP]`: names are looked up in the stage's own /etc/passwd and /etc/group; a user alone
    /// gives the group of the same number (as Docker documents).
    fn resolve_owner(&self, ins: &Instruction, spec: &str) -> Result<(u32, u32)> {
        let spec = self.expand(ins, spec)?;
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u.to_string(), Some(g.to_string())),
            None => (spec.clone(), None),
        };
        let lookup = |file: &str, name: &str, field: usize| -> Result<u32> {
            if let Ok(n) = name.parse::<u32>() {
                return Ok(n);
            }
            let text = self.read_stage_file(file).unwrap_or_default();
            String::from_utf8_lossy(&text)
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.first() == Some(&name))
                .and_then(|f| f.get(field).and_then(|v| v.parse().ok()))
                .ok_or_else(|| self.fail(ins, &format!("--chown={spec}: no {name:?} in the image's /{file}")))
        };
        let uid = lookup("etc/passwd", &user, 2)?;
        let gid = match group {
            Some(g) => lookup("etc/group", &g, 2)?,
            None => uid,
        };
        Ok((uid, gid))
    }

    /// A file of the stage's filesystem (the topmost snapshot that has it), following no symlinks.
    fn read_stage_file(&self, rel: &str) -> Option<Vec<u8>> {
        let meta = self.path_meta(rel)?;
        if !meta.is_file() {
            return None;
        }
        self.state.snapshots.iter().rev().map(|s| s.join(rel)).find(|p| p.is_file()).and_then(|p| fs::read(p).ok())
    }

    /// ADD of http(s) URLs: each is downloaded (always, as BuildKit checks them every build) into a file named by
    /// the URL's last path segment, never unpacked; `--checksum=sha256:...` must match; the file's mtime is the
    /// `Last-Modified` time. The layer is keyed by the downloaded content.
    fn add_urls(
        &mut self,
        ins: &Instruction,
        c: &CopySpec,
        urls: &[String],
        step: usize,
        start: Instant,
    ) -> Result<()> {
        let client =
            self.opts.registry.clone().ok_or_else(|| {
                self.fail(ins, "ADD of a URL needs network access (no registry client in this build)")
            })?;
        let dir = self.store.tmp().path("add-url");
        fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let outcome = (|| -> Result<()> {
            let mut names = Vec::new();
            for url in urls {
                let name =
                    url.split(['?', '#']).next().unwrap_or(url).trim_end_matches('/').rsplit('/').next().unwrap_or("");
                let name =
                    if name.is_empty() || name.contains(':') { "index.html".to_string() } else { name.to_string() };
                let file = dir.join(&name);
                let mut out = fs::File::create(&file).map_err(Error::io("create", &file))?;
                let (_, modified) = client
                    .fetch_url(url, &mut out)
                    .map_err(|e| self.fail(ins, &format!("cannot download {url}: {e}")))?;
                drop(out);
                if let Some(want) = &c.checksum {
                    let want = self.expand(ins, want)?;
                    let got = Digest::of(&fs::read(&file).map_err(Error::io("read", &file))?);
                    if got.as_str() != want {
                        return Err(self.fail(ins, &format!("{url}: checksum {got} does not match --checksum={want}")));
                    }
                }
                fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .map_err(Error::io("chmod", &file))?;
                if let Some(t) = modified.as_deref().and_then(parse_http_date) {
                    let _ = fs::File::options().write(true).open(&file).and_then(|f| f.set_modified(t));
                }
                names.push(name);
            }
            if c.unpack == Some(true) {
                return self.add_downloaded_archives(ins, c, &dir, &names, urls, step, start);
            }
            self.copy_generated(ins, c, "ADD", "url", &dir, &names, urls, step, start)
        })();
        let _ = crate::store::remove_path(&dir);
        outcome
    }

    /// `ADD --unpack=true URL`: downloaded archives are unpacked into the destination (a directory), like local
    /// ones; other downloads are copied.
    #[allow(clippy::too_many_arguments)]
    fn add_downloaded_archives(
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
        let dest_abs = format!("{}/", self.in_workdir(&dest).trim_end_matches('/'));
        let owner = match &c.chown {
            Some(o) => Some(self.resolve_owner(ins, o)?),
            None => None,
        };
        let selection = copy::select(dir, &IgnoreMatcher::default(), names)?;
        let archives = selection.archives();
        let created_by = format!("ADD --unpack=true {} {dest} # rbuild", urls.join(" "));
        let key = cache::key(&[
            &self.state.cache_key,
            "ADD",
            "url-unpack",
            &selection.checksum()?,
            &dest_abs,
            &format!("{owner:?}{:?}", c.chmod),
        ]);
        if self.reuse_cached(&key, step, &created_by)? {
            return Ok(());
        }
        let chmod = match &c.chmod {
            Some(m) => Some(
                copy::ModeSpec::parse(&self.expand(ins, m)?).ok_or_else(|| self.fail(ins, "--chmod: not a mode"))?,
            ),
            None => None,
        };
        let layer = self.commit_add_archives(ins, &selection, &archives, &dest_abs, owner, chmod.as_ref())?;
        self.finish_step(&key, layer, created_by, step, start)
    }

    /// ADD of a git repository (`URL#REF:SUBDIR`): checked out every build with the `git` binary (as BuildKit
    /// resolves the ref every build), its files copied like a context directory's contents; `.git` only with
    /// `--keep-git-dir=true`. The layer is keyed by the checked-out content.
    fn add_git(&mut self, ins: &Instruction, c: &CopySpec, url: &str, step: usize, start: Instant) -> Result<()> {
        if self.opts.registry.as_ref().is_some_and(|r| r.settings().offline) {
            return Err(self.fail(ins, &format!("ADD {url}: rbuild is offline (--offline or RBUILD_OFFLINE)")));
        }
        if c.checksum.is_some() {
            return Err(self.fail(ins, "ADD --checksum of a git repository is not supported (pin a commit in #REF)"));
        }
        let dir = self.store.tmp().path("add-git");
        let outcome = (|| -> Result<()> {
            let source = crate::context::git::GitSource::parse(url);
            let root = source.checkout(&dir, c.keep_git_dir).map_err(|e| self.fail(ins, &e.to_string()))?;
            let shown = [if c.keep_git_dir { format!("--keep-git-dir=true {url}") } else { url.to_string() }];
            self.copy_generated(ins, c, "ADD", "git", &root, &[".".to_string()], &shown, step, start)
        })();
        let _ = crate::store::remove_path(&dir);
        outcome
    }

    /// COPY/ADD of heredocs: each becomes a file named by its delimiter (variables expanded unless the delimiter
    /// was quoted), copied like context files (mode 0644, owner root unless --chown).
    fn copy_inline(
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
            self.copy_generated(ins, c, keyword, "heredoc", &dir, &names, &shown, step, start)
        })();
        let _ = crate::store::remove_path(&dir);
        outcome
    }

    /// The shared end of ADD URLs and COPY/ADD heredocs: files rbuild wrote into `dir` (named `names`) are copied to
    /// the destination like context files (several, or a destination ending in `/` or `.`, make it a directory),
    /// with --chown/--chmod, keyed by their checksum.
    #[allow(clippy::too_many_arguments)]
    fn copy_generated(
        &mut self,
        ins: &Instruction,
        c: &CopySpec,
        keyword: &str,
        kind: &str,
        dir: &Path,
        names: &[String],
        shown_sources: &[String],
        step: usize,
        start: Instant,
    ) -> Result<()> {
        let dest = self.expand(ins, &c.dest)?;
        let mut dest_abs = self.in_workdir(&dest);
        if (names.len() > 1 || dest.ends_with('/') || dest == ".") && !dest_abs.ends_with('/') {
            dest_abs.push('/');
        }
        let owner = match &c.chown {
            Some(o) => Some(self.resolve_owner(ins, o)?),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(m) => {
                let m = self.expand(ins, m)?;
                Some(copy::ModeSpec::parse(&m).ok_or_else(|| self.fail(ins, &format!("--chmod={m}: not a mode")))?)
            }
            None => None,
        };
        let selection = copy::select(dir, &IgnoreMatcher::default(), names)?;
        let checksum = selection.checksum()?;
        let created_by = format!("{keyword} {} {dest} # rbuild", shown_sources.join(" "));
        let key =
            cache::key(&[&self.state.cache_key, keyword, kind, &checksum, &dest_abs, &format!("{owner:?}{chmod:?}")]);
        if self.reuse_cached(&key, step, &created_by)? {
            return Ok(());
        }
        let layer = self.commit_copy(ins, &selection, &dest_abs, owner, chmod.as_ref(), false, None)?;
        self.finish_step(&key, layer, created_by, step, start)
    }

    /// Expand variables in a heredoc's text (its lines, as the shell would in an unquoted heredoc).
    fn expand_text(&self, ins: &Instruction, text: &str) -> Result<String> {
        let mut out = String::new();
        for line in text.split_inclusive('\n') {
            let (body, nl) = line.strip_suffix('\n').map_or((line, ""), |b| (b, "\n"));
            // Quotes are text in a heredoc, not shell quoting: escape them so the word expansion keeps them.
            let e = self.df.escape;
            let body =
                body.replace(e, &format!("{e}{e}")).replace('"', &format!("{e}\"")).replace('\'', &format!("{e}'"));
            let body = body.replace(&format!("{e}{e}$"), &format!("{e}$"));
            out.push_str(&self.expand(ins, &body)?);
            out.push_str(nl);
        }
        Ok(out)
    }

    /// ADD with archives: the other sources are copied, each archive is unpacked (safely: nothing may land
    /// outside the destination) into the destination directory.
    fn commit_add_archives(
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
        let outcome = (|| -> Result<()> {
            let rest = selection.without(archives);
            if !rest.is_empty() {
                rest.copy_into(&layer_dir, dest_abs, owner, chmod, None).map_err(|e| self.fail(ins, &e.to_string()))?;
            }
            let dest = layer_dir.join(clean_path(dest_abs.trim_start_matches('/')));
            fs::create_dir_all(&dest).map_err(Error::io("create", &dest))?;
            for a in archives {
                let opts = ApplyOptions::new(ApplyMode::Merge, a.display().to_string());
                apply_tar(copy::archive_reader(a)?, &dest, &opts)
                    .map_err(|e| self.fail(ins, &format!("cannot unpack {}: {e}", a.display())))?;
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            let _ = crate::store::remove_path(&layer_dir);
            return Err(e);
        }
        self.commit_copied(&layer_dir, dest_abs)
    }

    /// Commit a directory a COPY/ADD filled for `dest_abs`. The destination's parents that the stage already has
    /// keep their attributes; what the copy itself brings keeps its own.
    fn commit_copied(&self, layer_dir: &Path, dest_abs: &str) -> Result<Option<(LayerRef, Digest, PathBuf)>> {
        let mut entries = collect_tree(layer_dir)?;
        let dest_rel = dest_abs.trim_matches('/');
        let origin =
            self.keep_existing_dirs(layer_dir, &mut entries, None, &|p| dest_rel.starts_with(&format!("{p}/")));
        self.commit_dir(layer_dir, entries, origin)
    }

    /// Copy a selection into a new layer directory and commit it. With `record` (a COPY from a context), the files
    /// this COPY made in its previous run are linked where unchanged, and this run's are recorded for the next.
    #[allow(clippy::too_many_arguments)]
    fn commit_copy(
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
        if let Err(e) = copied {
            let _ = crate::store::remove_path(&layer_dir);
            return Err(self.fail(ins, &e.to_string()));
        }
        let layer = self.commit_copied(&layer_dir, dest_abs)?;
        if let (Some(reuse), Some(record), Some((_, diff_id, _))) = (&reuse, record, &layer) {
            self.sh.files_linked.fetch_add(reuse.linked(), Ordering::Relaxed);
            // Only a hint for the next run: one that cannot be written costs that run copies, not this build.
            let _ = reuse.save(record, diff_id.as_str());
        }
        Ok(layer)
    }

    /// Record a step's result (its layer, or none) in the cache and the stage, and report it done.
    fn finish_step(
        &mut self,
        key: &str,
        layer: Option<(LayerRef, Digest, PathBuf)>,
        created_by: String,
        step: usize,
        start: Instant,
    ) -> Result<()> {
        self.cache_put(key, &cache::Cached { layer: layer.as_ref().map(|(l, d, _)| (l.clone(), d.clone())) })?;
        self.claimed = None;
        let diff_id = self.push_layer(layer, created_by);
        self.advance(key, diff_id.as_ref());
        self.executed += 1;
        self.done(step, start);
        Ok(())
    }
}

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

/// Give a directory rbuild wrote the image-side mode and owner, if this process can give that owner on disk: as
/// root any; otherwise only root's, which the caller's own ids stand for. False when it cannot.
fn set_written_dir_attrs(dir: &Path, (mode, uid, gid): (u32, u32, u32)) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if rustix::process::geteuid().is_root() {
        if std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).is_err() {
            return false;
        }
    } else if (uid, gid) != (0, 0) {
        return false;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).is_ok()
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, the only form servers send today) as a time.
fn parse_http_date(s: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, _] = parts.as_slice() else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
    let [h, mi, se] = hms.as_slice() else { return None };
    // Days from 1970-01-01 to the date (civil calendar).
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs).ok().map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
}

/// The ignore rules of a named directory context: its own `.dockerignore`, if any.
fn named_context_ignore(dir: &Path) -> Result<IgnoreMatcher> {
    match find_ignore_file(dir, &dir.join("Dockerfile")) {
        Some(p) => {
            let text = fs::read_to_string(&p).map_err(Error::io("read", &p))?;
            Ok(IgnoreMatcher::parse(&text, &p.display().to_string())?)
        }
        None => Ok(IgnoreMatcher::default()),
    }
}

/// Name a source for messages.
fn describe(source: Option<&Source>) -> String {
    match source {
        None => "the build context".into(),
        Some(Source::Scratch) => "scratch".into(),
        Some(Source::Stage(i)) => format!("stage {i}"),
        Some(Source::NamedContext(n)) => format!("build context {n:?}"),
        Some(Source::Image(r)) => format!("image {r}"),
    }
}
