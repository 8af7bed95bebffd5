//! The build engine: a [`BuildRequest`] (what to build) is carried out on a [`Worker`] (the store and the
//! [`ports`] steps run and images resolve through). The Dockerfile is lowered ([`graph`]) into the stages the
//! target needs; the scheduler ([`solve`]) starts every stage as soon as the stages it uses are built, as stage
//! slots allow, and stops starting new ones after a failure. Each stage is built instruction by instruction
//! ([`stage`]): RUN through the [`ports::Executor`] (what it changed becomes the layer and the layer's snapshot),
//! COPY/ADD from the context, a named context, another stage, an image or a fetched source, the rest as image
//! config changes. Step results are cached under keys built in [`cache`], the one file that says what
//! invalidates what. Progress goes out as [`progress::Event`]s.

mod cache;
pub(crate) mod config;
pub mod graph;
pub mod multi_platform;
pub mod ports;
pub mod progress;
pub mod remote_cache;
pub mod request_flags;
pub mod sharing;
mod solve;
mod source_epoch;
mod stage;
pub mod subrequests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rbuild_registry::Reference;

use crate::context::IgnoreMatcher;
use crate::digest::Digest;
use crate::dockerfile::Dockerfile;
use crate::error::{Error, Result};
use crate::export::image::{LoadedImage, MediaTypes};
use crate::layer::LayerOptions;
use crate::store::Store;

pub use graph::{Graph, Source};
pub use ports::{Network, Platform, PullPolicy, Worker};
pub use progress::{Event, JsonProgress, NoProgress, PlainProgress, ProgressSink, Stream};
pub use stage::StageResult;

/// What to build (how it is built — the store, the executor, slots — is the [`Worker`]'s).
#[derive(Debug, Clone)]
pub struct BuildRequest {
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
    pub network: Network,
    /// The platform to build for: stages without `FROM --platform` are built for it; a foreign one runs its RUN
    /// steps under emulation.
    pub platform: Platform,
    pub media_types: MediaTypes,
    pub layers: LayerOptions,
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
    /// When base images are pulled (`--pull`: always; Compose `pull_policy: never`: never).
    pub pull: PullPolicy,
    /// Further platforms to build in the same build (`--platform a,b`): with two or more in all, one image per
    /// platform and an image index of them. Empty: `platform` alone.
    pub platforms: Vec<Platform>,
    /// `--cache-from` / `--cache-to`.
    pub cache_from: Vec<remote_cache::CacheSpec>,
    pub cache_to: Vec<remote_cache::CacheSpec>,
    /// When the fetched contexts last changed, for `SOURCE_DATE_EPOCH=context` and `=NAME`.
    pub context_times: ContextTimes,
    /// The Dockerfile parsed once, shared by the lint, the plan and every platform's build (clones share it).
    parsed: ParsedDockerfile,
}

/// The parse of a request's Dockerfile, kept with the name and text it was made from (a request whose text was
/// changed after parsing is parsed again).
#[derive(Clone, Default)]
struct ParsedDockerfile(std::sync::Arc<std::sync::Mutex<Option<ParsedFrom>>>);

/// A parse and the Dockerfile name and text it was made from.
type ParsedFrom = (String, String, std::sync::Arc<Dockerfile>);

impl std::fmt::Debug for ParsedDockerfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParsedDockerfile")
    }
}

/// When a build's fetched contexts last changed (seconds since 1970): a git context's commit time, a URL's
/// `Last-Modified`, else its archive's newest file (`context::source`). Local contexts have none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextTimes {
    pub main: Option<i64>,
    /// By named-context name.
    pub named: BTreeMap<String, i64>,
}

impl BuildRequest {
    /// The platforms this build makes images for: `platforms` when it names several, else `platform`.
    pub fn target_platforms(&self) -> Vec<Platform> {
        if self.platforms.len() > 1 { self.platforms.clone() } else { vec![self.platform.clone()] }
    }

    /// A request to build `dockerfile_text` in `context` with everything else at its default.
    pub fn new(context: PathBuf, dockerfile_name: String, dockerfile_text: String) -> Self {
        BuildRequest {
            context,
            dockerfile_name,
            dockerfile_text,
            dockerfile_path: None,
            tags: Vec::new(),
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            no_cache_filter: Vec::new(),
            network: Network::Host,
            platform: Platform::host(),
            platforms: Vec::new(),
            media_types: MediaTypes::Oci,
            layers: LayerOptions::default(),
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
            labels: Vec::new(),
            named_contexts: BTreeMap::new(),
            extra_hosts: Vec::new(),
            ulimits: Vec::new(),
            shm_size: 0,
            allow: BTreeSet::new(),
            pull: PullPolicy::Missing,
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            context_times: ContextTimes::default(),
            parsed: ParsedDockerfile::default(),
        }
    }

