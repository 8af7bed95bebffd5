//! Build checks: a handful of BuildKit's Dockerfile lint rules (same names, same messages), the `# check=`
//! directive (`skip=Rule1,Rule2` or `skip=all`, `error=true`), and the `# syntax=` hint (never fetched; a
//! frontend other than Docker's gets a warning, since rbuild always uses its own).

use std::collections::BTreeSet;

use super::instructions::{Dockerfile, InstructionKind};

/// One finding of a build check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintWarning {
    /// BuildKit's rule name (`JSONArgsRecommended`), or `Syntax` for the `# syntax=` note.
    pub rule: &'static str,
    pub message: String,
    pub line: usize,
}

/// What `# check=` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckDirective {
    pub skip: BTreeSet<String>,
    pub skip_all: bool,
    /// Warnings fail the build.
    pub error: bool,
    /// Experimental rules asked for (`experimental=A,B` or `all`); they are off otherwise.
    pub experimental: BTreeSet<String>,
}

impl CheckDirective {
    /// Parse `skip=A,B;error=true` (the directive's value).
    pub fn parse(value: &str) -> CheckDirective {
        let mut out = CheckDirective::default();
        for part in value.split(';') {
            match part.trim().split_once('=') {
                Some(("skip", rules)) => {
                    for r in rules.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        if r.eq_ignore_ascii_case("all") {
                            out.skip_all = true;
                        } else {
                            out.skip.insert(r.to_string());
                        }
                    }
                }
                Some(("error", v)) => out.error = v.trim().eq_ignore_ascii_case("true"),
                Some(("experimental", rules)) => {
                    out.experimental
                        .extend(rules.split(',').map(str::trim).filter(|r| !r.is_empty()).map(String::from));
                }
                _ => {}
            }
        }
        out
    }
}

/// The `# check=` directive of a Dockerfile (defaults when there is none).
pub fn check_directive(df: &Dockerfile) -> CheckDirective {
    df.directives.iter().find(|d| d.name == "check").map(|d| CheckDirective::parse(&d.value)).unwrap_or_default()
}

/// Frontends whose Dockerfile syntax rbuild implements itself.
fn known_frontend(image: &str) -> bool {
    let name = image.split(['@', ':']).next().unwrap_or(image).trim_start_matches("docker.io/");
    matches!(name, "docker/dockerfile" | "docker/dockerfile-upstream")
}

fn all_upper(w: &str) -> bool {
    w.chars().all(|c| !c.is_ascii_lowercase())
}

fn all_lower(w: &str) -> bool {
    w.chars().all(|c| !c.is_ascii_uppercase())
}

/// Run the checks over a parsed Dockerfile (`text` is its source, for keyword casing); skipped rules are left
/// out. Sorted by line. Long because it is the rule table: one small block per BuildKit rule, in one pass over the
/// instructions (declaring rules as values, as BuildKit's linter does, is the planned split).
pub fn lint(df: &Dockerfile, text: &str) -> Vec<LintWarning> {
    lint_with(df, text, &check_directive(df))
}

/// The checks a build makes: the `BUILDKIT_DOCKERFILE_CHECK` build arg, when given, replaces the Dockerfile's
/// `# check=` directive (BuildKit's testRuleCheckOption).
pub fn build_check(df: &Dockerfile, build_args: &std::collections::BTreeMap<String, String>) -> CheckDirective {
    match build_args.get("BUILDKIT_DOCKERFILE_CHECK") {
        Some(v) => CheckDirective::parse(v),
        None => check_directive(df),
    }
}

