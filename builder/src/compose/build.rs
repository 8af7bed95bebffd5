//! `compose build` as one graph over one worker: [`plan_project`] turns the selected services (and, transitively,
//! the services they need) into build requests, finding dependencies from `additional_contexts: service:NAME` and
//! from the engine's plan of each Dockerfile (a `FROM`/`COPY --from` naming another service's image), and refuses
//! a cycle; [`build_project`] starts each service's build as soon as what it needs is built, all of them sharing
//! the worker's stage slots and in-flight step claims (a step several services have in common runs once), with
//! progress labelled by service. After a failure no new service starts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rbuild_registry::Reference;

use super::build_plan::{DockerfileSource, ServiceBuild};
use super::project::{ComposeError, Project};
use crate::context::source::{self, ResolvedContext};
use crate::engine::ports::Fetcher;
use crate::engine::progress::{Labelled, StepNumbers};
use crate::engine::{BuildRequest, BuildResult, NamedContext, Network, ProgressSink, PullPolicy, Worker, graph};
use crate::error::Error;
use crate::store::Store;

/// What `compose build`'s own flags add to every service's build.
#[derive(Debug, Clone, Default)]
pub struct ProjectOptions {
    /// `--build-arg`s, over each service's `args`.
    pub build_args: BTreeMap<String, String>,
    pub no_cache: bool,
    /// `--pull`: pull base images even when the store has them.
    pub pull: bool,
}

/// One service ready to build.
#[derive(Debug)]
pub struct ServicePlan {
    pub build: ServiceBuild,
    pub request: BuildRequest,
    /// Services this one needs built first.
    pub needs: BTreeSet<String>,
    /// Fetched contexts (git, URLs), removed when the plan is dropped.
    _contexts: Vec<ResolvedContext>,
}

/// The services to build, by name, each with what it needs.
#[derive(Debug)]
pub struct ProjectPlan {
    pub services: BTreeMap<String, ServicePlan>,
}

/// A service's finished build and how long it took.
#[derive(Debug)]
pub struct ServiceBuilt {
    pub result: BuildResult,
    pub elapsed: Duration,
}

impl Project {
    /// The services a command acts on: those named (which must exist), else every enabled one.
    pub fn select_services(&self, named: &[String]) -> Result<Vec<String>, ComposeError> {
        if named.is_empty() {
            return Ok(self.enabled_services());
        }
        if let Some(n) = named.iter().find(|n| !self.model.services.contains_key(*n)) {
            return Err(ComposeError::Project(format!(
                "no such service: {n} (services: {})",
                self.enabled_services().join(", ")
            )));
        }
        Ok(named.to_vec())
    }
}

fn in_service(service: &str, what: impl Into<String>) -> impl FnOnce(Error) -> ComposeError {
    let (service, what) = (service.to_string(), what.into());
    move |e| ComposeError::Service { service, what, source: Box::new(e) }
}

/// Plan the `named` services (every enabled one with a `build:` section when none is named) and the services they
/// need. `say` gets the warnings and notes (`warning: …`, `note: …`) as they arise.
pub fn plan_project(
    store: &Store,
    project: &Project,
    named: &[String],
    opts: &ProjectOptions,
    fetcher: &dyn Fetcher,
    offline: bool,
    say: &mut dyn FnMut(String),
) -> Result<ProjectPlan, ComposeError> {
    let with_build: BTreeSet<String> =
        project.model.services.iter().filter(|(_, s)| s.build.is_some()).map(|(n, _)| n.clone()).collect();
    let mut queue: Vec<String> = Vec::new();
    for s in project.select_services(named)? {
        if with_build.contains(&s) {
            queue.push(s);
        } else if !named.is_empty() {
            say(format!("warning: service {s} has no build: section; nothing to build"));
        }
    }
    let image_of: BTreeMap<String, String> = with_build.iter().map(|s| (s.clone(), project.image_name(s))).collect();
    let mut services = BTreeMap::new();
    while let Some(s) = queue.pop() {
        if services.contains_key(&s) {
            continue;
        }
        let p = plan_service(store, project, &s, opts, &image_of, fetcher, offline, say)?;
        queue.extend(p.needs.iter().cloned());
        services.insert(s, p);
    }
    let plan = ProjectPlan { services };
    plan.check_cycles()?;
    Ok(plan)
}

/// The normalised name of an image reference (`busybox` and `docker.io/library/busybox:latest` are one).
fn normalised(name: &str) -> Option<String> {
    Reference::parse(name).ok().map(|r| r.to_string())
}