    /// The request's Dockerfile, parsed on first use and then shared (a parse error is returned each time).
    pub fn dockerfile(&self) -> Result<std::sync::Arc<Dockerfile>> {
        let mut cached = self.parsed.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((name, text, df)) = cached.as_ref()
            && *name == self.dockerfile_name
            && *text == self.dockerfile_text
        {
            return Ok(df.clone());
        }
        let df = std::sync::Arc::new(crate::dockerfile::load(&self.dockerfile_name, &self.dockerfile_text)?);
        *cached = Some((self.dockerfile_name.clone(), self.dockerfile_text.clone(), df.clone()));
        Ok(df)
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
    /// How the owners of the snapshots' files on disk map to the image's (the executor's id map).
    pub ids: crate::layer::IdMap,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    /// Steps that ran, and steps whose results came from the cache.
    pub executed: usize,
    pub cached: usize,
    /// A multi-platform build's image index (then `manifest_digest` is its digest, and `image`, `snapshots` and
    /// `config_digest` are the host platform's image, or the first platform's), and each platform's result.
    pub index: Option<multi_platform::IndexDocument>,
    pub per_platform: Vec<(Platform, BuildResult)>,
}

impl BuildResult {
    /// The descriptor names point at: the image's, or the index's.
    pub fn descriptor(&self) -> Result<oci_spec::image::Descriptor> {
        match &self.index {
            Some(i) => crate::export::image::descriptor(&i.media_type, i.bytes.len() as u64, &self.manifest_digest),
            None => self.image.descriptor(),
        }
    }

    /// Whether the result is an index of several platforms' images.
    pub fn is_multi_platform(&self) -> bool {
        self.index.is_some()
    }
}

/// One build in progress: what its stages share.
pub(crate) struct Session<'a> {
    pub worker: &'a Worker<'a>,
    pub store: &'a Store,
    pub req: &'a BuildRequest,
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
    /// With `--no-cache`, cache mounts start empty and what steps leave in them is dropped after the build (as
    /// BuildKit; testCacheMountModeNoCache): their ids get this build's token, their directories are removed.
    pub throwaway_mounts: Option<ThrowawayMounts>,
}

/// The cache mount directories made for this build only (see [`Session::throwaway_mounts`]).
#[derive(Debug)]
pub struct ThrowawayMounts {
    /// Unique to this build: added to each cache mount's id.
    pub token: String,
    /// The directory names (under the store's `mounts/`) made with it.
    pub names: std::sync::Mutex<BTreeSet<String>>,
}

impl ThrowawayMounts {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        ThrowawayMounts { token: format!("no-cache {} {nanos}", std::process::id()), names: Default::default() }
    }

    /// Remove the directories (and their lock files; private copies `NAME-N` too).
    fn remove(&self, store: &Store, tree_ops: &dyn crate::store::TreeOps) {
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        let dir = store.root().join("mounts");
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let ours = names.iter().any(|n| {
                file.strip_prefix(n.as_str()).is_some_and(|rest| {
                    rest.is_empty() || rest == ".lock" || rest.strip_prefix('-').is_some_and(|r| !r.is_empty())
                })
            });
            if ours {
                let _ = tree_ops.remove(&entry.path());
            }
        }
    }
}

impl Session<'_> {
    pub(crate) fn next_step(&self) -> usize {
        self.steps.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(crate) fn note_cache_use(&self, stage: usize, key: &str, cached: &cache::Cached) {
        if let Ok(mut used) = self.used.lock() {
            used.push((stage, key.to_string(), cached.clone()));
        }
    }

    pub(crate) fn note(&self, text: &str) {
        self.progress.event(&Event::Note { text });
    }
}

/// Lower the Dockerfile for `opts` without building (for `rbuild debug graph`).
pub fn plan(opts: &BuildRequest) -> Result<(std::sync::Arc<Dockerfile>, Graph)> {
    let df = opts.dockerfile()?;
    let graph = lower_with(&df, opts, &graph::ImageTriggers::new())?;
    Ok((df, graph))
}

fn lower_with(
    df: &crate::dockerfile::Dockerfile,
    opts: &BuildRequest,
    triggers: &graph::ImageTriggers,
) -> Result<Graph> {
    let named: BTreeSet<String> = opts.named_contexts.keys().cloned().collect();
    graph::lower(
        df,
        &opts.dockerfile_name,
        &opts.dockerfile_text,
        &opts.build_args,
        &named,
        graph::Target { stage: opts.target.as_deref(), platform: &opts.platform },
        triggers,
    )
}

