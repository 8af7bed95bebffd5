//! `rbuild compose build`: every selected service's build, as one graph over one store. Services depend on each
//! other through `additional_contexts: {x: "service:NAME"}` and, found by parsing their Dockerfiles, through
//! `FROM`/`COPY --from` naming another service's image; each starts when what it needs is built, all of them
//! share `--jobs` stage slots and the in-flight step keys (a step several services have in common runs once).
//! Progress is grouped by service (`[svc stage 1/3]`), and a summary lists each service's image.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use rbuild_builder::compose::{DockerfileSource, Project, ServiceBuild};
use rbuild_builder::engine::progress::{Labelled, StepNumbers};
use rbuild_builder::engine::{BuildRequest, BuildResult, NamedContext, Network, PullPolicy};
use rbuild_builder::store::Store;
use rbuild_registry::Reference;

use super::build_context::{self, ResolvedContext};

#[derive(Debug, Args)]
pub struct ComposeBuildArgs {
    /// Services to build (default: every enabled service with a build: section).
    pub services: Vec<String>,
    /// Do not use the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Pull base images even when the store has them.
    #[arg(long)]
    pub pull: bool,
    /// Push each built image that has an image: name.
    #[arg(long)]
    pub push: bool,
    /// Hand every built image to the local Docker or Podman engine.
    #[arg(long)]
    pub load: bool,
    /// A build argument for every service: KEY=VALUE (or KEY: from the environment).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Progress output: auto, tty, plain, rawjson or quiet.
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// How many stages may build at once across all services (default: four per CPU).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Print nothing but the image IDs.
    #[arg(short, long)]
    pub quiet: bool,
}

/// One service ready to build: its resolved build, context and options.
struct Planned {
    build: ServiceBuild,
    opts: BuildRequest,
    /// Services this one needs built first.
    needs: BTreeSet<String>,
    /// Fetched contexts (git) to remove after the build.
    _contexts: Vec<ResolvedContext>,
}

/// The normalised name of an image reference (`busybox` and `docker.io/library/busybox:latest` are one).
fn normalised(name: &str) -> Option<String> {
    Reference::parse(name).ok().map(|r| r.to_string())
}

/// How old the store's copy of `image` is (when its manifest was written), if it has one.
fn age_in_store(store: &Store, image: &str) -> Option<std::time::Duration> {
    let digest = store.resolve_image(image).ok()?.digest().ok()?;
    let modified = std::fs::metadata(store.blob_path(&digest)).ok()?.modified().ok()?;
    modified.elapsed().ok()
}

