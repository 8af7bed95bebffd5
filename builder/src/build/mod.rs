//! The build engine: a parsed Dockerfile is lowered ([`graph`]) into the stages the target needs; the solver
//! here starts every stage as soon as the stages it uses are built, up to `jobs` at once, and stops starting
//! new ones after a failure. Each stage is built instruction by instruction over the store ([`stage`]): RUN in
//! the runtime's sandbox (its upper directory becomes the layer and the layer's snapshot), COPY from the context,
//! a named context or another stage, the rest as image config changes. RUN and COPY results are cached by a key
//! over the parent's key, the expanded instruction, its environment and, for COPY, the checksum of exactly the
//! files selected. Progress goes out as [`progress::Event`]s.

mod cache;
pub(crate) mod config;
pub mod graph;
pub mod progress;
pub mod remote_cache;
pub mod sharing;
mod stage;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use rbuild_registry::Reference;
use rbuild_runtime::{NetworkMode, Runtime, UsernsMode};

use crate::context::{IgnoreMatcher, find_ignore_file};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::export::image::{LoadedImage, MediaTypes};
use crate::layer::LayerOptions;
use crate::store::Store;

pub use graph::{Graph, Source};
pub use progress::{Event, JsonProgress, NoProgress, PlainProgress, ProgressSink, Stream};
pub use stage::StageResult;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub context: PathBuf,
    /// The Dockerfile's name for messages, and its text.
    pub dockerfile_name: String,
    pub dockerfile_text: String,
    /// Where the Dockerfile lives (for `<Dockerfile>.dockerignore`), if on disk.
    pub dockerfile_path: Option<PathBuf>,
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (by name or index) whose steps always run.
    pub no_cache_filter: Vec<String>,
    pub network: NetworkMode,
    pub userns: UsernsMode,
    pub media_types: MediaTypes,
    pub layers: LayerOptions,
    /// How many stages may build at once (0: the number of CPUs).
    pub jobs: usize,
    /// `--secret id=ID,src=PATH` / `id=ID,env=VAR`: secret id -> where its value comes from.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--ssh default|ID=SOCKET`: agent sockets for `RUN --mount=type=ssh`.
    pub ssh: BTreeMap<String, PathBuf>,
    /// `--label KEY=VALUE`, set on the final image.
    pub labels: Vec<(String, String)>,
    /// `--build-context NAME=...`.
    pub named_contexts: BTreeMap<String, NamedContext>,
    /// `--add-host NAME:IP` for RUN steps.
    pub extra_hosts: Vec<(String, String)>,
    /// `--ulimit NAME=SOFT[:HARD]` for RUN steps.
    pub ulimits: Vec<(String, u64, u64)>,
    /// `--shm-size` in bytes (0: 64 MiB).
    pub shm_size: u64,
    /// `--allow`: entitlements (`network.host`, `security.insecure`).
    pub allow: BTreeSet<String>,
    /// The registry client for base images missing from the store (None: the store only).
    pub registry: Option<std::sync::Arc<rbuild_registry::Client>>,
    /// `--pull`: pull base images even when the store has them.
    pub pull: bool,
    /// `--cache-from` / `--cache-to`.
    pub cache_from: Vec<remote_cache::CacheSpec>,
    pub cache_to: Vec<remote_cache::CacheSpec>,
    /// Stage slots shared with other builds of this process (None: `jobs` slots of this build's own).
    pub job_slots: Option<std::sync::Arc<sharing::JobSlots>>,
    /// Steps being executed by this build or others sharing the locks: identical steps run once.
    pub step_locks: std::sync::Arc<sharing::StepLocks>,
}

