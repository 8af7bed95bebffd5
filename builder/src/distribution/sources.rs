//! Where blobs are known to exist remotely: `sources/<hex>` lists `registry/repository` lines. Written after a
//! pull or push (appends are whole lines, so concurrent writers cannot corrupt one another's); read when pushing,
//! to mount instead of upload.

use std::fs::{self, OpenOptions};
use std::io::Write;

use crate::digest::Digest;
use crate::store::Store;

pub(crate) fn record(store: &Store, digest: &Digest, registry: &str, repository: &str) {
    let dir = store.root().join("sources");
    let line = format!("{registry}/{repository}\n");
    if known(store, digest).iter().any(|l| format!("{l}\n") == line) {
        return;
    }
    if fs::create_dir_all(&dir).is_ok()
        && let Ok(mut f) = OpenOptions::new().create(true).append(true).open(dir.join(digest.hex()))
    {
        let _ = f.write_all(line.as_bytes());
    }
}

pub(crate) fn known(store: &Store, digest: &Digest) -> Vec<String> {
    fs::read_to_string(store.root().join("sources").join(digest.hex()))
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}
