//! The crate-wide error type: one enum, structured variants, messages that say what failed and what to do.

use std::path::PathBuf;

use crate::dockerfile::DockerfileError;

/// Every failure rbuild-builder reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Dockerfile that cannot be parsed or has an invalid instruction; carries file, line and source.
    #[error(transparent)]
    Dockerfile(#[from] Box<DockerfileError>),

    /// A `.dockerignore` pattern that does not compile.
    #[error(transparent)]
    Ignore(#[from] crate::context::IgnoreError),

    /// A `.dockerignore` file that cannot be read.
    #[error("cannot read ignore file {path}: {source}")]
    IgnoreFileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A filesystem operation on the store, a layer or an archive failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A string that is not a valid `sha256:<hex>` digest.
    #[error("invalid digest {digest:?}: expected sha256: followed by 64 lower-case hex digits")]
    InvalidDigest { digest: String },

    /// Content whose digest or size is not what it was announced as; nothing was stored.
    #[error("content of {what} does not match: expected {expected}, got {actual}")]
    ContentMismatch { what: String, expected: String, actual: String },

    /// A blob the store does not have.
    #[error("blob {digest} is not in the store ({root}); pull or load the image again")]
    BlobNotFound { digest: String, root: PathBuf },

    /// An image name the store does not know.
    #[error("image {name:?} not found in the store ({root}); `rbuild images` lists what is there")]
    ImageNotFound { name: String, root: PathBuf },

    /// An image reference that cannot be parsed.
    #[error(transparent)]
    Reference(#[from] rbuild_registry::ReferenceError),

    /// A layer entry that would write outside its root, or that cannot be represented; the layer is rejected.
    #[error("unsafe layer entry {entry:?} in {layer}: {reason}; the layer was rejected and nothing was kept")]
    UnsafeLayer { layer: String, entry: String, reason: String },

    /// A layer, archive or image document that is malformed.
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },

    /// A COPY/ADD source that does not exist (the caller says where it looked). A wildcard matching nothing is
    /// not an error: it copies nothing, as in BuildKit.
    #[error("COPY source {src:?} not found")]
    SourceNotFound { src: String },

    /// A registry operation failed.
    #[error(transparent)]
    Registry(Box<rbuild_registry::RegistryError>),

    /// An `--output` (or `--load`, a push) that cannot be written as asked: `what` names it.
    #[error("{what}: {reason}")]
    BadOutput { what: String, reason: String },

    /// A remote source for ADD (a URL or a git repository) that could not be fetched.
    #[error("{message}")]
    Fetch { message: String },

    /// The build stopped because another stage failed.
    #[error("cancelled because another stage failed")]
    Cancelled,

    /// A layer larger than the configured limit (protects against compression bombs).
    #[error("layer {layer} expands beyond the {limit}-byte limit (set RBUILD_MAX_LAYER_SIZE to raise it)")]
    LayerTooLarge { layer: String, limit: u64 },

    /// A JSON document that cannot be encoded or decoded.
    #[error("invalid JSON in {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// The sandbox that runs a step failed (not the step itself, whose exit status is reported).
    #[error(transparent)]
    Sandbox(Box<rbuild_runtime::Error>),

    /// An image of another platform than the one asked for (`rbuild run --platform`), in docker's words.
    #[error(
        "image with reference {image} was found but does not match the specified platform: wanted {wanted}, actual: {actual}"
    )]
    PlatformMismatch { image: String, wanted: String, actual: String },

    /// A foreign platform's binaries cannot run here (no emulator, an old kernel, no host registration).
    #[error(transparent)]
    Emulation(#[from] crate::sandbox::emulation::Unsupported),

    /// A worker thread panicked (a bug); what it was doing was stopped and nothing half-done was kept.
    #[error("{what} panicked; the operation was stopped")]
    WorkerPanicked { what: String },

    /// A tree operation run inside the user namespace (remove, copy, export) failed or answered what rbuild
    /// cannot read.
    #[error("tree operation {op}: {reason}")]
    TreeOpFailed { op: String, reason: String },

    /// A setting (an `RBUILD_*` variable) that cannot be honoured as given.
    #[error("{name}: {reason}")]
    InvalidSetting { name: String, reason: String },

    /// A `RUN --mount` the step cannot have (a bad option, a cache source leading out of its cache).
    #[error("{what}: {reason}")]
    BadMount { what: String, reason: String },

    /// A COPY/ADD source outside what it may read (the context, its source directory).
    #[error("{what}: {reason}")]
    SourceOutside { what: String, reason: String },

    /// An archive (a context tarball, an ADD'ed compressed tar) that cannot be unpacked.
    #[error("archive {}: {reason}", path.display())]
    BadArchive { path: PathBuf, reason: String },

    /// A `--cache-from`/`--cache-to` that cannot be used as given.
    #[error("cache {spec}: {reason}")]
    BadCache { spec: String, reason: String },

    /// A build request that cannot be carried out as given (`what` names the part: `--target`, an image to run).
    #[error("{what}: {reason}")]
    BadRequest { what: String, reason: String },

    /// Something rbuild itself got wrong (a bug): said instead of panicking.
    #[error("internal error ({what}); please report it")]
    Bug { what: String },

    /// A flag value (or the Compose key carrying it) that does not follow its grammar; the message names the flag,
    /// the value and the form expected.
    #[error("{message}")]
    InvalidFlag { message: String },

    /// A build context (or named context) that cannot be used as given (`what` may be empty when the caller
    /// names it).
    #[error("{}{reason}", if what.is_empty() { String::new() } else { format!("{what}: ") })]
    BadContext { what: String, reason: String },

    /// A Dockerfile that cannot be read from disk.
    #[error("cannot read Dockerfile {path}: {source}")]
    DockerfileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<DockerfileError> for Error {
    fn from(e: DockerfileError) -> Self {
        Error::Dockerfile(Box::new(e))
    }
}

impl Error {
    /// An I/O error on `path` during `op` (a short verb phrase: "create", "rename", ...).
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