/// Lower again with the ONBUILD triggers of the base images the store (or a named layout) already has, until no
/// new stage comes in: a trigger copying from a stage of this Dockerfile makes that stage a dependency. An image
/// that must be pulled is not looked at here (its triggers may still read images and contexts).
fn plan_with_image_triggers(
    worker: &Worker<'_>,
    df: &crate::dockerfile::Dockerfile,
    opts: &BuildRequest,
    mut graph: Graph,
) -> Result<Graph> {
    let mut triggers = graph::ImageTriggers::new();
    loop {
        let mut added = false;
        for node in graph.stages.values() {
            let (name, reference) = match &node.base {
                Source::Image(r) => (r.clone(), r.clone()),
                Source::NamedContext(n) => match opts.named_contexts.get(n) {
                    Some(NamedContext::Image(r)) => (n.clone(), r.clone()),
                    _ => continue,
                },
                _ => continue,
            };
            if triggers.contains_key(&name) {
                continue;
            }
            let texts: Vec<String> = worker
                .images
                .resolve(&reference, &opts.platform, PullPolicy::Never)
                .ok()
                .and_then(|image| image.config["config"]["OnBuild"].as_array().cloned())
                .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            let parsed = graph::parse_triggers(&texts).unwrap_or_default();
            added |= !parsed.is_empty();
            triggers.insert(name, parsed);
        }
        if !added {
            return Ok(graph);
        }
        graph = lower_with(df, opts, &triggers)?;
    }
}

/// Build the Dockerfile; returns the image written (and tagged with `opts.tags`): for several platforms, an image
/// index of one image per platform.
pub fn build(worker: &Worker<'_>, opts: &BuildRequest, progress: &dyn ProgressSink) -> Result<BuildResult> {
    let platforms = opts.target_platforms();
    // BuildKit's BUILDKIT_MULTI_PLATFORM=1 makes an index of even one platform's image.
    let forced = opts.build_args.get("BUILDKIT_MULTI_PLATFORM").is_some_and(|v| v == "1" || v == "true");
    if platforms.len() > 1 || forced {
        return multi_platform::build(worker, opts, &platforms, progress);
    }
    let built = build_one(worker, opts, progress)?;
    export_cache(worker, opts, &built.cache_records, &built.mounts_used, progress)?;
    Ok(built.result)
}

/// A finished single-platform build, with what its `--cache-to` exports need.
pub(crate) struct Built {
    pub result: BuildResult,
    /// Per non-inline `--cache-to` (in order): the cache records it exports.
    pub cache_records: Vec<Vec<(String, cache::Cached)>>,
    /// The cache mounts the build used.
    pub mounts_used: Vec<String>,
}

/// The cache records of several builds (one per platform), merged per `--cache-to`.
pub(crate) fn merge_cache_records(built: &[Built]) -> (Vec<Vec<(String, cache::Cached)>>, Vec<String>) {
    let n = built.first().map_or(0, |b| b.cache_records.len());
    let mut records: Vec<Vec<(String, cache::Cached)>> = vec![Vec::new(); n];
    for (i, merged) in records.iter_mut().enumerate() {
        let mut seen = BTreeSet::new();
        for b in built {
            for (k, c) in b.cache_records.get(i).into_iter().flatten() {
                if seen.insert(k.clone()) {
                    merged.push((k.clone(), c.clone()));
                }
            }
        }
    }
    let mounts: BTreeSet<String> = built.iter().flat_map(|b| b.mounts_used.iter().cloned()).collect();
    (records, mounts.into_iter().collect())
}

/// Import every `--cache-from` into the store's cache index. As in BuildKit, a cache source that cannot be read is
/// a warning: the build goes on without it.
pub(crate) fn import_cache(worker: &Worker<'_>, opts: &BuildRequest, progress: &dyn ProgressSink) {
    for spec in &opts.cache_from {
        match remote_cache::import(worker.store, worker.registry.as_deref(), spec) {
            Ok(n) => progress.event(&Event::Note { text: &format!("cache: imported {n} records from {spec}") }),
            Err(e) => progress.event(&Event::Note { text: &format!("warning: cache from {spec} not used: {e}") }),
        }
    }
}

/// Export the build's cache to every non-inline `--cache-to`.
pub(crate) fn export_cache(
    worker: &Worker<'_>,
    opts: &BuildRequest,
    records: &[Vec<(String, cache::Cached)>],
    mounts_used: &[String],
    progress: &dyn ProgressSink,
) -> Result<()> {
    let specs = opts.cache_to.iter().filter(|s| s.location != remote_cache::CacheLocation::Inline);
    for (spec, records) in specs.zip(records) {
        let mounts: Vec<String> = if spec.mounts { mounts_used.to_vec() } else { Vec::new() };
        let n = remote_cache::export(worker.store, worker.registry.as_deref(), spec, records, &mounts, &opts.layers)?;
        progress.event(&Event::Note { text: &format!("cache: exported {n} records to {spec}") });
    }
    Ok(())
}

