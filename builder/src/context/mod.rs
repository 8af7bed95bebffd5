//! The build context: which files a build may read (`.dockerignore`), selecting and checksumming COPY sources
//! (and reusing a COPY's unchanged files from its previous run), remembering context files' content hashes
//! between builds, and git sources.

pub mod copy;
pub mod copy_reuse;
pub mod file_hashes;
pub mod git;
pub mod ignore;

pub use file_hashes::FileHashes;
pub use ignore::{IgnoreError, IgnoreMatcher, IgnorePattern, clean_path, find_ignore_file, load_for as load_ignore};
