//! Image archives: `rbuild save` (an OCI archive: a tar of an OCI layout; or a Docker archive as `docker load`
//! reads it: `manifest.json`, `repositories`, configs and uncompressed layer tars) and `rbuild load` (either
//! archive, plain or gzip/zstd compressed, or an OCI layout directory). Archives are written deterministically
//! beside their destination and renamed into place; everything loaded is verified before it is named.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rbuild_registry::Reference;
use serde_json::{Value, json};

use super::image::{DOCKER_CONFIG, DOCKER_MANIFEST, descriptor, load_image, malformed, to_json};
use super::layout::{export_layout, import_layout};
use crate::digest::{Digest, HashingWriter, digest_reader};
use crate::error::{Error, Result};
use crate::layer::{ApplyMode, ApplyOptions, TreeEntry, apply_tar, collect_tree, decompressed};
use crate::platform::Platform;
use crate::store::{ImageRecord, Store};

/// The archive formats `rbuild save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Oci,
    Docker,
}

/// The image's files as one tar (`--output type=tar`): its snapshots merged, every entry with the owner it has
/// in the image (not the owner its file has on disk, which rootless is the invoking user or a subordinate id).
pub fn filesystem_tar(store: &Store, snapshots: &[PathBuf], ids: &crate::layer::IdMap, out: impl Write) -> Result<()> {
    tar_of_merged(store, &[(String::new(), snapshots.to_vec())], ids, out)
}

/// Write several platforms' filesystems as one tar, each under a directory named for its platform (`linux_amd64/`),
/// as BuildKit's tar exporter writes a multi-platform result.
pub fn filesystem_tar_per_platform(
    store: &Store,
    parts: &[(String, Vec<PathBuf>)],
    ids: &crate::layer::IdMap,
    out: impl Write,
) -> Result<()> {
    tar_of_merged(store, parts, ids, out)
}

/// Merge each part's snapshots into its directory (`""`: the root) of a scratch tree, and write the tree as a tar.
fn tar_of_merged(
    store: &Store,
    parts: &[(String, Vec<PathBuf>)],
    ids: &crate::layer::IdMap,
    out: impl Write,
) -> Result<()> {
    let dir = store.tmp().path("output");
    let written = (|| {
        for (name, snapshots) in parts {
            let sub = if name.is_empty() { dir.clone() } else { dir.join(name) };
            crate::sandbox::snapshotter::merge_snapshots_for(snapshots, &["/".to_string()], &sub, ids)?;
        }
        let entries = collect_tree(&dir)?;
        let mut out = crate::layer::tar_writer::write_tar(&entries, out, None)?;
        out.flush().map_err(Error::io("write", &dir))
    })();
    let _ = crate::fsops::remove_path(&dir);
    written
}

/// Write a directory as a deterministic tar (owners 0:0, mtime 0) to `out`.
fn tar_directory(dir: &Path, out: impl Write) -> Result<()> {
    let entries: Vec<TreeEntry> = collect_tree(dir)?
        .into_iter()
        .map(|mut e| {
            e.uid = 0;
            e.gid = 0;
            e.mtime = 0;
            e.xattrs.clear();
            e
        })
        .collect();
    let mut out = crate::layer::tar_writer::write_tar(&entries, out, Some(0))?;
    out.flush().map_err(Error::io("write archive", dir))
}