/// [`lint`] with the checks given.
pub fn lint_with(df: &Dockerfile, text: &str, check: &CheckDirective) -> Vec<LintWarning> {
    let lines: Vec<&str> = text.lines().collect();
    let directive_lines: BTreeSet<usize> = df.directives.iter().map(|d| d.line).collect();
    let line_text = |n: usize| lines.get(n.saturating_sub(1)).copied().unwrap_or("").trim();
    let mut out = Vec::new();
    let mut warn = |rule: &'static str, line: usize, message: String| {
        if !check.skip_all && !check.skip.contains(rule) {
            out.push(LintWarning { rule, message, line });
        }
    };
    if let Some(d) = df.directives.iter().find(|d| d.name == "syntax")
        && !known_frontend(d.value.trim())
    {
        warn(
            "Syntax",
            d.line,
            format!("# syntax={} names another frontend; rbuild uses its own Dockerfile frontend", d.value.trim()),
        );
    }
    // The parser's empty continuation lines (BuildKit's NoEmptyContinuation).
    for w in df.warnings.iter().filter(|w| w.message.starts_with("Empty continuation line")) {
        warn("NoEmptyContinuation", w.line, "Empty continuation line".into());
    }
    // The global ARGs with their defaults only (no build args), for InvalidDefaultArgInFrom.
    let mut default_args: Vec<(String, String)> = Vec::new();
    for ins in &df.meta_args {
        if let InstructionKind::Arg(decls) = &ins.kind {
            for d in decls {
                let lexer = super::shell::Lexer::new(df.escape);
                let value = d.default.as_deref().and_then(|v| lexer.process_word(v, &default_args).ok());
                default_args.retain(|(k, _)| *k != d.name);
                default_args.push((d.name.clone(), value.unwrap_or_default()));
            }
        }
    }
    for stage in &df.stages {
        let from = line_text(stage.span.start_line);
        let words: Vec<&str> = from.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| w.eq_ignore_ascii_case("as"))
            && let (Some(kw), Some(as_kw), Some(name)) = (words.first(), words.get(i), words.get(i + 1))
        {
            if (all_upper(kw) && all_lower(as_kw)) || (all_lower(kw) && all_upper(as_kw)) {
                warn(
                    "FromAsCasing",
                    stage.span.start_line,
                    format!("'{as_kw}' and '{kw}' keywords' casing do not match"),
                );
            }
            if name.chars().any(|c| c.is_ascii_uppercase()) {
                warn("StageNameCasing", stage.span.start_line, format!("Stage name '{name}' should be lowercase"));
            }
            if name.eq_ignore_ascii_case("scratch") || name.eq_ignore_ascii_case("context") {
                warn(
                    "ReservedStageName",
                    stage.span.start_line,
                    format!(
                        "Stage name should not use the same name as reserved stage {:?}",
                        name.to_ascii_lowercase()
                    ),
                );
            }
        }
        // Variables in FROM must be global ARGs or predefined ones (BuildKit's UndefinedArgInFrom).
        let declared: BTreeSet<String> = df
            .meta_args
            .iter()
            .flat_map(|i| match &i.kind {
                InstructionKind::Arg(decls) => decls.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .chain(PREDEFINED_ARGS.iter().map(|a| a.to_string()))
            .collect();
        for var in
            variables_in(&stage.base).into_iter().chain(stage.platform.as_deref().map(variables_in).unwrap_or_default())
        {
            if !declared.contains(&var) {
                let hint = super::suggest::closest(&var, declared.iter().map(String::as_str))
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                warn(
                    "UndefinedArgInFrom",
                    stage.span.start_line,
                    format!("FROM argument '{var}' is not declared{hint}"),
                );
            }
        }
        // With the global ARGs' defaults alone, the base must name something (BuildKit's InvalidDefaultArgInFrom).
        if stage.base.contains('$') && !variables_in(&stage.base).iter().any(|v| PREDEFINED_ARGS.contains(&v.as_str()))
        {
            let lexer = super::shell::Lexer::new(df.escape);
            if let Ok(base) = lexer.process_word(&stage.base, &default_args)
                && (base.is_empty()
                    || !(base.eq_ignore_ascii_case("scratch")
                        || df.stages.iter().any(|s| s.name.as_deref() == Some(base.to_ascii_lowercase().as_str()))
                        || rbuild_registry::Reference::parse(&base).is_ok()))
            {
                warn(
                    "InvalidDefaultArgInFrom",
                    stage.span.start_line,
                    format!("Default value for ARG {} results in empty or invalid base image name", stage.base),
                );
            }
        }
        if let Some(platform) = &stage.platform {
            if platform == "$TARGETPLATFORM" || platform == "${TARGETPLATFORM}" {
                warn(
                    "RedundantTargetPlatform",
                    stage.span.start_line,
                    format!(
                        "Setting platform to predefined {platform} in FROM is redundant as this is the default behavior"
                    ),
                );
            } else if !platform.contains('$') {
                // A constant platform, unless the stage's name says which (`AS build_amd64`), as BuildKit has it.
                let mut parts = platform.split('/');
                let (os, arch) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let name = stage.name.as_deref().unwrap_or("");
                if !os.is_empty() && !arch.is_empty() && !name.contains(os) && !name.contains(arch) {
                    warn(
                        "FromPlatformFlagConstDisallowed",
                        stage.span.start_line,
                        format!("FROM --platform flag should not use constant value {platform:?}"),
                    );
                }
            }
        }
        if let Some(name) = &stage.name
            && df.stages[..stage.index].iter().any(|s| s.name.as_ref() == Some(name))
        {
            warn(
                "DuplicateStageName",
                stage.span.start_line,
                format!("Duplicate stage name {name:?}, stage names should be unique"),
            );
        }
        // Only a stage's first WORKDIR is checked, and not when the stage it is built on set one (BuildKit).
        let mut workdir_set = workdir_set_by(df, stage);
        let mut seen_cmd: Option<usize> = None;
        let mut seen_entrypoint: Option<usize> = None;
        let mut seen_healthcheck: Option<usize> = None;
        for ins in &stage.instructions {
            let line = ins.span.start_line;
            let keyword = ins.original.split_whitespace().next().unwrap_or("");
            match &ins.kind {
                InstructionKind::Cmd(_) | InstructionKind::Entrypoint(_) => {
                    let (name, shell_form) = match &ins.kind {
                        InstructionKind::Cmd(c) => ("CMD", c.prepend_shell),
                        InstructionKind::Entrypoint(c) => ("ENTRYPOINT", c.as_ref().is_some_and(|c| c.prepend_shell)),
                        _ => ("CMD", false),
                    };
                    if shell_form {
                        warn(
                            "JSONArgsRecommended",
                            line,
                            format!(
                                "JSON arguments recommended for {name} to prevent unintended behavior related to OS \
                                 signals"
                            ),
                        );
                    }
                    let seen = if name == "CMD" { &mut seen_cmd } else { &mut seen_entrypoint };
                    // Reported on the instruction that is overridden, as BuildKit does.
                    if let Some(overridden) = seen.replace(line) {
                        warn(
                            "MultipleInstructionsDisallowed",
                            overridden,
                            format!(
                                "Multiple {name} instructions should not be used in the same stage because only the last one will be used"
                            ),
                        );
                    }
                }
                InstructionKind::Healthcheck(_) => {
                    if let Some(overridden) = seen_healthcheck.replace(line) {
                        warn(
                            "MultipleInstructionsDisallowed",
                            overridden,
                            "Multiple HEALTHCHECK instructions should not be used in the same stage because only the \
                             last one will be used"
                                .into(),
                        );
                    }
                }
                InstructionKind::Arg(decls) => {
                    for d in decls.iter().filter(|d| looks_secret(&d.name)) {
                        warn("SecretsUsedInArgOrEnv", line, secrets_message("ARG", &d.name));
                    }
                }
                InstructionKind::Maintainer(_) => warn(
                    "MaintainerDeprecated",
                    line,
                    "Maintainer instruction is deprecated in favor of using label".into(),
                ),
                InstructionKind::Env(_) | InstructionKind::Label(_) => {
                    if let InstructionKind::Env(kvs) = &ins.kind {
                        for kv in kvs.iter().filter(|kv| looks_secret(&kv.key)) {
                            warn("SecretsUsedInArgOrEnv", line, secrets_message("ENV", &kv.key));
                        }
                    }
                    let first = ins.original.split_whitespace().nth(1).unwrap_or("");
                    if !first.contains('=') {
                        let k = keyword.to_ascii_uppercase();
                        warn(
                            "LegacyKeyValueFormat",
                            line,
                            format!("\"{k} key=value\" should be used instead of legacy \"{k} key value\" format"),
                        );
                    }
                }
                InstructionKind::Workdir(w)
                    if !std::mem::replace(&mut workdir_set, true) && !w.starts_with('/') && !w.starts_with('$') =>
                {
                    warn(
                        "WorkdirRelativePath",
                        line,
                        format!("Relative workdir \"{w}\" can have unexpected results if the base image changes"),
                    );
                }
                InstructionKind::Expose(ports) => {
                    for p in ports {
                        let Ok(spec) = super::expose::parse_port_spec(p) else { continue };
                        if spec.proto_not_lowercase {
                            warn(
                                "ExposeProtoCasing",
                                line,
                                format!("Defined protocol '{p}' in EXPOSE instruction should be lowercase"),
                            );
                        }
                        if spec.maps_host {
                            warn(
                                "ExposeInvalidFormat",
                                line,
                                format!(
                                    "EXPOSE instruction should not define an IP address or host-port mapping, found \
                                     '{p}'"
                                ),
                            );
                        }
                    }
                }
                _ => {}
            }
            if !all_upper(keyword) && !all_lower(keyword) {
                warn(
                    "ConsistentInstructionCasing",
                    line,
                    format!("Command '{keyword}' should match the case of the command majority (uppercase)"),
                );
            }
        }
    }
    // InvalidDefinitionDescription (experimental): the comment right above an ARG or a named FROM describes it, so
    // it starts with the name it describes.
    let experimental = |rule: &str| check.experimental.contains(rule) || check.experimental.contains("all");
    if experimental("InvalidDefinitionDescription") {
        let mut definitions: Vec<(&str, usize, Vec<String>)> = Vec::new();
        for ins in df.meta_args.iter().chain(df.stages.iter().flat_map(|s| &s.instructions)) {
            if let InstructionKind::Arg(decls) = &ins.kind {
                definitions.push(("ARG", ins.span.start_line, decls.iter().map(|d| d.name.clone()).collect()));
            }
        }
        for stage in &df.stages {
            if let Some(name) = &stage.name {
                definitions.push(("FROM", stage.span.start_line, vec![name.clone()]));
            }
        }
        for (instruction, line, keys) in definitions {
            let Some(comment) = description_comment(&lines, line, &directive_lines) else { continue };
            if keys.is_empty() || keys.iter().any(|k| comment.split(' ').next() == Some(k.as_str())) {
                continue;
            }
            let example = if keys.len() > 1 { "<arg_key>" } else { keys[0].as_str() };
            warn(
                "InvalidDefinitionDescription",
                line,
                format!("Comment for {instruction} should follow the format: `# {example} <description>`"),
            );
        }
    }
    // A `# check=` comment right above an instruction applies to it alone (BuildKit's testSecretsUsedInArgOrEnv).
    out.retain(|w| {
        let local = local_check(&lines, w.line, &directive_lines);
        !local.skip_all && !local.skip.contains(w.rule)
    });
    out.sort_by_key(|w| w.line);
    out
}

