//! `rbuild compose`: the project flags (`-f`, `-p`, `--project-directory`, `--env-file`, `--profile`) and the
//! `config` and `push` commands; `build`'s flags and summary are in `compose_build.rs`, which calls
//! `rbuild_builder::compose`'s planner and scheduler.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use rbuild_builder::compose::{LoadOptions, Project};
use rbuild_builder::store::Store;
use rbuild_registry::Reference;

#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// A Compose file (several merge in order; default: compose.yaml & co., or $COMPOSE_FILE).
    #[arg(short = 'f', long = "file")]
    pub files: Vec<PathBuf>,
    /// The project name (default: $COMPOSE_PROJECT_NAME, the file's name:, or the project directory's name).
    #[arg(short = 'p', long = "project-name")]
    pub project_name: Option<String>,
    /// The directory relative paths are resolved against (default: the first file's).
    #[arg(long)]
    pub project_directory: Option<PathBuf>,
    /// Variables for interpolation (default: the project directory's .env).
    #[arg(long = "env-file")]
    pub env_files: Vec<PathBuf>,
    /// Enable services of this profile (also $COMPOSE_PROFILES).
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    #[command(subcommand)]
    pub command: ComposeCommand,
}

#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Build the services' images (all with a build: section, or those named) as one build graph.
    Build(super::compose_build::ComposeBuildArgs),
    /// Push the services' images (services without image: are skipped).
    Push { services: Vec<String> },
    /// Print the resolved Compose model.
    Config {
        /// Only the service names, one per line.
        #[arg(long)]
        services: bool,
    },
}

/// Load the project the flags describe, printing its warnings.
pub fn load(args: &ComposeArgs) -> anyhow::Result<Project> {
    let opts = LoadOptions {
        files: args.files.clone(),
        project_name: args.project_name.clone(),
        project_directory: args.project_directory.clone(),
        env_files: args.env_files.clone(),
        profiles: args.profiles.clone(),
        env: std::env::vars().collect(),
        cwd: std::env::current_dir().context("cannot read the working directory")?,
    };
    let project = Project::load(&opts)?;
    for w in &project.warnings {
        eprintln!("warning: {w}");
    }
    Ok(project)
}

pub fn run(
    store: impl FnOnce() -> anyhow::Result<Store>,
    args: ComposeArgs,
    userns: Option<&str>,
    registry: &super::registry_cmds::RegistryFlags,
) -> anyhow::Result<ExitCode> {
    let project = load(&args)?;
    match args.command {
        ComposeCommand::Config { services: true } => {
            for s in project.enabled_services() {
                println!("{s}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ComposeCommand::Config { services: false } => {
            print!("{}", project.config_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
        ComposeCommand::Push { services } => push(&store()?, &project, &services, registry),
        ComposeCommand::Build(build_args) => {
            super::compose_build::build(&store()?, &project, build_args, userns, registry)
        }
    }
}

/// `compose push`: each service's `image:` (and `build.tags`) from the store; a service without `image:` is
/// skipped with a warning, as Compose does.
fn push(
    store: &Store,
    project: &Project,
    services: &[String],
    registry: &super::registry_cmds::RegistryFlags,
) -> anyhow::Result<ExitCode> {
    let client = super::registry_cmds::client(registry)?;
    for name in project.select_services(services)? {
        let spec = &project.model.services[&name];
        let Some(image) = &spec.image else {
            eprintln!("warning: service {name} has no image: to push to; skipped");
            continue;
        };
        let mut targets = vec![image.clone()];
        targets.extend(spec.build.iter().flat_map(|b| b.tags.iter().cloned()));
        for t in targets {
            let dest = Reference::parse(&t)?;
            let line = super::registry_cmds::push_one(store, &client, image, &dest)
                .with_context(|| format!("service {name}: cannot push {t}"))?;
            eprintln!("{name}: {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
