//! The registry client's errors: each names the registry and what was being fetched or sent, and says what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("offline mode (--offline / RBUILD_OFFLINE=1) forbids contacting {registry} for {what}")]
    Offline { registry: String, what: String },

    #[error("registry {registry} is not allowed by {config} (only listed registries may be used)")]
    Blocked { registry: String, config: String },

    #[error(
        "cannot reach registry {registry} for {what}: {reason} (without a network: `rbuild load` the image, or use \
         one the store has, with --offline)"
    )]
    Unreachable { registry: String, what: String, reason: String },

    #[error("cannot download {url}: {reason}")]
    UrlUnreachable { url: String, reason: String },

    #[error("{url} answered HTTP {status}")]
    UrlStatus { url: String, status: u16 },

    #[error(
        "registry {registry} refused the credentials for {what}{}: log in with `rbuild login {registry}` or check \
         the password",
        if *had_credentials { "" } else { " (no credentials were found)" }
    )]
    Unauthorized { registry: String, what: String, had_credentials: bool },

    #[error("registry {registry} denied access to {what}: the account may lack permission for that repository")]
    Forbidden { registry: String, what: String },

    #[error("{what} was not found on {registry}: check the name and tag")]
    NotFound { registry: String, what: String },

    #[error("registry {registry} answered HTTP {status} for {what}: {body}")]
    Status { registry: String, what: String, status: u16, body: String },

    #[error("registry {registry} sent {what} with digest {actual}, expected {expected}; nothing was stored")]
    DigestMismatch { registry: String, what: String, expected: String, actual: String },

    #[error("registry {registry}: {reason}")]
    Protocol { registry: String, reason: String },

    #[error("credentials for {registry}: {reason}")]
    Credentials { registry: String, reason: String },

    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },

    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, RegistryError>;

impl RegistryError {
    /// Whether retrying later may help (connection trouble, 429, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            // A name that does not resolve will not resolve in a second either.
            RegistryError::Unreachable { reason, .. } | RegistryError::UrlUnreachable { reason, .. } => {
                !reason.contains("dns error")
            }
            RegistryError::Status { status, .. } | RegistryError::UrlStatus { status, .. } => {
                *status == 429 || *status >= 500
            }
            _ => false,
        }
    }
}
