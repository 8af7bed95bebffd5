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

#[cfg(test)]
mod tests {
    #[test]
    fn the_dockerfile_s_own_ignore_file_wins_over_the_context_s() {
        let d = std::env::temp_dir().join(format!("rbuild-ignore-file-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(".dockerignore"), "a\n").unwrap();
        std::fs::write(d.join("app.Dockerfile.dockerignore"), "b\nc\n").unwrap();
        let (m, path) = super::load_for(&d, &d.join("app.Dockerfile")).unwrap();
        assert_eq!(path, Some(d.join("app.Dockerfile.dockerignore")));
        assert!(m.is_excluded("b") && !m.is_excluded("a"));
        let (m, path) = super::load_for(&d, &d.join("Dockerfile")).unwrap();
        assert_eq!(path, Some(d.join(".dockerignore")));
        assert_eq!(m.patterns().len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
