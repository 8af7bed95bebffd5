//! What `rbuild build --call` answers without building, as BuildKit's Dockerfile frontend answers its
//! subrequests: `outline` (the target, and the build args, secrets and SSH agents it and the stages it needs
//! use, with their values, descriptions and lines), `targets` (every stage: name, base, description, whether it
//! is the default) and `subrequests.describe` (which of these there are). Each comes as BuildKit's JSON
//! (`result.json`) and as the table `docker buildx build --call` prints. A description is the comment right above
//! a definition that starts with the name it describes (`# NAME what it is`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::BuildRequest;
use super::graph::predefined_args;
use crate::dockerfile::lint::variables_in;
use crate::dockerfile::shell::Lexer;
use crate::dockerfile::{Dockerfile, InstructionKind, MountType, Span};
use crate::error::Result;

/// One build arg of the outline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineArg {
    pub name: String,
    pub value: String,
    pub description: String,
    pub span: Span,
}

/// A secret or SSH agent the target's steps mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineMount {
    pub name: String,
    pub required: bool,
    pub span: Span,
}

/// `--call outline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    pub name: String,
    pub description: String,
    pub args: Vec<OutlineArg>,
    pub secrets: Vec<OutlineMount>,
    pub ssh: Vec<OutlineMount>,
    pub source: String,
}

/// One stage for `--call targets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub base: String,
    pub description: String,
    pub default: bool,
    pub platform: String,
    pub span: Span,
}

/// An arg's definition as the outline tracks it: its value so far, where it was defined last, and which args its
/// values referred to (they are used when it is).
#[derive(Debug, Clone, Default)]
struct ArgInfo {
    value: String,
    description: String,
    span: Span,
    deps: BTreeSet<String>,
}

/// The outline of the request's target.
pub fn outline(req: &BuildRequest) -> Result<Outline> {
    let (df, graph) = super::plan(req)?;
    let lexer = Lexer::new(df.escape);
    let comments = Comments::new(&df, &req.dockerfile_text);
    // The global scope: every meta ARG is known; only those a needed FROM line (or a redeclaration) refers to
    // are used.
    let mut globals: BTreeMap<String, ArgInfo> = BTreeMap::new();
    let mut global_env: Vec<(String, String)> = predefined_args(&df, req.target.as_deref(), &req.platform);
    for ins in &df.meta_args {
        if let InstructionKind::Arg(decls) = &ins.kind {
            for d in decls {
                define(&mut globals, &mut global_env, &lexer, req, d, ins.span, comments.doc(ins.span, &d.name));
            }
        }
    }
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut stage_args: BTreeMap<String, ArgInfo> = BTreeMap::new();
    let mut secrets: BTreeMap<String, OutlineMount> = BTreeMap::new();
    let mut ssh: BTreeMap<String, OutlineMount> = BTreeMap::new();
    for &index in graph.stages.keys() {
        let stage = &df.stages[index];
        used.extend(variables_in(&stage.base));
        let mut args: BTreeMap<String, ArgInfo> = BTreeMap::new();
        let mut env: Vec<(String, String)> = predefined_args(&df, req.target.as_deref(), &req.platform);
        for ins in &stage.instructions {
            match &ins.kind {
                InstructionKind::Arg(decls) => {
                    for d in decls {
                        let doc = comments.doc(ins.span, &d.name);
                        match (d.default.is_none(), globals.get(&d.name)) {
                            // `ARG NAME` of a global: its value and what that value used.
                            (true, Some(g)) => {
                                used.insert(d.name.clone());
                                let value = req.build_args.get(&d.name).cloned().unwrap_or_else(|| g.value.clone());
                                env.push((d.name.clone(), value.clone()));
                                let info = ArgInfo { value, description: doc, span: ins.span, deps: g.deps.clone() };
                                args.insert(d.name.clone(), info);
                            }
                            _ => define(&mut args, &mut env, &lexer, req, d, ins.span, doc),
                        }
                    }
                }
                InstructionKind::Run(run) => {
                    for m in &run.mounts {
                        let m = crate::dockerfile::expand_mount(m, |w| {
                            lexer.process_word(w, &env).map_err(|e| e.to_string())
                        })
                        .unwrap_or_else(|_| m.clone());
                        let (into, name) = match m.kind {
                            MountType::Secret => (&mut secrets, secret_name(&m)),
                            MountType::Ssh => (&mut ssh, m.id.clone().unwrap_or_else(|| "default".into())),
                            _ => continue,
                        };
                        let entry =
                            OutlineMount { name: name.clone(), required: m.required.unwrap_or(false), span: ins.span };
                        into.entry(name).or_insert(entry);
                    }
                }
                _ => {}
            }
        }
        for (name, info) in args {
            stage_args.entry(name).or_insert(info);
        }
    }
    // What the used globals refer to is used too.
    let mut todo: Vec<String> = used.iter().cloned().collect();
    while let Some(name) = todo.pop() {
        let deps = globals.get(&name).map(|g| g.deps.clone()).unwrap_or_default();
        for d in deps {
            if used.insert(d.clone()) {
                todo.push(d);
            }
        }
    }
    let mut args: Vec<OutlineArg> = Vec::new();
    for (name, info) in stage_args.iter() {
        args.push(OutlineArg {
            name: name.clone(),
            value: info.value.clone(),
            description: info.description.clone(),
            span: info.span,
        });
    }
    for (name, info) in globals.iter().filter(|(n, _)| used.contains(*n) && !stage_args.contains_key(*n)) {
        args.push(OutlineArg {
            name: name.clone(),
            value: info.value.clone(),
            description: info.description.clone(),
            span: info.span,
        });
    }
    args.sort_by_key(|a| a.span.start_line);
    let mut secrets: Vec<OutlineMount> = secrets.into_values().collect();
    secrets.sort_by_key(|s| s.span.start_line);
    let mut ssh: Vec<OutlineMount> = ssh.into_values().collect();
    ssh.sort_by_key(|s| s.span.start_line);
    let target = &df.stages[graph.target];
    let name = target.name.clone().unwrap_or_default();
    Ok(Outline {
        description: comments.doc(target.span, &name),
        name,
        args,
        secrets,
        ssh,
        source: req.dockerfile_text.clone(),
    })
}

