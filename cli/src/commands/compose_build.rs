//! `rbuild compose build`: its flags turned into project options, the project planned and built as one graph by
//! `rbuild_builder::compose` (progress grouped by service, `[svc stage 1/3]`), then a summary line per service and
//! `--push`/`--load`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use rbuild_builder::compose::{Project, ProjectOptions, ProjectPlan, ServiceBuilt};
use rbuild_builder::distribution::NetworkFetcher;
use rbuild_builder::engine::request_flags::parse_build_args;
use rbuild_builder::store::Store;

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

pub fn build(
    store: &Store,
    project: &Project,
    args: ComposeBuildArgs,
    userns: Option<&str>,
    registry: &super::registry_cmds::RegistryFlags,
) -> anyhow::Result<ExitCode> {
    let client = super::registry_cmds::client(registry)?;
    let userns_mode = rbuild_runtime::userns::detect_with(userns)?;
    let opts =
        ProjectOptions { build_args: parse_build_args(&args.build_args), no_cache: args.no_cache, pull: args.pull };
    let fetcher = NetworkFetcher::new(Some(client.clone()));
    let offline = client.settings().offline;
    let plan =
        rbuild_builder::compose::plan_project(store, project, &args.services, &opts, &fetcher, offline, &mut |l| {
            eprintln!("{l}")
        })?;
    if plan.services.is_empty() {
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
        &plan.services.values().flat_map(|s| s.request.input_paths()).collect::<Vec<_>>(),
    )?;
    let progress = super::progress_view::choose(&args.progress, args.quiet, store.root());
    let built = rbuild_builder::compose::build_project(&plan, &worker, progress.as_ref());
    drop(progress);
    summarize(store, &client, project, &plan, &built?, &args)?;
    Ok(ExitCode::SUCCESS)
}

/// After the builds: one summary line per service, then `--push` and `--load`.
fn summarize(
    store: &Store,
    client: &std::sync::Arc<rbuild_registry::Client>,
    project: &Project,
    plan: &ProjectPlan,
    built: &BTreeMap<String, ServiceBuilt>,
    args: &ComposeBuildArgs,
) -> anyhow::Result<()> {
    for (service, ServiceBuilt { result, elapsed }) in built {
        let p = &plan.services[service];
        let image = &p.build.tags[0];
        if args.quiet {
            println!("{}", result.manifest_digest);
        } else {
            let state = if result.executed == 0 {
                "CACHED".to_string()
            } else {
                format!("{} steps run, {} cached", result.executed, result.cached)
            };
            let secs = elapsed.as_secs_f64();
            eprintln!("service {service}: built {image} {} in {secs:.1}s ({state})", result.manifest_digest);
        }
        if args.push {
            if project.model.services[service].image.is_none() {
                eprintln!("warning: service {service} has no image: to push to; not pushed");
            } else {
                for t in &p.request.tags {
                    let line = super::registry_cmds::push_one(store, client, result.manifest_digest.as_str(), t)?;
                    eprintln!("{service}: {line}");
                }
            }
        }
        if args.load {
            let said = rbuild_builder::export::outputs::load_into_engine(store, client, result, &p.request.tags)?;
            if !said.is_empty() && !args.quiet {
                eprintln!("{service}: {said}");
            }
        }
    }
    Ok(())
}