/// How old the store's copy of `image` is (when its manifest was written), if it has one.
fn age_in_store(store: &Store, image: &str) -> Option<Duration> {
    let digest = store.resolve_image(image).ok()?.digest().ok()?;
    let modified = std::fs::metadata(store.blob_path(&digest)).ok()?.modified().ok()?;
    modified.elapsed().ok()
}

/// The service's Dockerfile: its name for messages, its text and its path.
fn read_dockerfile(b: &ServiceBuild, context_dir: &Path) -> Result<(String, String, Option<PathBuf>), ComposeError> {
    match &b.dockerfile {
        DockerfileSource::Inline(text) => Ok(("dockerfile_inline".to_string(), text.clone(), None)),
        DockerfileSource::Path(p) => {
            let path = match p.as_str() {
                "Dockerfile" => crate::context::default_dockerfile(context_dir),
                _ if Path::new(p).is_absolute() => PathBuf::from(p),
                _ => context_dir.join(p),
            };
            let bytes = std::fs::read(&path)
                .map_err(|source| Error::DockerfileRead { path: path.clone(), source })
                .map_err(in_service(&b.service, ""))?;
            Ok((path.display().to_string(), crate::dockerfile::decode(&bytes), Some(path)))
        }
    }
}

impl BuildRequest {
    /// The request for a service's resolved build in `context` (additional contexts are the caller's: they may
    /// name other services).
    pub fn from_service(
        b: &ServiceBuild,
        context: &ResolvedContext,
        opts: &ProjectOptions,
    ) -> Result<Self, ComposeError> {
        use crate::engine::request_flags::{parse_cache_specs, parse_ssh};
        let (dockerfile_name, text, path) = read_dockerfile(b, &context.dir)?;
        let mut req = BuildRequest::new(context.dir.clone(), dockerfile_name, text);
        // A service is an image: its layers may stay remote.
        req.files_unneeded = true;
        req.dockerfile_path = path;
        let tags = b.tags.iter().map(|t| Reference::parse(t)).collect::<Result<_, _>>();
        req.tags = tags.map_err(|e| in_service(&b.service, "")(e.into()))?;
        req.build_args = b.args.clone();
        req.build_args.extend(opts.build_args.clone());
        req.target = b.target.clone();
        req.no_cache = b.no_cache || opts.no_cache;
        req.no_cache_filter = b.no_cache_filter.clone();
        req.labels = b.labels.clone();
        req.network = if b.network_none { Network::None } else { Network::Host };
        req.extra_hosts = b.extra_hosts.clone();
        req.shm_size = b.shm_size;
        req.ulimits = b.ulimits.clone();
        req.secrets = b.secrets.clone();
        req.allow = b.entitlements.iter().cloned().collect();
        req.pull = match (b.never_pull, b.pull || opts.pull) {
            (true, _) => PullPolicy::Never,
            (false, true) => PullPolicy::Always,
            (false, false) => PullPolicy::Missing,
        };
        req.cache_from = parse_cache_specs(&b.cache_from, "cache_from").map_err(in_service(&b.service, ""))?;
        req.cache_to = parse_cache_specs(&b.cache_to, "cache_to").map_err(in_service(&b.service, ""))?;
        req.ssh = parse_ssh(&b.ssh).map_err(in_service(&b.service, "ssh"))?;
        req.context_times.main = context.modified;
        req.platform = b.platforms[0].clone();
        req.platforms = if b.platforms.len() > 1 { b.platforms.clone() } else { Vec::new() };
        Ok(req)
    }
}

