//! Building one stage: resolve its base (an image in the store, `oci-layout://`, another stage, or `scratch`),
//! then apply its instructions in order. RUN runs in the sandbox over the stage's snapshots; its upper
//! directory is diffed into a layer and then becomes that layer's snapshot. COPY builds a layer directory from
//! the context (or another stage's files). Metadata instructions change the config and add an empty-layer history
//! entry. Variables are expanded with the stage's ENV and the ARGs in scope.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rbuild_runtime::{OutputMode, OutputStream, Rootfs, RunSpec, Runtime, UsernsMode};
use serde_json::{Value, json};

use super::{BuildOptions, Progress, cache, config, stage_ref};
use crate::context::IgnoreMatcher;
use crate::context::copy;
use crate::digest::Digest;
use crate::dockerfile::shell::Lexer;
use crate::dockerfile::{CommandLine, CopySpec, Dockerfile, Instruction, InstructionKind};
use crate::error::{Error, Result};
use crate::export::image::{LayerRef, LoadedImage, MediaTypes, load_image, write_image};
use crate::layer::{collect_tree, diff_overlay_upper_mapped, export_layer};
use crate::run_image::id_map_for;
use crate::snapshotter::merge_snapshots;
use crate::store::{Store, TreeOps};
use crate::userns_tree_ops::tree_ops_for;

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
    store: &'a Store,
    runtime: &'a Runtime,
    opts: &'a BuildOptions,
    df: &'a Dockerfile,
    index: usize,
    ignore: &'a IgnoreMatcher,
    progress: &'a Progress,
    done: &'a BTreeMap<usize, StageResult>,
    ops: Box<dyn TreeOps + 'a>,
    /// ARGs in scope and their values.
    args: BTreeMap<String, Option<String>>,
    state: StageResult,
    /// The global ARGs, for `ARG NAME` redeclarations without a default.
    meta: Vec<(String, String)>,
    /// A CMD was set in this stage (an ENTRYPOINT then does not reset it).
    cmd_set: bool,
    created: String,
    pub(crate) executed: usize,
    pub(crate) cached: usize,
}

