//! Lowering: a parsed Dockerfile, the build arguments, the named build contexts and a target become the graph
//! the solver runs. The graph holds the stages the target needs, each with its resolved base (scratch, another
//! stage, a named context, or an image reference with `${ARG}`s expanded by the global ARGs), the other stages it
//! reads files from (`COPY --from`, `RUN --mount=from=`), and its operations (exec, file copy, config change), in
//! an order where every stage comes after the stages it uses. `rbuild debug graph` prints [`Graph::render`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::dockerfile::shell::Lexer;
use crate::dockerfile::{Dockerfile, DockerfileError, Instruction, InstructionKind, Span};
use crate::error::{Error, Result};
use crate::platform::Platform;

/// Where a stage's root filesystem, or a copy's files, come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Scratch,
    /// Another stage of the Dockerfile, by index.
    Stage(usize),
    /// A `--build-context NAME=...` given on the command line.
    NamedContext(String),
    /// An image reference (in the store, `oci-layout://`, or later a registry).
    Image(String),
}

/// What an operation does, for the graph's text form and for the solver's scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// RUN: a process in the sandbox.
    Exec,
    /// COPY/ADD: files written by rbuild itself.
    File,
    /// Everything else: a change to the image config.
    Config,
}

/// One instruction of a stage, lowered.
#[derive(Debug, Clone)]
pub struct Op {
    pub kind: OpKind,
    /// Index into the stage's instructions.
    pub instruction: usize,
    /// Sources this op reads besides its stage's filesystem (COPY --from, RUN --mount=from=).
    pub reads: Vec<Source>,
}

/// A stage to build.
#[derive(Debug, Clone)]
pub struct StageNode {
    pub index: usize,
    pub name: Option<String>,
    pub base: Source,
    /// The platform the stage is built for: its `FROM --platform`, else the build's target platform.
    pub platform: Platform,
    /// The stages this one needs built first (its base and what it reads).
    pub deps: BTreeSet<usize>,
    pub ops: Vec<Op>,
    /// When the base is a stage with ONBUILD triggers: what each trigger reads (`COPY --from`, `RUN --mount
    /// from=`), resolved in this stage.
    pub trigger_reads: Vec<Vec<Source>>,
}

/// The lowered build.
#[derive(Debug, Clone)]
pub struct Graph {
    pub stages: BTreeMap<usize, StageNode>,
    /// Stages in an order where each comes after its dependencies.
    pub order: Vec<usize>,
    pub target: usize,
}

/// What a build targets: a stage (by name or index; the last stage when None) and the platform to build for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub stage: Option<&'a str>,
    pub platform: &'a Platform,
}

/// Lower `df` for `target`.
pub fn lower(
    df: &Dockerfile,
    dockerfile_name: &str,
    dockerfile_text: &str,
    build_args: &BTreeMap<String, String>,
    named_contexts: &BTreeSet<String>,
    target: Target<'_>,
    image_triggers: &ImageTriggers,
) -> Result<Graph> {
    let Target { stage: target, platform: target_platform } = target;
    let fail = |span: Span, message: String| -> Error {
        DockerfileError::new(dockerfile_name, dockerfile_text, span, message).into()
    };
    let target_name = target;
    let target = match target {
        Some(t) => find_stage(df, t, df.stages.len()).ok_or_else(|| {
            let names: Vec<&str> = df.stages.iter().filter_map(|s| s.name.as_deref()).collect();
            // BuildKit's words and suggestion (testTargetMistype), then the stages there are.
            let suggestion = crate::dockerfile::suggest::closest(&t.to_ascii_lowercase(), names.iter().copied())
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            Error::BadRequest {
                what: "--target".into(),
                reason: format!(
                    "target stage {t:?} could not be found{suggestion}; the stages of {dockerfile_name}: {}",
                    if names.is_empty() { "none are named".to_string() } else { names.join(", ") }
                ),
            }
        })?,
        None => df.stages.len().saturating_sub(1),
    };
    let meta = global_args(df, build_args, target_name, target_platform, &fail)?;
    let mut nodes = BTreeMap::new();
    let mut order = Vec::new();
    let mut on_path = Vec::new();
    let scope = Scope { meta: &meta, build_args, named: named_contexts, image_triggers, target_platform, fail: &fail };
    visit(df, target, &scope, &mut nodes, &mut on_path, &mut order)?;
    refuse_later_stages(df, &nodes, &fail)?;
    Ok(Graph { stages: nodes, order, target })
}

