//! `rbuild debug ...`: views of rbuild's internals for tests and bug reports.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::dockerfile_input;

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print a Dockerfile's AST in BuildKit's dump format (parser layer only: no flag validation).
    Parse {
        /// The Dockerfile (`-` reads standard input).
        file: PathBuf,
    },
}

pub fn run(cmd: DebugCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DebugCommand::Parse { file } => {
            let input = dockerfile_input::read(&file)?;
            let ast = rbuild_builder::dockerfile::parse_ast(&input.name, &input.text)?;
            println!("{}", rbuild_builder::dockerfile::dump(&ast));
            Ok(ExitCode::SUCCESS)
        }
    }
}
