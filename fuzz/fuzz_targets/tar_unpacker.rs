//! Any bytes as a layer tar, unpacked into a fresh directory in both modes: errors are fine, panics and writes
//! outside the directory are not (the directory is checked to hold everything written).
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbuild_builder::layer::{ApplyMode, ApplyOptions, apply_tar};

fuzz_target!(|data: &[u8]| {
    let base = std::env::temp_dir().join(format!("rbuild-fuzz-tar-{}", std::process::id()));
    for mode in [ApplyMode::Snapshot, ApplyMode::Merge] {
        let _ = std::fs::remove_dir_all(&base);
        let dest = base.join("root");
        std::fs::create_dir_all(&dest).unwrap();
        let _ = apply_tar(data, &dest, &ApplyOptions::new(mode, "fuzz"));
        // Nothing may appear beside the destination.
        let beside: Vec<_> = std::fs::read_dir(&base).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(beside, vec![std::ffi::OsString::from("root")], "the layer wrote outside its directory");
    }
    let _ = std::fs::remove_dir_all(&base);
});
