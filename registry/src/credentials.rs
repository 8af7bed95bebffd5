//! Finding credentials for a registry the way docker and podman do: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`) with `auths` (base64 `auth` or `username`/`password`), `credHelpers` per registry and
//! `credsStore` for all (`docker-credential-<name> get`, the host on stdin, JSON on stdout); then podman's
//! `auth.json` (`$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.config/containers/auth.json`).
//! `rbuild login` writes `auths` entries into the docker config. Secrets are never logged or put in errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::error::{RegistryError, Result};

/// A user name and password (or identity token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials {{ username: {:?}, secret: <hidden> }}", self.username)
    }
}

/// The keys a registry may be filed under in a docker config (docker.io has its legacy URL).
fn config_keys(registry: &str) -> Vec<String> {
    if registry == "docker.io" {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![registry.to_string(), format!("https://{registry}"), format!("http://{registry}")]
    }
}

/// The docker config file in use.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

fn podman_auth_paths() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        out.push(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        out.push(PathBuf::from(d).join("containers/auth.json"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        out.push(PathBuf::from(h).join(".config/containers/auth.json"));
    }
    out
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RegistryError::Config { path: path.to_path_buf(), reason: format!("not valid JSON: {e}") }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RegistryError::Config { path: path.to_path_buf(), reason: e.to_string() }),
    }
}

/// An `auths` entry: `auth` (base64 user:password) or `username`/`password`; `identitytoken` is a refresh token.
fn from_auths_entry(registry: &str, v: &Value) -> Result<Option<Credentials>> {
    if let Some(auth) = v["auth"].as_str().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|_| {
            RegistryError::Credentials { registry: registry.into(), reason: "the stored auth is not base64".into() }
        })?;
        let text = String::from_utf8_lossy(&decoded).into_owned();
        let (u, p) = text.split_once(':').ok_or_else(|| RegistryError::Credentials {
            registry: registry.into(),
            reason: "the stored auth is not user:password".into(),
        })?;
        return Ok(Some(Credentials { username: u.to_string(), secret: p.to_string() }));
    }
    if let (Some(u), Some(p)) = (v["username"].as_str(), v["password"].as_str()) {
        return Ok(Some(Credentials { username: u.to_string(), secret: p.to_string() }));
    }
    Ok(None)
}

/// Ask `docker-credential-<helper>` for the registry's credentials (None when it has none).
fn from_helper(helper: &str, registry: &str) -> Result<Option<Credentials>> {
    let program = format!("docker-credential-{helper}");
    let mut keys = config_keys(registry);
    keys.truncate(if registry == "docker.io" { 1 } else { 2 });
    for key in keys {
        let mut child = Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| RegistryError::Credentials {
                registry: registry.into(),
                reason: format!("cannot run the credential helper {program}: {e}"),
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(key.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| RegistryError::Credentials {
            registry: registry.into(),
            reason: format!("credential helper {program}: {e}"),
        })?;
        if !out.status.success() {
            // "credentials not found in native keychain": try the next key, then give up quietly.
            continue;
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|_| RegistryError::Credentials {
            registry: registry.into(),
            reason: format!("credential helper {program} printed something that is not JSON"),
        })?;
        if let (Some(u), Some(s)) = (v["Username"].as_str(), v["Secret"].as_str()) {
            return Ok(Some(Credentials { username: u.to_string(), secret: s.to_string() }));
        }
    }
    Ok(None)
}

/// The credentials for `registry` (a host as references name it, e.g. `docker.io`, `localhost:5000`).
pub fn lookup(registry: &str) -> Result<Option<Credentials>> {
    if let Some(path) = docker_config_path()
        && let Some(cfg) = read_json(&path)?
    {
        if let Some(helper) = cfg["credHelpers"][registry].as_str() {
            return from_helper(helper, registry);
        }
        for key in config_keys(registry) {
            if let Some(c) = from_auths_entry(registry, &cfg["auths"][key])? {
                return Ok(Some(c));
            }
        }
        if let Some(store) = cfg["credsStore"].as_str().filter(|s| !s.is_empty())
            && let Some(c) = from_helper(store, registry)?
        {
            return Ok(Some(c));
        }
    }
    for path in podman_auth_paths() {
        if let Some(cfg) = read_json(&path)? {
            for key in config_keys(registry) {
                if let Some(c) = from_auths_entry(registry, &cfg["auths"][key])? {
                    return Ok(Some(c));
                }
            }
        }
    }
    Ok(None)
}

/// `rbuild login`: store credentials in the docker config's `auths` (mode 0600).
pub fn store(registry: &str, creds: &Credentials) -> Result<PathBuf> {
    let path = docker_config_path().ok_or_else(|| RegistryError::Credentials {
        registry: registry.into(),
        reason: "neither DOCKER_CONFIG nor HOME is set".into(),
    })?;
    let mut cfg = read_json(&path)?.unwrap_or_else(|| json!({}));
    if !cfg["auths"].is_object() {
        cfg["auths"] = json!({});
    }
    let key = config_keys(registry).remove(0);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.username, creds.secret));
    cfg["auths"][key] = json!({ "auth": auth });
    write_private(&path, &cfg)?;
    Ok(path)
}

/// `rbuild logout`: remove the registry's `auths` entries; returns whether there was one.
pub fn remove(registry: &str) -> Result<bool> {
    let Some(path) = docker_config_path() else { return Ok(false) };
    let Some(mut cfg) = read_json(&path)? else { return Ok(false) };
    let mut removed = false;
    if let Some(auths) = cfg["auths"].as_object_mut() {
        for key in config_keys(registry) {
            removed |= auths.remove(&key).is_some();
        }
    }
    if removed {
        write_private(&path, &cfg)?;
    }
    Ok(removed)
}

fn write_private(path: &Path, cfg: &Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| RegistryError::Io { what: format!("write {}", path.display()), source: e };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
    f.write_all(&serde_json::to_vec_pretty(cfg).unwrap_or_default()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
