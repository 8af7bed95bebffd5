//! Where a build's result goes, as `docker buildx build --output` names it: `type=image` (the store, tagged;
//! `push=true` pushes with the registry client), `type=oci|docker,dest=FILE|-` (archives; `tar=false` writes an
//! OCI layout directory), `type=tar,dest=FILE|-` and `type=local,dest=DIR` (the image's files); `--load` (a Docker
//! archive handed to `docker load` or `podman load`) and `--metadata-file`'s document. Every output is written
//! here, and images are named here only.

use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_registry::{Client, Reference};

use super::archive::ArchiveFormat;
use crate::engine::BuildResult;
use crate::error::{Error, Result};
use crate::store::Store;

/// One `--output` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Image {
        names: Vec<String>,
        push: bool,
    },
    /// `names`: `name=` of the output (else the build's `-t` tags).
    Archive {
        format: ArchiveFormat,
        dest: PathBuf,
        tar: bool,
        names: Vec<String>,
    },
    Tar {
        dest: PathBuf,
    },
    Local {
        dest: PathBuf,
    },
}

fn bad(spec: &str, reason: impl Into<String>) -> Error {
    Error::BadOutput { what: format!("--output {spec:?}"), reason: reason.into() }
}

impl Output {
    /// Parse `type=...,dest=...` (or a bare path, which is `type=local,dest=PATH`; `-` is `type=tar,dest=-`).
    pub fn parse(spec: &str) -> Result<Output> {
        if !spec.contains('=') {
            return Ok(if spec == "-" {
                Output::Tar { dest: PathBuf::from("-") }
            } else {
                Output::Local { dest: PathBuf::from(spec) }
            });
        }
        let mut fields = std::collections::BTreeMap::new();
        for f in csv_fields(spec) {
            let (k, v) = f.split_once('=').ok_or_else(|| bad(spec, format!("{f:?} is not KEY=VALUE")))?;
            fields.insert(k.trim().to_string(), v.trim().to_string());
        }
        let dest =
            || -> Result<PathBuf> { fields.get("dest").map(PathBuf::from).ok_or_else(|| bad(spec, "needs dest=")) };
        let flag = |k: &str| fields.get(k).is_some_and(|v| v == "true" || v == "1");
        // `name=a,b` (quoted as a CSV field: `"name=a,b"`) names several images.
        let names = || -> Vec<String> {
            fields.get("name").map(|n| n.split(',').map(|s| s.trim().to_string()).collect()).unwrap_or_default()
        };
        Ok(match fields.get("type").map(String::as_str).unwrap_or("local") {
            "image" | "registry" => Output::Image {
                names: names(),
                push: flag("push") || fields.get("type").is_some_and(|t| t == "registry"),
            },
            "oci" => Output::Archive {
                format: ArchiveFormat::Oci,
                dest: dest()?,
                tar: fields.get("tar").is_none_or(|v| v != "false"),
                names: names(),
            },
            "docker" => Output::Archive { format: ArchiveFormat::Docker, dest: dest()?, tar: true, names: names() },
            "tar" => Output::Tar { dest: dest()? },
            "local" => Output::Local { dest: dest()? },
            other => {
                return Err(bad(spec, format!("unknown type {other:?} (image, registry, oci, docker, tar, local)")));
            }
        })
    }
}

/// `--output`'s comma-separated fields, read as CSV as docker buildx reads them: a field in double quotes may
/// hold commas (`"name=a:1,a:2"`), and `""` inside it is a quote.
fn csv_fields(spec: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut chars = spec.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => break,
                    c => field.push(c),
                }
            }
            // Anything after the closing quote up to the comma belongs to the field.
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
        if chars.next().is_none() {
            return fields;
        }
    }
}

/// Push the store's image `digest` to `dest`; returns the line to report.
pub fn push_image(store: &Store, client: &Client, digest: &crate::digest::Digest, dest: &Reference) -> Result<String> {
    let started = std::time::Instant::now();
    let r = crate::distribution::push(store, client, digest, dest)?;
    let mut line = format!(
        "pushed {} ({}): {} blobs uploaded, {} mounted, {} already there, {:.1}s",
        dest.familiar(),
        r.manifest_digest,
        r.uploaded,
        r.mounted,
        r.present,
        started.elapsed().as_secs_f64()
    );
    if !r.left_out.is_empty() {
        line.push_str(&format!(
            "\nwarning: the index pushed leaves out {} (not in the store: pulled for other platforms only), so its \
             digest differs from the store's",
            r.left_out.join(", ")
        ));
    }
    Ok(line)
}

