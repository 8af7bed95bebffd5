//! Image references as Docker writes them: `[registry[:port]/]path[:tag][@digest]`, normalised the way Docker
//! does (`busybox` is `docker.io/library/busybox:latest`), and shown back in the familiar short form.

use std::fmt;

/// A reference that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `ghcr.io` ...
    pub registry: String,
    /// `library/busybox`, `org/app` ...
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// `sha256:...`, when pinned.
    pub digest: Option<String>,
}

const DOCKER_HUB: &str = "docker.io";

fn valid_path_component(c: &str) -> bool {
    // [a-z0-9]+ with separators . _ __ - between alphanumerics.
    let bytes = c.as_bytes();
    !c.is_empty()
        && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
        && bytes[bytes.len() - 1].is_ascii_lowercase() | bytes[bytes.len() - 1].is_ascii_digit()
        && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !t.is_empty()
        && t.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && t.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Reference {
    /// Parse and normalise `s`.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let err = |reason: &str| ReferenceError { reference: s.to_string(), reason: reason.to_string() };
        if s.is_empty() {
            return Err(err("empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let ok = d.strip_prefix("sha256:").is_some_and(|h| {
                    h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                });
                if !ok {
                    return Err(err("the digest must be sha256: followed by 64 lower-case hex digits"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        if tag.as_deref().is_some_and(|t| !valid_tag(t)) {
            return Err(err(
                "a tag has up to 128 letters, digits, '_', '.' and '-', and does not start with '.' or '-'",
            ));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => (first.to_string(), path),
            _ => (DOCKER_HUB.to_string(), name),
        };
        let (host, port) = registry.split_once(':').unwrap_or((registry.as_str(), "0"));
        let host_ok = !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !host_ok || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("the registry must be a lower-case host name with an optional numeric port"));
        }
        let repository =
            if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path.to_string() };
        if !repository.split('/').all(valid_path_component) {
            return Err(err("repository names are lower-case letters, digits and the separators '.', '_', '-', '/'"));
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form Docker shows: `busybox:latest`, `org/app:1`, `localhost:5000/x:y`.
    pub fn familiar(&self) -> String {
        let name = if self.registry == DOCKER_HUB {
            self.repository.strip_prefix("library/").unwrap_or(&self.repository).to_string()
        } else {
            self.name()
        };
        let mut s = name;
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

impl fmt::Display for Reference {
    /// The fully qualified form: `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(Reference::parse("org/app:1.0").unwrap().to_string(), "docker.io/org/app:1.0");
        let l = Reference::parse("localhost:5000/x/y:z").unwrap();
        assert_eq!(
            (l.registry.as_str(), l.repository.as_str(), l.tag.as_deref()),
            ("localhost:5000", "x/y", Some("z"))
        );
        assert_eq!(l.familiar(), "localhost:5000/x/y:z");
        assert_eq!(Reference::parse("localhost/busybox:latest").unwrap().registry, "localhost");
        let d = format!("a@sha256:{}", "0".repeat(64));
        let r = Reference::parse(&d).unwrap();
        assert_eq!((r.tag, r.digest.is_some()), (None, true));
    }

    #[test]
    fn rejects_bad_references() {
        for bad in ["", "Busybox", "a:b:c/d", "a@sha256:xyz", "a:-tag", "a//b", "-a"] {
            assert!(Reference::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
