//! One module per `rbuild` subcommand, and the build command's helpers (context, progress view).

pub mod archive_cmds;
pub mod build;
pub mod build_args;
pub mod build_check;
pub mod compose;
pub mod compose_build;
pub mod debug;
pub mod dockerfile_input;
pub mod info;
pub mod progress_view;
pub mod registry_cmds;
pub mod run;
pub mod shell_docs;
pub mod store_cmds;
pub mod terminal_text;

/// `--isolation` (`RBUILD_ISOLATION`) as given on the command line, for every command that runs sandboxes.
static ISOLATION: std::sync::OnceLock<rbuild_builder::sandbox::isolation::IsolationChoice> = std::sync::OnceLock::new();

pub fn set_isolation(choice: rbuild_builder::sandbox::isolation::IsolationChoice) {
    let _ = ISOLATION.set(choice);
}

pub fn isolation() -> rbuild_builder::sandbox::isolation::IsolationChoice {
    ISOLATION.get().copied().unwrap_or_default()
}