/// The ARGs every build has.
const PREDEFINED_ARGS: [&str; 11] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
];

/// The names of the variables a word refers to (`$NAME`, `${NAME...}`), in order.
pub(crate) fn variables_in(word: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '$' => {
                if chars.peek() == Some(&'{') {
                    chars.next();
                }
                let mut name = String::new();
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' {
                        name.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) {
                    out.push(name);
                }
            }
            _ => {}
        }
    }
    out
}

/// BuildKit's SecretsUsedInArgOrEnv test of a name: a word of it (`_`-separated) is a secret's (`password`,
/// `token`, ...) and none says it is not (`public`, `file`, `version`).
fn looks_secret(name: &str) -> bool {
    const SECRET: [&str; 10] =
        ["apikey", "auth", "credential", "credentials", "key", "password", "pword", "passwd", "secret", "token"];
    const ALLOWED: [&str; 3] = ["public", "file", "version"];
    let words: Vec<String> = name.split('_').map(str::to_ascii_lowercase).collect();
    let any_word = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
    any_word(&SECRET) && !any_word(&ALLOWED)
}

fn secrets_message(instruction: &str, key: &str) -> String {
    format!("Do not use ARG or ENV instructions for sensitive data ({instruction} {key:?})")
}

/// The comment describing the instruction at `line` (1-based), as BuildKit's parser keeps it: the nearest comment
/// above it, blank lines between them allowed; an empty `#` line (or a directive, or another instruction) means
/// there is none.
fn description_comment(lines: &[&str], line: usize, directive_lines: &BTreeSet<usize>) -> Option<String> {
    let mut n = line.saturating_sub(1);
    while n >= 1 {
        if directive_lines.contains(&n) {
            return None;
        }
        let text = lines.get(n - 1).map_or("", |l| l.trim());
        if text.is_empty() {
            n -= 1;
            continue;
        }
        let comment = text.strip_prefix('#')?.trim();
        return (!comment.is_empty()).then(|| comment.to_string());
    }
    None
}