/// As BuildKit (which dispatches stages in file order): `COPY --from` and `RUN --mount from=` may read only a stage
/// defined before the one they are in (testOutOfOrderStage). Checked after the cycle check, whose error wins.
fn refuse_later_stages(
    df: &Dockerfile,
    nodes: &BTreeMap<usize, StageNode>,
    fail: &dyn Fn(Span, String) -> Error,
) -> Result<()> {
    let name = |i: usize| df.stages[i].name.clone().unwrap_or_else(|| i.to_string());
    for (index, node) in nodes {
        for op in &node.ops {
            let ins = &df.stages[*index].instructions[op.instruction];
            let Some(from) = op.reads.iter().find_map(|r| match r {
                Source::Stage(i) if i > index => Some(i),
                _ => None,
            }) else {
                continue;
            };
            let message = match &ins.kind {
                InstructionKind::Run(run) => {
                    let target = run
                        .mounts
                        .iter()
                        .find(|m| m.from.as_deref().is_some_and(|f| find_stage(df, f, *index) == Some(*from)))
                        .and_then(|m| m.target.clone())
                        .unwrap_or_default();
                    format!(
                        "cannot mount from stage {:?} to {target:?}, stage needs to be defined before current command",
                        name(*from)
                    )
                }
                _ => format!(
                    "cannot copy from stage {:?}, it needs to be defined before current stage {:?}",
                    name(*from),
                    name(*index)
                ),
            };
            return Err(fail(ins.span, message));
        }
    }
    Ok(())
}

/// A stage named `name` (case-insensitive) anywhere in the file, or an index below `before`.
fn find_stage(df: &Dockerfile, name: &str, before: usize) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    df.stages
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
        .or_else(|| name.parse::<usize>().ok().filter(|i| *i < before))
}

/// BuildKit's predefined ARGs in the global scope: the platforms' (`BUILD*` the host's, `TARGET*` the build's
/// target) and `TARGETSTAGE` (the `--target`, else the last stage's name, else `default`); a stage sees one when
/// it redeclares it (`ARG TARGETARCH`).
pub fn predefined_args(df: &Dockerfile, target: Option<&str>, target_platform: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (side, p) in [("BUILD", &Platform::host()), ("TARGET", target_platform)] {
        out.push((format!("{side}PLATFORM"), p.to_string()));
        out.push((format!("{side}OS"), p.os.clone()));
        out.push((format!("{side}OSVERSION"), String::new()));
        out.push((format!("{side}ARCH"), p.architecture.clone()));
        out.push((format!("{side}VARIANT"), p.variant.clone().unwrap_or_default()));
    }
    let stage = match target {
        Some(t) => t.to_string(),
        None => df.stages.last().and_then(|s| s.name.clone()).unwrap_or_else(|| "default".into()),
    };
    out.push(("TARGETSTAGE".into(), stage));
    out
}

/// The proxy variables a RUN step gets from build args, as BuildKit's ProxyEnv: each under both spellings
/// (`HTTP_PROXY` and `http_proxy`), whichever spelling was given; with both given, the lower-case one wins
/// (TestProxyEnvFromBuildArgsDeterministicOrder, testBuiltinArgs).
pub fn proxy_env(build_args: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    // Sorted keys: upper case before lower case, so the lower-case spelling is applied last.
    for (k, v) in build_args.iter().filter(|(k, _)| is_proxy_arg(k)) {
        chosen.insert(k.to_ascii_lowercase(), v.clone());
    }
    chosen.into_iter().flat_map(|(k, v)| [(k.to_ascii_uppercase(), v.clone()), (k, v)]).collect()
}