impl<'a> StageBuilder<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: &'a Store,
        runtime: &'a Runtime,
        opts: &'a BuildOptions,
        df: &'a Dockerfile,
        index: usize,
        ignore: &'a IgnoreMatcher,
        progress: &'a Progress,
        done: &'a BTreeMap<usize, StageResult>,
    ) -> Result<StageBuilder<'a>> {
        let ops = tree_ops_for(runtime, opts.userns);
        Ok(StageBuilder {
            store,
            runtime,
            opts,
            df,
            index,
            ignore,
            progress,
            done,
            ops,
            args: BTreeMap::new(),
            state: StageResult::scratch(),
            meta: Vec::new(),
            cmd_set: false,
            created: config::created(opts.layers.source_date_epoch),
            executed: 0,
            cached: 0,
        })
    }

    /// The global ARGs (before the first FROM) with build-arg overrides.
    fn meta_args(&self) -> Result<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = Vec::new();
        for ins in &self.df.meta_args {
            if let InstructionKind::Arg(decls) = &ins.kind {
                for d in decls {
                    let value = match (self.opts.build_args.get(&d.name), &d.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(def)) => Some(self.expand_with(ins, def, &out)?),
                        (None, None) => None,
                    };
                    if let Some(v) = value {
                        out.push((d.name.clone(), v));
                    }
                }
            }
        }
        Ok(out)
    }

    fn expand_with(&self, ins: &Instruction, word: &str, env: &[(String, String)]) -> Result<String> {
        Lexer::new(self.df.escape).process_word(word, &env.to_vec()).map_err(|e| self.fail(ins, &e.to_string()))
    }

    /// The variables an instruction sees: ARGs in scope, overridden by ENV.
    fn vars(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            self.args.iter().filter_map(|(k, val)| val.as_ref().map(|x| (k.clone(), x.clone()))).collect();
        v.extend(config::env_pairs(&self.state.config));
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

    fn label(&self, text: &str) -> String {
        let stage = &self.df.stages[self.index];
        let name = stage.name.clone().unwrap_or_else(|| format!("stage-{}", self.index));
        format!("[{name}] {}", text.lines().next().unwrap_or(""))
    }

    /// Resolve the base and run every instruction.
    pub(crate) fn run(&mut self) -> Result<StageResult> {
        let stage = &self.df.stages[self.index];
        let meta = self.meta_args()?;
        let base_ins =
            Instruction { kind: InstructionKind::Arg(Vec::new()), span: stage.span, original: String::new() };
        let base = Lexer::new(self.df.escape)
            .process_word(&stage.base, &meta)
            .map_err(|e| self.fail(&base_ins, &e.to_string()))?;
        let n = self.progress.step(&self.label(&format!("FROM {base}")));
        self.state = self.resolve_base(&base, &base_ins)?;
        self.progress.line(&format!("#{n} DONE 0.0s"));
        self.meta = meta;
        for ins in &stage.instructions {
            self.instruction(ins)?;
        }
        self.state.config["created"] = Value::String(self.created.clone());
        Ok(self.state.clone())
    }

    fn resolve_base(&self, base: &str, ins: &Instruction) -> Result<StageResult> {
        if base == "scratch" {
            return Ok(StageResult::scratch());
        }
        if let Some(dep) = stage_ref(self.df, base, self.index) {
            return self
                .done
                .get(&dep)
                .cloned()
                .ok_or_else(|| self.fail(ins, &format!("stage {base:?} was not built")));
        }
        let digest = if base.starts_with("oci-layout://") {
            crate::export::import_layout_reference(self.store, base)?
        } else {
            match self.store.resolve_image(base) {
                Ok(r) => r.digest()?,
                Err(Error::ImageNotFound { .. }) => {
                    return Err(self.fail(
                        ins,
                        &format!(
                            "base image {base:?} is not in the store; rbuild cannot pull from registries yet: \
                             load it first (rbuild load -i FILE|DIR) or name a layout (FROM oci-layout://PATH:TAG)"
                        ),
                    ));
                }
                Err(e) => return Err(e),
            }
        };
        let image = load_image(self.store, &digest)?;
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

    fn history(&mut self, created_by: String, empty_layer: bool) {
        let mut e = json!({ "created": self.created, "created_by": created_by, "comment": "rbuild" });
        if empty_layer {
            e["empty_layer"] = Value::Bool(true);
        }
        let mut h = self.state.config["history"].as_array().cloned().unwrap_or_default();
        h.push(e);
        self.state.config["history"] = Value::Array(h);
    }

    fn instruction(&mut self, ins: &Instruction) -> Result<()> {
        match &ins.kind {
            InstructionKind::Run(run) => return self.run_step(ins, &run.command, &run.mounts),
            InstructionKind::Copy(c) => return self.copy_step(ins, c, false),
            InstructionKind::Add(c) => return self.copy_step(ins, c, true),
            InstructionKind::Arg(decls) => {
                for d in decls {
                    let value = match (self.opts.build_args.get(&d.name), &d.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(def)) => Some(self.expand(ins, def)?),
                        (None, None) => self.meta.iter().rev().find(|(k, _)| *k == d.name).map(|(_, v)| v.clone()),
                    };
                    self.args.insert(d.name.clone(), value);
                }
                return Ok(());
            }
            InstructionKind::Env(kvs) => {
                for kv in kvs {
                    let v = self.expand(ins, &kv.value)?;
                    config::set_env(&mut self.state.config, &kv.key, &v);
                }
            }
            InstructionKind::Label(kvs) => {
                for kv in kvs {
                    let (k, v) = (self.expand(ins, &kv.key)?, self.expand(ins, &kv.value)?);
                    config::set_label(&mut self.state.config, &k, &v);
                }
            }
            InstructionKind::Maintainer(m) => self.state.config["author"] = Value::String(m.clone()),
            InstructionKind::Workdir(w) => {
                let w = self.expand(ins, w)?;
                let cur = self.state.config["config"]["WorkingDir"].as_str().unwrap_or("/").to_string();
                let joined = if w.starts_with('/') { w } else { format!("{}/{w}", cur.trim_end_matches('/')) };
                self.state.config["config"]["WorkingDir"] = Value::String(joined);
            }
            InstructionKind::User(u) => {
                let u = self.expand(ins, u)?;
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
                for p in ports {
                    let p = self.expand(ins, p)?;
                    config::add_to_set(&mut self.state.config, "ExposedPorts", &config::port_key(&p));
                }
            }
            InstructionKind::Volume(vols) => {
                for v in vols {
                    let v = self.expand(ins, v)?;
                    config::add_to_set(&mut self.state.config, "Volumes", &v);
                }
            }
            InstructionKind::StopSignal(s) => {
                let s = self.expand(ins, s)?;
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
        let text = ins.original.trim().to_string();
        let n = self.progress.step(&self.label(&text));
        self.progress.line(&format!("#{n} DONE 0.0s"));
        self.history(text, true);
        Ok(())
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

    /// Add a layer (or none) to the stage.
    fn push_layer(&mut self, layer: Option<(LayerRef, Digest, PathBuf)>, created_by: String) {
        match layer {
            Some((l, diff_id, snapshot)) => {
                let mut ids = self.state.config["rootfs"]["diff_ids"].as_array().cloned().unwrap_or_default();
                ids.push(Value::String(diff_id.to_string()));
                self.state.config["rootfs"]["diff_ids"] = Value::Array(ids);
                self.state.layers.push(l);
                self.state.diff_ids.push(diff_id);
                self.state.snapshots.push(snapshot);
                self.history(created_by, false);
            }
            None => self.history(created_by, true),
        }
    }

    /// A cache hit: the layer (re-unpacked if its snapshot was pruned).
    fn apply_cached(&mut self, hit: cache::Cached, created_by: String) -> Result<()> {
        let layer = match hit.layer {
            Some((l, diff_id)) => {
                let snap = self.store.ensure_snapshot(self.ops.as_ref(), &diff_id, &l.digest)?;
                Some((l, diff_id, snap))
            }
            None => None,
        };
        self.push_layer(layer, created_by);
        self.cached += 1;
        Ok(())
    }

    /// Export a layer directory (an overlay upper or a COPY tree) and make it the layer's snapshot.
    fn commit_dir(
        &self,
        dir: &Path,
        entries: Vec<crate::layer::TreeEntry>,
    ) -> Result<Option<(LayerRef, Digest, PathBuf)>> {
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
        if snap.exists() || fs::rename(dir, &snap).is_err() {
            self.ops.remove(dir)?;
        }
        let snap = self.store.ensure_snapshot(self.ops.as_ref(), &info.diff_id, &info.digest)?;
        Ok(Some((layer, info.diff_id, snap)))
    }

    fn run_step(&mut self, ins: &Instruction, cmd: &CommandLine, mounts: &[crate::dockerfile::RunMount]) -> Result<()> {
        let argv = self.argv(cmd);
        let created_by = if cmd.prepend_shell {
            format!("RUN {}", argv.join(" "))
        } else {
            format!("RUN {}", serde_json::to_string(&argv).unwrap_or_default())
        };
        let n = self.progress.step(&self.label(&ins.original));
        let start = Instant::now();
        let mut env: Vec<String> = self.vars().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.dedup_by(|a, b| a.split('=').next() == b.split('=').next());
        let workdir =
            self.state.config["config"]["WorkingDir"].as_str().filter(|w| !w.is_empty()).unwrap_or("/").to_string();
        let user = self.state.config["config"]["User"].as_str().filter(|u| !u.is_empty()).map(str::to_string);
        let key = cache::key(&[
            &self.state.cache_key,
            "RUN",
            &serde_json::to_string(&argv).unwrap_or_default(),
            &env.join("\n"),
            &workdir,
            user.as_deref().unwrap_or(""),
            &format!("{mounts:?}"),
        ]);
        if !self.opts.no_cache
            && let Some(hit) = cache::get(self.store, &key)
        {
            self.progress.cached(n);
            self.apply_cached(hit, created_by)?;
            self.state.cache_key = key;
            return Ok(());
        }
        let run_dir = self.store.tmp().path("step");
        let (upper, work, state) = (run_dir.join("upper"), run_dir.join("work"), run_dir.join("state"));
        for d in [&upper, &work, &state] {
            fs::create_dir_all(d).map_err(Error::io("create", d))?;
        }
        let mounts = self.with_secret_sources(ins, mounts, &run_dir.join("secrets"))?;
        let mut prepared = crate::run_mounts::prepare(self.store, &mounts, &run_dir.join("scratch"))?;
        env.extend(prepared.env.iter().cloned());
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
            network: self.opts.network,
            extra_hosts: Vec::new(),
            userns: self.opts.userns,
            mounts: prepared.mounts.clone(),
            rlimits: Vec::new(),
            state_dir: state,
        };
        let tail = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::<String>::new()));
        let (sink_tail, enabled) = (tail.clone(), self.progress.enabled);
        let sink = std::sync::Arc::new(move |_: OutputStream, line: &[u8]| {
            let text = String::from_utf8_lossy(line).trim_end_matches('\n').to_string();
            if enabled {
                eprintln!("#{n} {text}");
            }
            if let Ok(mut t) = sink_tail.lock() {
                t.push_back(text);
                if t.len() > 20 {
                    t.pop_front();
                }
            }
        });
        let outcome = self.runtime.run(&spec, OutputMode::Lines(sink));
        prepared.release();
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                let _ = self.runtime.remove_tree(&run_dir, self.opts.userns);
                return Err(Error::Sandbox(Box::new(e)));
            }
        };
        if !outcome.status.success() {
            let _ = self.runtime.remove_tree(&run_dir, self.opts.userns);
            let last: Vec<String> = tail.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default();
            let mut msg = format!("RUN failed with exit code {}", outcome.status.code());
            if !last.is_empty() {
                msg.push_str(&format!("; its last output:\n{}", last.join("\n")));
            }
            if self.opts.userns == UsernsMode::Single {
                msg.push_str(&format!("\n(note: {})", rbuild_runtime::userns::SUBUID_HINT));
            }
            return Err(self.fail(ins, &msg));
        }
        let entries = diff_overlay_upper_mapped(&upper, &id_map_for(self.opts.userns))?;
        let layer = self.commit_dir(&upper, entries)?;
        let _ = self.runtime.remove_tree(&run_dir, self.opts.userns);
        cache::put(self.store, &key, &cache::Cached { layer: layer.as_ref().map(|(l, d, _)| (l.clone(), d.clone())) })?;
        self.push_layer(layer, created_by);
        self.state.cache_key = key;
        self.executed += 1;
        self.progress.done(n, start);
        Ok(())
    }

    /// Secret mounts take their values from `--secret` (a file, or an environment variable written to a file
    /// in the step's private directory, removed with it). The cache key never sees them.
    fn with_secret_sources(
        &self,
        ins: &Instruction,
        mounts: &[crate::dockerfile::RunMount],
        dir: &Path,
    ) -> Result<Vec<crate::dockerfile::RunMount>> {
        let mut out = mounts.to_vec();
        for m in out.iter_mut().filter(|m| m.kind == crate::dockerfile::MountType::Secret && m.source.is_none()) {
            let id = m.id.clone().or_else(|| m.target.as_ref().and_then(|t| t.rsplit('/').next().map(str::to_string)));
            let Some(source) = id.as_ref().and_then(|id| self.opts.secrets.get(id)) else {
                if m.required == Some(true) {
                    return Err(self.fail(
                        ins,
                        &format!("secret {:?} is required: pass --secret id={0},src=FILE", id.unwrap_or_default()),
                    ));
                }
                continue;
            };
            m.source = Some(match source {
                super::SecretSource::File(p) => p.display().to_string(),
                super::SecretSource::Env(var) => {
                    let value = std::env::var(var)
                        .map_err(|_| self.fail(ins, &format!("--secret env={var}: the variable is not set")))?;
                    fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
                    let f = dir.join(format!("env-{}", id.clone().unwrap_or_default().replace('/', "_")));
                    fs::write(&f, value).map_err(Error::io("write", &f))?;
                    f.display().to_string()
                }
            });
        }
        Ok(out)
    }

    fn copy_step(&mut self, ins: &Instruction, c: &CopySpec, is_add: bool) -> Result<()> {
        let n = self.progress.step(&self.label(&ins.original));
        let start = Instant::now();
        let keyword = if is_add { "ADD" } else { "COPY" };
        if is_add && c.sources.iter().any(|s| s.contains("://") || s.starts_with("git@")) {
            return Err(self.fail(ins, "ADD from URLs and git repositories is not supported yet"));
        }
        if !c.inline_sources.is_empty() || c.parents || !c.excludes.is_empty() || c.link {
            return Err(self
                .fail(ins, &format!("{keyword} with heredocs, --parents, --exclude or --link is not supported yet")));
        }
        let sources: Vec<String> = c.sources.iter().map(|s| self.expand(ins, s)).collect::<Result<_>>()?;
        let dest = self.expand(ins, &c.dest)?;
        let workdir = self.state.config["config"]["WorkingDir"].as_str().unwrap_or("/").to_string();
        let dest_abs =
            if dest.starts_with('/') { dest.clone() } else { format!("{}/{dest}", workdir.trim_end_matches('/')) };
        let dest_abs = if dest.ends_with('/') && !dest_abs.ends_with('/') { format!("{dest_abs}/") } else { dest_abs };
        let owner = match &c.chown {
            None => None,
            Some(o) => {
                let o = self.expand(ins, o)?;
                let (u, g) = o.split_once(':').unwrap_or((&o, &o));
                match (u.parse::<u32>(), g.parse::<u32>()) {
                    (Ok(u), Ok(g)) => Some((u, g)),
                    _ => return Err(self.fail(ins, &format!("--chown={o}: only numeric uid:gid is supported yet"))),
                }
            }
        };
        let chmod = match &c.chmod {
            None => None,
            Some(m) => Some(
                u32::from_str_radix(&self.expand(ins, m)?, 8)
                    .map_err(|_| self.fail(ins, "--chmod: only octal modes are supported yet"))?,
            ),
        };
        // Sources: the context, or another stage's (or image's) files.
        let mut merged_tmp = None;
        let (root, ignore) = match &c.from {
            None => (self.opts.context.clone(), self.ignore.clone()),
            Some(from) => {
                let result = match stage_ref(self.df, from, self.index) {
                    Some(i) => self
                        .done
                        .get(&i)
                        .cloned()
                        .ok_or_else(|| self.fail(ins, &format!("stage {from:?} was not built")))?,
                    None => self.resolve_base(from, ins)?,
                };
                let dir = self.store.tmp().path("copy-from");
                merge_snapshots(&result.snapshots, &dir)?;
                merged_tmp = Some(dir.clone());
                (dir, IgnoreMatcher::default())
            }
        };
        let selection = copy::select(&root, &ignore, &sources).map_err(|e| self.fail(ins, &e.to_string()))?;
        let checksum = selection.checksum()?;
        let created_by = format!("{keyword} {} {dest} # rbuild", sources.join(" "));
        let key = cache::key(&[&self.state.cache_key, keyword, &checksum, &dest_abs, &format!("{owner:?}{chmod:?}")]);
        if !self.opts.no_cache
            && let Some(hit) = cache::get(self.store, &key)
        {
            if let Some(d) = merged_tmp {
                let _ = crate::store::remove_path(&d);
            }
            self.progress.cached(n);
            self.apply_cached(hit, created_by)?;
            self.state.cache_key = key;
            return Ok(());
        }
        let layer_dir = self.store.tmp().path("copy");
        fs::create_dir_all(&layer_dir).map_err(Error::io("create", &layer_dir))?;
        let copied = selection.copy_into(&layer_dir, &dest_abs, owner, chmod);
        if let Some(d) = merged_tmp {
            let _ = crate::store::remove_path(&d);
        }
        copied.map_err(|e| self.fail(ins, &e.to_string()))?;
        let entries = collect_tree(&layer_dir)?;
        let layer = self.commit_dir(&layer_dir, entries)?;
        cache::put(self.store, &key, &cache::Cached { layer: layer.as_ref().map(|(l, d, _)| (l.clone(), d.clone())) })?;
        self.push_layer(layer, created_by);
        self.state.cache_key = key;
        self.executed += 1;
        self.progress.done(n, start);
        Ok(())
    }
}
