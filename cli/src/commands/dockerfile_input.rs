//! Reading the Dockerfile a command names: a path, or `-` for standard input.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A Dockerfile's text and the name to use for it in messages.
pub struct DockerfileInput {
    pub name: String,
    pub text: String,
    /// The path on disk (None for stdin).
    pub path: Option<PathBuf>,
}

/// Read `file` (`-` is stdin); bytes that are not UTF-8 are replaced, as BuildKit tolerates them too.
pub fn read(file: &Path) -> anyhow::Result<DockerfileInput> {
    if file == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).context("cannot read the Dockerfile from standard input")?;
        return Ok(DockerfileInput { name: "-".into(), text: rbuild_builder::dockerfile::decode(&bytes), path: None });
    }
    let bytes = std::fs::read(file)
        .map_err(|source| rbuild_builder::Error::DockerfileRead { path: file.to_path_buf(), source })?;
    Ok(DockerfileInput {
        name: file.display().to_string(),
        text: rbuild_builder::dockerfile::decode(&bytes),
        path: Some(file.to_path_buf()),
    })
}