/// Build args that need no ARG: the proxy variables. RUN steps see them; they stay out of cache keys and history.
pub fn is_proxy_arg(name: &str) -> bool {
    matches!(name.to_ascii_uppercase().as_str(), "HTTP_PROXY" | "HTTPS_PROXY" | "FTP_PROXY" | "NO_PROXY" | "ALL_PROXY")
}

/// The ARGs of the global scope: the predefined args, then those declared before the first FROM (with
/// build-arg overrides), in declaration order.
pub(crate) fn global_args(
    df: &Dockerfile,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
    target_platform: &Platform,
    fail: &dyn Fn(Span, String) -> Error,
) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = predefined_args(df, target, target_platform);
    for ins in &df.meta_args {
        if let InstructionKind::Arg(decls) = &ins.kind {
            for d in decls {
                let value = match (build_args.get(&d.name), &d.default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(def)) => {
                        Some(Lexer::new(df.escape).process_word(def, &out).map_err(|e| fail(ins.span, e.to_string()))?)
                    }
                    (None, None) => None,
                };
                if let Some(v) = value {
                    out.push((d.name.clone(), v));
                }
            }
        }
    }
    Ok(out)
}

/// Resolve a stage or copy source name. A stage may not be its own base (`FROM node AS node` names the image).
fn resolve_source(df: &Dockerfile, name: &str, stage: usize, named: &BTreeSet<String>, is_base: bool) -> Source {
    if name.eq_ignore_ascii_case("scratch") && is_base {
        return Source::Scratch;
    }
    // A named context replaces a stage of the same name, as it replaces an image (BuildKit).
    if named.contains(name) {
        return Source::NamedContext(name.to_string());
    }
    match find_stage(df, name, stage) {
        Some(i) if !(is_base && i == stage) => Source::Stage(i),
        _ => Source::Image(name.to_string()),
    }
}

/// The ONBUILD triggers of base images (by the reference a stage names: an image or a named context), read from
/// their configs before lowering, so that what a trigger reads from a stage of this Dockerfile is built first
/// (BuildKit's testOnBuildNewDeps, testOnBuildNamedContext).
pub type ImageTriggers = BTreeMap<String, Vec<Instruction>>;

/// What every stage's lowering sees.
struct Scope<'a> {
    meta: &'a [(String, String)],
    build_args: &'a BTreeMap<String, String>,
    named: &'a BTreeSet<String>,
    image_triggers: &'a ImageTriggers,
    target_platform: &'a Platform,
    fail: &'a dyn Fn(Span, String) -> Error,
}

