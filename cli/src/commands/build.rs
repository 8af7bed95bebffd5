//! `rbuild build`: the command line of `docker buildx build` turned into build options, the build, and its
//! outputs; and `--check`, which runs the Dockerfile frontend and the `.dockerignore` parser over a build's
//! inputs without building anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use rbuild_builder::dockerfile;
use rbuild_builder::store::Store;
use rbuild_registry::Reference;

use super::{build_context, dockerfile_input, progress_view};
use rbuild_builder::export::outputs::{self, Output};

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

/// Build the image (everything but `--check`).
pub fn build(
    store: &Store,
    args: BuildArgs,
    userns: Option<&str>,
    registry: &super::registry_cmds::RegistryFlags,
) -> anyhow::Result<ExitCode> {
    use rbuild_builder::engine::{BuildRequest, Network, PullPolicy, build};
    let platforms = target_platforms(args.platform.as_deref())?;
    let client = super::registry_cmds::client(registry)?;
    let context = build_context::resolve(store, &args.context, &client)?;
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
    let ignore = context_ignore(&context.dir, input.path.as_deref());
    report_build_checks(&input.name, &input.text, &parse_build_args(&args.build_args), ignore.as_ref(), args.quiet)?;
    let tags = args.tags.iter().map(|t| Reference::parse(t)).collect::<Result<Vec<_>, _>>()?;
    let compression = rbuild_builder::layer::Compression::parse(&args.compression).with_context(|| {
        format!("unknown --compression {:?} (gzip[:1-9], zstd[:1-22], uncompressed)", args.compression)
    })?;
    let userns = rbuild_runtime::userns::detect_with(userns)?;
    let mut opts = BuildRequest::new(context.dir.clone(), input.name, input.text);
    opts.dockerfile_path = input.path;
    opts.platform = platforms[0].clone();
    opts.platforms = if platforms.len() > 1 { platforms } else { Vec::new() };
    opts.tags = tags.clone();
    opts.build_args = parse_build_args(&args.build_args);
    opts.target = args.target.clone();
    opts.no_cache = args.no_cache;
    opts.no_cache_filter = args.no_cache_filter.clone();
    let cache_spec = |flag: &str, v: &String| {
        rbuild_builder::engine::remote_cache::CacheSpec::parse(v).map_err(|e| anyhow::anyhow!("{flag} {v:?}: {e}"))
    };
    opts.cache_to = args.cache_to.iter().map(|v| cache_spec("--cache-to", v)).collect::<anyhow::Result<_>>()?;
    opts.cache_from = args.cache_from.iter().map(|v| cache_spec("--cache-from", v)).collect::<anyhow::Result<_>>()?;
    opts.pull = if args.pull { PullPolicy::Always } else { PullPolicy::Missing };
    opts.network = if args.network == "none" { Network::None } else { Network::Host };
    opts.media_types = if args.oci_mediatypes {
        rbuild_builder::export::image::MediaTypes::Oci
    } else {
        rbuild_builder::export::image::MediaTypes::Docker
    };
    opts.layers = rbuild_builder::layer::LayerOptions { compression, ..Default::default() };
    opts.secrets = parse_secrets(&args.secrets)?;
    opts.ssh = parse_ssh(&args.ssh)?;
    opts.labels = key_values(&args.labels, "--label")?;
    opts.extra_hosts = args
        .add_hosts
        .iter()
        .map(|h| rbuild_builder::hosts::parse_host_entry(h).with_context(|| format!("--add-host {h:?}")))
        .collect::<anyhow::Result<_>>()?;
    opts.ulimits = args.ulimits.iter().map(|u| super::run::parse_ulimit(u)).collect::<anyhow::Result<_>>()?;
    opts.shm_size = match &args.shm_size {
        Some(s) => rbuild_builder::size::parse_size(s).with_context(|| format!("--shm-size {s:?}"))?,
        None => 0,
    };
    for a in &args.allow {
        if a != "network.host" && a != "security.insecure" {
            bail!("--allow {a:?}: rbuild knows network.host and security.insecure");
        }
    }
    opts.allow = args.allow.iter().cloned().collect();
    opts.context_times.main = context.modified;
    let mut fetched = Vec::new();
    for (name, value) in key_values(&args.build_contexts, "--build-context")? {
        let (nc, resolved) = build_context::named_context(store, &value, &client)
            .with_context(|| format!("--build-context {name}={value}"))?;
        if let Some(t) = resolved.as_ref().and_then(|r| r.modified) {
            opts.context_times.named.insert(name.clone(), t);
        }
        fetched.extend(resolved);
        opts.named_contexts.insert(name, nc);
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
    let result = build(&worker, &opts, progress.as_ref());
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
fn target_platforms(platform: Option<&str>) -> anyhow::Result<Vec<rbuild_builder::platform::Platform>> {
    match platform.filter(|p| !p.trim().is_empty()).map(rbuild_builder::platform::parse_list) {
        Some(Err(e)) => bail!("--platform: {e}"),
        Some(Ok(p)) => Ok(p),
        None => Ok(vec![rbuild_builder::platform::Platform::host()]),
    }
}

/// `--build-arg KEY=VALUE`, or `KEY` alone for the environment's value (left out when unset).
pub fn parse_build_args(specs: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in specs {
        match a.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    out
}

fn key_values(specs: &[String], flag: &str) -> anyhow::Result<Vec<(String, String)>> {
    specs
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("{flag} {l:?}: expected KEY=VALUE"))
        })
        .collect()
}

