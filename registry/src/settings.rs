//! Per-registry settings for air-gapped and CI hosts, from `registries.toml` (the first that exists of
//! `$RBUILD_REGISTRIES_CONFIG`, `~/.config/rbuild/registries.toml`, `/etc/rbuild/registries.toml`):
//!
//! ```toml
//! only_listed = false              # true: every registry not listed below is refused
//! [registry."docker.io"]
//! mirrors = ["mirror.internal:5000"]   # tried in order for pulls, then the registry itself
//! insecure = false                 # plain HTTP (localhost and 127.0.0.0/8 always are)
//! blocked = false
//! ca = "/path/to/ca.crt"           # added to the system roots for this registry
//! ```
//!
//! plus `--insecure-registry HOST` and `--offline` / `RBUILD_OFFLINE=1` (no network access at all). CA files are
//! also read from `/etc/docker/certs.d/<host>/*.crt` and `~/.config/rbuild/certs.d/<host>/*.crt`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{RegistryError, Result};

/// One registry's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrySettings {
    pub mirrors: Vec<String>,
    pub insecure: bool,
    pub blocked: bool,
    pub ca_files: Vec<PathBuf>,
}

/// Everything the client needs to know before it connects anywhere.
#[derive(Debug, Clone)]
pub struct Settings {
    pub offline: bool,
    pub only_listed: bool,
    pub registries: BTreeMap<String, RegistrySettings>,
    /// The file the settings came from (for messages).
    pub source: Option<PathBuf>,
    /// How long to keep retrying transient failures of one request (connection errors, 429, 5xx).
    pub retry_budget: Duration,
    /// A response that sends nothing for this long is abandoned (slow or stalled servers).
    pub read_timeout: Duration,
    /// Blobs larger than this are uploaded in chunks (PATCH with Content-Range).
    pub chunk_size: u64,
    /// Layers downloaded at once.
    pub max_concurrent_downloads: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            offline: false,
            only_listed: false,
            registries: BTreeMap::new(),
            source: None,
            retry_budget: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            chunk_size: 64 << 20,
            max_concurrent_downloads: 4,
        }
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    only_listed: bool,
    #[serde(default)]
    registry: BTreeMap<String, FileRegistry>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRegistry {
    #[serde(default)]
    mirrors: Vec<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    ca: Option<PathBuf>,
}

impl Settings {
    /// Settings from the environment and the first registries.toml found; `insecure` adds plain-HTTP hosts.
    pub fn load(offline: bool, insecure: &[String]) -> Result<Settings> {
        let offline = offline || std::env::var("RBUILD_OFFLINE").is_ok_and(|v| v == "1" || v == "true");
        let mut s = match config_path() {
            Some(p) => Settings::from_file(&p)?,
            None => Settings::default(),
        };
        s.offline = offline;
        for h in insecure {
            s.registries.entry(h.clone()).or_default().insecure = true;
        }
        if let Ok(v) = std::env::var("RBUILD_REGISTRY_CHUNK_SIZE")
            && let Ok(n) = v.parse::<u64>()
        {
            s.chunk_size = n.max(1);
        }
        if let Ok(v) = std::env::var("RBUILD_REGISTRY_RETRY_SECONDS")
            && let Ok(secs) = v.parse::<u64>()
        {
            s.retry_budget = Duration::from_secs(secs);
        }
        if let Ok(v) = std::env::var("RBUILD_REGISTRY_READ_TIMEOUT")
            && let Ok(secs) = v.parse::<u64>()
        {
            s.read_timeout = Duration::from_secs(secs.max(1));
        }
        Ok(s)
    }

    pub fn from_file(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RegistryError::Config { path: path.to_path_buf(), reason: e.to_string() })?;
        Settings::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Settings> {
        let f: FileFormat = toml::from_str(text)
            .map_err(|e| RegistryError::Config { path: path.to_path_buf(), reason: e.to_string() })?;
        let registries = f
            .registry
            .into_iter()
            .map(|(k, r)| {
                let settings = RegistrySettings {
                    mirrors: r.mirrors,
                    insecure: r.insecure,
                    blocked: r.blocked,
                    ca_files: r.ca.into_iter().collect(),
                };
                (k, settings)
            })
            .collect();
        Ok(Settings { only_listed: f.only_listed, registries, source: Some(path.to_path_buf()), ..Settings::default() })
    }

    /// The settings of one registry (defaults when it is not listed).
    pub fn registry(&self, host: &str) -> RegistrySettings {
        self.registries.get(host).cloned().unwrap_or_default()
    }

    /// Refuse a registry the settings forbid.
    pub fn check_allowed(&self, host: &str) -> Result<()> {
        let listed = self.registries.get(host);
        if listed.is_some_and(|r| r.blocked) || (self.only_listed && listed.is_none()) {
            return Err(RegistryError::Blocked {
                registry: host.to_string(),
                config: self.source.as_ref().map_or("the registry settings".into(), |p| p.display().to_string()),
            });
        }
        Ok(())
    }

    /// Whether `host` is spoken to over plain HTTP.
    pub fn is_plain_http(&self, host: &str) -> bool {
        let name =
            host.rsplit_once(':').map_or(host, |(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host });
        name == "localhost"
            || name.starts_with("127.")
            || name == "[::1]"
            || self.registries.get(host).is_some_and(|r| r.insecure)
    }

    /// CA certificate files for `host`: from the settings, `/etc/docker/certs.d/<host>/` and
    /// `~/.config/rbuild/certs.d/<host>/`.
    pub fn ca_files(&self, host: &str) -> Vec<PathBuf> {
        let mut out = self.registry(host).ca_files;
        let mut dirs = vec![PathBuf::from("/etc/docker/certs.d").join(host)];
        if let Some(h) = std::env::var_os("HOME") {
            dirs.push(PathBuf::from(h).join(".config/rbuild/certs.d").join(host));
        }
        for d in dirs {
            if let Ok(entries) = std::fs::read_dir(&d) {
                let mut files: Vec<PathBuf> =
                    entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "crt")).collect();
                files.sort();
                out.extend(files);
            }
        }
        out
    }
}

fn config_path() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("RBUILD_REGISTRIES_CONFIG") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(h) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(h).join(".config/rbuild/registries.toml"));
    }
    candidates.push(PathBuf::from("/etc/rbuild/registries.toml"));
    candidates.into_iter().find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_format() {
        let s = Settings::parse(
            "only_listed = true\n[registry.\"docker.io\"]\nmirrors = [\"localhost:5000\"]\n[registry.\"quay.io\"]\nblocked = true\n",
            Path::new("r.toml"),
        )
        .unwrap();
        assert_eq!(s.registry("docker.io").mirrors, vec!["localhost:5000"]);
        assert!(s.check_allowed("docker.io").is_ok());
        assert!(s.check_allowed("quay.io").is_err());
        assert!(s.check_allowed("ghcr.io").unwrap_err().to_string().contains("r.toml"));
        assert!(Settings::parse("[registry.x]\nmirorrs = []\n", Path::new("r.toml")).is_err());
        assert!(s.is_plain_http("localhost:5000") && s.is_plain_http("127.0.0.1:1") && !s.is_plain_http("ghcr.io"));
    }
}
