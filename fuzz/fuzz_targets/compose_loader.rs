//! Any bytes as a Compose file: YAML parsing, interpolation, normalisation and the typed validation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbuild_builder::compose::{interpolate, merge, model, yaml};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = interpolate::interpolate(&text, &|n| (n.len() % 2 == 0).then(|| n.to_string()));
    if let Ok(mut doc) = yaml::parse(&text) {
        model::strip_extensions(&mut doc);
        merge::normalise(&mut doc);
        let copy = doc.clone();
        merge::merge(&mut doc, copy);
        let _ = model::validate(&doc);
        let _ = yaml::render(&doc);
    }
});
