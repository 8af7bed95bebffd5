//! The instruction layer: AST nodes to typed instructions grouped into stages, each with its source span, flags
//! and arguments validated as BuildKit's `instructions` package does. Values stay as written (with `$VAR`
//! references): the engine expands them with the ARG/ENV state at each step.

use super::diagnostic::Span;
use super::flags::{FlagError, FlagKind, Flags};
use super::parser::{Ast, Directive, Heredoc, Node, ParseWarning, chomp_heredoc_content, parse_heredoc_word};
use super::run_mount::{RunMount, parse_mount};

/// A whole Dockerfile, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Vec<Directive>,
    pub escape: char,
    /// ARG instructions before the first FROM (global scope, usable in FROM lines).
    pub meta_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
    pub warnings: Vec<ParseWarning>,
}

/// One build stage: a FROM and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages (usable as `COPY --from=N`).
    pub index: usize,
    /// `FROM ... AS name`, lower-cased.
    pub name: Option<String>,
    /// The base: an image reference, another stage's name, or `scratch` (may contain `$ARG`s).
    pub base: String,
    pub platform: Option<String>,
    pub span: Span,
    pub instructions: Vec<Instruction>,
}

/// A validated instruction and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub kind: InstructionKind,
    pub span: Span,
    /// The logical source line (continuations joined).
    pub original: String,
}

/// A command: exec form (`["a","b"]`) or shell form (one string run by the stage's SHELL).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandLine {
    pub args: Vec<String>,
    /// Shell form: the args are one command string for the SHELL.
    pub prepend_shell: bool,
    /// Heredocs attached to the instruction.
    pub heredocs: Vec<Heredoc>,
}

/// A source given inline by a heredoc in COPY/ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineSource {
    /// The file name (the heredoc delimiter).
    pub path: String,
    pub data: String,
    pub expand: bool,
}

/// COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopySpec {
    pub sources: Vec<String>,
    pub inline_sources: Vec<InlineSource>,
    pub dest: String,
    /// COPY --from.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// COPY --parents.
    pub parents: bool,
    pub excludes: Vec<String>,
    /// ADD --keep-git-dir.
    pub keep_git_dir: bool,
    /// ADD --checksum.
    pub checksum: Option<String>,
    /// ADD --unpack (None: the default, archives from the context are unpacked, URLs are not).
    pub unpack: Option<bool>,
    /// Exec (JSON) form was used.
    pub json: bool,
}

/// RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInstruction {
    pub command: CommandLine,
    pub mounts: Vec<RunMount>,
    /// `--network=default|none|host`.
    pub network: Option<String>,
    /// `--security=sandbox|insecure`.
    pub security: Option<String>,
}

/// A `KEY=value` of ENV or LABEL (value as written, quotes included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Written in the legacy `KEY value` form.
    pub legacy: bool,
}

/// One name of an ARG instruction, with its default if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// HEALTHCHECK (durations in nanoseconds, 0 = inherit the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckSpec {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`: the image config's `Healthcheck.Test`.
    pub test: Vec<String>,
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    pub start_interval: u64,
    pub retries: u32,
}

/// Every instruction except FROM (which starts a [`Stage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    Run(RunInstruction),
    Cmd(CommandLine),
    /// `None` when written with no arguments (resets the entrypoint).
    Entrypoint(Option<CommandLine>),
    Copy(CopySpec),
    Add(CopySpec),
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Maintainer(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Arg(Vec<ArgDecl>),
    /// The trigger instruction's text, recorded in the image for child builds.
    Onbuild(String),
    StopSignal(String),
    Healthcheck(HealthcheckSpec),
    Shell(Vec<String>),
}

impl InstructionKind {
    /// The instruction keyword, upper case.
    pub fn keyword(&self) -> &'static str {
        match self {
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Maintainer(_) => "MAINTAINER",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::User(_) => "USER",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::StopSignal(_) => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
            InstructionKind::Shell(_) => "SHELL",
        }
    }
}

