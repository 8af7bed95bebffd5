//! One module per `rbuild` subcommand.

pub mod build;
pub mod debug;
pub mod dockerfile_input;
pub mod run;
pub mod store_cmds;
