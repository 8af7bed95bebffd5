//! The build context: which files a build may read (`.dockerignore`), selecting and checksumming COPY sources,
//! and remembering context files' content hashes between builds.

pub mod copy;
pub mod file_hashes;
pub mod ignore;

pub use file_hashes::FileHashes;
pub use ignore::{IgnoreError, IgnoreMatcher, IgnorePattern, clean_path, find_ignore_file};
