//! Building a request: the Dockerfile lowered into the stages the target needs (with the ONBUILD triggers of base
//! images already in the store), `--cache-from` imported, the stages solved, the final image written and tagged,
//! and the cache exported.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::digest::Digest;
use crate::dockerfile::Dockerfile;
use crate::error::{Error, Result};

use super::{
    BuildRequest, BuildResult, Event, Graph, NamedContext, Platform, ProgressSink, PullPolicy, Session, Source,
    ThrowawayMounts, Worker, cache, graph, remote_cache, solve, source_epoch,
};

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
    let mut final_stage = results
        .remove(&graph.target)
        .ok_or_else(|| Error::Bug { what: "the target stage produced no result".into() })?;
    for (k, v) in &opts.labels {
        final_stage.config.set_label(k, v);
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
        final_stage.config.set_field(remote_cache::INLINE_KEY, remote_cache::inline_records(&records, &layers));
    }
    if !opts.files_unneeded {
        final_stage.ensure_files(store, worker.tree_ops.as_ref())?;
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
