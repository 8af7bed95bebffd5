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

    /// A build step failed: where (the Dockerfile, the instruction's line and source) and why. Shown as the
    /// instruction's location with the cause's message, as BuildKit shows a failed vertex.
    #[error("{}", at.render(&source.to_string()))]
    Step { at: Box<crate::dockerfile::Location>, source: StepError },

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

    /// A remote layer (known to be in a registry, named by a cache record or an image) that could not be fetched.
    #[error(
        "layer {digest} is not in the store yet (it is at {place}) and cannot be fetched: {reason}; run the \
         command without --offline once (the layer is fetched, verified and kept)"
    )]
    RemoteLayer { digest: String, place: String, reason: String },

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

/// Why a build step failed (the cause of [`Error::Step`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The step's process ran and did not succeed, in BuildKit's words, then its last output and the sandbox's
    /// notes on why it may have failed.
    #[error("process {process:?} did not complete successfully: exit code: {code}{}{}",
        if tail.is_empty() { String::new() } else { format!("; its last output:\n{}", tail.join("\n")) },
        notes.iter().map(|n| format!("\n(note: {n})")).collect::<String>())]
    Exit { process: String, code: i32, tail: Vec<String>, notes: Vec<String> },

    /// The sandbox could not start the step (an unknown USER, a mount target it refuses...).
    #[error(transparent)]
    Sandbox(Box<rbuild_runtime::Error>),

    /// An ADD source (a URL, a git repository) could not be fetched.
    #[error("{0}")]
    Fetch(String),

    /// A builder failure while carrying out the step (a RUN --mount it cannot have...).
    #[error(transparent)]
    Cause(Box<Error>),

    /// The instruction cannot be carried out as written or with what it reads (a variable that does not expand, a
    /// COPY source or user that does not exist, a checksum that does not match...).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The exit code of a step that ran and failed, if this is one.
    pub fn step_exit_code(&self) -> Option<i32> {
        match self {
            Error::Step { source: StepError::Exit { code, .. }, .. } => Some(*code),
            _ => None,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::{Location, Span};

    #[test]
    fn a_failed_step_reads_as_its_location_and_cause_and_keeps_the_exit_code() {
        let text = "FROM busybox\nRUN false\n";
        let at = Location::new("Dockerfile", text, Span::line(2));
        let exit = StepError::Exit {
            process: "/bin/sh -c false".into(),
            code: 1,
            tail: vec!["oops".into()],
            notes: vec!["the step ran as root".into()],
        };
        let e = Error::Step { at: Box::new(at), source: exit };
        assert_eq!(e.step_exit_code(), Some(1));
        assert_eq!(
            e.to_string(),
            "Dockerfile:2: process \"/bin/sh -c false\" did not complete successfully: exit code: 1; its last \
             output:\noops\n(note: the step ran as root)\n   |\n 2 | RUN false"
        );
        assert!(std::error::Error::source(&e).is_some(), "the cause stays reachable");
    }
}
