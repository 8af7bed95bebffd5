//! An image's filesystem and config read straight from an OCI layout, independently of rbuild's own code: the
//! layers (gzip or uncompressed tars) applied in order with their whiteouts, into a map of path -> entry.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

/// One path of the image's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// `file`, `dir`, `symlink`, `hardlink` or `other`.
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub content: Vec<u8>,
    /// A link's target.
    pub target: String,
}

/// The files and config of the first image of an OCI layout.
#[derive(Debug)]
pub struct ImageFiles {
    pub files: BTreeMap<String, FileEntry>,
    pub config: serde_json::Value,
}

impl ImageFiles {
    pub fn from_layout(layout: &Path) -> anyhow::Result<ImageFiles> {
        let blob = |digest: &str| -> anyhow::Result<Vec<u8>> {
            let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
            Ok(std::fs::read(layout.join("blobs/sha256").join(hex))?)
        };
        let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
        let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap_or_default().to_string();
        let manifest: serde_json::Value = serde_json::from_slice(&blob(&manifest_digest)?)?;
        let config = serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap_or_default())?)?;
        let mut files = BTreeMap::new();
        for layer in manifest["layers"].as_array().cloned().unwrap_or_default() {
            let data = blob(layer["digest"].as_str().unwrap_or_default())?;
            let reader: Box<dyn Read> =
                if data.starts_with(&[0x1f, 0x8b]) { Box::new(GzDecoder::new(&data[..])) } else { Box::new(&data[..]) };
            apply_layer(&mut files, reader)?;
        }
        Ok(ImageFiles { files, config })
    }
}

/// `/a/b` for a tar path `./a/b/`, `a/b`.
fn normalise(path: &str) -> String {
    let trimmed = path.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
    format!("/{trimmed}")
}

fn remove_tree(files: &mut BTreeMap<String, FileEntry>, path: &str, keep_self: bool) {
    let prefix = format!("{}/", path.trim_end_matches('/'));
    files.retain(|p, _| !(p.starts_with(&prefix) || (!keep_self && p == path)));
}

fn apply_layer(files: &mut BTreeMap<String, FileEntry>, reader: impl Read) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(reader);
    let mut opaque_here = Vec::new();
    let mut added = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalise(&raw_path);
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
        if name == ".wh..wh..opq" {
            opaque_here.push(if dir.is_empty() { "/".to_string() } else { dir.to_string() });
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            remove_tree(files, &format!("{dir}/{hidden}"), false);
            continue;
        }
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => "file",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hardlink",
            _ => "other",
        };
        let target = entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
        let mut e = FileEntry {
            kind,
            mode: header.mode()? & 0o7777,
            uid: header.uid()?,
            gid: header.gid()?,
            mtime: header.mtime()?,
            content: Vec::new(),
            target,
        };
        if kind == "file" {
            entry.read_to_end(&mut e.content)?;
        }
        if kind == "hardlink"
            && let Some(t) = files.get(&normalise(&e.target))
        {
            e.content = t.content.clone();
        }
        if kind != "dir" {
            remove_tree(files, &path, true);
        }
        added.push(path.clone());
        files.insert(path, e);
    }
    // An opaque directory hides what lower layers had below it, not what this layer added.
    for dir in opaque_here {
        let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
        files.retain(|p, _| !p.starts_with(&prefix) || added.contains(p));
    }
    Ok(())
}