/// All instruction keywords, for suggestions.
pub const INSTRUCTIONS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// An invalid instruction: the message, what to point at on the line, and an optional hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructionError {
    pub span: Span,
    pub message: String,
    /// Text on the instruction's first line to underline (a flag, the keyword).
    pub needle: String,
    pub hint: Option<String>,
}

type Res<T> = Result<T, InstructionError>;

struct Ctx<'a> {
    node: &'a Node,
}

impl Ctx<'_> {
    fn err(&self, message: impl Into<String>) -> InstructionError {
        InstructionError {
            span: self.node.span,
            message: message.into(),
            needle: self.node.keyword.clone(),
            hint: None,
        }
    }

    fn flag_err(&self, e: FlagError) -> InstructionError {
        InstructionError { span: self.node.span, message: e.message, needle: e.flag, hint: None }
    }

    fn flags(&self, name: &'static str, spec: &[(&'static str, FlagKind)]) -> Res<Flags> {
        Flags::new(name, spec).parse(&self.node.flags).map_err(|e| self.flag_err(e))
    }

    fn exactly_one(&self, name: &str) -> Res<String> {
        match self.node.args.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(self.err(format!("{name} requires exactly one argument"))),
        }
    }

    fn at_least_one(&self, name: &str) -> Res<()> {
        if self.node.args.is_empty() {
            return Err(self.err(format!("{name} requires at least one argument")));
        }
        Ok(())
    }

    fn command_line(&self, args: &[String]) -> CommandLine {
        let args = if args.is_empty() || self.node.json { args.to_vec() } else { vec![args.join(" ")] };
        CommandLine { args, prepend_shell: !self.node.json, heredocs: self.node.heredocs.clone() }
    }
}

/// Validate a parsed Dockerfile into stages of typed instructions.
pub fn from_ast(ast: &Ast) -> Res<Dockerfile> {
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &ast.nodes {
        let ctx = Ctx { node };
        if node.keyword.eq_ignore_ascii_case("from") {
            // A repeated stage name is BuildKit's DuplicateStageName warning; the first stage of the name is used.
            stages.push(parse_from(&ctx, stages.len())?);
            continue;
        }
        let kind = parse_instruction(&ctx)?;
        let instruction = Instruction { kind, span: node.span, original: node.original.clone() };
        match stages.last_mut() {
            Some(stage) => stage.instructions.push(instruction),
            None if matches!(instruction.kind, InstructionKind::Arg(_)) => meta_args.push(instruction),
            None => {
                let mut e = ctx.err(format!(
                    "{} before the first FROM: no build stage in current context",
                    node.keyword.to_ascii_uppercase()
                ));
                e.hint = Some("only ARG may come before the first FROM; move this instruction after a FROM".into());
                return Err(e);
            }
        }
    }
    if stages.is_empty() {
        let line = ast.nodes.last().map_or(0, |n| n.span.end_line);
        return Err(InstructionError {
            span: Span::line(line),
            message: "dockerfile contains no stages to build".into(),
            needle: String::new(),
            hint: Some("add a FROM instruction (FROM scratch for an empty base)".into()),
        });
    }
    Ok(Dockerfile {
        directives: ast.directives.clone(),
        escape: ast.escape,
        meta_args,
        stages,
        warnings: ast.warnings.clone(),
    })
}

