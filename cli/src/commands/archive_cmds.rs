//! `rbuild save` and `rbuild load`: images to and from OCI and Docker archives and OCI layout directories.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use rbuild_builder::export::{self, ArchiveFormat};
use rbuild_builder::store::Store;
use rbuild_registry::Reference;

use super::store_cmds::resolve;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SaveFormat {
    /// An OCI archive (a tar of an OCI image layout).
    Oci,
    /// A Docker archive, as `docker load` reads it.
    Docker,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Where to write the archive (`-` for standard output; an existing directory receives an OCI layout).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value = "oci")]
    pub format: SaveFormat,
    /// With --format docker: the platform to take from an image index (a Docker archive holds one platform's
    /// image; default: the host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// The images to save.
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn save(store: &Store, args: SaveArgs) -> anyhow::Result<ExitCode> {
    let mut images = Vec::new();
    for i in &args.images {
        let (name, digest) = resolve(store, i)?;
        let name = match name {
            Some(n) => n,
            None => Reference::parse(&format!("imported:{}", &digest.hex()[..12]))?,
        };
        images.push((name, digest));
    }
    let format = match args.format {
        SaveFormat::Oci => ArchiveFormat::Oci,
        SaveFormat::Docker => ArchiveFormat::Docker,
    };
    let platform = match args.platform.as_deref().map(rbuild_builder::platform::Platform::parse) {
        Some(Err(e)) => bail!("--platform: {e}"),
        Some(Ok(p)) => Some(p),
        None => None,
    };
    export::save(store, &images, format, &args.output, platform.as_ref())?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive or OCI layout directory (default: standard input).
    #[arg(short = 'i', long = "input", default_value = "-")]
    pub input: PathBuf,
    /// The name for images the input names only by a tag or not at all (an OCI layout's usual case); without it
    /// they are named after the file or directory: `busybox` for `images/busybox` or `busybox.tar`.
    #[arg(long = "name", value_name = "NAME")]
    pub name: Option<String>,
}

pub fn load(store: &Store, args: LoadArgs) -> anyhow::Result<ExitCode> {
    let records = export::load_as(store, Path::new(&args.input), args.name.as_deref())?;
    if records.is_empty() {
        bail!("{} holds no named image", args.input.display());
    }
    for r in records {
        println!("Loaded image: {} ({})", r.name.familiar(), r.digest()?);
    }
    Ok(ExitCode::SUCCESS)
}
