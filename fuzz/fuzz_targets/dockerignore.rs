//! Any bytes as a .dockerignore, matched against paths taken from the same input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbuild_builder::context::IgnoreMatcher;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(m) = IgnoreMatcher::parse(&text, ".dockerignore") {
        for path in text.lines().take(16).chain(["a/b/c", "Dockerfile", ".git/x", ""]) {
            let _ = m.is_excluded(path);
        }
    }
});