/// Build the Dockerfile for the request's one platform.
pub(crate) fn build_one(worker: &Worker<'_>, opts: &BuildRequest, progress: &dyn ProgressSink) -> Result<Built> {
    let store = worker.store;
    let df = opts.dockerfile()?;
    let with_epoch;
    let opts = match source_epoch::resolve(store, worker.fetcher.as_ref(), &df, opts)? {
        Some(epoch) => {
            with_epoch = source_epoch::apply(opts, epoch);
            &with_epoch
        }
        None => opts,
    };
    let graph = lower_with(&df, opts, &graph::ImageTriggers::new())?;
    let graph = plan_with_image_triggers(worker, &df, opts, graph)?;
    // Every platform whose RUN steps this build runs must be runnable here: said before any step runs.
    let run_platforms: BTreeSet<&Platform> = graph
        .stages
        .values()
        .filter(|n| n.ops.iter().any(|o| o.kind == graph::OpKind::Exec))
        .map(|n| &n.platform)
        .collect();
    for platform in run_platforms {
        if let Some(text) = worker.executor.check_platform(platform)? {
            progress.event(&Event::Note { text: &text });
        }
    }
    let dockerfile_path =
        opts.dockerfile_path.clone().unwrap_or_else(|| crate::context::default_dockerfile(&opts.context));
    let (ignore, _) = crate::context::load_ignore(&opts.context, &dockerfile_path)?;
    let shared = Session {
        worker,
        store,
        req: opts,
        df: &df,
        ignore: &ignore,
        progress,
        steps: AtomicUsize::new(0),
        cancel: AtomicBool::new(false),
        file_hashes: crate::context::FileHashes::load(store.root().join("cache").join("context-files.json")),
        files_linked: AtomicUsize::new(0),
        used: Default::default(),
        mounts_used: Default::default(),
        throwaway_mounts: opts.no_cache.then(ThrowawayMounts::new),
    };
    // BuildKit's frontend options passed as build args: BUILDKIT_INLINE_CACHE and BUILDKIT_SANDBOX_HOSTNAME mean
    // something here.
    let understood =
        ["BUILDKIT_INLINE_CACHE", "BUILDKIT_SANDBOX_HOSTNAME", "BUILDKIT_DOCKERFILE_CHECK", "BUILDKIT_MULTI_PLATFORM"];
    for name in opts.build_args.keys().filter(|k| k.starts_with("BUILDKIT_") && !understood.contains(&k.as_str())) {
        progress.event(&Event::Note {
            text: &format!("note: --build-arg {name} is a BuildKit frontend option; rbuild ignores it"),
        });
    }
    import_cache(worker, opts, progress);
    if let Some(text) = worker.executor.describe() {
        shared.note(&text);
    }
    let solved = solve::solve(&shared, &graph, &worker.slots);
    let _ = shared.file_hashes.save();
    if let Some(t) = &shared.throwaway_mounts {
        t.remove(store, worker.tree_ops.as_ref());
    }
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
    progress.event(&Event::ImageWritten { step, digest: image.manifest_digest.as_str(), part: "" });
    let mut cache_records = Vec::new();
    let mut mounts_used = Vec::new();
    if !opts.cache_to.is_empty() {
        let used = used_records(&shared);
        mounts_used = shared.mounts_used.lock().map(|m| m.iter().cloned().collect()).unwrap_or_default();
        let final_chain = final_chain(&graph);
        for spec in opts.cache_to.iter().filter(|s| s.location != remote_cache::CacheLocation::Inline) {
            cache_records.push(
                used.iter()
                    .filter(|(stage, _, _)| spec.mode_max || final_chain.contains(stage))
                    .map(|(_, k, c)| (k.clone(), c.clone()))
                    .collect(),
            );
        }
    }
    let result = BuildResult {
        manifest_digest: image.manifest_digest.clone(),
        config_digest: image.config_digest.clone(),
        image,
        snapshots: final_stage.snapshots,
        ids: worker.id_map.clone(),
        executed,
        cached,
        index: None,
        per_platform: Vec::new(),
    };
    Ok(Built { result, cache_records, mounts_used })
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

fn used_records(shared: &Session<'_>) -> Vec<(usize, String, cache::Cached)> {
    shared.used.lock().map(|u| u.clone()).unwrap_or_default()
}
