//! The registry client as the store's way to fetch remote layers ([`RemoteBlobs`]), made only when a remote layer
//! is first needed (most commands never need one).

use std::io::Write;
use std::sync::{Arc, OnceLock};

use rbuild_registry::Client;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::RemoteBlobs;

impl RemoteBlobs for Client {
    fn fetch(&self, registry: &str, repository: &str, digest: &Digest, out: &mut dyn Write) -> Result<u64> {
        self.fetch_blob(registry, repository, digest.as_str(), None, out).map_err(|e| Error::Registry(Box::new(e)))
    }
}

type MakeClient = Box<dyn Fn() -> std::result::Result<Arc<Client>, String> + Send + Sync>;

/// A registry client made on first use by `make` (its error, a sentence, is kept and repeated).
pub struct LazyRegistry {
    make: MakeClient,
    client: OnceLock<std::result::Result<Arc<Client>, String>>,
}

impl LazyRegistry {
    pub fn new(make: impl Fn() -> std::result::Result<Arc<Client>, String> + Send + Sync + 'static) -> Self {
        LazyRegistry { make: Box::new(make), client: OnceLock::new() }
    }
}

impl std::fmt::Debug for LazyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyRegistry").field("made", &self.client.get().is_some()).finish()
    }
}

impl RemoteBlobs for LazyRegistry {
    fn fetch(&self, registry: &str, repository: &str, digest: &Digest, out: &mut dyn Write) -> Result<u64> {
        match self.client.get_or_init(|| (self.make)()) {
            Ok(client) => client.fetch(registry, repository, digest, out),
            Err(reason) => Err(Error::BadRequest { what: "the registry client".into(), reason: reason.clone() }),
        }
    }
}
