//! The crate-wide error type: one enum, structured variants, messages that say what failed and what to do.

use std::path::PathBuf;

use crate::dockerfile::DockerfileError;

/// Every failure rbuild-builder reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Dockerfile that cannot be parsed or has an invalid instruction; carries file, line and source.
    #[error(transparent)]
    Dockerfile(#[from] Box<DockerfileError>),

    /// A `.dockerignore` pattern that does not compile.
    #[error(transparent)]
    Ignore(#[from] crate::context::IgnoreError),

    /// A `.dockerignore` file that cannot be read.
    #[error("cannot read ignore file {path}: {source}")]
    IgnoreFileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A Dockerfile that cannot be read from disk.
    #[error("cannot read Dockerfile {path}: {source}")]
    DockerfileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<DockerfileError> for Error {
    fn from(e: DockerfileError) -> Self {
        Error::Dockerfile(Box::new(e))
    }
}
