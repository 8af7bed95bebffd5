//! One module per `rbuild` subcommand, and the build command's helpers (context, outputs, progress view).

pub mod build;
pub mod build_context;
pub mod build_output;
pub mod compose;
pub mod compose_build;
pub mod debug;
pub mod dockerfile_input;
pub mod progress_view;
pub mod registry_cmds;
pub mod run;
pub mod shell_docs;
pub mod store_cmds;
