//! The `rbuild` binary: argument parsing and dispatch to the commands. Each command lives in `commands/`.

mod commands;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};

/// rbuild: a daemonless, rootless container image builder.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about, propagate_version = true)]
struct Cli {
    /// The store directory (default: $RBUILD_ROOT, /var/lib/rbuild for root, else ~/.local/share/rbuild).
    #[arg(long, global = true, env = "RBUILD_ROOT")]
    root: Option<std::path::PathBuf>,
    /// How ids map into sandboxes: auto (subordinate ids when set up, else one id; none for root), single,
    /// subuid, off (root only).
    #[arg(long, global = true, env = "RBUILD_USERNS", value_parser = ["auto", "single", "subuid", "off"])]
    userns: Option<String>,
    /// How much of the sandbox RUN steps may give up where the host refuses part of it (a CI container): auto
    /// (the best this host allows, each thing given up said once), sandbox (the full sandbox or fail), container
    /// (no namespaces: steps run in this container's own root, as Kaniko did; root in a container only; the store
    /// defaults to /rbuild/store) or auto+container (namespaces where allowed, else container).
    #[arg(long, global = true, env = "RBUILD_ISOLATION", value_parser = ["auto", "sandbox", "container", "auto+container"])]
    isolation: Option<String>,
    #[command(flatten)]
    registry: commands::registry_cmds::RegistryFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile (`--check` validates without building).
    Build(Box<commands::build_args::BuildArgs>),
    /// Build (and push, or print) the services of a Compose project.
    Compose(commands::compose::ComposeArgs),
    /// Pull an image from a registry into the store.
    Pull(commands::registry_cmds::PullArgs),
    /// Push an image from the store to a registry.
    Push(commands::registry_cmds::PushArgs),
    /// Save credentials for a registry (in the docker config).
    Login(commands::registry_cmds::LoginArgs),
    /// Remove saved credentials for a registry.
    Logout { registry: Option<String> },
    /// Run a command in an image in a rootless sandbox (the changes are discarded).
    Run(commands::run::RunArgs),
    /// List the images in the store.
    Images,
    /// Show an image's manifest and config as JSON.
    Inspect(commands::store_cmds::InspectArgs),
    /// Give an image another name.
    Tag { source: String, target: String },
    /// Remove image names (the data goes with the next prune).
    Rmi {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove store data no named image uses.
    Prune(commands::store_cmds::PruneArgs),
    /// Store-wide information.
    #[command(subcommand)]
    System(commands::store_cmds::SystemCommand),
    /// Verify every blob and image in the store.
    Fsck,
    /// Write images to an OCI or Docker archive.
    Save(commands::archive_cmds::SaveArgs),
    /// Load images from an OCI or Docker archive, or an OCI layout directory.
    Load(commands::archive_cmds::LoadArgs),
    /// What this host allows a sandbox, and the isolation RUN steps will get (exit 1 when they cannot run).
    Info,
    /// Inspect rbuild's internals.
    #[command(subcommand)]
    Debug(commands::debug::DebugCommand),
    /// Print a shell completion script (e.g. `rbuild completion bash > /etc/bash_completion.d/rbuild`).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (rbuild.1, rbuild-build.1, ...) into a directory (e.g. /usr/local/share/man/man1).
    Man { dir: std::path::PathBuf },
}

fn main() -> ExitCode {
    // The sandbox init must run before anything else (it creates a user namespace, which needs a single thread).
    if std::env::args_os().nth(1).is_some_and(|a| a == rbuild_runtime::INIT_ARG) {
        rbuild_runtime::init_main();
    }
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == rbuild_builder::sandbox::tree_ops::TREE_OP_ARG) {
        return ExitCode::from(rbuild_builder::sandbox::tree_ops::tree_op_main(&args[2..]) as u8);
    }
    let mut cli = Cli::parse();
    let isolation =
        rbuild_builder::sandbox::isolation::IsolationChoice::parse(cli.isolation.as_deref().unwrap_or("auto"))
            .unwrap_or_default();
    commands::set_isolation(isolation);
    if isolation.allows_container() {
        let runs_steps = matches!(cli.command, Command::Build(_) | Command::Compose(_) | Command::Run(_));
        if let Err(e) = commands::container_setup(&mut cli.root, isolation, runs_steps) {
            eprintln!("error: {}", error_text(&e));
            return ExitCode::FAILURE;
        }
    }
    use commands::store_cmds as sc;
    // Remote layers (named by an imported cache or a build's base, not fetched yet) come through a registry
    // client made only if one is needed.
    let flags = cli.registry.clone();
    let remote = Arc::new(rbuild_builder::distribution::LazyRegistry::new(move || {
        commands::registry_cmds::client(&flags).map_err(|e| format!("{e:#}"))
    }));
    let store = || {
        sc::open_store(&cli.root)
            .inspect(|s| s.attach_remote(remote.clone() as Arc<dyn rbuild_builder::store::RemoteBlobs>))
    };
    let result = match cli.command {
        Command::Build(args) if args.check => commands::build_check::check(*args),
        Command::Build(args) if args.call.is_some() => {
            match commands::build_check::parse_call(args.call.as_deref().unwrap_or_default()) {
                Ok((method, _)) if method == "check" => commands::build_check::check(*args),
                Ok((method, _)) if method == "build" => {
                    store().and_then(|s| commands::build::build(&s, *args, cli.userns.as_deref(), &cli.registry))
                }
                Ok((method, json)) => commands::build_check::call(*args, &method, json),
                Err(e) => Err(e),
            }
        }
        Command::Build(args) => {
            store().and_then(|s| commands::build::build(&s, *args, cli.userns.as_deref(), &cli.registry))
        }
        Command::Compose(args) => commands::compose::run(store, args, cli.userns.as_deref(), &cli.registry),
        Command::Pull(args) => store().and_then(|s| commands::registry_cmds::pull(&s, &cli.registry, args)),
        Command::Push(args) => store().and_then(|s| commands::registry_cmds::push(&s, &cli.registry, args)),
        Command::Login(args) => commands::registry_cmds::login(&cli.registry, args),
        Command::Logout { registry } => commands::registry_cmds::logout(registry),
        Command::Debug(cmd) => commands::debug::run(cmd),
        Command::Completion { shell } => commands::shell_docs::completion(Cli::command(), shell),
        Command::Man { dir } => commands::shell_docs::man_pages(Cli::command(), &dir),
        Command::Run(args) => store().and_then(|s| commands::run::run(&s, args, cli.userns.as_deref())),
        Command::Info => store().and_then(|s| commands::info::info(&s, cli.userns.as_deref())),
        Command::Images => store().and_then(|s| sc::images(&s)),
        Command::Inspect(args) => store().and_then(|s| sc::inspect(&s, args)),
        Command::Tag { source, target } => store().and_then(|s| sc::tag(&s, &source, &target)),
        Command::Rmi { images } => store().and_then(|s| sc::rmi(&s, &images)),
        Command::Prune(args) => store().and_then(|s| sc::prune(&s, args, cli.userns.as_deref())),
        Command::System(sc::SystemCommand::Df) => store().and_then(|s| sc::system_df(&s)),
        Command::Fsck => store().and_then(|s| sc::fsck(&s)),
        Command::Save(args) => store().and_then(|s| commands::archive_cmds::save(&s, args)),
        Command::Load(args) => store().and_then(|s| commands::archive_cmds::load(&s, args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each cause once: a message that already says its cause (`open x: No such file or
/// directory`) is not followed by it again.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}