#[allow(clippy::too_many_arguments)]
fn plan_service(
    store: &Store,
    project: &Project,
    name: &str,
    opts: &ProjectOptions,
    image_of: &BTreeMap<String, String>,
    fetcher: &dyn Fetcher,
    offline: bool,
    say: &mut dyn FnMut(String),
) -> Result<ServicePlan, ComposeError> {
    let b = project.service_build(name)?;
    for w in &b.warnings {
        say(format!("warning: {w}"));
    }
    let context =
        source::resolve(store, &source::ContextSource::parse(&b.context), &mut std::io::empty(), fetcher, offline)
            .map_err(in_service(name, format!("build context {}", b.context)))?;
    let mut request = BuildRequest::from_service(&b, &context, opts)?;
    let mut contexts = vec![context];
    let mut needs = BTreeSet::new();
    for (ctx_name, value) in &b.additional_contexts {
        let named = if let Some(other) = value.strip_prefix("service:") {
            let image = image_of.get(other).ok_or_else(|| ComposeError::Project(format!(
                "service {name}: additional_contexts {ctx_name}: service:{other} is not a service with a build: section"
            )))?;
            needs.insert(other.to_string());
            NamedContext::Image(image.clone())
        } else {
            let (nc, resolved) = source::named_context(store, value, fetcher, offline)
                .map_err(in_service(name, format!("additional_contexts {ctx_name}={value}")))?;
            if let Some(t) = resolved.as_ref().and_then(|r| r.modified) {
                request.context_times.named.insert(ctx_name.clone(), t);
            }
            contexts.extend(resolved);
            nc
        };
        request.named_contexts.insert(ctx_name.clone(), named);
    }
    // What the Dockerfile reads by image name: another service's image makes a dependency.
    let (_, graph) = crate::engine::plan(&request).map_err(in_service(name, ""))?;
    let by_image: BTreeMap<String, &String> = image_of
        .iter()
        .filter(|(s, _)| s.as_str() != name)
        .filter_map(|(s, i)| normalised(i).map(|n| (n, s)))
        .collect();
    let mut bases = Vec::new();
    for node in graph.stages.values() {
        for src in std::iter::once(&node.base).chain(node.ops.iter().flat_map(|o| o.reads.iter())) {
            if let graph::Source::Image(image) = src {
                bases.push(image.clone());
                if let Some(other) = normalised(image).and_then(|n| by_image.get(&n).copied())
                    && needs.insert(other.clone())
                {
                    say(format!(
                        "note: service {name} uses {image}, the image of service {other}: building {other} first"
                    ));
                }
            }
        }
    }
    if let Some(max_age) = b.pull_if_older_than
        && bases.iter().any(|i| age_in_store(store, i).is_some_and(|a| a.as_secs() > max_age))
    {
        request.pull = PullPolicy::Always;
    }
    Ok(ServicePlan { build: b, request, needs, _contexts: contexts })
}

impl ProjectPlan {
    /// The order problem: a cycle among services is an error naming them.
    fn check_cycles(&self) -> Result<(), ComposeError> {
        fn visit(
            s: &str,
            plan: &ProjectPlan,
            path: &mut Vec<String>,
            finished: &mut BTreeSet<String>,
        ) -> Result<(), ComposeError> {
            if finished.contains(s) {
                return Ok(());
            }
            if let Some(i) = path.iter().position(|p| p == s) {
                let mut cycle = path[i..].to_vec();
                cycle.push(s.to_string());
                return Err(ComposeError::Project(format!(
                    "services depend on each other in a cycle: {}",
                    cycle.join(" -> ")
                )));
            }
            path.push(s.to_string());
            for n in plan.services.get(s).map(|p| p.needs.clone()).unwrap_or_default() {
                visit(&n, plan, path, finished)?;
            }
            path.pop();
            finished.insert(s.to_string());
            Ok(())
        }
        let mut finished = BTreeSet::new();
        for s in self.services.keys() {
            visit(s, self, &mut Vec::new(), &mut finished)?;
        }
        Ok(())
    }
}

/// Build every planned service on `worker`, each as soon as the services it needs are built. The first failure
/// stops new services from starting and is returned once the running ones end.
pub fn build_project(
    plan: &ProjectPlan,
    worker: &Worker<'_>,
    progress: &dyn ProgressSink,
) -> Result<BTreeMap<String, ServiceBuilt>, ComposeError> {
    let numbers = StepNumbers::default();
    type Outcome = (String, Result<ServiceBuilt, ComposeError>);
    let mut built: BTreeMap<String, ServiceBuilt> = BTreeMap::new();
    let mut failure: Option<ComposeError> = None;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<Outcome>();
        let mut pending: Vec<&String> = plan.services.keys().collect();
        let mut running = 0;
        loop {
            while failure.is_none() {
                let ready = pending.iter().position(|s| plan.services[*s].needs.iter().all(|n| built.contains_key(n)));
                let Some(pos) = ready else { break };
                let service = pending.remove(pos).clone();
                let request = &plan.services[&service].request;
                let (tx, numbers) = (tx.clone(), &numbers);
                running += 1;
                scope.spawn(move || {
                    let sink = Labelled::new(progress, service.clone(), numbers);
                    let started = Instant::now();
                    let outcome = crate::engine::build(worker, request, &sink)
                        .map(|result| ServiceBuilt { result, elapsed: started.elapsed() })
                        .map_err(in_service(&service, ""));
                    let _ = tx.send((service, outcome));
                });
            }
            if running == 0 {
                break;
            }
            let Ok((service, outcome)) = rx.recv() else { break };
            running -= 1;
            match outcome {
                Ok(b) => {
                    built.insert(service, b);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(built),
    }
}
