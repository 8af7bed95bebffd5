//! Any bytes as a Dockerfile: parsing, validation, lowering to a graph and the build checks must return, never
//! panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = rbuild_builder::dockerfile::decode(data);
    if let Ok(df) = rbuild_builder::dockerfile::load("Dockerfile", &text) {
        let _ = rbuild_builder::dockerfile::lint::lint(&df, &text);
        let _ = rbuild_builder::engine::graph::lower(&df, "Dockerfile", &text, &Default::default(), &Default::default(), None);
    }
});
