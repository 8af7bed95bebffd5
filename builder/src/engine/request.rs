//! What to build: a [`BuildRequest`] (the Dockerfile, parsed once and shared, the context and named contexts, args,
//! target and platforms, secrets, caches), and the types it is made of.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use rbuild_registry::Reference;

use crate::dockerfile::Dockerfile;
use crate::error::Result;
use crate::export::image::MediaTypes;
use crate::layer::LayerOptions;

use super::remote_cache;
use super::{Network, Platform, PullPolicy};

/// What to build (how it is built — the store, the executor, slots — is the [`Worker`]'s).
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub context: PathBuf,
    /// The Dockerfile's name for messages, and its text.
    pub dockerfile_name: String,
    pub dockerfile_text: String,
    /// Where the Dockerfile lives (for `<Dockerfile>.dockerignore`), if on disk.
    pub dockerfile_path: Option<PathBuf>,
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (by name or index) whose steps always run.
    pub no_cache_filter: Vec<String>,
    pub network: Network,
    /// The platform to build for: stages without `FROM --platform` are built for it; a foreign one runs its RUN
    /// steps under emulation.
    pub platform: Platform,
    pub media_types: MediaTypes,
    pub layers: LayerOptions,
    /// `--secret id=ID,src=PATH` / `id=ID,env=VAR`: secret id -> where its value comes from.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--ssh default|ID=SOCKET`: agent sockets for `RUN --mount=type=ssh`.
    pub ssh: BTreeMap<String, PathBuf>,
    /// `--label KEY=VALUE`, set on the final image.
    pub labels: Vec<(String, String)>,
    /// `--build-context NAME=...`.
    pub named_contexts: BTreeMap<String, NamedContext>,
    /// `--add-host NAME:IP` for RUN steps.
    pub extra_hosts: Vec<(String, String)>,
    /// `--ulimit NAME=SOFT[:HARD]` for RUN steps.
    pub ulimits: Vec<(String, u64, u64)>,
    /// `--shm-size` in bytes (0: 64 MiB).
    pub shm_size: u64,
    /// `--allow`: entitlements (`network.host`, `security.insecure`).
    pub allow: BTreeSet<String>,
    /// When base images are pulled (`--pull`: always; Compose `pull_policy: never`: never).
    pub pull: PullPolicy,
    /// Further platforms to build in the same build (`--platform a,b`): with two or more in all, one image per
    /// platform and an image index of them. Empty: `platform` alone.
    pub platforms: Vec<Platform>,
    /// `--cache-from` / `--cache-to`.
    pub cache_from: Vec<remote_cache::CacheSpec>,
    pub cache_to: Vec<remote_cache::CacheSpec>,
    /// When the fetched contexts last changed, for `SOURCE_DATE_EPOCH=context` and `=NAME`.
    pub context_times: ContextTimes,
    /// The result's files are not wanted (the outputs are images: stored, pushed, saved): its layers may stay
    /// remote and unpacked. False: the result's snapshots are all present (`BuildResult::snapshots` readable).
    pub files_unneeded: bool,
    /// The Dockerfile parsed once, shared by the lint, the plan and every platform's build (clones share it).
    parsed: ParsedDockerfile,
}

/// The parse of a request's Dockerfile, kept with the name and text it was made from (a request whose text was
/// changed after parsing is parsed again).
#[derive(Clone, Default)]
struct ParsedDockerfile(std::sync::Arc<std::sync::Mutex<Option<ParsedFrom>>>);

/// A parse and the Dockerfile name and text it was made from.
type ParsedFrom = (String, String, std::sync::Arc<Dockerfile>);

impl std::fmt::Debug for ParsedDockerfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParsedDockerfile")
    }
}

/// When a build's fetched contexts last changed (seconds since 1970): a git context's commit time, a URL's
/// `Last-Modified`, else its archive's newest file (`context::source`). Local contexts have none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextTimes {
    pub main: Option<i64>,
    /// By named-context name.
    pub named: BTreeMap<String, i64>,
}

impl BuildRequest {
    /// The host paths the build reads: its context, Dockerfile, named contexts (directories and OCI layouts),
    /// secret files and SSH agent sockets (container isolation keeps them out of its steps' reach).
    pub fn input_paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.context.clone()];
        paths.extend(self.dockerfile_path.clone());
        for nc in self.named_contexts.values() {
            match nc {
                NamedContext::Dir(d) => paths.push(d.clone()),
                NamedContext::Image(r) => {
                    if let Some(layout) = r.strip_prefix("oci-layout://") {
                        let end = layout.find(['@', ':']).unwrap_or(layout.len());
                        paths.push(PathBuf::from(&layout[..end]));
                    }
                }
            }
        }
        paths.extend(self.secrets.values().filter_map(|s| match s {
            SecretSource::File(p) => Some(p.clone()),
            _ => None,
        }));
        paths.extend(self.ssh.values().cloned());
        paths
    }

    /// The platforms this build makes images for: `platforms` when it names several, else `platform`.
    pub fn target_platforms(&self) -> Vec<Platform> {
        if self.platforms.len() > 1 { self.platforms.clone() } else { vec![self.platform.clone()] }
    }

    /// A request to build `dockerfile_text` in `context` with everything else at its default.
    pub fn new(context: PathBuf, dockerfile_name: String, dockerfile_text: String) -> Self {
        BuildRequest {
            context,
            dockerfile_name,
            dockerfile_text,
            dockerfile_path: None,
            tags: Vec::new(),
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            no_cache_filter: Vec::new(),
            network: Network::Host,
            platform: Platform::host(),
            platforms: Vec::new(),
            media_types: MediaTypes::Oci,
            layers: LayerOptions::default(),
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
            labels: Vec::new(),
            named_contexts: BTreeMap::new(),
            extra_hosts: Vec::new(),
            ulimits: Vec::new(),
            shm_size: 0,
            allow: BTreeSet::new(),
            pull: PullPolicy::Missing,
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            context_times: ContextTimes::default(),
            files_unneeded: false,
            parsed: ParsedDockerfile::default(),
        }
    }

    /// The request's Dockerfile, parsed on first use and then shared (a parse error is returned each time).
    pub fn dockerfile(&self) -> Result<std::sync::Arc<Dockerfile>> {
        let mut cached = self.parsed.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((name, text, df)) = cached.as_ref()
            && *name == self.dockerfile_name
            && *text == self.dockerfile_text
        {
            return Ok(df.clone());
        }
        let df = std::sync::Arc::new(crate::dockerfile::load(&self.dockerfile_name, &self.dockerfile_text)?);
        *cached = Some((self.dockerfile_name.clone(), self.dockerfile_text.clone(), df.clone()));
        Ok(df)
    }
}

/// Where a build secret's value comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    /// An environment variable of this process.
    Env(String),
    /// The value itself (Compose secrets from variables of a `.env` file); never printed.
    Value(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(p) => f.debug_tuple("File").field(p).finish(),
            SecretSource::Env(v) => f.debug_tuple("Env").field(v).finish(),
            SecretSource::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

/// A `--build-context` value: a directory, or an image (`docker-image://REF`, `oci-layout://PATH[:TAG]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    Dir(PathBuf),
    Image(String),
}

impl NamedContext {
    /// Parse the part after `NAME=`.
    pub fn parse(value: &str) -> NamedContext {
        if let Some(r) = value.strip_prefix("docker-image://") {
            NamedContext::Image(r.to_string())
        } else if value.starts_with("oci-layout://") {
            NamedContext::Image(value.to_string())
        } else {
            NamedContext::Dir(PathBuf::from(value))
        }
    }
}