/// `--ssh default` (the agent at $SSH_AUTH_SOCK) or `--ssh ID=SOCKET[,SOCKET]`.
pub fn parse_ssh(specs: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (id, path) = match spec.split_once('=') {
            Some((id, p)) => (id.to_string(), PathBuf::from(p.split(',').next().unwrap_or(p))),
            None => {
                let sock = std::env::var_os("SSH_AUTH_SOCK").with_context(|| {
                    format!("--ssh {spec}: SSH_AUTH_SOCK is not set (start an agent or give ID=SOCKET)")
                })?;
                (spec.clone(), PathBuf::from(sock))
            }
        };
        if !path.exists() {
            bail!("--ssh {spec}: {} does not exist", path.display());
        }
        out.insert(id, path);
    }
    Ok(out)
}

/// A `--call` value: the method and whether it prints JSON.
pub fn parse_call(call: &str) -> anyhow::Result<(String, bool)> {
    let mut parts = call.split(',');
    let method = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let mut json = false;
    for p in parts {
        match p.trim() {
            "format=json" => json = true,
            "format=text" | "" => {}
            other => bail!("--call {call:?}: unknown option {other:?} (format=json|text)"),
        }
    }
    if !["build", "check", "outline", "targets", "subrequests.describe"].contains(&method.as_str()) {
        bail!("--call {call:?}: unknown method {method:?} (build, check, outline, targets, subrequests.describe)");
    }
    Ok((method, json))
}