/// Write to `dest` atomically: into a temporary file beside it, renamed when complete.
fn write_file_atomically(dest: &Path, f: impl FnOnce(&mut io::BufWriter<fs::File>) -> Result<()>) -> Result<()> {
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = parent.join(format!(
        ".{}.rbuild-{}",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("archive"),
        crate::fsops::unique_suffix()
    ));
    // Errors name `dest`, the file the user asked for, not the temporary name beside it.
    let file = fs::File::create(&tmp).map_err(Error::io("create", dest))?;
    let mut w = io::BufWriter::with_capacity(1 << 20, file);
    let result = f(&mut w).and_then(|()| {
        let file = w.into_inner().map_err(|e| Error::io("write", dest)(e.into_error()))?;
        file.sync_all().map_err(Error::io("write", dest))
    });
    match result {
        Ok(()) => fs::rename(&tmp, dest).map_err(Error::io("rename", dest)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// `rbuild save`: write `images` to `dest` (`-` is standard output) in `format`.
/// `platform` picks the image of an index for a Docker archive (which holds one platform's image); the host's by
/// default. An OCI archive keeps indexes whole.
pub fn save(
    store: &Store,
    images: &[(Reference, Digest)],
    format: ArchiveFormat,
    dest: &Path,
    platform: Option<&Platform>,
) -> Result<()> {
    if format == ArchiveFormat::Oci && dest.is_dir() {
        // An existing directory receives an OCI layout (added to whatever layout it holds).
        return export_layout(store, images, dest);
    }
    let staging = store.tmp().path("save");
    fs::create_dir_all(&staging).map_err(Error::io("create", &staging))?;
    let result = (|| {
        match format {
            ArchiveFormat::Oci => export_layout(store, images, &staging)?,
            ArchiveFormat::Docker => stage_docker_archive(store, images, &staging, platform)?,
        }
        if dest == Path::new("-") {
            let stdout = io::stdout();
            let mut lock = io::BufWriter::new(stdout.lock());
            tar_directory(&staging, &mut lock)
        } else {
            write_file_atomically(dest, |w| tar_directory(&staging, w))
        }
    })();
    let _ = crate::fsops::remove_path(&staging);
    result
}

/// Lay out a Docker archive in `dir`: per image `<config hex>.json`, `<diff_id hex>/layer.tar` (uncompressed,
/// verified against the config's diff_ids), then `manifest.json` and `repositories`.
fn stage_docker_archive(
    store: &Store,
    images: &[(Reference, Digest)],
    dir: &Path,
    platform: Option<&Platform>,
) -> Result<()> {
    let mut manifest = Vec::new();
    let mut repositories = serde_json::Map::new();
    for (name, digest) in images {
        let img = match platform {
            Some(p) => super::image::load_image_for(store, digest, p)?,
            None => load_image(store, digest)?,
        };
        let config_file = format!("{}.json", img.config_digest.hex());
        fs::write(dir.join(&config_file), &img.config_bytes).map_err(Error::io("write", dir.join(&config_file)))?;
        let diff_ids = img.diff_ids()?;
        if diff_ids.len() != img.layers.len() {
            return Err(malformed(
                &format!("image {name}"),
                &format!("{} layers but {} diff_ids", img.layers.len(), diff_ids.len()),
            ));
        }
        // Remote layers fetched first, several at once.
        store.ensure_blobs(&img.layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>())?;
        let mut layer_files = Vec::new();
        for (layer, diff_id) in img.layers.iter().zip(&diff_ids) {
            let rel = format!("{}/layer.tar", diff_id.hex());
            let path = dir.join(&rel);
            if !path.is_file() {
                fs::create_dir_all(dir.join(diff_id.hex())).map_err(Error::io("create", dir))?;
                let mut reader = decompressed(store.open_blob(&layer.digest)?)?;
                let file = fs::File::create(&path).map_err(Error::io("create", &path))?;
                let mut w = HashingWriter::new(io::BufWriter::new(file));
                io::copy(&mut reader, &mut w).map_err(Error::io("write", &path))?;
                let (actual, _, buf) = w.finish();
                buf.into_inner().map_err(|e| Error::io("write", &path)(e.into_error()))?;
                if &actual != diff_id {
                    return Err(Error::ContentMismatch {
                        what: format!("layer {} of {name}", layer.digest),
                        expected: diff_id.to_string(),
                        actual: actual.to_string(),
                    });
                }
            }
            layer_files.push(rel);
        }
        let tag = name.familiar();
        manifest.push(json!({ "Config": config_file, "RepoTags": [tag], "Layers": layer_files }));
        if let (Some(t), Some(last)) = (&name.tag, diff_ids.last()) {
            let repo = tag.rsplit_once(':').map_or(tag.as_str(), |(r, _)| r).to_string();
            let entry = repositories.entry(repo).or_insert_with(|| json!({}));
            entry[t] = json!(last.hex());
        }
    }
    fs::write(dir.join("manifest.json"), to_json(&Value::Array(manifest))?).map_err(Error::io("write", dir))?;
    fs::write(dir.join("repositories"), to_json(&Value::Object(repositories))?).map_err(Error::io("write", dir))
}

/// `rbuild load`: import an OCI layout directory, or an OCI or Docker archive (file or `-` for stdin, plain or
/// compressed). Returns the images named.
pub fn load(store: &Store, input: &Path) -> Result<Vec<ImageRecord>> {
    load_as(store, input, None)
}

/// [`load`], naming images the input names only by a tag (or not at all) `repository` instead of after the
/// input's file or directory name.
pub fn load_as(store: &Store, input: &Path, repository: Option<&str>) -> Result<Vec<ImageRecord>> {
    let default_repo = match repository {
        Some(r) => {
            Reference::parse(r).map_err(|e| malformed(&format!("--name {r}"), &format!("not an image name: {e}")))?;
            r.to_string()
        }
        None => default_repository(input),
    };
    if input.is_dir() {
        return import_layout(store, input, &default_repo);
    }
    let staging = store.tmp().path("load");
    fs::create_dir_all(&staging).map_err(Error::io("create", &staging))?;
    let result = (|| {
        let reader: Box<dyn Read> = if input == Path::new("-") {
            Box::new(io::stdin())
        } else {
            Box::new(fs::File::open(input).map_err(Error::io("open", input))?)
        };
        let name = input.display().to_string();
        apply_tar(decompressed(reader)?, &staging, &ApplyOptions::new(ApplyMode::Merge, name.clone()))?;
        if staging.join("oci-layout").is_file() && staging.join("index.json").is_file() {
            import_layout(store, &staging, &default_repo)
        } else if staging.join("manifest.json").is_file() {
            import_docker_archive(store, &staging)
        } else {
            Err(malformed(
                &format!("archive {name}"),
                "neither an OCI archive (oci-layout, index.json) nor a Docker archive (manifest.json)",
            ))
        }
    })();
    let _ = crate::fsops::remove_path(&staging);
    result
}

/// The repository for images a layout names only by tag: the directory's (or archive's) name, e.g.
/// `busybox` for `images/busybox` or `busybox.tar`; `imported` when that is not a valid name.
fn default_repository(input: &Path) -> String {
    let stem = input.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let stem = stem.split('.').next().unwrap_or("").to_ascii_lowercase();
    if !stem.is_empty() && Reference::parse(&stem).is_ok() { stem } else { "imported".to_string() }
}

fn archive_member(dir: &Path, rel: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if p.is_absolute() || p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(malformed("Docker archive manifest.json", &format!("path {rel:?} leaves the archive")));
    }
    Ok(dir.join(p))
}

/// Import an unpacked Docker archive: each layer file is stored as a blob as it is (its diff_id checked against
/// the config), and a Docker schema2 manifest is written for each image.
fn import_docker_archive(store: &Store, dir: &Path) -> Result<Vec<ImageRecord>> {
    let bytes = fs::read(dir.join("manifest.json")).map_err(Error::io("read", dir.join("manifest.json")))?;
    let manifest: Value = serde_json::from_slice(&bytes)
        .map_err(|source| Error::Json { what: "Docker archive manifest.json".into(), source })?;
    let mut out = Vec::new();
    for entry in manifest.as_array().ok_or_else(|| malformed("manifest.json", "not an array"))? {
        let config_path = archive_member(dir, entry["Config"].as_str().unwrap_or_default())?;
        let config_bytes = fs::read(&config_path).map_err(Error::io("read", &config_path))?;
        let config: Value = serde_json::from_slice(&config_bytes)
            .map_err(|source| Error::Json { what: config_path.display().to_string(), source })?;
        let config_digest = store.put_blob_bytes(&config_bytes)?;
        let diff_ids = config["rootfs"]["diff_ids"].as_array().cloned().unwrap_or_default();
        let layer_paths = entry["Layers"].as_array().cloned().unwrap_or_default();
        if diff_ids.len() != layer_paths.len() {
            return Err(malformed("Docker archive", "the number of layers differs from the config's diff_ids"));
        }
        let mut layers = Vec::new();
        for (rel, want) in layer_paths.iter().zip(&diff_ids) {
            let path = archive_member(dir, rel.as_str().unwrap_or_default())?;
            let want = Digest::parse(want.as_str().unwrap_or_default())?;
            let file = fs::File::open(&path).map_err(Error::io("open", &path))?;
            let (diff_id, _) = digest_reader(decompressed(file)?).map_err(Error::io("read", &path))?;
            if diff_id != want {
                return Err(Error::ContentMismatch {
                    what: format!("layer {}", path.display()),
                    expected: want.to_string(),
                    actual: diff_id.to_string(),
                });
            }
            let mut magic = [0u8; 4];
            let n = fs::File::open(&path).and_then(|mut f| f.read(&mut magic)).map_err(Error::io("read", &path))?;
            let media_type = match &magic[..n] {
                [0x1f, 0x8b, ..] => "application/vnd.docker.image.rootfs.diff.tar.gzip",
                [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
                _ => "application/vnd.docker.image.rootfs.diff.tar",
            };
            let file = fs::File::open(&path).map_err(Error::io("open", &path))?;
            let (digest, size) = store.put_blob(file, None)?;
            layers.push(super::image::LayerRef { digest, size, media_type: media_type.to_string() });
        }
        let config_desc = descriptor(DOCKER_CONFIG, config_bytes.len() as u64, &config_digest)?;
        let manifest_bytes = super::image::manifest_json(DOCKER_MANIFEST, config_desc, &layers)?;
        let manifest_digest = store.put_blob_bytes(&manifest_bytes)?;
        let desc = descriptor(DOCKER_MANIFEST, manifest_bytes.len() as u64, &manifest_digest)?;
        for tag in entry["RepoTags"].as_array().into_iter().flatten() {
            let name = Reference::parse(tag.as_str().unwrap_or_default())?;
            store.tag_image(&name, &desc)?;
            out.push(ImageRecord { name, descriptor: desc.clone() });
        }
    }
    Ok(out)
}
