//! The store commands: `images`, `inspect`, `tag`, `rmi`, `prune`, `system df`, `fsck` (`save` and `load` are in
//! `archive_cmds.rs`).
//! Wherever an image is named, `oci-layout://PATH[:TAG]` works too (the image is imported first).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use rbuild_builder::digest::Digest;
use rbuild_builder::export;
use rbuild_builder::maintenance::PruneOptions;
use rbuild_builder::platform::Platform;
use rbuild_builder::store::Store;
use rbuild_registry::Reference;
use serde_json::json;

/// Open the store at `--root`, `$RBUILD_ROOT` or the default location.
pub fn open_store(root: &Option<PathBuf>) -> anyhow::Result<Store> {
    let root = root.clone().unwrap_or_else(Store::default_root);
    Store::open(&root).with_context(|| format!("cannot open the store at {}", root.display()))
}

/// The manifest digest an image argument names: a store name or digest, or `oci-layout://...`.
pub fn resolve(store: &Store, image: &str) -> anyhow::Result<(Option<Reference>, Digest)> {
    if image.starts_with("oci-layout://") {
        return Ok((None, export::import_layout_reference(store, image)?));
    }
    let record = store.resolve_image(image)?;
    Ok((Some(record.name.clone()), record.digest()?))
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The image (name, digest, or oci-layout://PATH[:TAG]).
    pub image: String,
    /// Of a multi-platform image, the image of this platform (default: the host's).
    #[arg(long)]
    pub platform: Option<String>,
}

/// The platforms an image holds: its config's, or an index's entries (`(platform, in the store)`).
fn platforms_of(store: &Store, digest: &Digest) -> Vec<(Platform, bool)> {
    let Ok(doc) = store.read_blob(digest).map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap_or_default())
    else {
        return Vec::new();
    };
    match doc["manifests"].as_array() {
        Some(entries) => {
            export::image::index_platforms(entries).into_iter().map(|(p, d)| (p, store.has_blob(&d))).collect()
        }
        None => export::load_image(store, digest)
            .ok()
            .and_then(|i| Platform::of_config(&i.config))
            .map(|p| vec![(p, true)])
            .unwrap_or_default(),
    }
}

pub fn images(store: &Store) -> anyhow::Result<ExitCode> {
    println!("{:<48} {:<14} {:>10}  PLATFORMS", "IMAGE", "DIGEST", "SIZE");
    for r in store.images()? {
        let digest = r.digest()?;
        let platforms = platforms_of(store, &digest);
        // An index: the images of it the store has (a pull fetches the platforms asked for).
        let size: u64 = platforms
            .iter()
            .filter(|(_, present)| *present)
            .filter_map(|(p, _)| export::image::load_image_for(store, &digest, p).ok())
            .map(|i| i.layers.iter().map(|l| l.size).sum::<u64>() + i.config_bytes.len() as u64)
            .sum();
        let shown: Vec<String> =
            platforms.iter().map(|(p, present)| if *present { p.to_string() } else { format!("({p})") }).collect();
        println!("{:<48} {:<14} {:>10}  {}", r.name.familiar(), &digest.hex()[..12], human_size(size), shown.join(","));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(store: &Store, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let (name, digest) = resolve(store, &args.image)?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p).context("--platform")?,
        None => Platform::host(),
    };
    let img = export::image::load_image_for(store, &digest, &platform)?;
    let manifest: serde_json::Value = serde_json::from_slice(&img.manifest_bytes)?;
    let mut out = json!({
        "Name": name.map(|n| n.to_string()),
        "Digest": img.manifest_digest.as_str(),
        "Manifest": manifest,
        "Config": img.config,
    });
    if img.manifest_digest != digest {
        out["Index"] = json!(digest.as_str());
        out["Platforms"] =
            json!(platforms_of(store, &digest).into_iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>());
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

pub fn tag(store: &Store, source: &str, target: &str) -> anyhow::Result<ExitCode> {
    let (_, digest) = resolve(store, source)?;
    let img = export::load_image(store, &digest)?;
    let descriptor = if img.manifest_digest == digest {
        img.descriptor()?
    } else {
        let size = std::fs::metadata(store.blob_path(&digest))?.len();
        rbuild_builder::export::image::descriptor(rbuild_builder::export::image::OCI_INDEX, size, &digest)?
    };
    store.tag_image(&Reference::parse(target)?, &descriptor)?;
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(store: &Store, images: &[String]) -> anyhow::Result<ExitCode> {
    for image in images {
        let record = store.resolve_image(image)?;
        store.untag_image(&record.name)?;
        println!("Untagged: {}", record.name.familiar());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove cache mounts.
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Keep this much storage (e.g. 10GB, 512MB); unreferenced data goes oldest first until the store fits.
    #[arg(long, value_parser = parse_size)]
    pub keep_storage: Option<u64>,
}

pub fn prune(store: &Store, args: PruneArgs, userns_choice: Option<&str>) -> anyhow::Result<ExitCode> {
    let opts = PruneOptions { all: args.all, keep_storage: args.keep_storage };
    let mode = rbuild_runtime::userns::detect_with(userns_choice)?;
    let ops = rbuild_builder::sandbox::tree_ops::tree_ops_for(&rbuild_runtime::Runtime::current()?, mode);
    let r = store.prune(opts, ops.as_ref())?;
    println!(
        "Removed {} blobs, {} snapshots, {} cache mounts; reclaimed {}",
        r.blobs,
        r.snapshots,
        r.mounts,
        human_size(r.bytes)
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show how much space the store uses, by kind.
    Df,
}

pub fn system_df(store: &Store) -> anyhow::Result<ExitCode> {
    let u = store.usage()?;
    println!("{:<16} {:>8} {:>10}", "TYPE", "COUNT", "SIZE");
    println!("{:<16} {:>8} {:>10}", "Images", u.images, "");
    for (name, (n, s)) in
        [("Blobs", u.blobs), ("Snapshots", u.snapshots), ("Cache records", u.cache_records), ("Cache mounts", u.mounts)]
    {
        println!("{name:<16} {n:>8} {:>10}", human_size(s));
    }
    println!("Reclaimable: {}", human_size(u.reclaimable));
    Ok(ExitCode::SUCCESS)
}

pub fn fsck(store: &Store) -> anyhow::Result<ExitCode> {
    let r = store.fsck()?;
    for p in &r.problems {
        println!("problem: {p}");
    }
    for l in &r.remote_layers {
        println!("remote layer (fetched when needed): {l}");
    }
    println!(
        "checked {} blobs, {} images ({} remote layers), {} snapshots: {}",
        r.blobs_checked,
        r.images_checked,
        r.remote_layers.len(),
        r.snapshots_checked,
        if r.is_clean() { "store is clean".to_string() } else { format!("{} problems", r.problems.len()) }
    );
    Ok(if r.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
/// `--keep-storage SIZE`, in the one size grammar (`rbuild_builder::size`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    rbuild_builder::size::parse_size(s).map_err(|e| e.to_string())
}

pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 { format!("{n}B") } else { format!("{v:.1}{}", units[i]) }
}