/// Whether a `# check=skip=...` comment right above the instruction at `line` skips `rule` for it.
pub fn skipped_at(df: &Dockerfile, text: &str, line: usize, rule: &str) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    let directive_lines: BTreeSet<usize> = df.directives.iter().map(|d| d.line).collect();
    let local = local_check(&lines, line, &directive_lines);
    local.skip_all || local.skip.contains(rule)
}

/// The `# check=` directive of the comments right above line `line` (1-based), for that instruction only; the
/// file's own directives (`directive_lines`) are not such comments.
fn local_check(lines: &[&str], line: usize, directive_lines: &BTreeSet<usize>) -> CheckDirective {
    let mut out = CheckDirective::default();
    let mut n = line.saturating_sub(1);
    while n >= 1 && !directive_lines.contains(&n) {
        let text = lines.get(n - 1).map_or("", |l| l.trim());
        let Some(comment) = text.strip_prefix('#') else { break };
        if let Some(value) = comment.trim().strip_prefix("check=") {
            let value = value.split_whitespace().next().unwrap_or("");
            let parsed = CheckDirective::parse(value);
            out.skip_all |= parsed.skip_all;
            out.skip.extend(parsed.skip);
        }
        n -= 1;
    }
    out
}

/// Whether a WORKDIR was set in the stages `stage` is built on (through `FROM <stage>`), as BuildKit's dispatch
/// state inherits it.
fn workdir_set_by(df: &Dockerfile, stage: &super::instructions::Stage) -> bool {
    let mut base = stage.base.to_ascii_lowercase();
    let mut hops = 0;
    while let Some(parent) = df.stages[..stage.index].iter().rev().find(|s| s.name.as_deref() == Some(base.as_str())) {
        if parent.instructions.iter().any(|i| matches!(i.kind, InstructionKind::Workdir(_))) {
            return true;
        }
        base = parent.base.to_ascii_lowercase();
        hops += 1;
        if hops > df.stages.len() {
            break;
        }
    }
    false
}

