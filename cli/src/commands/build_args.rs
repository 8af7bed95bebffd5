//! `rbuild build`'s flags, as `docker buildx build` names them (clap turns the command line into these; the
//! build, `--check` and `--call` read them).

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context: a directory, `-` (a tar or a Dockerfile on stdin), a git URL or an http(s) tarball URL.
    #[arg(default_value = ".")]
    pub context: String,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads standard input).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// Check the Dockerfile and build inputs without building (`--call check`).
    #[arg(long)]
    pub check: bool,
    /// What to do instead of building, as docker buildx's --call: build (default), check, outline (the target's
    /// build args, secrets and SSH agents), targets (every stage), subrequests.describe; `,format=json` prints
    /// BuildKit's JSON.
    #[arg(long, value_name = "METHOD[,format=json]")]
    pub call: Option<String>,
    /// Name (and tag) the image; may be given several times.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// A build argument: NAME=VALUE, or NAME to take the value from the environment.
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the build cache for these stages (may be given several times or comma-separated).
    #[arg(long = "no-cache-filter", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// Always pull base images (needs the registry client).
    #[arg(long)]
    pub pull: bool,
    /// Progress output: auto (tty on a terminal, else plain), tty, plain, rawjson or quiet.
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty", "rawjson", "quiet"])]
    pub progress: String,
    /// Print only the image digest.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The network for RUN steps, as docker build lists them: default (the host's network: rbuild runs no network
    /// of its own), none, or host.
    #[arg(long, default_value = "default", value_parser = ["default", "none", "host"])]
    pub network: String,
    /// An /etc/hosts entry for RUN steps: NAME:IP (may be given several times).
    #[arg(long = "add-host")]
    pub add_hosts: Vec<String>,
    /// Write the image digest to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Write the build's result metadata (digests, names) as JSON to this file.
    #[arg(long = "metadata-file")]
    pub metadata_file: Option<PathBuf>,
    /// Layer compression: gzip[:LEVEL], zstd[:LEVEL] or uncompressed.
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// A secret for RUN --mount=type=secret: id=ID,src=PATH or id=ID,env=VAR (never stored in the image).
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// An SSH agent for RUN --mount=type=ssh: `default` ($SSH_AUTH_SOCK) or ID=SOCKET.
    #[arg(long = "ssh")]
    pub ssh: Vec<String>,
    /// A label for the image: KEY=VALUE.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// An extra build context: NAME=DIR, NAME=docker-image://REF or NAME=oci-layout://PATH[:TAG].
    #[arg(long = "build-context")]
    pub build_contexts: Vec<String>,
    /// Where the result goes: type=image|oci|docker|tar|local[,dest=PATH][,name=N][,push=true].
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<String>,
    /// Export the build cache: type=registry,ref=REF[,mode=min|max][,mounts=true] or type=local,dest=DIR.
    #[arg(long = "cache-to")]
    pub cache_to: Vec<String>,
    /// Import a build cache first: type=registry,ref=REF, type=local,src=DIR, or a bare REF.
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Hand the image to the local Docker or Podman engine.
    #[arg(long)]
    pub load: bool,
    /// Push the image (type=image,push=true).
    #[arg(long)]
    pub push: bool,
    /// How many independent stages may build at once (default: four per CPU).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Extra privileges for RUN steps: network.host, security.insecure.
    #[arg(long = "allow", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// Size of /dev/shm in RUN steps (e.g. 128m).
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// A resource limit for RUN steps: NAME=SOFT[:HARD] (e.g. nofile=1024:2048).
    #[arg(long = "ulimit")]
    pub ulimits: Vec<String>,
    /// The target platforms, comma-separated (e.g. linux/amd64,linux/arm64: an image index of one image per
    /// platform; a foreign one's RUN steps run under emulation). Default: the host's, or DOCKER_DEFAULT_PLATFORM.
    #[arg(long, env = "DOCKER_DEFAULT_PLATFORM")]
    pub platform: Option<String>,
    /// Write Docker schema2 media types instead of OCI ones (--oci-mediatypes=false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub oci_mediatypes: bool,
}

/// `--platform`: the platforms to build for, comma-separated (the host's when not given).
pub fn target_platforms(platform: Option<&str>) -> anyhow::Result<Vec<rbuild_builder::platform::Platform>> {
    match platform.filter(|p| !p.trim().is_empty()).map(rbuild_builder::platform::parse_list) {
        Some(Err(e)) => bail!("--platform: {e}"),
        Some(Ok(p)) => Ok(p),
        None => Ok(vec![rbuild_builder::platform::Platform::host()]),
    }
}
