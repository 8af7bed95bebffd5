//! The `rbuild` binary: argument parsing and dispatch to the commands. Each command lives in `commands/`.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// rbuild: a daemonless, rootless container image builder.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile (for now: `--check` validates without building).
    Build(commands::build::BuildArgs),
    /// Inspect rbuild's internals.
    #[command(subcommand)]
    Debug(commands::debug::DebugCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => commands::build::run(args),
        Command::Debug(cmd) => commands::debug::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