/// Define `d` in `scope`: a build arg's value or its expanded default (expanded in `env`, which it joins), and
/// the args that default refers to.
fn define(
    scope: &mut BTreeMap<String, ArgInfo>,
    env: &mut Vec<(String, String)>,
    lexer: &Lexer,
    req: &BuildRequest,
    d: &crate::dockerfile::ArgDecl,
    span: Span,
    description: String,
) {
    let mut deps = scope.get(&d.name).map(|a| a.deps.clone()).unwrap_or_default();
    let default = d.default.as_deref().map(|def| {
        deps.extend(variables_in(def));
        lexer.process_word(def, &*env).unwrap_or_else(|_| def.to_string())
    });
    let value = req.build_args.get(&d.name).cloned().or(default).unwrap_or_default();
    env.retain(|(k, _)| k != &d.name);
    env.push((d.name.clone(), value.clone()));
    deps.remove(&d.name);
    scope.insert(d.name.clone(), ArgInfo { value, description, span, deps });
}

/// A secret mount's name: its id, else its target's file name (BuildKit's default id).
fn secret_name(m: &crate::dockerfile::RunMount) -> String {
    m.id.clone().unwrap_or_else(|| {
        let target = m.target.clone().unwrap_or_default();
        target.rsplit('/').next().unwrap_or_default().to_string()
    })
}

/// Every stage, for `--call targets`.
pub fn targets(df: &Dockerfile, text: &str) -> Vec<Target> {
    let comments = Comments::new(df, text);
    let last = df.stages.len().saturating_sub(1);
    df.stages
        .iter()
        .map(|s| {
            let name = s.name.clone().unwrap_or_default();
            Target {
                description: comments.doc(s.span, &name),
                name,
                base: s.base.clone(),
                default: s.index == last,
                platform: s.platform.clone().unwrap_or_default(),
                span: s.span,
            }
        })
        .collect()
}

/// The comments right above each instruction, as BuildKit's parser keeps them: the comment lines since the
/// previous instruction (blank lines between them do not matter; an empty `#` starts them anew; parser
/// directives are not comments).
struct Comments<'a> {
    lines: Vec<&'a str>,
    directive_lines: BTreeSet<usize>,
}

impl<'a> Comments<'a> {
    fn new(df: &Dockerfile, text: &'a str) -> Self {
        Comments { lines: text.lines().collect(), directive_lines: df.directives.iter().map(|d| d.line).collect() }
    }

    fn above(&self, span: Span) -> Vec<String> {
        let mut out = Vec::new();
        let mut n = span.start_line.saturating_sub(1);
        while n >= 1 && !self.directive_lines.contains(&n) {
            let text = self.lines.get(n - 1).map_or("", |l| l.trim());
            n -= 1;
            if text.is_empty() {
                continue;
            }
            let Some(comment) = text.strip_prefix('#') else { break };
            let comment = comment.trim();
            if comment.is_empty() {
                break;
            }
            out.push(comment.to_string());
        }
        out.reverse();
        out
    }

    /// The description of `name` defined at `span`: the first comment above it starting with `name `.
    fn doc(&self, span: Span, name: &str) -> String {
        if name.is_empty() {
            return String::new();
        }
        let prefix = format!("{name} ");
        self.above(span).iter().find_map(|c| c.strip_prefix(&prefix).map(str::to_string)).unwrap_or_default()
    }
}

fn location(span: Span) -> Value {
    json!({"ranges": [{"start": {"line": span.start_line}, "end": {"line": span.end_line}}]})
}

fn source_bytes(text: &str) -> Value {
    use base64::Engine as _;
    json!([base64::engine::general_purpose::STANDARD.encode(text.as_bytes())])
}

/// Insert `key: value` unless the value is empty (Go's `omitempty`).
fn put(obj: &mut serde_json::Map<String, Value>, key: &str, value: Value) {
    let empty = match &value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if !empty {
        obj.insert(key.to_string(), value);
    }
}

