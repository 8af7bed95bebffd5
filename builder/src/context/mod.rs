//! The build context: which files a build may read. For now, `.dockerignore` matching; the context walker and
//! content checksums land with the build engine.

pub mod copy;
pub mod ignore;

pub use ignore::{IgnoreError, IgnoreMatcher, IgnorePattern, clean_path, find_ignore_file};
