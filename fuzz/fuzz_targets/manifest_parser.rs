//! Any bytes as a registry manifest or index: the blob list and the platform choice must return, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbuild_registry::platform::{Platform, select};

fuzz_target!(|data: &[u8]| {
    let _ = rbuild_builder::distribution::manifest_blobs(data, "fuzz");
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = select(&v, &Platform::host());
    }
});
