//! The one place that says what a platform is: parsing and normalizing what users write (`--platform`,
//! `FROM --platform`, Compose `platform` and `platforms`), the host's platform, and whether a platform runs
//! natively here or needs an emulator. Names are OCI's, normalized as containerd (and so BuildKit) does:
//! `linux/arm64/v8` is `linux/arm64`, `linux/arm` is `linux/arm/v7`, `aarch64` is `arm64`.

use serde_json::Value;

/// An OS/architecture(/variant) a stage is built for or an image is made for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// A platform rbuild cannot build for, or a misspelled one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {requested:?}: {reason}")]
pub struct BadPlatform {
    pub requested: String,
    pub reason: String,
}

impl Platform {
    /// The platform of this machine.
    pub fn host() -> Platform {
        let p = rbuild_registry::platform::Platform::host();
        Platform::normalized(p.os, &p.architecture, p.variant.as_deref())
    }

    fn normalized(os: String, architecture: &str, variant: Option<&str>) -> Platform {
        let (architecture, alias_variant) = match architecture {
            "x86_64" | "x86-64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "armhf" => ("arm", Some("v7")),
            "armel" => ("arm", Some("v6")),
            "i386" | "i486" | "i586" | "i686" => ("386", None),
            "ppc64el" => ("ppc64le", None),
            other => (other, None),
        };
        let variant = variant.filter(|v| !v.is_empty()).or(alias_variant).map(|v| {
            let v = v.to_ascii_lowercase();
            if v.starts_with('v') { v } else { format!("v{v}") }
        });
        let variant = match (architecture, variant) {
            ("arm64", Some(v)) if v == "v8" => None,
            ("amd64", Some(v)) if v == "v1" => None,
            ("arm", None) => Some("v7".to_string()),
            (_, v) => v,
        };
        Platform { os, architecture: architecture.to_string(), variant }
    }

    /// `os/architecture[/variant]` in any case, or `local` (BuildKit's name for the host). Any OS is a platform
    /// (a stage of scratch and COPY builds for `darwin/amd64` as BuildKit's does); only Linux binaries can run.
    pub fn parse(requested: &str) -> Result<Platform, BadPlatform> {
        let bad = |reason: &str| BadPlatform { requested: requested.to_string(), reason: reason.to_string() };
        let normal = requested.trim().to_ascii_lowercase();
        if normal == "local" {
            return Ok(Platform::host());
        }
        let parts: Vec<&str> = normal.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(bad("write os/architecture[/variant], e.g. linux/amd64, linux/arm64 or linux/arm/v7"));
        }
        if !parts.iter().all(|p| p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')) {
            return Err(bad("write os/architecture[/variant] with letters, digits, '.', '_' and '-' only"));
        }
        Ok(Platform::normalized(parts[0].to_string(), parts[1], parts.get(2).copied()))
    }

    /// The platform an image config names (`os`, `architecture`, `variant`), if it names one.
    pub fn of_config(config: &Value) -> Option<Platform> {
        let architecture = config["architecture"].as_str().filter(|a| !a.is_empty())?;
        let os = config["os"].as_str().filter(|o| !o.is_empty()).unwrap_or("linux").to_string();
        Some(Platform::normalized(os, architecture, config["variant"].as_str()))
    }

    /// Whether this host runs the platform's binaries itself (386 runs on amd64 hosts).
    pub fn is_native(&self) -> bool {
        let host = Platform::host();
        self.os == host.os
            && (self.architecture == host.architecture || (host.architecture == "amd64" && self.architecture == "386"))
    }

    /// Set `architecture`, `os` and `variant` of an image config to this platform.
    pub fn write_into_config(&self, config: &mut Value) {
        config["architecture"] = Value::from(self.architecture.clone());
        config["os"] = Value::from(self.os.clone());
        match (&self.variant, config.as_object_mut()) {
            (Some(v), _) => config["variant"] = Value::from(v.clone()),
            (None, Some(o)) => {
                o.remove("variant");
            }
            (None, None) => {}
        }
    }

    /// The registry client's form, for choosing from an index.
    pub fn for_registry(&self) -> rbuild_registry::platform::Platform {
        rbuild_registry::platform::Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }

    /// The platform as a directory or file name part (`linux_arm64_v8`... as buildx's local output names them).
    pub fn path_name(&self) -> String {
        self.to_string().replace('/', "_")
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

/// The host's OCI architecture name (`amd64`, `arm64`, ...).
pub fn host_architecture() -> String {
    Platform::host().architecture
}

/// The host platform as `os/architecture` (`linux/amd64`).
pub fn host() -> String {
    Platform::host().to_string()
}

/// A comma-separated list of platforms (`--platform linux/amd64,linux/arm64`), each parsed, duplicates dropped.
pub fn parse_list(requested: &str) -> Result<Vec<Platform>, BadPlatform> {
    let mut out: Vec<Platform> = Vec::new();
    for p in requested.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p = Platform::parse(p)?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(BadPlatform { requested: requested.to_string(), reason: "no platform given".into() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{Platform, parse_list};

    #[test]
    fn names_are_normalized_as_containerd_does() {
        let p = |s: &str| Platform::parse(s).unwrap().to_string();
        assert_eq!(p("linux/arm64/v8"), "linux/arm64");
        assert_eq!(p("LINUX/AARCH64"), "linux/arm64");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("linux/arm/6"), "linux/arm/v6");
        assert_eq!(p("linux/x86_64"), "linux/amd64");
        assert_eq!(p(" linux/ppc64le "), "linux/ppc64le");
        assert_eq!(p("local"), Platform::host().to_string());
        assert_eq!(p("darwin/ppc64le"), "darwin/ppc64le");
        assert!(!Platform::parse("windows/amd64").unwrap().is_native());
        for bad in ["linux", "", "linux//v7", "linux/a b", "linux/arm/v7/x", "linux/$ARCH"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_host_is_native_and_386_runs_on_amd64() {
        assert!(Platform::host().is_native());
        let foreign = if Platform::host().architecture == "amd64" { "linux/arm64" } else { "linux/amd64" };
        assert!(!Platform::parse(foreign).unwrap().is_native());
        if Platform::host().architecture == "amd64" {
            assert!(Platform::parse("linux/386").unwrap().is_native());
        }
    }

    #[test]
    fn lists_are_parsed_each_once() {
        let l = parse_list("linux/amd64, linux/arm64,linux/amd64").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(parse_list("linux/arm64").unwrap()[0].architecture, "arm64");
        assert!(parse_list(" , ").is_err());
    }

    #[test]
    fn configs_name_their_platform() {
        let mut c = serde_json::json!({"architecture": "arm", "os": "linux", "variant": "v6"});
        assert_eq!(Platform::of_config(&c).unwrap().to_string(), "linux/arm/v6");
        Platform::parse("linux/arm64").unwrap().write_into_config(&mut c);
        assert_eq!(c, serde_json::json!({"architecture": "arm64", "os": "linux"}));
        assert!(Platform::of_config(&serde_json::json!({})).is_none());
    }
}
