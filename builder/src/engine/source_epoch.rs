//! The build's SOURCE_DATE_EPOCH, as BuildKit's Dockerfile frontend (1.23) resolves it: the `SOURCE_DATE_EPOCH`
//! build arg, else the global `ARG SOURCE_DATE_EPOCH=...` default, is seconds since 1970; empty (unset);
//! `context`, the time the fetched main context last changed; the name of a named context, that context's time;
//! or the name of a "source-only" stage (`FROM scratch`, ARGs and one ADD of an http(s) URL or a git
//! repository), the time of what that ADD fetches — its `Last-Modified` or commit time, else the newest file of
//! the archive it is. Local contexts and images have no time: the epoch is then unset. The resolved value is
//! what `ARG SOURCE_DATE_EPOCH` reads in every stage.

use super::graph::global_args;
use super::ports::Fetcher;
use super::{BuildRequest, NamedContext};
use crate::dockerfile::shell::Lexer;
use crate::dockerfile::{Dockerfile, DockerfileError, InstructionKind, Span, Stage};
use crate::error::{Error, Result};
use crate::store::Store;

const NAME: &str = "SOURCE_DATE_EPOCH";

/// What the build args and the Dockerfile ask for: None when neither names SOURCE_DATE_EPOCH (an epoch the
/// request already carries, from the environment, stays); else the resolved epoch, None meaning unset.
pub(crate) fn resolve(
    store: &Store,
    fetcher: &dyn Fetcher,
    df: &Dockerfile,
    req: &BuildRequest,
) -> Result<Option<Option<i64>>> {
    let at = |span: Span, message: String| -> Error {
        DockerfileError::new(&req.dockerfile_name, &req.dockerfile_text, span, message).into()
    };
    let (value, span) = if let Some(v) = req.build_args.get(NAME) {
        (v.trim().to_string(), None)
    } else if req.layers.source_date_epoch.is_some() {
        return Ok(None);
    } else {
        let globals = global_args(df, &req.build_args, req.target.as_deref(), &req.platform, &at)?;
        let Some((_, v)) = globals.iter().rev().find(|(k, _)| k == NAME) else { return Ok(None) };
        let span = df
            .meta_args
            .iter()
            .find(|ins| matches!(&ins.kind, InstructionKind::Arg(d) if d.iter().any(|d| d.name == NAME)))
            .map(|ins| ins.span);
        (v.trim().to_string(), span)
    };
    let invalid = |reason: &str| {
        let message = format!("invalid SOURCE_DATE_EPOCH: {value} ({reason})");
        match span {
            Some(span) => at(span, message),
            None => Error::BadRequest { what: format!("--build-arg SOURCE_DATE_EPOCH={value}"), reason: message },
        }
    };
    if value.is_empty() {
        return Ok(Some(None));
    }
    if let Ok(secs) = value.parse::<i64>() {
        return if secs >= 0 { Ok(Some(Some(secs))) } else { Err(invalid("expected seconds since 1970")) };
    }
    if value == "context" {
        return Ok(Some(req.context_times.main));
    }
    if let Some(nc) = req.named_contexts.get(&value) {
        return Ok(Some(match nc {
            NamedContext::Dir(_) => req.context_times.named.get(&value).copied(),
            NamedContext::Image(_) => None,
        }));
    }
    let Some(stage) = df.stages.iter().find(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&value)))
    else {
        return Err(invalid("expected seconds since 1970, `context`, or the name of a stage or named context"));
    };
    let source = stage_source(df, stage, req).map_err(|m| at(stage.span, m))?;
    source_time(store, fetcher, &source).map(Some)
}

/// What a source-only stage fetches: its one ADD's source, variables expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StageSource {
    Url(String),
    Git(String),
}

fn stage_source(df: &Dockerfile, stage: &Stage, req: &BuildRequest) -> std::result::Result<StageSource, String> {
    let lexer = Lexer::new(df.escape);
    let no_span = |_: Span, m: String| Error::BadRequest { what: "a global ARG".into(), reason: m };
    let mut env: Vec<(String, String)> =
        global_args(df, &req.build_args, req.target.as_deref(), &req.platform, &no_span)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|(k, _)| k != NAME)
            .collect();
    let base = lexer.process_word(&stage.base, &env).map_err(|e| e.to_string())?;
    if base != "scratch" {
        return Err("SOURCE_DATE_EPOCH stage must use FROM scratch".into());
    }
    let mut source = None;
    for ins in &stage.instructions {
        match &ins.kind {
            InstructionKind::Arg(decls) => {
                for d in decls {
                    let v = match (req.build_args.get(&d.name), &d.default) {
                        (Some(v), _) => v.clone(),
                        (None, Some(def)) => lexer.process_word(def, &env).map_err(|e| e.to_string())?,
                        (None, None) => continue,
                    };
                    env.retain(|(k, _)| k != &d.name);
                    env.push((d.name.clone(), v));
                }
            }
            InstructionKind::Add(spec) => {
                if source.is_some() {
                    return Err("SOURCE_DATE_EPOCH stage must contain exactly one remote ADD".into());
                }
                if !spec.inline_sources.is_empty() || spec.sources.len() != 1 {
                    return Err("SOURCE_DATE_EPOCH stage must contain exactly one remote ADD source".into());
                }
                let src = lexer.process_word(&spec.sources[0], &env).map_err(|e| e.to_string())?;
                source = Some(if crate::context::git::is_git_url(&src) {
                    StageSource::Git(src)
                } else if crate::context::source::is_http_url(&src) {
                    StageSource::Url(src)
                } else {
                    return Err("SOURCE_DATE_EPOCH stage source must be a single HTTP(S) or Git ADD".into());
                });
            }
            other => {
                return Err(format!(
                    "SOURCE_DATE_EPOCH stage does not meet source-only requirements: unsupported {} instruction",
                    other.keyword().to_ascii_lowercase()
                ));
            }
        }
    }
    source.ok_or_else(|| "SOURCE_DATE_EPOCH stage must contain exactly one remote ADD".into())
}

/// Fetch `source` into the store's tmp area just to read its time.
fn source_time(store: &Store, fetcher: &dyn Fetcher, source: &StageSource) -> Result<Option<i64>> {
    let dir = store.tmp().path("epoch-source");
    std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
    let time = match source {
        StageSource::Git(url) => fetcher.git(url, &dir.join("checkout"), false).map(|c| c.commit_time),
        StageSource::Url(url) => {
            let file = dir.join("download");
            fetcher.url(url, &file).and_then(|modified| match modified {
                Some(t) => Ok(Some(crate::context::source::unix_seconds(t))),
                None => crate::context::source::newest_file_time(&file),
            })
        }
    };
    let _ = crate::fsops::remove_path(&dir);
    time
}

/// The request with `epoch` as its SOURCE_DATE_EPOCH: the layers' clamp and image times, and the value
/// `ARG SOURCE_DATE_EPOCH` reads (empty when unset).
pub(crate) fn apply(req: &BuildRequest, epoch: Option<i64>) -> BuildRequest {
    let mut out = req.clone();
    out.layers.source_date_epoch = epoch;
    out.build_args.insert(NAME.to_string(), epoch.map(|e| e.to_string()).unwrap_or_default());
    out
}
