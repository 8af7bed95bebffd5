//! `rbuild build`: for now the `--check` mode, which runs the Dockerfile frontend (parser and instruction layers)
//! and the `.dockerignore` parser over a build's inputs without building anything.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use rbuild_builder::context::{IgnoreMatcher, find_ignore_file};
use rbuild_builder::dockerfile;

use super::dockerfile_input;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads standard input).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// Check the Dockerfile and build inputs without building.
    #[arg(long)]
    pub check: bool,
    /// Name (and tag) the image; may be given several times.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// A build argument: NAME=VALUE, or NAME to take the value from the environment.
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Progress output: plain (BuildKit's lines) or quiet.
    #[arg(long, default_value = "plain", value_parser = ["auto", "plain", "tty", "quiet"])]
    pub progress: String,
    /// Print only the image digest.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The network for RUN steps: host or none.
    #[arg(long, default_value = "host", value_parser = ["host", "none", "default"])]
    pub network: String,
    /// Write the image digest to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Layer compression: gzip[:LEVEL], zstd[:LEVEL] or uncompressed.
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// A secret for RUN --mount=type=secret: id=ID,src=PATH or id=ID,env=VAR (never stored in the image).
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// A label for the image: KEY=VALUE.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// How many independent stages may build at once (default: the number of CPUs).
    #[arg(long, default_value_t = 0)]
    pub jobs: usize,
    /// Write Docker schema2 media types instead of OCI ones (--oci-mediatypes=false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub oci_mediatypes: bool,
}

/// Build the image (everything but `--check`).
pub fn build(store: &rbuild_builder::store::Store, args: BuildArgs, userns: Option<&str>) -> anyhow::Result<ExitCode> {
    use rbuild_builder::build::{BuildOptions, build};
    let file = args.file.clone().unwrap_or_else(|| args.context.join("Dockerfile"));
    let input = dockerfile_input::read(&file)?;
    let mut build_args = std::collections::BTreeMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => std::env::var(a).ok().and_then(|v| build_args.insert(a.clone(), v)),
        };
    }
    let tags = args.tags.iter().map(|t| rbuild_registry::Reference::parse(t)).collect::<Result<Vec<_>, _>>()?;
    let compression = rbuild_builder::layer::Compression::parse(&args.compression).with_context(|| {
        format!("unknown --compression {:?} (gzip[:1-9], zstd[:1-22], uncompressed)", args.compression)
    })?;
    let opts = BuildOptions {
        context: args.context.clone(),
        dockerfile_name: input.name,
        dockerfile_text: input.text,
        dockerfile_path: input.path,
        tags,
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        network: if args.network == "none" {
            rbuild_runtime::NetworkMode::None
        } else {
            rbuild_runtime::NetworkMode::Host
        },
        userns: rbuild_runtime::userns::detect_with(userns)?,
        media_types: if args.oci_mediatypes {
            rbuild_builder::export::image::MediaTypes::Oci
        } else {
            rbuild_builder::export::image::MediaTypes::Docker
        },
        layers: rbuild_builder::layer::LayerOptions { compression, ..Default::default() },
        progress: !args.quiet && args.progress != "quiet",
        jobs: args.jobs,
        secrets: parse_secrets(&args.secrets)?,
        labels: args
            .labels
            .iter()
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .with_context(|| format!("--label {l:?}: expected KEY=VALUE"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    let result = build(store, &rbuild_runtime::Runtime::current()?, &opts)?;
    if let Some(p) = &args.iidfile {
        std::fs::write(p, result.manifest_digest.as_str()).with_context(|| format!("cannot write {}", p.display()))?;
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
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let file = args.file.clone().unwrap_or_else(|| args.context.join("Dockerfile"));
    let input = dockerfile_input::read(&file)?;
    let parsed = dockerfile::load(&input.name, &input.text)?;
    for w in &parsed.warnings {
        eprintln!("warning: {}:{}: {}", input.name, w.line, w.message);
    }
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
    let ignore = check_ignore_file(&args.context, input.path.as_deref())?;
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

/// Parse the build's ignore file, if any; returns its path and pattern count.
fn check_ignore_file(context: &Path, dockerfile: Option<&Path>) -> anyhow::Result<Option<(PathBuf, usize)>> {
    if !context.is_dir() {
        bail!("build context {} is not a directory", context.display());
    }
    let dockerfile = dockerfile.map(Path::to_path_buf).unwrap_or_else(|| context.join("Dockerfile"));
    let Some(path) = find_ignore_file(context, &dockerfile) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let matcher = IgnoreMatcher::parse(&text, &path.display().to_string())?;
    Ok(Some((path, matcher.patterns().len())))
}

/// `--secret id=ID,src=PATH|source=PATH|env=VAR` (as docker buildx takes them; `type=` is accepted).
fn parse_secrets(
    specs: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, rbuild_builder::build::SecretSource>> {
    use rbuild_builder::build::SecretSource;
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
