//! `rbuild build`: the command line of `docker buildx build` turned into a build request (the flag grammars are
//! the builder's `engine::request_flags`), the build, and its outputs. `--check` and `--call` are in
//! `build_check.rs`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rbuild_builder::context::source;
use rbuild_builder::distribution::NetworkFetcher;
use rbuild_builder::engine::request_flags::{
    check_entitlements, key_values, parse_build_args, parse_cache_specs, parse_secrets, parse_ssh, parse_ulimit,
};
use rbuild_builder::engine::{BuildRequest, Network, PullPolicy};
use rbuild_builder::export::image::MediaTypes;
use rbuild_builder::export::outputs::{self, Output};
use rbuild_builder::store::Store;
use rbuild_registry::Reference;

use super::build_args::BuildArgs;
use super::build_args::target_platforms;
use super::{build_check, dockerfile_input, progress_view};

/// Build the image (everything but `--check` and `--call`).
pub fn build(
    store: &Store,
    args: BuildArgs,
    userns: Option<&str>,
    registry: &super::registry_cmds::RegistryFlags,
) -> anyhow::Result<ExitCode> {
    let platforms = target_platforms(args.platform.as_deref())?;
    let client = super::registry_cmds::client(registry)?;
    let fetcher = NetworkFetcher::new(Some(client.clone()));
    let offline = client.settings().offline;
    let context = source::resolve_arg(store, &args.context, &mut std::io::stdin().lock(), &fetcher, offline)?;
    let input = match (&args.file, &context.dockerfile_text) {
        // With a fetched context (a URL, git, a tar on stdin), a relative -f names a file of that context, as
        // docker build reads it (BuildKit's testDockerfileFromHTTP).
        (Some(f), _) if context.temporary.is_some() && f.is_relative() && f != Path::new("-") => {
            dockerfile_input::read(&context.dir.join(f))?
        }
        (Some(f), _) => dockerfile_input::read(f)?,
        (None, Some(text)) => dockerfile_input::DockerfileInput { name: "-".into(), text: text.clone(), path: None },
        (None, None) => dockerfile_input::read(&rbuild_builder::context::default_dockerfile(&context.dir))?,
    };
    let mut req = BuildRequest::new(context.dir.clone(), input.name, input.text);
    req.dockerfile_path = input.path;
    req.build_args = parse_build_args(&args.build_args);
    build_check::report_build_checks(&req, args.quiet)?;
    let tags = args.tags.iter().map(|t| Reference::parse(t)).collect::<Result<Vec<_>, _>>()?;
    let compression = rbuild_builder::layer::Compression::parse(&args.compression).with_context(|| {
        format!("unknown --compression {:?} (gzip[:1-9], zstd[:1-22], uncompressed)", args.compression)
    })?;
    let userns = rbuild_runtime::userns::detect_with(userns)?;
    req.platform = platforms[0].clone();
    req.platforms = if platforms.len() > 1 { platforms } else { Vec::new() };
    req.tags = tags.clone();
    req.target = args.target.clone();
    req.no_cache = args.no_cache;
    req.no_cache_filter = args.no_cache_filter.clone();
    req.cache_to = parse_cache_specs(&args.cache_to, "--cache-to")?;
    req.cache_from = parse_cache_specs(&args.cache_from, "--cache-from")?;
    req.pull = if args.pull { PullPolicy::Always } else { PullPolicy::Missing };
    req.network = if args.network == "none" { Network::None } else { Network::Host };
    req.media_types = if args.oci_mediatypes { MediaTypes::Oci } else { MediaTypes::Docker };
    req.layers = rbuild_builder::layer::LayerOptions { compression, ..Default::default() };
    req.secrets = parse_secrets(&args.secrets)?;
    req.ssh = parse_ssh(&args.ssh)?;
    req.labels = key_values(&args.labels, "--label")?;
    req.extra_hosts = args
        .add_hosts
        .iter()
        .map(|h| rbuild_builder::hosts::parse_host_entry(h).with_context(|| format!("--add-host {h:?}")))
        .collect::<anyhow::Result<_>>()?;
    req.ulimits = args.ulimits.iter().map(|u| parse_ulimit(u)).collect::<Result<_, _>>()?;
    req.shm_size = match &args.shm_size {
        Some(s) => rbuild_builder::size::parse_size(s).with_context(|| format!("--shm-size {s:?}"))?,
        None => 0,
    };
    check_entitlements(&args.allow)?;
    req.allow = args.allow.iter().cloned().collect();
    req.context_times.main = context.modified;
    let mut fetched = Vec::new();
    for (name, value) in key_values(&args.build_contexts, "--build-context")? {
        let (nc, resolved) = source::named_context(store, &value, &fetcher, offline)
            .with_context(|| format!("--build-context {name}={value}"))?;
        if let Some(t) = resolved.as_ref().and_then(|r| r.modified) {
            req.context_times.named.insert(name.clone(), t);
        }
        fetched.extend(resolved);
        req.named_contexts.insert(name, nc);
    }
    let mut outputs = args.outputs.iter().map(|o| Output::parse(o)).collect::<Result<Vec<_>, _>>()?;
    if args.push {
        outputs.push(Output::Image { names: Vec::new(), push: true });
    }
    // Images (stored, pushed, saved) need no files: a cached step's layer may stay remote until something reads it.
    req.files_unneeded = outputs.iter().all(|o| matches!(o, Output::Image { .. } | Output::Archive { .. }));
    let progress = progress_view::choose(&args.progress, args.quiet, store.root());
    let worker = rbuild_builder::sandbox::sandboxed_worker(
        store,
        rbuild_runtime::Runtime::current()?,
        userns,
        super::isolation(),
        Some(client.clone()),
        args.jobs.unwrap_or(0),
        &req.input_paths(),
    )?;
    let result = rbuild_builder::engine::build(&worker, &req, progress.as_ref());
    drop(progress);
    drop(context);
    drop(fetched);
    deliver(store, &client, &result?, &outputs, &args, &tags)?;
    Ok(ExitCode::SUCCESS)
}

/// After the build: every output, `--load`, `--iidfile`, `--metadata-file`, and the summary line.
fn deliver(
    store: &Store,
    client: &rbuild_registry::Client,
    result: &rbuild_builder::engine::BuildResult,
    outputs: &[Output],
    args: &BuildArgs,
    tags: &[Reference],
) -> anyhow::Result<()> {
    let delivery = outputs::Delivery {
        outputs,
        load: args.load,
        iidfile: args.iidfile.as_deref(),
        metadata_file: args.metadata_file.as_deref(),
    };
    for line in outputs::deliver(store, client, result, tags, &delivery)? {
        if !args.quiet {
            eprintln!("{line}");
        }
    }
    if args.quiet {
        println!("{}", result.manifest_digest);
    } else {
        let tagged = if args.tags.is_empty() { String::new() } else { format!(", tagged {}", args.tags.join(", ")) };
        eprintln!("built {} ({} steps run, {} cached){tagged}", result.manifest_digest, result.executed, result.cached);
    }
    Ok(())
}