impl BuildOptions {
    /// Options for building `dockerfile_text` in `context` with everything else at its default.
    pub fn new(context: PathBuf, dockerfile_name: String, dockerfile_text: String, userns: UsernsMode) -> Self {
        BuildOptions {
            context,
            dockerfile_name,
            dockerfile_text,
            dockerfile_path: None,
            tags: Vec::new(),
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            no_cache_filter: Vec::new(),
            network: NetworkMode::Host,
            userns,
            media_types: MediaTypes::Oci,
            layers: LayerOptions::default(),
            jobs: 0,
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
            labels: Vec::new(),
            named_contexts: BTreeMap::new(),
            extra_hosts: Vec::new(),
            ulimits: Vec::new(),
            shm_size: 0,
            allow: BTreeSet::new(),
            registry: None,
            pull: false,
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            job_slots: None,
            step_locks: Default::default(),
        }
    }
}

/// Where a build secret's value comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    /// An environment variable of this process.
    Env(String),
    /// The value itself (Compose secrets from variables of a `.env` file); never printed.
    Value(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(p) => f.debug_tuple("File").field(p).finish(),
            SecretSource::Env(v) => f.debug_tuple("Env").field(v).finish(),
            SecretSource::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

/// A `--build-context` value: a directory, or an image (`docker-image://REF`, `oci-layout://PATH[:TAG]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    Dir(PathBuf),
    Image(String),
}

impl NamedContext {
    /// Parse the part after `NAME=`.
    pub fn parse(value: &str) -> NamedContext {
        if let Some(r) = value.strip_prefix("docker-image://") {
            NamedContext::Image(r.to_string())
        } else if value.starts_with("oci-layout://") {
            NamedContext::Image(value.to_string())
        } else {
            NamedContext::Dir(PathBuf::from(value))
        }
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub image: LoadedImage,
    /// The image's layer snapshots, bottom first (for filesystem outputs).
    pub snapshots: Vec<PathBuf>,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    /// Steps that ran, and steps whose results came from the cache.
    pub executed: usize,
    pub cached: usize,
}

/// What every stage builder of one build shares.
pub(crate) struct Shared<'a> {
    pub store: &'a Store,
    pub runtime: &'a Runtime,
    pub opts: &'a BuildOptions,
    pub df: &'a crate::dockerfile::Dockerfile,
    pub ignore: &'a IgnoreMatcher,
    pub progress: &'a dyn ProgressSink,
    /// The last step number given out.
    pub steps: AtomicUsize,
    /// Set after a stage failed: the others stop at their next instruction.
    pub cancel: AtomicBool,
    /// Context files' content hashes, kept between builds.
    pub file_hashes: crate::context::FileHashes,
    /// Files COPY linked from its previous run instead of copying them.
    pub files_linked: AtomicUsize,
    /// Cache records this build used or made: (stage, key, result), for `--cache-to`.
    pub used: std::sync::Mutex<Vec<(usize, String, cache::Cached)>>,
    /// Cache mount directories this build's steps used (names under `mounts/`).
    pub mounts_used: std::sync::Mutex<BTreeSet<String>>,
}

impl Shared<'_> {
    pub(crate) fn next_step(&self) -> usize {
        self.steps.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(crate) fn note_cache_use(&self, stage: usize, key: &str, cached: &cache::Cached) {
        if let Ok(mut used) = self.used.lock() {
            used.push((stage, key.to_string(), cached.clone()));
        }
    }
}

/// Lower the Dockerfile for `opts` without building (for `rbuild debug graph`).
pub fn plan(opts: &BuildOptions) -> Result<(crate::dockerfile::Dockerfile, Graph)> {
    let df = crate::dockerfile::load(&opts.dockerfile_name, &opts.dockerfile_text)?;
    let named: BTreeSet<String> = opts.named_contexts.keys().cloned().collect();
    let graph = graph::lower(
        &df,
        &opts.dockerfile_name,
        &opts.dockerfile_text,
        &opts.build_args,
        &named,
        opts.target.as_deref(),
    )?;
    Ok((df, graph))
}