fn plan_service(
    store: &Store,
    project: &Project,
    name: &str,
    args: &ComposeBuildArgs,
    image_of: &BTreeMap<String, String>,
    client: &std::sync::Arc<rbuild_registry::Client>,
) -> anyhow::Result<Planned> {
    let b = project.service_build(name)?;
    for w in &b.warnings {
        eprintln!("warning: {w}");
    }
    let mut contexts = Vec::new();
    let context = build_context::resolve(store, &b.context, client)
        .with_context(|| format!("service {name}: build context {}", b.context))?;
    let context_dir = context.dir.clone();
    let context_time = context.modified;
    contexts.push(context);
    let (dockerfile_name, text, path) = match &b.dockerfile {
        DockerfileSource::Inline(text) => ("dockerfile_inline".to_string(), text.clone(), None),
        DockerfileSource::Path(p) => {
            let path = match p.as_str() {
                "Dockerfile" => rbuild_builder::context::default_dockerfile(&context_dir),
                _ if Path::new(p).is_absolute() => PathBuf::from(p),
                _ => context_dir.join(p),
            };
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("service {name}: cannot read its Dockerfile {}", path.display()))?;
            (path.display().to_string(), text, Some(path))
        }
    };
    let mut opts = BuildRequest::new(context_dir, dockerfile_name, text);
    opts.dockerfile_path = path;
    opts.tags = b.tags.iter().map(|t| Reference::parse(t)).collect::<Result<_, _>>()?;
    opts.build_args = b.args.clone();
    opts.build_args.extend(super::build::parse_build_args(&args.build_args));
    opts.target = b.target.clone();
    opts.no_cache = b.no_cache || args.no_cache;
    opts.no_cache_filter = b.no_cache_filter.clone();
    opts.labels = b.labels.clone();
    opts.network = if b.network_none { Network::None } else { Network::Host };
    opts.extra_hosts = b.extra_hosts.clone();
    opts.shm_size = b.shm_size;
    opts.ulimits = b.ulimits.clone();
    opts.secrets = b.secrets.clone();
    opts.allow = b.entitlements.iter().cloned().collect();
    opts.pull = match (b.never_pull, b.pull || args.pull) {
        (true, _) => PullPolicy::Never,
        (false, true) => PullPolicy::Always,
        (false, false) => PullPolicy::Missing,
    };
    let spec = |flag: &str, v: &String| {
        rbuild_builder::engine::remote_cache::CacheSpec::parse(v)
            .map_err(|e| anyhow::anyhow!("service {name}: {flag} {v:?}: {e}"))
    };
    opts.cache_from = b.cache_from.iter().map(|v| spec("cache_from", v)).collect::<anyhow::Result<_>>()?;
    opts.cache_to = b.cache_to.iter().map(|v| spec("cache_to", v)).collect::<anyhow::Result<_>>()?;
    opts.ssh = super::build::parse_ssh(&b.ssh).with_context(|| format!("service {name}: ssh"))?;
    opts.context_times.main = context_time;
    opts.platform = b.platforms[0].clone();
    opts.platforms = if b.platforms.len() > 1 { b.platforms.clone() } else { Vec::new() };
    let mut needs = BTreeSet::new();
    for (ctx_name, value) in &b.additional_contexts {
        let named = if let Some(other) = value.strip_prefix("service:") {
            let image = image_of.get(other).with_context(|| {
                format!("service {name}: additional_contexts {ctx_name}: service:{other} is not a service with a build: section")
            })?;
            needs.insert(other.to_string());
            NamedContext::Image(image.clone())
        } else {
            let (nc, resolved) = build_context::named_context(store, value, client)
                .with_context(|| format!("service {name}: additional_contexts {ctx_name}={value}"))?;
            if let Some(t) = resolved.as_ref().and_then(|r| r.modified) {
                opts.context_times.named.insert(ctx_name.clone(), t);
            }
            contexts.extend(resolved);
            nc
        };
        opts.named_contexts.insert(ctx_name.clone(), named);
    }
    // What the Dockerfile reads by image name: another service's image makes a dependency.
    let (_, graph) = rbuild_builder::engine::plan(&opts).with_context(|| format!("service {name}"))?;
    let by_image: BTreeMap<String, &String> = image_of
        .iter()
        .filter(|(s, _)| s.as_str() != name)
        .filter_map(|(s, i)| normalised(i).map(|n| (n, s)))
        .collect();
    let mut bases = Vec::new();
    for node in graph.stages.values() {
        for src in std::iter::once(&node.base).chain(node.ops.iter().flat_map(|o| o.reads.iter())) {
            if let rbuild_builder::engine::graph::Source::Image(image) = src {
                bases.push(image.clone());
                if let Some(other) = normalised(image).and_then(|n| by_image.get(&n).copied())
                    && needs.insert(other.clone())
                {
                    eprintln!(
                        "note: service {name} uses {image}, the image of service {other}: building {other} first"
                    );
                }
            }
        }
    }
    if let Some(max_age) = b.pull_if_older_than
        && bases.iter().any(|i| age_in_store(store, i).is_some_and(|a| a.as_secs() > max_age))
    {
        opts.pull = PullPolicy::Always;
    }
    Ok(Planned { build: b, opts, needs, _contexts: contexts })
}

