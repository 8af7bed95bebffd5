//! Images in and out of the store: reading image documents (`image`), OCI layout directories (`layout`), and
//! OCI/Docker archives for `rbuild save` and `rbuild load` (`archive`).

pub mod archive;
pub mod image;
pub mod layout;

pub use archive::{ArchiveFormat, load, load_as, save};
pub use image::{LayerRef, LoadedImage, load_image, load_named};
pub use layout::{export_layout, import_layout, import_layout_reference};
