//! Images in and out of the store: reading image documents (`image`), OCI layout directories (`layout`), and
//! OCI/Docker archives for `rbuild save` and `rbuild load` (`archive`), and every output of a build (`outputs`).

pub mod archive;
pub mod image;
pub mod layout;
pub mod outputs;

pub use archive::{ArchiveFormat, load, load_as, save};
pub use image::{LayerRef, LoadedImage, load_image, load_named};
pub use layout::{export_layout, import_layout, import_layout_reference};
