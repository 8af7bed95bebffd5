//! Loading a build's `.dockerignore` (or `<Dockerfile>.dockerignore`): the one loader the build, its named
//! directory contexts and `--check` use.

use std::path::{Path, PathBuf};

use super::ignore::IgnoreMatcher;
use crate::error::{Error, Result};

/// The ignore rules of a build: its ignore file (see [`find_ignore_file`]) parsed, with the file's path; no file,
/// no rules. The one loader: the build, its named directory contexts and `--check` all use it.
pub fn load_for(context: &Path, dockerfile: &Path) -> Result<(IgnoreMatcher, Option<PathBuf>)> {
    let Some(path) = super::ignore::find_ignore_file(context, dockerfile) else {
        return Ok((IgnoreMatcher::default(), None));
    };
    let text = std::fs::read_to_string(&path).map_err(Error::io("read", &path))?;
    Ok((IgnoreMatcher::parse(&text, &path.display().to_string())?, Some(path)))
}