fn parse_from(ctx: &Ctx, index: usize) -> Res<Stage> {
    let flags = ctx.flags("FROM", &[("platform", FlagKind::String)])?;
    let args = &ctx.node.args;
    let name = match args.as_slice() {
        [_] => None,
        [_, kw, name] if kw.eq_ignore_ascii_case("as") => {
            let lower = name.to_ascii_lowercase();
            let mut chars = lower.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
            if !valid {
                return Err(InstructionError {
                    needle: name.clone(),
                    ..ctx.err(format!(
                        "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                    ))
                });
            }
            Some(lower)
        }
        _ => {
            let mut e = ctx.err("FROM requires either one or three arguments");
            e.hint = Some("write FROM IMAGE or FROM IMAGE AS NAME".into());
            return Err(e);
        }
    };
    Ok(Stage {
        index,
        name,
        base: args[0].clone(),
        platform: flags.string("platform"),
        span: ctx.node.span,
        instructions: Vec::new(),
    })
}

fn no_flags(ctx: &Ctx, name: &'static str) -> Res<()> {
    ctx.flags(name, &[]).map(|_| ())
}

fn key_values(ctx: &Ctx, name: &str) -> Res<Vec<KeyValue>> {
    let args = &ctx.node.args;
    if args.is_empty() {
        return Err(ctx.err(format!("{name} requires at least one argument")));
    }
    if !args.len().is_multiple_of(3) {
        return Err(ctx.err(format!("Bad input to {name}, too many arguments")));
    }
    args.chunks(3)
        .map(|c| {
            if c[0].is_empty() {
                return Err(ctx.err(format!("{name} names can not be blank")));
            }
            Ok(KeyValue { key: c[0].clone(), value: c[1].clone(), legacy: c[2].is_empty() })
        })
        .collect()
}

fn parse_instruction(ctx: &Ctx) -> Res<InstructionKind> {
    let node = ctx.node;
    let args = &node.args;
    Ok(match node.keyword_lower().as_str() {
        "run" => parse_run(ctx)?,
        "cmd" => {
            no_flags(ctx, "CMD")?;
            InstructionKind::Cmd(ctx.command_line(args))
        }
        "entrypoint" => {
            no_flags(ctx, "ENTRYPOINT")?;
            InstructionKind::Entrypoint(if args.is_empty() && !node.json { None } else { Some(ctx.command_line(args)) })
        }
        "copy" | "add" => parse_copy(ctx)?,
        "env" => {
            no_flags(ctx, "ENV")?;
            InstructionKind::Env(key_values(ctx, "ENV")?)
        }
        "label" => {
            no_flags(ctx, "LABEL")?;
            InstructionKind::Label(key_values(ctx, "LABEL")?)
        }
        "maintainer" => {
            no_flags(ctx, "MAINTAINER")?;
            InstructionKind::Maintainer(ctx.exactly_one("MAINTAINER")?)
        }
        "expose" => {
            no_flags(ctx, "EXPOSE")?;
            ctx.at_least_one("EXPOSE")?;
            for port in args.iter().filter(|p| !p.contains('$')) {
                super::expose::parse_port_spec(port)
                    .map_err(|m| InstructionError { needle: port.clone(), ..ctx.err(m) })?;
            }
            // BuildKit sorts the words (its history lists the ports in that order).
            let mut ports = args.clone();
            ports.sort();
            InstructionKind::Expose(ports)
        }
        "volume" => {
            no_flags(ctx, "VOLUME")?;
            ctx.at_least_one("VOLUME")?;
            if args.iter().any(|v| v.trim().is_empty()) {
                return Err(ctx.err("VOLUME specified can not be an empty string"));
            }
            InstructionKind::Volume(args.clone())
        }
        "user" => {
            no_flags(ctx, "USER")?;
            InstructionKind::User(ctx.exactly_one("USER")?)
        }
        "workdir" => {
            no_flags(ctx, "WORKDIR")?;
            InstructionKind::Workdir(ctx.exactly_one("WORKDIR")?)
        }
        "arg" => {
            no_flags(ctx, "ARG")?;
            ctx.at_least_one("ARG")?;
            let decls = args
                .iter()
                .map(|a| match a.split_once('=') {
                    Some(("", _)) => Err(ctx.err("ARG names can not be blank")),
                    Some((k, v)) => Ok(ArgDecl { name: k.to_string(), default: Some(v.to_string()) }),
                    None => Ok(ArgDecl { name: a.clone(), default: None }),
                })
                .collect::<Res<Vec<_>>>()?;
            InstructionKind::Arg(decls)
        }
        "onbuild" => parse_onbuild(ctx)?,
        "stopsignal" => {
            no_flags(ctx, "STOPSIGNAL")?;
            InstructionKind::StopSignal(ctx.exactly_one("STOPSIGNAL")?)
        }
        "healthcheck" => parse_healthcheck(ctx)?,
        "shell" => {
            no_flags(ctx, "SHELL")?;
            if !node.json {
                let mut e = ctx.err("SHELL requires the arguments to be in JSON form");
                e.hint = Some("write it as SHELL [\"/bin/sh\", \"-c\"]".into());
                return Err(e);
            }
            ctx.at_least_one("SHELL")?;
            InstructionKind::Shell(args.clone())
        }
        _ => {
            let mut e = ctx.err(format!("unknown instruction: {}", node.keyword));
            if let Some(s) = super::suggest::closest(&node.keyword, INSTRUCTIONS) {
                e.message.push_str(&format!(" (did you mean {s}?)"));
            }
            e.hint = Some(format!("valid instructions are {}", INSTRUCTIONS.join(", ")));
            return Err(e);
        }
    })
}

fn parse_run(ctx: &Ctx) -> Res<InstructionKind> {
    let flags = ctx
        .flags("RUN", &[("mount", FlagKind::Strings), ("network", FlagKind::String), ("security", FlagKind::String)])?;
    if ctx.node.args.is_empty() {
        return Err(ctx.err("RUN requires at least one argument"));
    }
    let mounts = flags
        .strings("mount")
        .iter()
        .map(|m| parse_mount(m).map_err(|msg| InstructionError { needle: "--mount".into(), ..ctx.err(msg) }))
        .collect::<Res<Vec<_>>>()?;
    let network = flags.string("network");
    check_choice(ctx, "network", network.as_deref(), &["default", "none", "host"])?;
    let security = flags.string("security");
    check_choice(ctx, "security", security.as_deref(), &["sandbox", "insecure"])?;
    Ok(InstructionKind::Run(RunInstruction { command: ctx.command_line(&ctx.node.args), mounts, network, security }))
}

/// A RUN flag whose value must be one of `allowed` (unless it refers to a variable, checked when expanded).
fn check_choice(ctx: &Ctx, flag: &str, value: Option<&str>, allowed: &[&str]) -> Res<()> {
    match value {
        Some(v) if !v.contains('$') && !allowed.contains(&v) => Err(InstructionError {
            needle: format!("--{flag}"),
            ..ctx.err(format!("unsupported {flag} mode {v:?} for RUN --{flag} (use {})", allowed.join(", ")))
        }),
        _ => Ok(()),
    }
}

fn parse_copy(ctx: &Ctx) -> Res<InstructionKind> {
    let is_add = ctx.node.keyword.eq_ignore_ascii_case("add");
    let name = if is_add { "ADD" } else { "COPY" };
    let mut spec: Vec<(&'static str, FlagKind)> = vec![
        ("chown", FlagKind::String),
        ("chmod", FlagKind::String),
        ("link", FlagKind::Bool),
        ("exclude", FlagKind::Strings),
    ];
    if is_add {
        spec.extend([("keep-git-dir", FlagKind::Bool), ("checksum", FlagKind::String), ("unpack", FlagKind::Bool)]);
    } else {
        spec.extend([("from", FlagKind::String), ("parents", FlagKind::Bool)]);
    }
    let flags = ctx.flags(name, &spec)?;
    let args = &ctx.node.args;
    if args.len() < 2 {
        let mut e = ctx.err(format!(
            "{name} requires at least two arguments, but only one was provided. Destination could not be determined"
        ));
        e.hint = Some(format!("write {name} SOURCE... DEST"));
        return Err(e);
    }
    let (dest, srcs) = args.split_last().map(|(d, s)| (d.clone(), s)).unwrap_or_default();
    if !ctx.node.json && parse_heredoc_word(&dest).ok().flatten().is_some() {
        return Err(ctx.err(format!("{name} cannot accept a heredoc as a destination")));
    }
    let mut sources = Vec::new();
    let mut inline_sources = Vec::new();
    for src in srcs {
        match parse_heredoc_word(src).ok().flatten().filter(|_| !ctx.node.json) {
            Some(doc) => {
                let content = ctx.node.heredocs.iter().find(|h| h.name == doc.name).map(|h| h.content.clone());
                let content = content.unwrap_or_default();
                let data = if doc.chomp { chomp_heredoc_content(&content) } else { content };
                inline_sources.push(InlineSource { path: doc.name, data, expand: doc.expand });
            }
            None => sources.push(src.clone()),
        }
    }
    if let Some(mode) = flags.string("chmod").filter(|m| !m.contains('$')) {
        validate_chmod(&mode).map_err(|m| InstructionError { needle: "--chmod".into(), ..ctx.err(m) })?;
    }
    let checksum = flags.string("checksum");
    if let Some(c) = checksum.as_deref().filter(|c| !c.contains('$')) {
        validate_checksum(c).map_err(|m| InstructionError { needle: "--checksum".into(), ..ctx.err(m) })?;
    }
    let copy = CopySpec {
        sources,
        inline_sources,
        dest,
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        parents: flags.bool("parents"),
        excludes: flags.strings("exclude"),
        keep_git_dir: flags.bool("keep-git-dir"),
        checksum,
        unpack: flags.opt_bool("unpack"),
        json: ctx.node.json,
    };
    Ok(if is_add { InstructionKind::Add(copy) } else { InstructionKind::Copy(copy) })
}

fn parse_onbuild(ctx: &Ctx) -> Res<InstructionKind> {
    no_flags(ctx, "ONBUILD")?;
    let Some(nested) = ctx.node.nested.as_deref() else {
        return Err(ctx.err("ONBUILD requires at least one argument"));
    };
    let trigger = nested.keyword.to_ascii_uppercase();
    match trigger.as_str() {
        "ONBUILD" => return Err(ctx.err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")),
        "MAINTAINER" | "FROM" => {
            return Err(ctx.err(format!("{trigger} isn't allowed as an ONBUILD trigger")));
        }
        _ => {}
    }
    // The expression recorded in the image: the line without its ONBUILD keyword, plus heredoc bodies.
    let original = ctx.node.original.trim_start();
    let mut expr = original[ctx.node.keyword.len().min(original.len())..].trim_start().to_string();
    for doc in &ctx.node.heredocs {
        expr.push('\n');
        expr.push_str(&doc.content);
        expr.push_str(&doc.name);
    }
    Ok(InstructionKind::Onbuild(expr))
}

fn parse_healthcheck(ctx: &Ctx) -> Res<InstructionKind> {
    let args = &ctx.node.args;
    let Some(typ) = args.first() else {
        return Err(ctx.err("HEALTHCHECK requires at least one argument"));
    };
    let typ = typ.to_ascii_uppercase();
    if typ == "NONE" {
        if args.len() > 1 {
            return Err(ctx.err("HEALTHCHECK NONE takes no arguments"));
        }
        return Ok(InstructionKind::Healthcheck(HealthcheckSpec {
            test: vec!["NONE".into()],
            interval: 0,
            timeout: 0,
            start_period: 0,
            start_interval: 0,
            retries: 0,
        }));
    }
    let flags = ctx.flags(
        "HEALTHCHECK",
        &[
            ("interval", FlagKind::String),
            ("timeout", FlagKind::String),
            ("start-period", FlagKind::String),
            ("start-interval", FlagKind::String),
            ("retries", FlagKind::String),
        ],
    )?;
    if typ != "CMD" {
        let mut e = ctx.err(format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)"));
        e.needle = args[0].clone();
        return Err(e);
    }
    let cmd = ctx.command_line(&args[1..]);
    if cmd.args.is_empty() {
        return Err(ctx.err("Missing command after HEALTHCHECK CMD"));
    }
    let mut test = vec![if ctx.node.json { "CMD".to_string() } else { "CMD-SHELL".to_string() }];
    test.extend(cmd.args);
    let duration = |name: &'static str| -> Res<u64> {
        let Some(v) = flags.string(name) else {
            return Ok(0);
        };
        let flag_err = |m: String| InstructionError { needle: format!("--{name}"), ..ctx.err(m) };
        let d = parse_go_duration(&v).map_err(|m| flag_err(format!("invalid --{name} {v:?}: {m}")))?;
        if d != 0 && d < 1_000_000 {
            return Err(flag_err(format!("Interval \"{name}\" cannot be less than 1ms")));
        }
        u64::try_from(d).map_err(|_| flag_err(format!("Interval \"{name}\" cannot be negative")))
    };
    let retries = match flags.string("retries") {
        None => 0,
        Some(v) => {
            let flag_err = |m: String| InstructionError { needle: "--retries".into(), ..ctx.err(m) };
            let n: i64 = v.parse().map_err(|_| flag_err(format!("invalid --retries {v:?}: expected a number")))?;
            if n < 0 {
                return Err(flag_err(format!("--retries cannot be negative ({n})")));
            }
            u32::try_from(n).map_err(|_| flag_err(format!("--retries {n} is too large")))?
        }
    };
    Ok(InstructionKind::Healthcheck(HealthcheckSpec {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    }))
}

/// Go's `time.ParseDuration`: e.g. `300ms`, `-1.5h`, `2h45m`, `0`; returns nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<i128, String> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." {
            return Err("expected a number".into());
        }
        let value: f64 = num.parse().map_err(|_| format!("bad number {num:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err("missing unit (use ns, us, ms, s, m or h)".into()),
            u => return Err(format!("unknown unit {u:?} (use ns, us, ms, s, m or h)")),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if total > 9.3e18 {
        return Err("duration too large".into());
    }
    let ns = total.round() as i128;
    Ok(if neg { -ns } else { ns })
}

fn validate_chmod(mode: &str) -> Result<(), String> {
    if mode.chars().all(|c| c.is_digit(8)) && !mode.is_empty() && mode.len() <= 4 {
        return Ok(());
    }
    let symbolic = mode.split(',').all(|clause| {
        let ops = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        !ops.is_empty()
            && ops.split_inclusive(['+', '-', '=']).count() >= 1
            && ops.starts_with(['+', '-', '='])
            && ops.chars().all(|c| matches!(c, '+' | '-' | '=' | 'r' | 'w' | 'x' | 'X' | 's' | 't'))
    });
    if symbolic {
        return Ok(());
    }
    Err(invalid_chmod(mode))
}

/// The error for a `--chmod` that is no mode: BuildKit's words first (testCopyInvalidChmod), then what rbuild also
/// takes.
pub fn invalid_chmod(mode: &str) -> String {
    format!(
        "invalid chmod parameter: '{mode}'. it should be octal string and between 0 and 07777 (or symbolic, such as \
         u+x,g-w)"
    )
}

/// An ADD `--checksum`: a digest (for URLs) or a commit's hex (for git sources).
fn validate_checksum(c: &str) -> Result<(), String> {
    let hex = |h: &str| !h.is_empty() && h.chars().all(|x| x.is_ascii_hexdigit());
    let ok = match c.split_once(':') {
        Some(("sha256", h)) => h.len() == 64 && hex(h),
        Some(("sha384", h)) => h.len() == 96 && hex(h),
        Some(("sha512", h)) => h.len() == 128 && hex(h),
        Some(_) => false,
        None => matches!(c.len(), 40 | 64) && hex(c),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid checksum {c:?}: expected sha256:<64 hex digits> (or sha384/sha512) for a URL, a commit for git"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5s"), Ok(5_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("-2ms"), Ok(-2_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("5d").is_err());
    }

    #[test]
    fn modes_and_checksums() {
        assert!(validate_chmod("755").is_ok() && validate_chmod("u+x,g-w").is_ok() && validate_chmod("a=rX").is_ok());
        assert!(validate_chmod("999").is_err() && validate_chmod("u*x").is_err());
        assert!(validate_checksum(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(validate_checksum("md5:abc").is_err() && validate_checksum("foobar").is_err());
        assert!(validate_checksum(&"a".repeat(40)).is_ok());
    }
}
