//! `rbuild debug ...`: views of rbuild's internals for tests and bug reports.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use rbuild_builder::digest::HashingWriter;
use rbuild_builder::layer::{
    ApplyMode, ApplyOptions, Compression, LayerOptions, apply_tar, collect_tree, decompressed, diff_overlay_upper,
    write_layer,
};

use super::dockerfile_input;

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print a Dockerfile's AST in BuildKit's dump format (parser layer only: no flag validation).
    Parse {
        /// The Dockerfile (`-` reads standard input).
        file: PathBuf,
    },
    /// Print the build graph a Dockerfile lowers to (stages the target needs, their bases and operations).
    Graph {
        /// The Dockerfile (`-` reads standard input).
        file: PathBuf,
        /// A build argument: NAME=VALUE.
        #[arg(long = "build-arg")]
        build_args: Vec<String>,
        #[arg(long)]
        target: Option<String>,
        /// A named context: NAME=VALUE (only the name matters here).
        #[arg(long = "build-context")]
        build_contexts: Vec<String>,
    },
    /// Write a directory tree as a layer file (prints diff_id, digest, size and seconds as JSON).
    Pack {
        dir: PathBuf,
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// gzip[:LEVEL], zstd[:LEVEL] or uncompressed.
        #[arg(long, default_value = "gzip:6")]
        compression: String,
        /// Compression threads (0: all CPUs).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Read DIR as an overlay upper directory (whiteouts and opaque directories become OCI entries).
        #[arg(long)]
        upper: bool,
    },
    /// Apply a layer file (plain, gzip or zstd) to a directory, safely (prints what was done as JSON).
    Unpack {
        layer: PathBuf,
        dir: PathBuf,
        /// Write an overlay layer directory (overlay whiteouts) instead of merging into DIR.
        #[arg(long)]
        snapshot: bool,
    },
}

pub fn run(cmd: DebugCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DebugCommand::Parse { file } => {
            let input = dockerfile_input::read(&file)?;
            let ast = rbuild_builder::dockerfile::parse_ast(&input.name, &input.text)?;
            println!("{}", rbuild_builder::dockerfile::dump(&ast));
            Ok(ExitCode::SUCCESS)
        }
        DebugCommand::Graph { file, build_args, target, build_contexts } => {
            let input = dockerfile_input::read(&file)?;
            let mut opts = rbuild_builder::engine::BuildRequest::new(PathBuf::from("."), input.name, input.text);
            for a in build_args {
                let (k, v) = a.split_once('=').with_context(|| format!("--build-arg {a:?}: expected NAME=VALUE"))?;
                opts.build_args.insert(k.to_string(), v.to_string());
            }
            for c in build_contexts {
                let (k, v) =
                    c.split_once('=').with_context(|| format!("--build-context {c:?}: expected NAME=VALUE"))?;
                opts.named_contexts.insert(k.to_string(), rbuild_builder::engine::NamedContext::parse(v));
            }
            opts.target = target;
            let (df, graph) = rbuild_builder::engine::plan(&opts)?;
            print!("{}", graph.render(&df));
            Ok(ExitCode::SUCCESS)
        }
        DebugCommand::Pack { dir, output, compression, threads, upper } => {
            let compression = Compression::parse(&compression).with_context(|| {
                format!("unknown compression {compression:?} (gzip[:1-9], zstd[:1-22], uncompressed)")
            })?;
            let start = Instant::now();
            let entries = if upper { diff_overlay_upper(&dir)? } else { collect_tree(&dir)? };
            let file = std::fs::File::create(&output).with_context(|| format!("cannot create {}", output.display()))?;
            let out = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
            let opts = LayerOptions { compression, threads, ..LayerOptions::default() };
            let (diff_id, out) = write_layer(&entries, out, &opts)?;
            let (digest, size, buf) = out.finish();
            buf.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            let report = serde_json::json!({
                "diff_id": diff_id.as_str(), "digest": digest.as_str(), "size": size,
                "entries": entries.len(), "seconds": start.elapsed().as_secs_f64(),
            });
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        DebugCommand::Unpack { layer, dir, snapshot } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let file = std::fs::File::open(&layer).with_context(|| format!("cannot open {}", layer.display()))?;
            let mode = if snapshot { ApplyMode::Snapshot } else { ApplyMode::Merge };
            let opts = ApplyOptions::new(mode, layer.display().to_string());
            let r = apply_tar(decompressed(file)?, &dir, &opts)?;
            let report = serde_json::json!({
                "entries": r.entries, "bytes": r.bytes,
                "skipped_devices": r.skipped_devices, "skipped_xattrs": r.skipped_xattrs,
            });
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
