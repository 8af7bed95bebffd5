//! The build engine (first version): a parsed Dockerfile, build arguments and a target become the
//! stages to build (the target and what it needs, through `FROM <stage>` and `COPY --from`; stages whose
//! dependencies are built run at the same time, up to `jobs`), each built
//! instruction by instruction over the store: RUN in the runtime's sandbox (its upper directory becomes the layer
//! and the layer's snapshot), COPY from the context or another stage, the rest as image config changes. RUN and
//! COPY results are cached by a key over the parent's key, the expanded instruction, its environment and, for
//! COPY, the checksum of exactly the files selected. Progress is printed in BuildKit's plain style.

mod cache;
mod config;
mod stage;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use rbuild_registry::Reference;
use rbuild_runtime::{NetworkMode, Runtime, UsernsMode};

use crate::context::{IgnoreMatcher, find_ignore_file};
use crate::digest::Digest;
use crate::dockerfile::{Dockerfile, InstructionKind};
use crate::error::{Error, Result};
use crate::export::image::MediaTypes;
use crate::layer::LayerOptions;
use crate::store::Store;

pub use stage::StageResult;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub context: PathBuf,
    /// The Dockerfile's name for messages, and its text.
    pub dockerfile_name: String,
    pub dockerfile_text: String,
    /// Where the Dockerfile lives (for `<Dockerfile>.dockerignore`), if on disk.
    pub dockerfile_path: Option<PathBuf>,
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub network: NetworkMode,
    pub userns: UsernsMode,
    pub media_types: MediaTypes,
    pub layers: LayerOptions,
    /// Print BuildKit-style plain progress to stderr.
    pub progress: bool,
    /// How many stages may build at once (0: the number of CPUs).
    pub jobs: usize,
    /// `--secret id=ID,src=PATH` / `id=ID,env=VAR`: secret id -> where its value comes from.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--label KEY=VALUE`, set on the final image.
    pub labels: Vec<(String, String)>,
}

/// Where a build secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    /// Steps that ran, and steps whose results came from the cache.
    pub executed: usize,
    pub cached: usize,
}

/// Plain progress lines: `#N [stage i/n] INSTRUCTION`, the step's output prefixed, `#N DONE 0.1s`/`#N CACHED`.
#[derive(Debug)]
pub(crate) struct Progress {
    enabled: bool,
    next: std::sync::atomic::AtomicUsize,
}

impl Progress {
    pub(crate) fn step(&self, label: &str) -> usize {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.line(&format!("#{n} {label}"));
        n
    }
    pub(crate) fn line(&self, s: &str) {
        if self.enabled {
            let _ = writeln!(std::io::stderr(), "{s}");
        }
    }
    pub(crate) fn done(&self, n: usize, start: Instant) {
        self.line(&format!("#{n} DONE {:.1}s", start.elapsed().as_secs_f64()));
    }
    pub(crate) fn cached(&self, n: usize) {
        self.line(&format!("#{n} CACHED"));
    }
}

/// The stages the target needs, in an order where each comes after those it uses.
fn needed_stages(df: &Dockerfile, target: usize) -> Result<Vec<usize>> {
    fn visit(
        df: &Dockerfile,
        i: usize,
        seen: &mut BTreeSet<usize>,
        on_path: &mut Vec<usize>,
        out: &mut Vec<usize>,
    ) -> Result<()> {
        if seen.contains(&i) {
            return Ok(());
        }
        if on_path.contains(&i) {
            return Err(Error::Malformed {
                what: "Dockerfile stages".into(),
                reason: format!("stage {} depends on itself through FROM or COPY --from", i),
            });
        }
        on_path.push(i);
        for dep in stage_deps(df, i) {
            visit(df, dep, seen, on_path, out)?;
        }
        on_path.pop();
        seen.insert(i);
        out.push(i);
        Ok(())
    }
    let mut out = Vec::new();
    visit(df, target, &mut BTreeSet::new(), &mut Vec::new(), &mut out)?;
    Ok(out)
}

