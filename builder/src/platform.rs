//! The one place that decides which platforms rbuild builds for: the host's, for now (`--platform`,
//! `FROM --platform`, Compose `platform` and `build.platforms` all ask here), and the host's names.

/// A platform other than the host's was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{requested}: rbuild builds for the host platform ({host}) only; multi-platform builds are not supported yet")]
pub struct NotHostPlatform {
    pub requested: String,
    pub host: String,
}

/// The host's OCI architecture name (`amd64`, `arm64`, ...).
pub fn host_architecture() -> String {
    rbuild_registry::platform::Platform::host().architecture
}

/// The host platform as `os/architecture` (`linux/amd64`).
pub fn host() -> String {
    format!("linux/{}", host_architecture())
}

/// Accept `requested` if it names the host platform: `os/architecture` with any variant, in any case, or
/// `local` (BuildKit's name for the host).
pub fn check(requested: &str) -> Result<(), NotHostPlatform> {
    let host = host();
    let normal = requested.trim().to_ascii_lowercase();
    let os_arch = normal.split('/').take(2).collect::<Vec<_>>().join("/");
    if normal == "local" || os_arch == host {
        return Ok(());
    }
    Err(NotHostPlatform { requested: requested.to_string(), host })
}

#[cfg(test)]
mod tests {
    use super::{check, host};

    #[test]
    fn the_host_in_any_spelling_and_nothing_else() {
        let h = host();
        for ok in [h.clone(), h.to_uppercase(), format!("{h}/v8"), "local".into(), format!(" {h} ")] {
            assert!(check(&ok).is_ok(), "{ok}");
        }
        let foreign = if h.ends_with("/amd64") { "linux/arm64" } else { "linux/amd64" };
        for other in [foreign, "windows/amd64", "linux", "", "darwin/arm64"] {
            let e = check(other).unwrap_err();
            assert!(e.to_string().contains("builds for the host platform"), "{other}: {e}");
        }
    }
}
