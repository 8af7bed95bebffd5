//! `rbuild build`: the command line of `docker buildx build` turned into a build request (the flag grammars are
//! the builder's `engine::request_flags`), the build, and its outputs. `--check` and `--call` are in
//! `build_check.rs`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
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

use super::{build_check, dockerfile_input, progress_view};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context: a directory, `-` (a tar or a Dockerfile on stdin), a git URL or an http(s) tarball URL.
    #[arg(default_value = ".")]
    pub context: String,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads standard input).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// Check the Dockerfile and build inputs without building (`--call check`).
    #[arg(long)]
    pub check: bool,
    /// What to do instead of building, as docker buildx's --call: build (default), check, outline (the target's
    /// build args, secrets and SSH agents), targets (every stage), subrequests.describe; `,format=json` prints
    /// BuildKit's JSON.
    #[arg(long, value_name = "METHOD[,format=json]")]
    pub call: Option<String>,
    /// Name (and tag) the image; may be given several times.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// A build argument: NAME=VALUE, or NAME to take the value from the environment.
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the build cache for these stages (may be given several times or comma-separated).
    #[arg(long = "no-cache-filter", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// Always pull base images (needs the registry client).
    #[arg(long)]
    pub pull: bool,
    /// Progress output: auto (tty on a terminal, else plain), tty, plain, rawjson or quiet.
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty", "rawjson", "quiet"])]
    pub progress: String,
    /// Print only the image digest.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The network for RUN steps, as docker build lists them: default (the host's network: rbuild runs no network
    /// of its own), none, or host.
    #[arg(long, default_value = "default", value_parser = ["default", "none", "host"])]
    pub network: String,
    /// An /etc/hosts entry for RUN steps: NAME:IP (may be given several times).
    #[arg(long = "add-host")]
    pub add_hosts: Vec<String>,
    /// Write the image digest to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Write the build's result metadata (digests, names) as JSON to this file.
    #[arg(long = "metadata-file")]
    pub metadata_file: Option<PathBuf>,
    /// Layer compression: gzip[:LEVEL], zstd[:LEVEL] or uncompressed.
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// A secret for RUN --mount=type=secret: id=ID,src=PATH or id=ID,env=VAR (never stored in the image).
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// An SSH agent for RUN --mount=type=ssh: `default` ($SSH_AUTH_SOCK) or ID=SOCKET.
    #[arg(long = "ssh")]
    pub ssh: Vec<String>,
    /// A label for the image: KEY=VALUE.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// An extra build context: NAME=DIR, NAME=docker-image://REF or NAME=oci-layout://PATH[:TAG].
    #[arg(long = "build-context")]
    pub build_contexts: Vec<String>,
    /// Where the result goes: type=image|oci|docker|tar|local[,dest=PATH][,name=N][,push=true].
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<String>,
    /// Export the build cache: type=registry,ref=REF[,mode=min|max][,mounts=true] or type=local,dest=DIR.
    #[arg(long = "cache-to")]
    pub cache_to: Vec<String>,
    /// Import a build cache first: type=registry,ref=REF, type=local,src=DIR, or a bare REF.
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Hand the image to the local Docker or Podman engine.
    #[arg(long)]
    pub load: bool,
    /// Push the image (type=image,push=true).
    #[arg(long)]
    pub push: bool,
    /// How many independent stages may build at once (default: four per CPU).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Extra privileges for RUN steps: network.host, security.insecure.
    #[arg(long = "allow", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// Size of /dev/shm in RUN steps (e.g. 128m).
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// A resource limit for RUN steps: NAME=SOFT[:HARD] (e.g. nofile=1024:2048).
    #[arg(long = "ulimit")]
    pub ulimits: Vec<String>,
    /// The target platforms, comma-separated (e.g. linux/amd64,linux/arm64: an image index of one image per
    /// platform; a foreign one's RUN steps run under emulation). Default: the host's, or DOCKER_DEFAULT_PLATFORM.
    #[arg(long, env = "DOCKER_DEFAULT_PLATFORM")]
    pub platform: Option<String>,
    /// Write Docker schema2 media types instead of OCI ones (--oci-mediatypes=false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub oci_mediatypes: bool,
}

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
    let progress = progress_view::choose(&args.progress, args.quiet, store.root());
    let worker = rbuild_builder::sandbox::sandboxed_worker(
        store,
        rbuild_runtime::Runtime::current()?,
        userns,
        super::isolation(),
        Some(client.clone()),
        args.jobs.unwrap_or(0),
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
    client: &std::sync::Arc<rbuild_registry::Client>,
    result: &rbuild_builder::engine::BuildResult,
    outputs: &[Output],
    args: &BuildArgs,
    tags: &[Reference],
) -> anyhow::Result<()> {
    for o in outputs {
        for line in outputs::write(store, client, result, o, tags)? {
            if !args.quiet {
                eprintln!("{line}");
            }
        }
    }
    if args.load {
        let said = outputs::load_into_engine(store, client, result, tags)?;
        if !args.quiet && !said.is_empty() {
            eprintln!("{said}");
        }
    }
    if let Some(p) = &args.iidfile {
        std::fs::write(p, result.manifest_digest.as_str()).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &args.metadata_file {
        let v = outputs::metadata(result, tags);
        std::fs::write(p, serde_json::to_vec_pretty(&v)?).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if args.quiet {
        println!("{}", result.manifest_digest);
    } else {
        eprintln!(
            "built {} ({} steps run, {} cached){}",
            result.manifest_digest,
            result.executed,
            result.cached,
            if args.tags.is_empty() { String::new() } else { format!(", tagged {}", args.tags.join(", ")) }
        );
    }
    Ok(())
}

/// `--platform`: the platforms to build for, comma-separated (the host's when not given).
pub fn target_platforms(platform: Option<&str>) -> anyhow::Result<Vec<rbuild_builder::platform::Platform>> {
    match platform.filter(|p| !p.trim().is_empty()).map(rbuild_builder::platform::parse_list) {
        Some(Err(e)) => bail!("--platform: {e}"),
        Some(Ok(p)) => Ok(p),
        None => Ok(vec![rbuild_builder::platform::Platform::host()]),
    }
}
