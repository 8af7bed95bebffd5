//! A service's `build:` section turned into what one build needs (every key of the Compose build
//! specification applied, refused with its reason, or warned about — none ignored silently).

use std::collections::BTreeMap;

use super::model::{ExtraHosts, SecretGrant, Ulimit};
use super::project::{ComposeError, Project};
use crate::engine::SecretSource;

/// Where the Dockerfile comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileSource {
    /// A path relative to the context (or absolute); `Dockerfile` by default.
    Path(String),
    Inline(String),
}

/// One service's build, resolved.
#[derive(Debug, Clone)]
pub struct ServiceBuild {
    pub service: String,
    /// The image name (`image:` or `<project>-<service>`), then `build.tags`.
    pub tags: Vec<String>,
    /// An absolute directory or a git URL.
    pub context: String,
    pub dockerfile: DockerfileSource,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: Vec<(String, String)>,
    /// `NAME -> value` as written (directories made absolute): a path, `docker-image://`, `oci-layout://`,
    /// `service:NAME` or a git URL.
    pub additional_contexts: Vec<(String, String)>,
    pub cache_from: Vec<String>,
    pub cache_to: Vec<String>,
    pub no_cache: bool,
    /// Pull base images even when the store has them (`pull: true`, `pull_policy: always|refresh`).
    pub pull: bool,
    /// Pull base images whose local copy is older than this (`pull_policy: daily|weekly|every_<duration>`).
    pub pull_if_older_than: Option<u64>,
    /// Never reach a registry for base images (`pull_policy: never`).
    pub never_pull: bool,
    /// `network: none` (else the host's network).
    pub network_none: bool,
    pub extra_hosts: Vec<(String, String)>,
    pub shm_size: u64,
    pub ulimits: Vec<(String, u64, u64)>,
    pub secrets: BTreeMap<String, SecretSource>,
    /// `ID` (the default agent) or `ID=PATH`, as `--ssh` takes them.
    pub ssh: Vec<String>,
    pub no_cache_filter: Vec<String>,
    pub entitlements: Vec<String>,
    pub warnings: Vec<String>,
    /// The platforms to build for: `build.platforms` (several make an image index), else the service's
    /// `platform`, else the host's.
    pub platforms: Vec<crate::platform::Platform>,
}

fn refuse(project: &Project, path: String, message: String) -> ComposeError {
    ComposeError::Invalid { file: project.files.last().cloned().unwrap_or_default(), path, message }
}

