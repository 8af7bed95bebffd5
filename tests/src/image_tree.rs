//! An image flattened for comparison with another builder's, read independently of rbuild's code: a Docker
//! archive (`docker save`, or rbuild's `-o type=docker`), its layers applied in order with their whiteouts into
//! path -> every field a file has (type, mode, owner, size, content digest, link target, hard-link group, xattrs,
//! mtime), beside the image config and history. `differences` lists where two such images disagree.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use sha2::Digest;

/// One path of a flattened image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// `file`, `dir`, `symlink`, `char`, `block`, `fifo`.
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    /// sha256 of a regular file's content.
    pub digest: String,
    /// A symlink's target; a device's `major,minor`.
    pub target: String,
    /// Extended attributes (PAX `SCHILY.xattr.*`), values in hex.
    pub xattrs: BTreeMap<String, String>,
    /// Seconds since the epoch; negative before 1970 (PAX `mtime`).
    pub mtime: i64,
    /// The first path (in byte order) of the hard-link group this path belongs to, when it has other names.
    pub link_group: Option<String>,
    inode: u64,
}

/// The filesystem, config and history of one image.
#[derive(Debug)]
pub struct ImageTree {
    pub files: BTreeMap<String, TreeEntry>,
    /// The image config (the whole JSON document).
    pub config: serde_json::Value,
}

/// Where two images disagree: a path's field (`kind`, `mode`, ...), or a config field (path `config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub field: String,
    pub left: String,
    pub right: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {} | {}", self.path, self.field, self.left, self.right)
    }
}

impl ImageTree {
    /// Read the first image of a Docker archive (`manifest.json` naming a config and layer tars).
    pub fn from_docker_archive(archive: &Path) -> anyhow::Result<ImageTree> {
        ImageTree::from_docker_archive_cached(archive, &mut BaseLayers::default())
    }