fn visit(
    df: &Dockerfile,
    index: usize,
    scope_of_build: &Scope<'_>,
    nodes: &mut BTreeMap<usize, StageNode>,
    on_path: &mut Vec<usize>,
    order: &mut Vec<usize>,
) -> Result<()> {
    let Scope { meta, build_args, named, image_triggers, target_platform, fail } = *scope_of_build;
    if nodes.contains_key(&index) {
        return Ok(());
    }
    let stage = &df.stages[index];
    if on_path.contains(&index) {
        let cycle = &on_path[on_path.iter().position(|i| *i == index).unwrap_or(0)..];
        let name = |i: usize| df.stages[i].name.clone().unwrap_or_else(|| i.to_string());
        // BuildKit's words, naming the cycle's first stage in the file; then the cycle, from that stage.
        let first = cycle.iter().copied().min().unwrap_or(index);
        let mut ring = cycle.to_vec();
        ring.rotate_left(cycle.iter().position(|i| *i == first).unwrap_or(0));
        let names: Vec<String> = ring.iter().chain(std::iter::once(&first)).map(|i| name(*i)).collect();
        return Err(fail(
            df.stages[first].span,
            format!("circular dependency detected on stage: {} ({})", name(first), names.join(" -> ")),
        ));
    }
    let lexer = Lexer::new(df.escape);
    let base_name = lexer.process_word(&stage.base, &meta.to_vec()).map_err(|e| fail(stage.span, e.to_string()))?;
    if base_name.is_empty() {
        return Err(fail(
            stage.span,
            format!("FROM {:?} expands to an empty name: pass --build-arg or give the ARG a default", stage.base),
        ));
    }
    let platform = match &stage.platform {
        Some(platform) => {
            let wanted = lexer.process_word(platform, &meta.to_vec()).map_err(|e| fail(stage.span, e.to_string()))?;
            Platform::parse(&wanted).map_err(|e| fail(stage.span, format!("FROM --platform: {e}")))?
        }
        None => target_platform.clone(),
    };
    let base = resolve_source(df, &base_name, index, named, true);
    // ARGs in scope for --from expansion: the globals, then the stage's own declarations as they come.
    let mut scope: Vec<(String, String)> = meta.to_vec();
    let mut ops = Vec::new();
    for (n, ins) in stage.instructions.iter().enumerate() {
        let expand = |w: &str, scope: &[(String, String)]| -> Result<String> {
            lexer.process_word(w, &scope.to_vec()).map_err(|e| fail(ins.span, e.to_string()))
        };
        let (kind, reads) = match &ins.kind {
            InstructionKind::Run(_) => (OpKind::Exec, reads_of(df, ins, index, named, fail)?),
            InstructionKind::Copy(_) | InstructionKind::Add(_) => {
                (OpKind::File, reads_of(df, ins, index, named, fail)?)
            }
            InstructionKind::Arg(decls) => {
                for d in decls {
                    let value = match (build_args.get(&d.name), &d.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(def)) => Some(expand(def, &scope)?),
                        (None, None) => meta.iter().rev().find(|(k, _)| *k == d.name).map(|(_, v)| v.clone()),
                    };
                    scope.retain(|(k, _)| *k != d.name);
                    if let Some(v) = value {
                        scope.push((d.name.clone(), v));
                    }
                }
                (OpKind::Config, Vec::new())
            }
            _ => (OpKind::Config, Vec::new()),
        };
        ops.push(Op { kind, instruction: n, reads });
    }
    // A base stage's ONBUILD triggers run in this stage: what they read is needed too.
    let triggers = match &base {
        Source::Stage(parent) => onbuild_triggers(df, *parent)
            .map_err(|e| fail(stage.span, format!("the ONBUILD triggers of the base stage do not parse: {e}")))?,
        Source::Image(r) | Source::NamedContext(r) => image_triggers.get(r).cloned().unwrap_or_default(),
        Source::Scratch => Vec::new(),
    };
    let trigger_reads = triggers
        .iter()
        .map(|t| reads_of(df, t, index, named, fail).map_err(|e| fail(stage.span, e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let deps: BTreeSet<usize> = std::iter::once(&base)
        .chain(ops.iter().flat_map(|o| o.reads.iter()))
        .chain(trigger_reads.iter().flatten())
        .filter_map(|s| if let Source::Stage(i) = s { Some(*i) } else { None })
        .collect();
    on_path.push(index);
    for d in &deps {
        visit(df, *d, scope_of_build, nodes, on_path, order)?;
    }
    on_path.pop();
    nodes.insert(index, StageNode { index, name: stage.name.clone(), base, platform, deps, ops, trigger_reads });
    order.push(index);
    Ok(())
}

/// The ONBUILD instructions of a stage, parsed: the triggers its image carries.
pub(crate) fn onbuild_triggers(df: &Dockerfile, stage: usize) -> Result<Vec<Instruction>> {
    let triggers: Vec<&str> = df.stages[stage]
        .instructions
        .iter()
        .filter_map(|i| if let InstructionKind::Onbuild(t) = &i.kind { Some(t.as_str()) } else { None })
        .collect();
    parse_triggers(&triggers)
}

/// ONBUILD trigger texts parsed as instructions.
pub(crate) fn parse_triggers(triggers: &[&str]) -> Result<Vec<Instruction>> {
    if triggers.is_empty() {
        return Ok(Vec::new());
    }
    let text = format!("FROM scratch\n{}\n", triggers.join("\n"));
    Ok(crate::dockerfile::load("ONBUILD", &text)?.stages.into_iter().flat_map(|s| s.instructions).collect())
}

/// What an instruction of stage `index` reads through `COPY --from` / `RUN --mount from=`. As in BuildKit,
/// `--from` takes no variables (a stage's dependencies must not depend on its own ARGs).
pub(crate) fn reads_of(
    df: &Dockerfile,
    ins: &Instruction,
    index: usize,
    named: &BTreeSet<String>,
    fail: &dyn Fn(Span, String) -> Error,
) -> Result<Vec<Source>> {
    let lexer = Lexer::new(df.escape);
    let literal_from = |f: &str| -> Result<String> {
        let plain = lexer.process_word(f, &Vec::new()).map_err(|e| fail(ins.span, e.to_string()))?;
        if plain != f {
            return Err(fail(
                ins.span,
                "variable expansion is not supported for --from, define a new stage with FROM using ARG from global \
                 scope as a workaround"
                    .into(),
            ));
        }
        Ok(plain)
    };
    let froms: Vec<&String> = match &ins.kind {
        InstructionKind::Run(run) => run.mounts.iter().filter_map(|m| m.from.as_ref()).collect(),
        InstructionKind::Copy(c) | InstructionKind::Add(c) => c.from.iter().collect(),
        _ => Vec::new(),
    };
    froms.into_iter().map(|f| resolve_from(df, &literal_from(f)?, index, named, ins, fail)).collect()
}

/// A `--from=` value: a stage (by name, or by an index that must be an earlier stage), a named context or an image.
fn resolve_from(
    df: &Dockerfile,
    from: &str,
    stage: usize,
    named: &BTreeSet<String>,
    ins: &Instruction,
    fail: &dyn Fn(Span, String) -> Error,
) -> Result<Source> {
    if let Ok(i) = from.parse::<usize>()
        && i >= stage
    {
        return Err(fail(
            ins.span,
            format!("--from={from}: a stage index must name an earlier stage (this is stage {stage})"),
        ));
    }
    let source = resolve_source(df, from, stage, named, false);
    if source == Source::Stage(stage) {
        let name = df.stages[stage].name.clone().unwrap_or_else(|| stage.to_string());
        return Err(fail(ins.span, format!("circular dependency detected on stage: {name}")));
    }
    Ok(source)
}

impl Graph {
    /// A stable text form: one block per stage in build order, one line per operation.
    pub fn render(&self, df: &Dockerfile) -> String {
        let mut out = String::new();
        let name = |i: usize| df.stages[i].name.clone().unwrap_or_else(|| format!("stage-{i}"));
        let source = |s: &Source| match s {
            Source::Scratch => "scratch".to_string(),
            Source::Stage(i) => format!("stage {}", name(*i)),
            Source::NamedContext(n) => format!("context {n}"),
            Source::Image(r) => format!("image {r}"),
        };
        for i in &self.order {
            let node = &self.stages[i];
            let deps: Vec<String> = node.deps.iter().map(|d| name(*d)).collect();
            let _ = writeln!(
                out,
                "stage {} (#{i}{}) from {}{}",
                name(*i),
                if *i == self.target { ", target" } else { "" },
                source(&node.base),
                if deps.is_empty() { String::new() } else { format!(" needs [{}]", deps.join(", ")) }
            );
            for op in &node.ops {
                let ins = &df.stages[*i].instructions[op.instruction];
                let kind = match op.kind {
                    OpKind::Exec => "exec  ",
                    OpKind::File => "file  ",
                    OpKind::Config => "config",
                };
                let text = ins.original.lines().next().unwrap_or("").trim();
                let reads: Vec<String> = op.reads.iter().map(&source).collect();
                let _ = writeln!(
                    out,
                    "  {kind} line {:>3}: {text}{}",
                    ins.span.start_line,
                    if reads.is_empty() { String::new() } else { format!("  <- {}", reads.join(", ")) }
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(text: &str, args: &[(&str, &str)], target: Option<&str>) -> Result<(Dockerfile, Graph)> {
        let df = crate::dockerfile::load("Dockerfile", text)?;
        let args = args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let g = lower(
            &df,
            "Dockerfile",
            text,
            &args,
            &BTreeSet::new(),
            Target { stage: target, platform: &Platform::host() },
            &ImageTriggers::new(),
        )?;
        Ok((df, g))
    }

    #[test]
    fn from_arg_picks_the_branch_and_unused_stages_are_left_out() {
        let text =
            "ARG V=a\nFROM busybox AS a\nRUN echo a\nFROM busybox AS b\nRUN exit 1\nFROM ${V}\nCOPY --from=a /x /x\n";
        let (df, g) = graph(text, &[], None).unwrap();
        assert_eq!(g.order, vec![0, 2]);
        assert_eq!(g.stages[&2].base, Source::Stage(0));
        assert!(g.render(&df).contains("stage stage-2 (#2, target) from stage a needs [a]\n"), "{}", g.render(&df));
        let (_, g) = graph(text, &[("V", "b")], None).unwrap();
        assert_eq!(g.order, vec![0, 1, 2]);
    }

    #[test]
    fn cycles_and_bad_indexes_are_errors_with_lines() {
        let e = graph("FROM busybox AS a\nCOPY --from=b / /\nFROM busybox AS b\nCOPY --from=a / /\n", &[], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("circular dependency detected on stage: a (a -> b -> a)") && e.contains("Dockerfile:1"),
            "{e}"
        );
        let e = graph("FROM busybox AS stage0\nCOPY --from=stage0 f1 /sub/\n", &[], None).unwrap_err().to_string();
        assert!(e.contains("circular dependency detected on stage: stage0"), "{e}");
        let text = "FROM busybox AS target\nCOPY --from=build / /out\nFROM busybox AS build\nFROM target\n";
        let e = graph(text, &[], None).unwrap_err().to_string();
        assert!(e.contains("cannot copy from stage \"build\", it needs to be defined before current stage \"target\""));
        let text = "FROM busybox AS a\nRUN --mount=from=b,target=/m true\nFROM busybox AS b\nFROM a\n";
        let e = graph(text, &[], None).unwrap_err().to_string();
        assert!(e.contains("cannot mount from stage \"b\" to \"/m\", stage needs to be defined"), "{e}");
        let e = graph("FROM busybox\nCOPY --from=0 / /\n", &[], None).unwrap_err().to_string();
        assert!(e.contains("Dockerfile:2") && e.contains("earlier stage"), "{e}");
    }

    #[test]
    fn proxy_args_get_both_spellings_and_lower_case_wins() {
        let args: BTreeMap<String, String> = [
            ("ALL_PROXY", "all-upper"),
            ("all_proxy", "all-lower"),
            ("http_proxy", "hp"),
            ("NO_PROXY", "np"),
            ("FOO", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let env = proxy_env(&args);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!((get("ALL_PROXY"), get("all_proxy")), (Some("all-lower"), Some("all-lower")));
        assert_eq!((get("HTTP_PROXY"), get("http_proxy"), get("no_proxy")), (Some("hp"), Some("hp"), Some("np")));
        assert_eq!(get("FOO"), None);
    }

    #[test]
    fn variables_in_from_flags_are_rejected_as_in_buildkit() {
        for text in [
            "ARG S=a\nFROM busybox AS a\nFROM busybox\nCOPY --from=${S} /x /x\n",
            "ARG S=a\nFROM busybox AS a\nFROM busybox\nRUN --mount=type=bind,from=$S,target=/m true\n",
        ] {
            let e = graph(text, &[], None).unwrap_err().to_string();
            // BuildKit's two messages: COPY's, and the mount parser's.
            let said = e.contains("variable expansion is not supported for --from")
                || e.contains("'from' doesn't support variable expansion, define alias stage instead");
            assert!(e.contains("Dockerfile:4") && said, "{e}");
        }
    }

    #[test]
    fn a_stage_named_like_its_base_image_uses_the_image() {
        let (_, g) = graph("FROM node AS node\nRUN true\n", &[], None).unwrap();
        assert_eq!(g.stages[&0].base, Source::Image("node".into()));
    }
}
