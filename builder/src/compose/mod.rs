//! Compose files for `rbuild compose`: YAML loading (strict booleans, duplicate keys refused, merge keys), `.env`
//! files and interpolation, several files merged with override semantics, `include`, `extends` and profiles, a
//! typed model whose errors name the file and the path in the document, and each service's `build:` resolved into
//! what a build needs.

pub mod build_plan;
pub mod dotenv;
pub mod interpolate;
pub mod merge;
pub mod model;
pub mod project;
pub mod yaml;
pub use build_plan::{DockerfileSource, ServiceBuild};
pub use project::{ComposeError, LoadOptions, Project};