impl Outline {
    /// BuildKit's `result.json`.
    pub fn to_json(&self) -> Value {
        let mut o = serde_json::Map::new();
        put(&mut o, "name", json!(self.name));
        put(&mut o, "description", json!(self.description));
        let args: Vec<Value> = self
            .args
            .iter()
            .map(|a| {
                let mut m = serde_json::Map::new();
                m.insert("name".into(), json!(a.name));
                put(&mut m, "description", json!(a.description));
                put(&mut m, "value", json!(a.value));
                m.insert("location".into(), location(a.span));
                Value::Object(m)
            })
            .collect();
        put(&mut o, "args", Value::Array(args));
        for (key, list) in [("secrets", &self.secrets), ("ssh", &self.ssh)] {
            let items: Vec<Value> = list
                .iter()
                .map(|s| {
                    let mut m = serde_json::Map::new();
                    m.insert("name".into(), json!(s.name));
                    put(&mut m, "required", json!(s.required));
                    m.insert("location".into(), location(s.span));
                    Value::Object(m)
                })
                .collect();
            put(&mut o, key, Value::Array(items));
        }
        o.insert("sources".into(), source_bytes(&self.source));
        Value::Object(o)
    }

    /// The table `docker buildx build --call outline` prints.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if !self.name.is_empty() || !self.description.is_empty() {
            let name = if self.name.is_empty() { "(default)" } else { &self.name };
            let mut rows = vec![vec!["TARGET:".to_string(), name.to_string()]];
            if !self.description.is_empty() {
                rows.push(vec!["DESCRIPTION:".into(), self.description.clone()]);
            }
            out += &table(&rows, 1);
            out.push('\n');
        }
        if !self.args.is_empty() {
            let mut rows = vec![vec!["BUILD ARG".to_string(), "VALUE".into(), "DESCRIPTION".into()]];
            rows.extend(self.args.iter().map(|a| vec![a.name.clone(), a.value.clone(), a.description.clone()]));
            out += &table(&rows, 3);
            out.push('\n');
        }
        for (title, list) in [("SECRET", &self.secrets), ("SSH", &self.ssh)] {
            if list.is_empty() {
                continue;
            }
            let mut rows = vec![vec![title.to_string(), "REQUIRED".into()]];
            rows.extend(
                list.iter().map(|s| vec![s.name.clone(), if s.required { "true".into() } else { String::new() }]),
            );
            out += &table(&rows, 3);
            out.push('\n');
        }
        out
    }
}

/// BuildKit's `result.json` of `--call targets`.
pub fn targets_json(targets: &[Target], source: &str) -> Value {
    let list: Vec<Value> = targets
        .iter()
        .map(|t| {
            let mut m = serde_json::Map::new();
            put(&mut m, "name", json!(t.name));
            put(&mut m, "default", json!(t.default));
            put(&mut m, "description", json!(t.description));
            put(&mut m, "base", json!(t.base));
            put(&mut m, "platform", json!(t.platform));
            m.insert("location".into(), location(t.span));
            Value::Object(m)
        })
        .collect();
    json!({"targets": list, "sources": source_bytes(source)})
}

/// The table `docker buildx build --call targets` prints.
pub fn targets_text(targets: &[Target]) -> String {
    let mut rows = vec![vec!["TARGET".to_string(), "DESCRIPTION".into()]];
    for t in targets {
        let name = match (t.name.is_empty(), t.default) {
            (true, true) => "(default)".to_string(),
            (false, true) => format!("{} (default)", t.name),
            _ => t.name.clone(),
        };
        rows.push(vec![name, t.description.clone()]);
    }
    table(&rows, 1)
}

/// `--call subrequests.describe`: the calls rbuild answers, as BuildKit describes its subrequests.
pub fn describe() -> Value {
    let call = |name: &str, description: &str| {
        json!({"name": name, "version": "1.0.0", "type": "rpc", "description": description,
               "metadata": [{"name": "result.json"}, {"name": "result.txt"}]})
    };
    json!([
        call("frontend.outline", "List all parameters current build target supports"),
        call("frontend.targets", "List all targets current build supports"),
        call("frontend.lint", "Lint a Dockerfile"),
        call("frontend.subrequests.describe", "List available subrequest types"),
    ])
}

/// Rows laid out as Go's tabwriter lays them out: every cell but a row's last padded to its column's widest
/// plus `padding` spaces.
fn table(rows: &[Vec<String>], padding: usize) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            let w = cell.chars().count();
            if widths.len() <= i {
                widths.push(w);
            } else {
                widths[i] = widths[i].max(w);
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out += cell;
            if i + 1 < row.len() {
                out += &" ".repeat(widths[i] - cell.chars().count() + padding);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_like_gos_tabwriter() {
        let rows = vec![vec!["TARGET".to_string(), "DESCRIPTION".into()], vec!["build".into(), "compiles".into()]];
        assert_eq!(table(&rows, 1), "TARGET DESCRIPTION\nbuild  compiles\n");
    }
}
