//! The build context: which files a build may read (`.dockerignore`), selecting and checksumming COPY sources
//! (and reusing a COPY's unchanged files from its previous run), remembering context files' content hashes
//! between builds, and git sources.

pub mod copy;
pub mod copy_reuse;
pub mod file_hashes;
pub mod git;
pub mod ignore;
mod ignore_file;
pub mod source;

pub use file_hashes::FileHashes;
pub use ignore::{IgnoreError, IgnoreMatcher, IgnorePattern, clean_path, find_ignore_file};
pub use ignore_file::load_for as load_ignore;

/// The Dockerfile of a context when none is named: `Dockerfile`, or `dockerfile` when only that one exists (as
/// BuildKit's frontend falls back; testDockerfileLowercase).
pub fn default_dockerfile(context: &std::path::Path) -> std::path::PathBuf {
    let upper = context.join("Dockerfile");
    let lower = context.join("dockerfile");
    if !upper.exists() && lower.is_file() { lower } else { upper }
}

#[cfg(test)]
mod copy_known_tests;