impl Project {
    /// The resolved build of `service` (which must have a `build:` section). Long because it is the key table:
    /// one short block per key of the Compose `build:` specification, in the specification's order, each applying
    /// the key or refusing it with its document path.
    pub fn service_build(&self, service: &str) -> Result<ServiceBuild, ComposeError> {
        let spec = self.model.services.get(service).ok_or_else(|| {
            ComposeError::Project(format!(
                "no such service: {service} (services: {})",
                self.enabled_services().join(", ")
            ))
        })?;
        let b = spec
            .build
            .clone()
            .ok_or_else(|| ComposeError::Project(format!("service {service} has no build: section")))?;
        let at = |key: &str| format!("services.{service}.build.{key}");
        let mut warnings = Vec::new();
        let dockerfile = match (&b.dockerfile, &b.dockerfile_inline) {
            (Some(_), Some(_)) => {
                return Err(refuse(
                    self,
                    at("dockerfile_inline"),
                    "dockerfile and dockerfile_inline cannot both be set".into(),
                ));
            }
            (_, Some(text)) => DockerfileSource::Inline(text.clone()),
            (Some(p), None) => DockerfileSource::Path(p.clone()),
            (None, None) => DockerfileSource::Path("Dockerfile".into()),
        };
        let mut platforms = Vec::new();
        for (i, p) in b.platforms.iter().enumerate() {
            platforms.push(
                crate::platform::Platform::parse(p)
                    .map_err(|e| refuse(self, format!("{}[{i}]", at("platforms")), e.to_string()))?,
            );
        }
        let service_platform = match spec.platform.as_deref().map(crate::platform::Platform::parse) {
            Some(Err(e)) => return Err(refuse(self, format!("services.{service}.platform"), e.to_string())),
            Some(Ok(p)) => Some(p),
            None => None,
        };
        // As Compose: the service's platform must be one of build.platforms when both are given.
        let platforms = match (service_platform, platforms) {
            (Some(p), list) if !list.is_empty() && !list.contains(&p) => {
                return Err(refuse(
                    self,
                    format!("services.{service}.platform"),
                    format!("platform {p} is not in build.platforms"),
                ));
            }
            (_, list) if !list.is_empty() => list,
            (Some(p), _) => vec![p],
            (None, _) => vec![crate::platform::Platform::host()],
        };
        // Build args: a key without a value takes the environment's (or is left out).
        let mut args = BTreeMap::new();
        for (k, v) in &b.args {
            match v {
                Some(v) => {
                    args.insert(k.clone(), v.text());
                }
                None => {
                    if let Some(v) = self.vars.get(k) {
                        args.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let labels =
            b.labels.iter().map(|(k, v)| (k.clone(), v.as_ref().map(|v| v.text()).unwrap_or_default())).collect();
        let additional_contexts = b
            .additional_contexts
            .iter()
            .map(|(k, v)| {
                v.as_ref()
                    .map(|v| (k.clone(), v.text()))
                    .ok_or_else(|| refuse(self, format!("{}.{k}", at("additional_contexts")), "needs a value".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let flag = |key: &str, v: &Option<super::model::Scalar>| -> Result<bool, ComposeError> {
            match v {
                None => Ok(false),
                Some(s) => {
                    s.flag().ok_or_else(|| refuse(self, at(key), format!("expected true or false, got {:?}", s.text())))
                }
            }
        };
        let no_cache = flag("no_cache", &b.no_cache)?;
        let mut pull = flag("pull", &b.pull)?;
        let mut pull_if_older_than = None;
        let mut never_pull = false;
        match spec.pull_policy.as_deref() {
            Some("always" | "refresh") => pull = true,
            Some("never") => never_pull = true,
            Some("daily") => pull_if_older_than = Some(86_400),
            Some("weekly") => pull_if_older_than = Some(604_800),
            Some(p) if p.starts_with("every_") => pull_if_older_than = super::model::parse_duration(&p[6..]),
            _ => {}
        }
        let network_none = match b.network.as_deref() {
            None | Some("default" | "host") => false,
            Some("none") => true,
            Some(other) => {
                return Err(refuse(
                    self,
                    at("network"),
                    format!(
                        "{other:?}: rbuild has no container networks; builds use the host's network (default, host) or none"
                    ),
                ));
            }
        };
        let mut extra_hosts = Vec::new();
        let mut add_host = |entry: &str, name: &str, ip: &str| -> Result<(), ComposeError> {
            let host = crate::hosts::host_with_address(name, ip)
                .map_err(|_| refuse(self, at("extra_hosts"), format!("{entry:?}: expected HOST=IP (or HOST:IP)")))?;
            extra_hosts.push(host);
            Ok(())
        };
        match &b.extra_hosts {
            None => {}
            Some(ExtraHosts::List(list)) => {
                for e in list {
                    let (name, ip) = e.split_once('=').or_else(|| e.split_once(':')).unwrap_or((e.as_str(), ""));
                    add_host(e, name, ip)?;
                }
            }
            Some(ExtraHosts::Map(map)) => {
                for (name, ips) in map {
                    for ip in ips.items() {
                        add_host(name, name, &ip)?;
                    }
                }
            }
        }
        let shm_size = match &b.shm_size {
            None => 0,
            Some(v) => crate::size::parse_size(&v.text()).map_err(|_| {
                refuse(self, at("shm_size"), format!("{:?}: expected bytes or a size like 2gb", v.text()))
            })?,
        };
        let mut ulimits = Vec::new();
        for (name, u) in &b.ulimits {
            let num = |s: &super::model::Scalar| -> Result<u64, ComposeError> {
                let t = s.text();
                if t == "-1" || t == "unlimited" {
                    return Ok(u64::MAX);
                }
                t.parse()
                    .map_err(|_| refuse(self, format!("{}.{name}", at("ulimits")), format!("{t:?} is not a number")))
            };
            let (soft, hard) = match u {
                Ulimit::Single(v) => (num(v)?, num(v)?),
                Ulimit::Pair { soft, hard } => (num(soft)?, num(hard)?),
            };
            ulimits.push((name.clone(), soft, hard));
        }
        let mut secrets = BTreeMap::new();
        for (i, grant) in b.secrets.iter().enumerate() {
            let path = format!("{}[{i}]", at("secrets"));
            let (source, id) = match grant {
                SecretGrant::Short(s) => (s.clone(), s.clone()),
                SecretGrant::Long(l) => {
                    if l.uid.is_some() || l.gid.is_some() || l.mode.is_some() {
                        warnings.push(format!(
                            "{path}: uid, gid and mode of a build secret are set where it is mounted (RUN --mount=type=secret,uid=,gid=,mode=)"
                        ));
                    }
                    (l.source.clone(), l.target.clone().unwrap_or_else(|| l.source.clone()))
                }
            };
            let def = self.model.secrets.get(&source).ok_or_else(|| {
                refuse(self, path.clone(), format!("secret {source:?} is not defined in the top-level secrets section"))
            })?;
            let value = match (&def.file, &def.environment, &def.external) {
                (Some(f), _, _) => SecretSource::File(f.into()),
                (None, Some(var), _) => SecretSource::Value(self.vars.get(var).cloned().ok_or_else(|| {
                    refuse(self, format!("secrets.{source}.environment"), format!("the variable {var} is not set"))
                })?),
                (None, None, Some(_)) => {
                    return Err(refuse(
                        self,
                        format!("secrets.{source}"),
                        "an external secret cannot be given to a build (use file: or environment:)".into(),
                    ));
                }
                _ => return Err(refuse(self, format!("secrets.{source}"), "needs file: or environment:".into())),
            };
            secrets.insert(id, value);
        }
        let mut entitlements = b.entitlements.clone();
        for e in &entitlements {
            if e != "network.host" && e != "security.insecure" {
                return Err(refuse(
                    self,
                    at("entitlements"),
                    format!("{e:?}: rbuild knows network.host and security.insecure"),
                ));
            }
        }
        // As in Compose, `privileged: true` is the security.insecure entitlement.
        if flag("privileged", &b.privileged)? && !entitlements.iter().any(|e| e == "security.insecure") {
            entitlements.push("security.insecure".into());
        }
        match b.isolation.as_deref() {
            None | Some("" | "default") => {}
            Some(other) => {
                return Err(refuse(
                    self,
                    at("isolation"),
                    format!(
                        "{other:?}: isolation modes are a Windows container option; rbuild builds in Linux user namespaces"
                    ),
                ));
            }
        }
        for (key, v) in [("sbom", &b.sbom), ("provenance", &b.provenance)] {
            if v.as_ref().is_some_and(|v| v.flag() != Some(false)) {
                warnings.push(format!(
                    "{}: rbuild does not produce {key} attestations yet; the image is built without one",
                    at(key)
                ));
            }
        }
        let mut tags = vec![self.image_name(service)];
        tags.extend(b.tags.iter().cloned());
        Ok(ServiceBuild {
            service: service.to_string(),
            tags,
            context: b.context.clone().unwrap_or_else(|| self.directory.display().to_string()),
            dockerfile,
            args,
            target: b.target.clone(),
            labels,
            additional_contexts,
            cache_from: b.cache_from.clone(),
            cache_to: b.cache_to.clone(),
            no_cache,
            pull,
            pull_if_older_than,
            never_pull,
            network_none,
            extra_hosts,
            shm_size,
            ulimits,
            secrets,
            ssh: b.ssh.clone(),
            no_cache_filter: b.no_cache_filter.as_ref().map(|f| f.items()).unwrap_or_default(),
            entitlements,
            warnings,
            platforms,
        })
    }
}