fn parse_names(names: &[String]) -> Result<Vec<Reference>> {
    names.iter().map(|n| Ok(Reference::parse(n)?)).collect()
}

/// Write the result to one output. `tags` are the build's `-t` names (archives carry them; pushes go to them
/// when the output names none). Returns lines to report.
pub fn write(
    store: &Store,
    client: &Client,
    result: &BuildResult,
    output: &Output,
    tags: &[Reference],
) -> Result<Vec<String>> {
    let mut report = Vec::new();
    let digest = result.manifest_digest.clone();
    let named: Vec<(Reference, crate::digest::Digest)> = if tags.is_empty() {
        vec![(parse_names(&["rbuild/unnamed:latest".to_string()])?.remove(0), digest.clone())]
    } else {
        tags.iter().map(|t| (t.clone(), digest.clone())).collect()
    };
    let create_dir = |dir: &Path| std::fs::create_dir_all(dir).map_err(Error::io("create", dir));
    match output {
        Output::Image { names, push } => {
            let descriptor = result.descriptor()?;
            let mut targets = parse_names(names)?;
            for t in &targets {
                store.tag_image(t, &descriptor)?;
            }
            if *push {
                if targets.is_empty() {
                    targets = tags.to_vec();
                }
                if targets.is_empty() {
                    return Err(Error::BadOutput {
                        what: "push".into(),
                        reason:
                            "nothing to push to: name the image with -t NAME or --output type=image,name=NAME,push=true"
                                .into(),
                    });
                }
                for t in &targets {
                    report.push(push_image(store, client, &result.manifest_digest, t)?);
                }
            }
        }
        Output::Archive { format: ArchiveFormat::Docker, .. } if result.is_multi_platform() => {
            return Err(several_platforms("type=docker", "a Docker archive holds one platform's image"));
        }
        Output::Tar { dest } if result.is_multi_platform() => {
            // A directory per platform in the tar, as BuildKit's tar exporter writes it.
            let parts: Vec<(String, Vec<std::path::PathBuf>)> =
                result.per_platform.iter().map(|(p, one)| (p.path_name(), one.snapshots.clone())).collect();
            let out: Box<dyn std::io::Write> = if dest == Path::new("-") {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(std::fs::File::create(dest).map_err(Error::io("create", dest))?)
            };
            super::archive::filesystem_tar_per_platform(store, &parts, &result.ids, out)?;
        }
        Output::Local { dest } if result.is_multi_platform() => {
            // A directory per platform, named as buildx names them (`linux_arm64`).
            for (platform, one) in &result.per_platform {
                let dir = dest.join(platform.path_name());
                create_dir(&dir)?;
                crate::sandbox::snapshotter::merge_snapshots(&one.snapshots, &dir)?;
            }
        }
        Output::Archive { format, dest, tar, names } => {
            if *format == ArchiveFormat::Oci && !tar {
                create_dir(dest)?;
            }
            let named = if names.is_empty() {
                named
            } else {
                parse_names(names)?.into_iter().map(|r| (r, digest.clone())).collect()
            };
            super::archive::save(store, &named, *format, dest, None)?;
        }
        Output::Tar { dest } => {
            let out: Box<dyn std::io::Write> = if dest == Path::new("-") {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(std::fs::File::create(dest).map_err(Error::io("create", dest))?)
            };
            super::archive::filesystem_tar(store, &result.snapshots, &result.ids, out)?;
        }
        Output::Local { dest } => {
            create_dir(dest)?;
            crate::sandbox::snapshotter::merge_snapshots(&result.snapshots, dest)?;
        }
    }
    Ok(report)
}

/// What a build was asked to deliver besides its outputs.
#[derive(Debug, Clone, Default)]
pub struct Delivery<'a> {
    pub outputs: &'a [Output],
    /// `--load`.
    pub load: bool,
    pub iidfile: Option<&'a Path>,
    pub metadata_file: Option<&'a Path>,
}

