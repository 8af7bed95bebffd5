//! The engine's [`ImageSource`] over the store: an image the store has, an OCI layout (`oci-layout://PATH[:TAG]`,
//! imported into the store), or a registry image pulled into the store with the registry client.

use std::sync::Arc;

use rbuild_registry::Client;

use crate::engine::ports::{ImageSource, Platform, PullPolicy};
use crate::error::Result;
use crate::export::image::LoadedImage;
use crate::export::image::load_image_for;
use crate::export::import_layout_reference;
use crate::store::Store;

/// Images from the store, OCI layouts and (with a client) registries.
#[derive(Debug)]
pub struct StoreImageSource<'a> {
    store: &'a Store,
    /// None: no registry may be asked (the store and layouts only).
    registry: Option<Arc<Client>>,
}

impl<'a> StoreImageSource<'a> {
    pub fn new(store: &'a Store, registry: Option<Arc<Client>>) -> Self {
        StoreImageSource { store, registry }
    }
}

impl ImageSource for StoreImageSource<'_> {
    fn resolve(&self, reference: &str, platform: &Platform, pull: PullPolicy) -> Result<LoadedImage> {
        if reference.starts_with("oci-layout://") {
            let digest = import_layout_reference(self.store, reference)?;
            return load_image_for(self.store, &digest, platform);
        }
        let client = match pull {
            PullPolicy::Never => None,
            PullPolicy::Missing | PullPolicy::Always => self.registry.as_deref(),
        };
        super::ensure_image(self.store, client, reference, pull == PullPolicy::Always, platform).map(|(image, _)| image)
    }
}