/// The order problem: a cycle among services is an error naming them.
fn check_cycles(planned: &BTreeMap<String, Planned>) -> anyhow::Result<()> {
    fn visit(
        s: &str,
        planned: &BTreeMap<String, Planned>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> anyhow::Result<()> {
        if done.contains(s) {
            return Ok(());
        }
        if let Some(i) = path.iter().position(|p| p == s) {
            let mut cycle = path[i..].to_vec();
            cycle.push(s.to_string());
            bail!("services depend on each other in a cycle: {}", cycle.join(" -> "));
        }
        path.push(s.to_string());
        for n in planned.get(s).map(|p| p.needs.clone()).unwrap_or_default() {
            visit(&n, planned, path, done)?;
        }
        path.pop();
        done.insert(s.to_string());
        Ok(())
    }
    let mut done = BTreeSet::new();
    for s in planned.keys() {
        visit(s, planned, &mut Vec::new(), &mut done)?;
    }
    Ok(())
}

pub fn build(
    store: &Store,
    project: &Project,
    args: ComposeBuildArgs,
    userns: Option<&str>,
    registry: &super::registry_cmds::RegistryFlags,
) -> anyhow::Result<ExitCode> {
    let client = super::registry_cmds::client(registry)?;
    let userns_mode = rbuild_runtime::userns::detect_with(userns)?;
    let with_build: BTreeSet<String> =
        project.model.services.iter().filter(|(_, s)| s.build.is_some()).map(|(n, _)| n.clone()).collect();
    let mut wanted: Vec<String> = Vec::new();
    for s in super::compose::selected(project, &args.services)? {
        if with_build.contains(&s) {
            wanted.push(s);
        } else if !args.services.is_empty() {
            eprintln!("warning: service {s} has no build: section; nothing to build");
        }
    }
    let image_of: BTreeMap<String, String> = with_build.iter().map(|s| (s.clone(), project.image_name(s))).collect();
    // Plan the wanted services and, transitively, the services they need.
    let mut planned: BTreeMap<String, Planned> = BTreeMap::new();
    let mut queue = wanted.clone();
    while let Some(s) = queue.pop() {
        if planned.contains_key(&s) {
            continue;
        }
        let p = plan_service(store, project, &s, &args, &image_of, &client)?;
        queue.extend(p.needs.iter().cloned());
        planned.insert(s, p);
    }
    check_cycles(&planned)?;
    if planned.is_empty() {
        eprintln!("no service to build (none has a build: section)");
        return Ok(ExitCode::SUCCESS);
    }
    let worker = rbuild_builder::sandbox::sandboxed_worker(
        store,
        rbuild_runtime::Runtime::current()?,
        userns_mode,
        super::isolation(),
        Some(client.clone()),
        args.jobs.unwrap_or(0),
    )?;
    let progress = super::progress_view::choose(&args.progress, args.quiet, store.root());
    let numbers = StepNumbers::default();
    type Outcome = (String, anyhow::Result<(BuildResult, f64)>);
    let mut results: BTreeMap<String, (BuildResult, f64)> = BTreeMap::new();
    let mut failures: Vec<(String, anyhow::Error)> = Vec::new();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<Outcome>();
        let mut pending: Vec<&String> = planned.keys().collect();
        let mut running = 0;
        loop {
            while failures.is_empty() {
                let Some(pos) = pending.iter().position(|s| planned[*s].needs.iter().all(|n| results.contains_key(n)))
                else {
                    break;
                };
                let service = pending.remove(pos).clone();
                let p = &planned[&service];
                let (tx, worker, progress, numbers) = (tx.clone(), &worker, progress.as_ref(), &numbers);
                running += 1;
                scope.spawn(move || {
                    let sink = Labelled::new(progress, service.clone(), numbers);
                    let started = Instant::now();
                    let r = rbuild_builder::engine::build(worker, &p.opts, &sink)
                        .map(|r| (r, started.elapsed().as_secs_f64()))
                        .map_err(|e| anyhow::Error::new(e).context(format!("service {service}")));
                    let _ = tx.send((service, r));
                });
            }
            if running == 0 {
                break;
            }
            let Ok((service, outcome)) = rx.recv() else { break };
            running -= 1;
            match outcome {
                Ok(r) => {
                    results.insert(service, r);
                }
                Err(e) => failures.push((service, e)),
            }
        }
    });
    drop(progress);
    if let Some((_, e)) = failures.into_iter().next() {
        return Err(e);
    }
    summarize(store, &client, project, &planned, &results, &args)?;
    Ok(ExitCode::SUCCESS)
}

/// After the builds: one summary line per service, then `--push` and `--load`.
fn summarize(
    store: &Store,
    client: &std::sync::Arc<rbuild_registry::Client>,
    project: &Project,
    planned: &BTreeMap<String, Planned>,
    results: &BTreeMap<String, (BuildResult, f64)>,
    args: &ComposeBuildArgs,
) -> anyhow::Result<()> {
    for (service, (result, secs)) in results {
        let p = &planned[service];
        let image = &p.build.tags[0];
        if args.quiet {
            println!("{}", result.manifest_digest);
        } else {
            let state = if result.executed == 0 {
                "CACHED".to_string()
            } else {
                format!("{} steps run, {} cached", result.executed, result.cached)
            };
            eprintln!("service {service}: built {image} {} in {secs:.1}s ({state})", result.manifest_digest);
        }
        if args.push {
            if project.model.services[service].image.is_none() {
                eprintln!("warning: service {service} has no image: to push to; not pushed");
            } else {
                for t in &p.opts.tags {
                    let line = super::registry_cmds::push_one(store, client, result.manifest_digest.as_str(), t)?;
                    eprintln!("{service}: {line}");
                }
            }
        }
        if args.load {
            let said = rbuild_builder::export::outputs::load_into_engine(store, client, result, &p.opts.tags)?;
            if !said.is_empty() && !args.quiet {
                eprintln!("{service}: {said}");
            }
        }
    }
    Ok(())
}