/// Deliver a build's result, in order: each output, `--load`, `--iidfile`, `--metadata-file`. Returns the lines to
/// report.
pub fn deliver(
    store: &Store,
    client: &Client,
    result: &BuildResult,
    tags: &[Reference],
    delivery: &Delivery<'_>,
) -> Result<Vec<String>> {
    let mut report = Vec::new();
    for o in delivery.outputs {
        report.extend(write(store, client, result, o, tags)?);
    }
    if delivery.load {
        report.push(load_into_engine(store, client, result, tags)?);
        report.retain(|l| !l.is_empty());
    }
    let write_file = |p: &Path, bytes: &[u8]| {
        std::fs::write(p, bytes)
            .map_err(|e| Error::BadOutput { what: format!("cannot write {}", p.display()), reason: e.to_string() })
    };
    if let Some(p) = delivery.iidfile {
        write_file(p, result.manifest_digest.as_str().as_bytes())?;
    }
    if let Some(p) = delivery.metadata_file {
        let doc = serde_json::to_vec_pretty(&metadata(result, tags))
            .map_err(|source| Error::Json { what: "the build metadata".into(), source })?;
        write_file(p, &doc)?;
    }
    Ok(report)
}

/// The error for an output that holds one platform's image, given several.
fn several_platforms(what: &str, why: &str) -> Error {
    Error::BadOutput {
        what: what.into(),
        reason: format!(
            "the build made images for several platforms and {why}; build one platform (--platform) for it"
        ),
    }
}

/// `--load`: a Docker archive into `docker load`, or `podman load`; returns what the engine said.
pub fn load_into_engine(store: &Store, client: &Client, result: &BuildResult, tags: &[Reference]) -> Result<String> {
    if result.is_multi_platform() {
        return Err(several_platforms("--load", "docker load takes one platform's image"));
    }
    let engine = ["docker", "podman"]
        .into_iter()
        .find(|e| Command::new(e).arg("--version").output().is_ok_and(|o| o.status.success()))
        .ok_or_else(|| Error::BadOutput {
            what: "--load".into(),
            reason: "it needs docker or podman on PATH (neither was found); use --output type=docker,dest=FILE".into(),
        })?;
    let file = store.tmp().path("load.tar");
    let result = (|| {
        let archive =
            Output::Archive { format: ArchiveFormat::Docker, dest: file.clone(), tar: true, names: Vec::new() };
        write(store, client, result, &archive, tags)?;
        let out = Command::new(engine).arg("load").arg("-i").arg(&file).output().map_err(Error::io("run", engine))?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(Error::BadOutput { what: "--load".into(), reason: format!("{engine} load failed: {said}") });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    })();
    let _ = std::fs::remove_file(&file);
    result
}

/// `--metadata-file`: BuildKit's keys for the image built.
pub fn metadata(result: &BuildResult, tags: &[Reference]) -> serde_json::Value {
    let (media_type, size) = match &result.index {
        Some(i) => (i.media_type.clone(), i.bytes.len()),
        None => (result.image.manifest_media_type.clone(), result.image.manifest_bytes.len()),
    };
    let descriptor = serde_json::json!({
        "mediaType": media_type,
        "digest": result.manifest_digest.as_str(),
        "size": size,
    });
    let mut v = serde_json::json!({
        "containerimage.digest": result.manifest_digest.as_str(),
        "containerimage.descriptor": descriptor,
    });
    if !result.is_multi_platform() {
        v["containerimage.config.digest"] = serde_json::json!(result.config_digest.as_str());
    }
    if !tags.is_empty() {
        v["image.name"] = serde_json::json!(tags.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(","));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_fields_are_csv_so_a_quoted_name_holds_several() {
        assert_eq!(csv_fields("type=oci,dest=x"), ["type=oci", "dest=x"]);
        assert_eq!(
            csv_fields(r#"type=oci,"name=a/b:1,a/b:2",tar=false"#),
            ["type=oci", "name=a/b:1,a/b:2", "tar=false"]
        );
        assert_eq!(csv_fields(r#""say ""hi""",x"#), [r#"say "hi""#, "x"]);
        let out = Output::parse(r#"type=oci,tar=false,dest=d,"name=org/repo:tag1,org/repo:tag2""#).unwrap();
        let Output::Archive { names, tar, .. } = out else { panic!("{out:?}") };
        assert_eq!(names, ["org/repo:tag1", "org/repo:tag2"]);
        assert!(!tar);
    }
}
