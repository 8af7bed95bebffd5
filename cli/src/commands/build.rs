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
}

pub fn run(args: BuildArgs) -> anyhow::Result<ExitCode> {
    if !args.check {
        bail!(
            "building images is not available yet in this version of rbuild; `rbuild build --check` validates the \
             Dockerfile and build inputs"
        );
    }
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