/// `rbuild build --call outline|targets|subrequests.describe`: answered from the Dockerfile alone.
pub fn call(args: BuildArgs, method: &str, json: bool) -> anyhow::Result<ExitCode> {
    use rbuild_builder::engine::subrequests;
    let print = |v: serde_json::Value| -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(&v)?);
        Ok(())
    };
    if method == "subrequests.describe" {
        print(subrequests::describe())?;
        return Ok(ExitCode::SUCCESS);
    }
    let context = PathBuf::from(&args.context);
    let file = args.file.clone().unwrap_or_else(|| rbuild_builder::context::default_dockerfile(&context));
    let input = dockerfile_input::read(&file)?;
    let parsed = dockerfile::load(&input.name, &input.text)?;
    if method == "targets" {
        let targets = subrequests::targets(&parsed, &input.text);
        if json {
            print(subrequests::targets_json(&targets, &input.text))?;
        } else {
            print!("{}", subrequests::targets_text(&targets));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut req = rbuild_builder::engine::BuildRequest::new(context, input.name, input.text);
    req.build_args = parse_build_args(&args.build_args);
    req.target = args.target.clone();
    req.platform = target_platforms(args.platform.as_deref())?.remove(0);
    for (name, value) in key_values(&args.build_contexts, "--build-context")? {
        req.named_contexts.insert(name, rbuild_builder::engine::NamedContext::parse(&value));
    }
    let outline = subrequests::outline(&req)?;
    if json {
        print(outline.to_json())?;
    } else {
        print!("{}", outline.to_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// `rbuild build --check`: parse and lint the Dockerfile and check the ignore file, without building.
pub fn check(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let context = PathBuf::from(&args.context);
    let file = args.file.clone().unwrap_or_else(|| rbuild_builder::context::default_dockerfile(&context));
    let input = dockerfile_input::read(&file)?;
    let parsed = dockerfile::load(&input.name, &input.text)?;
    for w in &parsed.warnings {
        eprintln!("warning: {}:{}: {}", input.name, w.line, w.message);
    }
    let ignore = context_ignore(&context, input.path.as_deref());
    report_build_checks(&input.name, &input.text, &parse_build_args(&args.build_args), ignore.as_ref(), false)?;
    if let Some(target) = &args.target {
        let lower = target.to_ascii_lowercase();
        if !parsed.stages.iter().any(|s| s.name.as_deref() == Some(lower.as_str())) {
            let names: Vec<&str> = parsed.stages.iter().filter_map(|s| s.name.as_deref()).collect();
            bail!(
                "target stage {target:?} could not be found in {} (stages: {})",
                input.name,
                if names.is_empty() { "none are named".to_string() } else { names.join(", ") }
            );
        }
    }
    let ignore = check_ignore_file(&context, input.path.as_deref())?;
    let instructions: usize = parsed.stages.iter().map(|s| s.instructions.len() + 1).sum();
    println!(
        "{}: OK ({} stage{}, {} instructions{})",
        input.name,
        parsed.stages.len(),
        if parsed.stages.len() == 1 { "" } else { "s" },
        instructions + parsed.meta_args.len(),
        ignore
            .map(|(p, n)| format!("; {} with {n} pattern{}", p.display(), if n == 1 { "" } else { "s" }))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// Run the build checks (`# check=` decides which, and whether they fail the build) and print what they find.
fn report_build_checks(
    name: &str,
    text: &str,
    build_args: &BTreeMap<String, String>,
    ignore: Option<&rbuild_builder::context::IgnoreMatcher>,
    quiet: bool,
) -> anyhow::Result<()> {
    let Ok(parsed) = dockerfile::load(name, text) else {
        // The build itself reports parse errors, with their line.
        return Ok(());
    };
    let check = dockerfile::lint::build_check(&parsed, build_args);
    let mut warnings = dockerfile::lint::lint_with(&parsed, text, &check);
    if let Some(ignore) = ignore {
        warnings.extend(dockerfile::lint::copy_ignored_files(&parsed, ignore, &check));
        warnings.sort_by_key(|w| w.line);
    }
    if !quiet {
        for line in dockerfile::lint::render(&warnings, name) {
            eprintln!("{line}");
        }
    }
    if check.error && !warnings.is_empty() {
        let rules: std::collections::BTreeSet<&str> = warnings.iter().map(|w| w.rule).collect();
        bail!(
            "{name}: lint violation found for rules: {} (# check=error=true makes build checks fail the build)",
            rules.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// The context's ignore rules for the build checks (none when the context has no readable ignore file; the build
/// itself reports a broken one).
fn context_ignore(context: &Path, dockerfile: Option<&Path>) -> Option<rbuild_builder::context::IgnoreMatcher> {
    let dockerfile = dockerfile.map(Path::to_path_buf).unwrap_or_else(|| context.join("Dockerfile"));
    rbuild_builder::context::load_ignore(context, &dockerfile).ok().map(|(m, _)| m)
}

/// Parse the build's ignore file, if any; returns its path and pattern count.
fn check_ignore_file(context: &Path, dockerfile: Option<&Path>) -> anyhow::Result<Option<(PathBuf, usize)>> {
    if !context.is_dir() {
        bail!("build context {} is not a directory", context.display());
    }
    let dockerfile =
        dockerfile.map(Path::to_path_buf).unwrap_or_else(|| rbuild_builder::context::default_dockerfile(context));
    let (matcher, path) = rbuild_builder::context::load_ignore(context, &dockerfile)?;
    Ok(path.map(|p| (p, matcher.patterns().len())))
}

/// `--secret id=ID,src=PATH|source=PATH|env=VAR` (as docker buildx takes them; `type=` is accepted).
fn parse_secrets(
    specs: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, rbuild_builder::engine::SecretSource>> {
    use rbuild_builder::engine::SecretSource;
    let mut out = std::collections::BTreeMap::new();
    for spec in specs {
        let (mut id, mut source) = (None, None);
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => source = Some(SecretSource::File(PathBuf::from(v))),
                Some(("env", v)) => source = Some(SecretSource::Env(v.to_string())),
                Some(("type", "file" | "env")) => {}
                _ => bail!("--secret {spec:?}: unknown field {field:?} (use id=ID,src=PATH or id=ID,env=VAR)"),
            }
        }
        let id = id.with_context(|| format!("--secret {spec:?}: missing id="))?;
        let source = source.unwrap_or_else(|| SecretSource::Env(id.clone()));
        out.insert(id, source);
    }
    Ok(out)
}