/// Build the Dockerfile; returns the image written (and tagged with `opts.tags`).
pub fn build(
    store: &Store,
    runtime: &Runtime,
    opts: &BuildOptions,
    progress: &dyn ProgressSink,
) -> Result<BuildResult> {
    let (df, graph) = plan(opts)?;
    let dockerfile_path = opts.dockerfile_path.clone().unwrap_or_else(|| opts.context.join("Dockerfile"));
    let ignore = match find_ignore_file(&opts.context, &dockerfile_path) {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(Error::io("read", &p))?;
            IgnoreMatcher::parse(&text, &p.display().to_string())?
        }
        None => IgnoreMatcher::default(),
    };
    let shared = Shared {
        store,
        runtime,
        opts,
        df: &df,
        ignore: &ignore,
        progress,
        steps: AtomicUsize::new(0),
        cancel: AtomicBool::new(false),
        file_hashes: crate::context::FileHashes::load(store.root().join("cache").join("context-files.json")),
        files_linked: AtomicUsize::new(0),
        used: Default::default(),
        mounts_used: Default::default(),
    };
    // BuildKit's frontend options passed as build args: only BUILDKIT_INLINE_CACHE means something here.
    for name in opts.build_args.keys().filter(|k| k.starts_with("BUILDKIT_") && *k != "BUILDKIT_INLINE_CACHE") {
        progress.event(&Event::Note {
            text: &format!("note: --build-arg {name} is a BuildKit frontend option; rbuild ignores it"),
        });
    }
    for spec in &opts.cache_from {
        match remote_cache::import(store, opts.registry.as_deref(), spec) {
            Ok(n) => progress.event(&Event::Note { text: &format!("cache: imported {n} records from {spec}") }),
            // As in BuildKit, a cache source that cannot be read is a warning: the build goes on without it.
            Err(e) => progress.event(&Event::Note { text: &format!("warning: cache from {spec} not used: {e}") }),
        }
    }
    let jobs = if opts.jobs == 0 { sharing::default_jobs() } else { opts.jobs };
    let slots = opts.job_slots.clone().unwrap_or_else(|| sharing::JobSlots::new(jobs));
    let solved = solve(&shared, &graph, &slots);
    let _ = shared.file_hashes.save();
    let (mut results, executed, cached) = solved?;
    let (hashed, reused) =
        (shared.file_hashes.hashed.load(Ordering::Relaxed), shared.file_hashes.reused.load(Ordering::Relaxed));
    if hashed + reused > 0 {
        let mut text = format!("context: {hashed} files read, {reused} unchanged files not re-read");
        let linked = shared.files_linked.load(Ordering::Relaxed);
        if linked > 0 {
            text.push_str(&format!("; {linked} unchanged files linked from their COPY's previous run"));
        }
        progress.event(&Event::Note { text: &text });
    }
    let mut final_stage = results.remove(&graph.target).ok_or_else(|| Error::Malformed {
        what: "build".into(),
        reason: "the target stage produced no result".into(),
    })?;
    for (k, v) in &opts.labels {
        config::set_label(&mut final_stage.config, k, v);
    }
    let inline = opts.cache_to.iter().any(|s| s.location == remote_cache::CacheLocation::Inline)
        || opts.build_args.get("BUILDKIT_INLINE_CACHE").is_some_and(|v| v == "1" || v == "true");
    if inline {
        let chain = final_chain(&graph);
        let records: Vec<(String, cache::Cached)> = used_records(&shared)
            .into_iter()
            .filter(|(stage, _, _)| chain.contains(stage))
            .map(|(_, k, c)| (k, c))
            .collect();
        let layers: Vec<Digest> = final_stage.layers.iter().map(|l| l.digest.clone()).collect();
        final_stage.config[remote_cache::INLINE_KEY] = remote_cache::inline_records(&records, &layers);
    }
    let image = final_stage.write(store, opts.media_types)?;
    let descriptor = image.descriptor()?;
    for t in &opts.tags {
        store.tag_image(t, &descriptor)?;
    }
    let step = shared.next_step();
    progress.event(&Event::Note { text: &format!("#{step} writing image {} done", image.manifest_digest) });
    if !opts.cache_to.is_empty() {
        let (used, mounts) = (used_records(&shared), shared.mounts_used.lock().map(|m| m.clone()).unwrap_or_default());
        let final_chain = final_chain(&graph);
        for spec in opts.cache_to.iter().filter(|s| s.location != remote_cache::CacheLocation::Inline) {
            let records: Vec<(String, cache::Cached)> = used
                .iter()
                .filter(|(stage, _, _)| spec.mode_max || final_chain.contains(stage))
                .map(|(_, k, c)| (k.clone(), c.clone()))
                .collect();
            let mounts: Vec<String> = if spec.mounts { mounts.iter().cloned().collect() } else { Vec::new() };
            let n = remote_cache::export(store, opts.registry.as_deref(), spec, &records, &mounts, &opts.layers)?;
            progress.event(&Event::Note { text: &format!("cache: exported {n} records to {spec}") });
        }
    }
    Ok(BuildResult {
        manifest_digest: image.manifest_digest.clone(),
        config_digest: image.config_digest.clone(),
        image,
        snapshots: final_stage.snapshots,
        executed,
        cached,
    })
}

