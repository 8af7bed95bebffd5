//! `rbuild completion SHELL` and `rbuild man DIR`: shell completion scripts and man pages, generated from the
//! same clap definitions the parser uses, so they never disagree with it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// Print the completion script for `shell` (bash, zsh, fish, elvish, powershell) on standard output.
pub fn completion(mut cli: clap::Command, shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    clap_complete::generate(shell, &mut cli, "rbuild", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// Write `rbuild.1` and a page per command (`rbuild-build.1`, ...) into `dir`.
pub fn man_pages(cli: clap::Command, dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(cli, dir).with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    println!("man pages written to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}
