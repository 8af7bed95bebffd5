//! Compose files for `rbuild compose`: YAML loading (strict booleans, duplicate keys refused, merge keys), `.env`
//! files and interpolation, several files merged with override semantics, `include`, `extends` and profiles, a
//! typed model whose errors name the file and the path in the document, each service's `build:` resolved into
//! what a build needs, and the project's builds planned and run as one graph.

pub mod build;
pub mod build_plan;
pub mod dotenv;
pub mod interpolate;
pub mod merge;
pub mod model;
pub mod project;
pub mod yaml;
pub use build::{ProjectOptions, ProjectPlan, ServiceBuilt, ServicePlan, build_project, plan_project};
pub use build_plan::{DockerfileSource, ServiceBuild};
pub use project::{ComposeError, LoadOptions, Project};