/// The stages the final image is made of: the target and the stages it is built FROM (cache mode=min).
fn final_chain(graph: &Graph) -> BTreeSet<usize> {
    let mut chain = BTreeSet::new();
    let mut cur = Some(graph.target);
    while let Some(i) = cur {
        chain.insert(i);
        cur = match graph.stages.get(&i).map(|n| &n.base) {
            Some(Source::Stage(b)) => Some(*b),
            _ => None,
        };
    }
    chain
}

fn used_records(shared: &Shared<'_>) -> Vec<(usize, String, cache::Cached)> {
    shared.used.lock().map(|u| u.clone()).unwrap_or_default()
}

type Solved = (BTreeMap<usize, StageResult>, usize, usize);

/// Run the graph's stages: each starts once its dependencies are built, at most `jobs` at a time. After the
/// first failure nothing new starts, the running stages stop at their next instruction, and that error returns.
fn solve(shared: &Shared<'_>, graph: &Graph, slots: &sharing::JobSlots) -> Result<Solved> {
    let mut results: BTreeMap<usize, StageResult> = BTreeMap::new();
    let (mut executed, mut cached) = (0, 0);
    let mut pending: Vec<usize> = graph.order.clone();
    let mut failure: Option<Error> = None;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<(StageResult, usize, usize)>)>();
        let mut running = 0usize;
        loop {
            while failure.is_none() {
                let Some(pos) =
                    pending.iter().position(|i| graph.stages[i].deps.iter().all(|d| results.contains_key(d)))
                else {
                    break;
                };
                // A slot for the stage: wait for one when nothing of this build runs, else try.
                if running == 0 {
                    slots.acquire();
                } else if !slots.try_acquire() {
                    break;
                }
                let index = pending.remove(pos);
                let node = &graph.stages[&index];
                let inputs: BTreeMap<usize, StageResult> = node.deps.iter().map(|d| (*d, results[d].clone())).collect();
                let tx = tx.clone();
                running += 1;
                scope.spawn(move || {
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let mut b = stage::StageBuilder::new(shared, node, inputs);
                        b.run().map(|r| (r, b.executed, b.cached))
                    }))
                    .unwrap_or_else(|_| {
                        Err(Error::Malformed { what: "build".into(), reason: "a stage's builder panicked".into() })
                    });
                    let _ = tx.send((index, outcome));
                });
            }
            if running == 0 {
                break;
            }
            let Ok((index, outcome)) = rx.recv() else { break };
            running -= 1;
            slots.release();
            match outcome {
                Ok((r, ran, hits)) => {
                    executed += ran;
                    cached += hits;
                    results.insert(index, r);
                }
                Err(Error::Cancelled) => {}
                Err(e) => {
                    shared.cancel.store(true, Ordering::SeqCst);
                    failure.get_or_insert(e);
                }
            }
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok((results, executed, cached)),
    }
}
