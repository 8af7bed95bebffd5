//! Remembered downloads of ADD's URLs (`<store>/downloads/`): the content with its ETag and Last-Modified, so a
//! later build asks the server with a HEAD request whether it changed (as BuildKit does) and downloads it again
//! only when it did. An entry is `<sha256 of the URL>.json` (what the server said) beside `.data` (the content),
//! each written under a temporary name and renamed; a damaged entry is ignored and replaced.

use std::fs;
use std::path::{Path, PathBuf};

use rbuild_registry::{Client, UrlMeta};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// What was downloaded from a URL, as the server described it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Entry {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    size: u64,
}

/// The downloads directory of a store.
#[derive(Debug, Clone)]
pub struct UrlCache {
    dir: PathBuf,
}

impl UrlCache {
    pub fn new(dir: PathBuf) -> UrlCache {
        UrlCache { dir }
    }

    fn paths(&self, url: &str) -> (PathBuf, PathBuf) {
        let key = hex::encode(sha2::Sha256::digest(url.as_bytes()));
        (self.dir.join(format!("{key}.json")), self.dir.join(format!("{key}.data")))
    }

    /// The remembered content of `url` when the server says (HEAD) it has not changed: the same ETag, or without
    /// one the same Last-Modified and length. `None` when nothing is remembered, the server cannot tell, or HEAD
    /// fails (the caller then downloads). Returns the content's path and its Last-Modified.
    pub fn current(&self, client: &Client, url: &str) -> Option<(PathBuf, Option<String>)> {
        let (json, data) = self.paths(url);
        let entry: Entry = serde_json::from_slice(&fs::read(&json).ok()?).ok()?;
        if entry.url != url || fs::metadata(&data).ok()?.len() != entry.size {
            return None;
        }
        if entry.etag.is_none() && entry.last_modified.is_none() {
            return None;
        }
        let now = client.head_url(url).ok()?;
        let same = match &entry.etag {
            Some(etag) => now.etag.as_ref() == Some(etag),
            None => now.last_modified == entry.last_modified && now.size == entry.size,
        };
        same.then_some((data, entry.last_modified))
    }

    /// Remember `file` as the content of `url` (best effort: a download that cannot be remembered still counts).
    pub fn remember(&self, url: &str, file: &Path, meta: &UrlMeta) {
        if meta.etag.is_none() && meta.last_modified.is_none() {
            return;
        }
        let _ = (|| -> std::io::Result<()> {
            fs::create_dir_all(&self.dir)?;
            let (json, data) = self.paths(url);
            let entry = Entry {
                url: url.to_string(),
                etag: meta.etag.clone(),
                last_modified: meta.last_modified.clone(),
                size: meta.size,
            };
            let pid = crate::fsops::unique_suffix();
            let tmp_data = data.with_extension(format!("data.{pid}.tmp"));
            fs::copy(file, &tmp_data)?;
            fs::rename(&tmp_data, &data)?;
            let tmp_json = json.with_extension(format!("json.{pid}.tmp"));
            fs::write(&tmp_json, serde_json::to_vec(&entry).map_err(std::io::Error::other)?)?;
            fs::rename(&tmp_json, &json)
        })();
    }
}