    /// As `from_docker_archive`, taking a first layer already flattened from `base` (and leaving it there): the
    /// base image's layer, often the largest, is then read once for many images built on it.
    pub fn from_docker_archive_cached(archive: &Path, base: &mut BaseLayers) -> anyhow::Result<ImageTree> {
        use std::io::{Seek, SeekFrom};
        let mut file = std::fs::File::open(archive)?;
        // Where each member is, and the small JSON members themselves.
        let mut members: HashMap<String, (u64, u64)> = HashMap::new();
        let mut json: HashMap<String, Vec<u8>> = HashMap::new();
        let mut tar = tar::Archive::new(&file);
        for entry in tar.entries_with_seek()? {
            let mut entry = entry?;
            if entry.header().entry_type().is_file() {
                let name = String::from_utf8_lossy(&entry.path_bytes()).trim_start_matches("./").to_string();
                if entry.size() < (1 << 20) {
                    let mut data = Vec::new();
                    entry.read_to_end(&mut data)?;
                    json.insert(name.clone(), data);
                }
                members.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
        let missing = |name: &str| anyhow::anyhow!("{}: no member {name}", archive.display());
        let manifest: serde_json::Value =
            serde_json::from_slice(json.get("manifest.json").ok_or_else(|| missing("manifest.json"))?)?;
        let first = &manifest[0];
        let config_name = first["Config"].as_str().unwrap_or_default();
        let config: serde_json::Value =
            serde_json::from_slice(json.get(config_name).ok_or_else(|| missing(config_name))?)?;
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| a.iter().map(|d| d.as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default();
        let mut state = Flattening::default();
        for (i, layer) in first["Layers"].as_array().cloned().unwrap_or_default().iter().enumerate() {
            let diff_id = diff_ids.get(i).cloned().unwrap_or_default();
            if i == 0
                && let Some(cached) = base.0.get(&diff_id)
            {
                state = cached.clone();
                continue;
            }
            let name = layer.as_str().unwrap_or_default();
            let (offset, size) = *members.get(name).ok_or_else(|| missing(name))?;
            file.seek(SeekFrom::Start(offset))?;
            let mut data = Vec::with_capacity(size as usize);
            (&mut file).take(size).read_to_end(&mut data)?;
            let reader: Box<dyn Read> = if data.starts_with(&[0x1f, 0x8b]) {
                Box::new(flate2::read::GzDecoder::new(&data[..]))
            } else {
                Box::new(&data[..])
            };
            state.apply_layer(reader)?;
            if i == 0 && !diff_id.is_empty() {
                base.0.insert(diff_id, state.clone());
            }
        }
        Ok(ImageTree { files: state.finish(), config })
    }

    /// The config fields a builder decides (`config.Env`, `config.Cmd`, ...), with null, `[]` and `{}` as absent.
    pub fn config_fields(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(obj) = self.config["config"].as_object() {
            for (k, v) in obj {
                let empty = v.is_null()
                    || v.as_array().is_some_and(|a| a.is_empty())
                    || v.as_object().is_some_and(|o| o.is_empty())
                    || v.as_str().is_some_and(str::is_empty);
                if !empty {
                    out.insert(format!("config.{k}"), v.to_string());
                }
            }
        }
        for k in ["architecture", "os", "variant"] {
            if let Some(v) = self.config.get(k).filter(|v| !v.is_null()) {
                out.insert(k.to_string(), v.to_string());
            }
        }
        let layers = self.config["rootfs"]["diff_ids"].as_array().map(Vec::len).unwrap_or(0);
        out.insert("rootfs.layers".to_string(), layers.to_string());
        out
    }

    /// The history as `created_by` lines, `(empty)` marking entries without a layer. The builder's name that
    /// ends a step's line (`# buildkit`, `# rbuild`) is written `# builder`: it names who built, not what.
    pub fn history(&self) -> Vec<String> {
        self.config["history"]
            .as_array()
            .map(|h| {
                h.iter()
                    .map(|e| {
                        let empty = if e["empty_layer"].as_bool().unwrap_or(false) { " (empty)" } else { "" };
                        let line = e["created_by"].as_str().unwrap_or_default();
                        let line = ["# buildkit", "# rbuild"]
                            .iter()
                            .find_map(|b| line.strip_suffix(b))
                            .map_or_else(|| line.to_string(), |l| format!("{l}# builder"));
                        format!("{line}{empty}")
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Every difference between `left` and `right`. An mtime at or after `built_after` (seconds) is the build's own
/// time, which two builds cannot share: such mtimes compare as `build time`.
pub fn differences(left: &ImageTree, right: &ImageTree, built_after: i64) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut diff = |path: &str, field: &str, l: String, r: String| {
        if l != r {
            out.push(Difference { path: path.to_string(), field: field.to_string(), left: l, right: r });
        }
    };
    let (lc, rc) = (left.config_fields(), right.config_fields());
    for key in lc.keys().chain(rc.keys()).collect::<std::collections::BTreeSet<_>>() {
        let get = |m: &BTreeMap<String, String>| m.get(key).cloned().unwrap_or_else(|| "-".into());
        diff("config", key, get(&lc), get(&rc));
    }
    let (lh, rh) = (left.history(), right.history());
    for i in 0..lh.len().max(rh.len()) {
        let get = |h: &Vec<String>| h.get(i).cloned().unwrap_or_else(|| "-".into());
        diff("history", &i.to_string(), get(&lh), get(&rh));
    }
    let time = |t: i64| if t >= built_after { "build time".to_string() } else { t.to_string() };
    for path in left.files.keys().chain(right.files.keys()).collect::<std::collections::BTreeSet<_>>() {
        match (left.files.get(path), right.files.get(path)) {
            (Some(l), Some(r)) => {
                diff(path, "kind", l.kind.into(), r.kind.into());
                diff(path, "mode", format!("{:o}", l.mode), format!("{:o}", r.mode));
                diff(path, "owner", format!("{}:{}", l.uid, l.gid), format!("{}:{}", r.uid, r.gid));
                if l.kind == "file" && r.kind == "file" {
                    diff(path, "size", l.size.to_string(), r.size.to_string());
                    diff(path, "content", l.digest.clone(), r.digest.clone());
                }
                diff(path, "target", l.target.clone(), r.target.clone());
                diff(path, "xattrs", format!("{:?}", l.xattrs), format!("{:?}", r.xattrs));
                diff(path, "mtime", time(l.mtime), time(r.mtime));
                let group = |e: &TreeEntry| e.link_group.clone().unwrap_or_else(|| "-".into());
                diff(path, "hardlinks", group(l), group(r));
            }
            (l, r) => {
                let presence = |e: Option<&TreeEntry>| e.map(|e| e.kind.to_string()).unwrap_or_else(|| "absent".into());
                diff(path, "presence", presence(l), presence(r));
            }
        }
    }
    out
}

/// First layers already flattened, by diff_id (see `ImageTree::from_docker_archive_cached`).
#[derive(Debug, Default)]
pub struct BaseLayers(HashMap<String, Flattening>);

/// The layers applied so far; inodes tell hard links apart from copies.
#[derive(Debug, Default, Clone)]
struct Flattening {
    files: BTreeMap<String, TreeEntry>,
    next_inode: u64,
}

/// `/a/b` for a tar path `./a/b/`, `a/b`; `/` for `./`.
fn normalise(path: &str) -> String {
    let trimmed = path.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
    format!("/{trimmed}")
}

impl Flattening {
    fn remove(&mut self, path: &str, keep_self: bool) {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.files.retain(|p, _| !(p.starts_with(&prefix) || (!keep_self && p == path)));
    }

    fn apply_layer(&mut self, reader: impl Read) -> anyhow::Result<()> {
        let mut archive = tar::Archive::new(reader);
        let mut opaque = Vec::new();
        let mut added = std::collections::HashSet::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = normalise(&String::from_utf8_lossy(&entry.path_bytes()));
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
            if name == ".wh..wh..opq" {
                opaque.push(if dir.is_empty() { "/".to_string() } else { dir.to_string() });
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                self.remove(&format!("{dir}/{hidden}"), false);
                continue;
            }
            let mut xattrs = BTreeMap::new();
            let mut pax_mtime = None;
            if let Some(pax) = entry.pax_extensions()? {
                for ext in pax.flatten() {
                    let key = ext.key().unwrap_or_default().to_string();
                    if let Some(attr) = key.strip_prefix("SCHILY.xattr.") {
                        xattrs.insert(attr.to_string(), hex::encode(ext.value_bytes()));
                    } else if key == "mtime" {
                        pax_mtime = ext.value().ok().and_then(|v| v.parse::<f64>().ok()).map(|t| t.floor() as i64);
                    }
                }
            }
            let header = entry.header().clone();
            let mtime = pax_mtime.unwrap_or(header.mtime()? as i64);
            let target = entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
            let typ = header.entry_type();
            if typ == tar::EntryType::Link {
                let source = normalise(&target);
                let Some(linked) = self.files.get(&source).cloned() else {
                    anyhow::bail!("hard link {path} to {target}, which is not in the image");
                };
                if linked.kind != "dir" {
                    self.remove(&path, true);
                }
                added.insert(path.clone());
                self.files.insert(path, linked);
                continue;
            }
            let kind = match typ {
                tar::EntryType::Regular | tar::EntryType::Continuous => "file",
                tar::EntryType::Directory => "dir",
                tar::EntryType::Symlink => "symlink",
                tar::EntryType::Char => "char",
                tar::EntryType::Block => "block",
                tar::EntryType::Fifo => "fifo",
                other => anyhow::bail!("{path}: unexpected tar entry type {other:?}"),
            };
            let mut content = Vec::new();
            if kind == "file" {
                entry.read_to_end(&mut content)?;
            }
            let target = match kind {
                "char" | "block" => format!(
                    "{},{}",
                    header.device_major()?.unwrap_or_default(),
                    header.device_minor()?.unwrap_or_default()
                ),
                _ => target,
            };
            self.next_inode += 1;
            let e = TreeEntry {
                kind,
                mode: header.mode()? & 0o7777,
                uid: header.uid()?,
                gid: header.gid()?,
                size: content.len() as u64,
                digest: if kind == "file" { hex::encode(sha2::Sha256::digest(&content)) } else { String::new() },
                target,
                xattrs,
                mtime,
                link_group: None,
                inode: self.next_inode,
            };
            if kind != "dir" {
                self.remove(&path, true);
            }
            added.insert(path.clone());
            self.files.insert(path, e);
        }
        // An opaque directory hides what lower layers had below it, not what this layer added.
        for dir in opaque {
            let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
            self.files.retain(|p, _| !p.starts_with(&prefix) || added.contains(p));
        }
        Ok(())
    }

    /// The flattened tree, each path of a hard-link group naming the group's first path.
    fn finish(self) -> BTreeMap<String, TreeEntry> {
        let mut first_of: HashMap<u64, (String, usize)> = HashMap::new();
        for (path, e) in &self.files {
            let slot = first_of.entry(e.inode).or_insert_with(|| (path.clone(), 0));
            slot.1 += 1;
        }
        let mut files = self.files;
        for e in files.values_mut() {
            if let Some((first, _)) = first_of.get(&e.inode).filter(|(_, n)| *n > 1) {
                e.link_group = Some(first.clone());
            }
        }
        files
    }
}