/// The lines to print for a build's warnings, as BuildKit's summary words them.
pub fn render(warnings: &[LintWarning], file: &str) -> Vec<String> {
    if warnings.is_empty() {
        return Vec::new();
    }
    let mut out = vec![format!("{} warning{} found:", warnings.len(), if warnings.len() == 1 { "" } else { "s" })];
    out.extend(warnings.iter().map(|w| format!(" - {}: {} ({file}:{})", w.rule, w.message, w.line)));
    out
}

/// BuildKit's CopyIgnoredFile: a COPY or ADD from the context names a source the ignore file excludes (it will not
/// be found). As BuildKit, only without `!` patterns (too hard to decide statically), and the context root only
/// when a pattern excludes every entry (`*`, `**`, `**/*`). Sources with variables are left alone.
pub fn copy_ignored_files(
    df: &Dockerfile,
    ignore: &crate::context::IgnoreMatcher,
    check: &CheckDirective,
) -> Vec<LintWarning> {
    let rule = "CopyIgnoredFile";
    if ignore.is_empty() || ignore.patterns().iter().any(|p| p.exclusion) || check.skip_all || check.skip.contains(rule)
    {
        return Vec::new();
    }
    let root_ignored = ignore.patterns().iter().any(|p| matches!(p.pattern.as_str(), "*" | "**" | "**/*"));
    let mut out = Vec::new();
    for ins in df.stages.iter().flat_map(|s| &s.instructions) {
        let (verb, spec) = match &ins.kind {
            InstructionKind::Copy(c) => ("Copy", c),
            InstructionKind::Add(c) => ("Add", c),
            _ => continue,
        };
        if spec.from.is_some() {
            continue;
        }
        for src in spec.sources.iter().filter(|s| !s.contains('$') && !s.contains("://") && !s.starts_with("git@")) {
            let cleaned = crate::context::clean_path(src.trim_start_matches('/'));
            let cleaned = if cleaned.is_empty() { ".".to_string() } else { cleaned };
            let ignored = if cleaned == "." { root_ignored } else { ignore.is_excluded(&cleaned) };
            if ignored {
                out.push(LintWarning {
                    rule,
                    message: format!("Attempting to {verb} file {cleaned:?} that is excluded by .dockerignore"),
                    line: ins.span.start_line,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Vec<(&'static str, usize)> {
        let df = crate::dockerfile::load("Dockerfile", text).unwrap();
        lint(&df, text).into_iter().map(|w| (w.rule, w.line)).collect()
    }

    #[test]
    fn rules_fire_where_buildkit_fires_them() {
        assert_eq!(
            rules(
                "FROM busybox as Build\nMAINTAINER me\nENV A 1\nCMD echo hi\nCMD [\"x\"]\nWORKDIR rel\nexpose 80/TCP\n"
            ),
            vec![
                ("FromAsCasing", 1),
                ("StageNameCasing", 1),
                ("MaintainerDeprecated", 2),
                ("LegacyKeyValueFormat", 3),
                ("JSONArgsRecommended", 4),
                ("MultipleInstructionsDisallowed", 4),
                ("WorkdirRelativePath", 6),
                ("ExposeProtoCasing", 7),
            ]
        );
        assert!(rules("FROM busybox AS build\nENV A=1\nCMD [\"sh\"]\n").is_empty());
    }

    #[test]
    fn check_directive_skips_rules_and_syntax_names_other_frontends() {
        assert_eq!(rules("# check=skip=JSONArgsRecommended\nFROM busybox\nCMD echo\n"), vec![]);
        assert_eq!(rules("# check=skip=all\nFROM busybox\nCMD echo\nMAINTAINER x\n"), vec![]);
        assert_eq!(rules("# syntax=docker/dockerfile:1.7\nFROM busybox\n"), vec![]);
        assert_eq!(rules("# syntax=example.com/other:1\nFROM busybox\n"), vec![("Syntax", 1)]);
        let d = CheckDirective::parse("skip=A,B;error=true");
        assert!(d.error && d.skip.contains("A") && d.skip.contains("B"));
    }
}
