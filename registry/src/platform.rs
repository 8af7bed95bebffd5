//! Choosing an image for a platform from an index (OCI image index or Docker manifest list): the host's
//! os/architecture, with the usual variant fallbacks (arm64 -> v8, arm -> the highest of v7, v6, v5 not above the
//! host's), ignoring attestation manifests (`unknown/unknown`).

/// A platform: `linux/amd64`, `linux/arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary runs on, in OCI's names.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        let variant = match architecture {
            "arm64" => Some("v8".to_string()),
            "arm" => Some("v7".to_string()),
            _ => None,
        };
        Platform { os: "linux".into(), architecture: architecture.into(), variant }
    }

    pub fn parse(s: &str) -> Option<Platform> {
        let mut parts = s.trim().split('/');
        let os = parts.next().filter(|p| !p.is_empty())?.to_ascii_lowercase();
        let architecture = parts.next().filter(|p| !p.is_empty())?.to_ascii_lowercase();
        let variant = parts.next().map(|v| v.to_ascii_lowercase());
        Some(Platform { os, architecture, variant })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An index entry chosen for a platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// Pick the entry of `index` (parsed JSON) for `want`; None when the index has none that fits.
pub fn select(index: &serde_json::Value, want: &Platform) -> Option<Chosen> {
    let entries = index["manifests"].as_array()?;
    let rank = |v: Option<&str>| -> Option<u32> {
        // Lower is better: exact variant first, then compatible lower variants, then none given.
        let want_v = want.variant.as_deref().or(if want.architecture == "arm64" { Some("v8") } else { None });
        match (want_v, v) {
            (a, b) if a == b => Some(0),
            (_, None) => Some(5),
            (None, Some(_)) => Some(6),
            (Some(w), Some(v)) if want.architecture == "arm" => {
                let n = |s: &str| s.trim_start_matches('v').parse::<u32>().ok();
                match (n(w), n(v)) {
                    (Some(w), Some(v)) if v <= w => Some(1 + w - v),
                    _ => None,
                }
            }
            (Some("v8"), Some("v8")) => Some(0),
            _ => None,
        }
    };
    entries
        .iter()
        .filter_map(|e| {
            let p = &e["platform"];
            let os = p["os"].as_str().unwrap_or("linux");
            let arch = p["architecture"].as_str()?;
            if os != want.os || arch != want.architecture {
                return None;
            }
            let r = rank(p["variant"].as_str())?;
            Some((r, e))
        })
        .min_by_key(|(r, _)| *r)
        .and_then(|(_, e)| {
            Some(Chosen {
                digest: e["digest"].as_str()?.to_string(),
                media_type: e["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json").to_string(),
                size: e["size"].as_u64().unwrap_or(0),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_the_host_entry_and_variant_fallbacks() {
        let index = json!({"manifests": [
            {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:b", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
            {"digest": "sha256:c", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": "sha256:d", "platform": {"os": "unknown", "architecture": "unknown"}},
        ]});
        let p = |s| Platform::parse(s).unwrap();
        assert_eq!(select(&index, &p("linux/amd64")).unwrap().digest, "sha256:a");
        assert_eq!(select(&index, &p("linux/arm/v7")).unwrap().digest, "sha256:b");
        assert!(select(&index, &p("linux/arm/v5")).is_none());
        assert_eq!(select(&index, &p("linux/arm64/v8")).unwrap().digest, "sha256:c");
        assert_eq!(select(&index, &p("linux/arm64")).unwrap().digest, "sha256:c");
        assert!(select(&index, &p("linux/s390x")).is_none());
        // An arm64 entry that names no variant is v8 too.
        let plain =
            json!({"manifests": [{"digest": "sha256:e", "platform": {"os": "linux", "architecture": "arm64"}}]});
        assert_eq!(select(&plain, &p("linux/arm64")).unwrap().digest, "sha256:e");
        assert_eq!(select(&plain, &p("linux/arm64/v8")).unwrap().digest, "sha256:e");
    }
}