/// A stage named by `name` (a stage name or an index), if it is one, among the stages before `before`.
pub(crate) fn stage_ref(df: &Dockerfile, name: &str, before: usize) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    df.stages[..before]
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
        .or_else(|| name.parse::<usize>().ok().filter(|i| *i < before))
}

fn stage_deps(df: &Dockerfile, i: usize) -> Vec<usize> {
    let s = &df.stages[i];
    let mut deps: Vec<usize> = stage_ref(df, &s.base, i).into_iter().collect();
    for ins in &s.instructions {
        if let InstructionKind::Copy(c) = &ins.kind
            && let Some(from) = c.from.as_deref().and_then(|f| stage_ref(df, f, i))
        {
            deps.push(from);
        }
    }
    deps
}

/// Build the Dockerfile; returns the image written (and tagged with `opts.tags`).
pub fn build(store: &Store, runtime: &Runtime, opts: &BuildOptions) -> Result<BuildResult> {
    let df = crate::dockerfile::load(&opts.dockerfile_name, &opts.dockerfile_text)?;
    let target = match &opts.target {
        Some(t) => stage_ref(&df, t, df.stages.len()).ok_or_else(|| Error::Malformed {
            what: "--target".into(),
            reason: format!("target stage {t:?} could not be found in {}", opts.dockerfile_name),
        })?,
        None => df.stages.len() - 1,
    };
    let dockerfile_path = opts.dockerfile_path.clone().unwrap_or_else(|| opts.context.join("Dockerfile"));
    let ignore = match find_ignore_file(&opts.context, &dockerfile_path) {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(Error::io("read", &p))?;
            IgnoreMatcher::parse(&text, &p.display().to_string())?
        }
        None => IgnoreMatcher::default(),
    };
    let order = needed_stages(&df, target)?;
    let progress = Progress { enabled: opts.progress, next: std::sync::atomic::AtomicUsize::new(0) };
    let mut results: BTreeMap<usize, StageResult> = BTreeMap::new();
    let (mut executed, mut cached) = (0, 0);
    let jobs = if opts.jobs == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.jobs };
    let mut pending = order.clone();
    while !pending.is_empty() {
        // Every stage whose dependencies are built can start now; independent stages build at the same time.
        let ready: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|&i| stage_deps(&df, i).iter().all(|d| results.contains_key(d)))
            .take(jobs)
            .collect();
        pending.retain(|i| !ready.contains(i));
        let built: Vec<Result<(usize, StageResult, usize, usize)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ready
                .iter()
                .map(|&i| {
                    let (df, ignore, progress, results) = (&df, &ignore, &progress, &results);
                    scope.spawn(move || {
                        let mut b = stage::StageBuilder::new(store, runtime, opts, df, i, ignore, progress, results)?;
                        let r = b.run()?;
                        Ok((i, r, b.executed, b.cached))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Malformed { what: "build".into(), reason: "a stage's builder panicked".into() })
                    })
                })
                .collect()
        });
        for b in built {
            let (i, result, ran, hits) = b?;
            executed += ran;
            cached += hits;
            results.insert(i, result);
        }
    }
    let mut final_stage = results.remove(&target).ok_or_else(|| Error::Malformed {
        what: "build".into(),
        reason: "the target stage produced no result".into(),
    })?;
    for (k, v) in &opts.labels {
        config::set_label(&mut final_stage.config, k, v);
    }
    let image = final_stage.write(store, opts.media_types)?;
    let descriptor = image.descriptor()?;
    for t in &opts.tags {
        store.tag_image(t, &descriptor)?;
    }
    progress.line(&format!(
        "#{} writing image {} done",
        progress.next.load(std::sync::atomic::Ordering::SeqCst) + 1,
        image.manifest_digest
    ));
    Ok(BuildResult { manifest_digest: image.manifest_digest, config_digest: image.config_digest, executed, cached })
}
