//! The parser layer: Dockerfile text to AST, with BuildKit's rules for parser directives (`syntax`, `escape`,
//! `check`), comments, line continuations (including comments and empty lines inside a continuation), CRLF, a
//! UTF-8 BOM, heredocs, and each instruction's argument splitting. Like BuildKit's parser it accepts unknown
//! instructions (the instruction layer rejects them) and fails only where BuildKit's parser fails.

use super::diagnostic::Span;
use super::line_args::{self, ArgStyle};
use super::shell::{EmptyEnv, Lexer};

/// A parser directive from the top of the file (`# syntax=...`, `# escape=...`, `# check=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lower-case name.
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// A here-document attached to an instruction (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// The file descriptor before `<<` (0 when none was written).
    pub fd: u32,
    /// Variables in the content are expanded (the delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from content lines.
    pub chomp: bool,
    /// The lines between the instruction and the delimiter, each with its newline.
    pub content: String,
}

/// One instruction as parsed, before any validation of its flags and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The keyword as written (`RUN`, `run`, `Copy`).
    pub keyword: String,
    /// Leading `--flag[=value]` words, quotes processed.
    pub flags: Vec<String>,
    /// The arguments, split the way this instruction splits them.
    pub args: Vec<String>,
    /// For ONBUILD: the trigger instruction.
    pub nested: Option<Box<Node>>,
    /// The arguments were written in JSON (exec) form.
    pub json: bool,
    /// The logical line (continuations joined) the node was parsed from.
    pub original: String,
    pub heredocs: Vec<Heredoc>,
    pub span: Span,
}

impl Node {
    /// The keyword in lower case.
    pub fn keyword_lower(&self) -> String {
        self.keyword.to_ascii_lowercase()
    }
}

/// A non-fatal finding of the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseWarning {
    pub line: usize,
    pub message: String,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    pub directives: Vec<Directive>,
    /// The escape token: `\` or `` ` ``.
    pub escape: char,
    pub nodes: Vec<Node>,
    pub warnings: Vec<ParseWarning>,
}

/// A parse failure at a location (the caller adds the file name and source line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub span: Span,
    pub message: String,
}

const VALID_DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

/// Directive detection: only at the top of the file, stops at the first line that is not a known directive.
struct DirectiveParser {
    done: bool,
    seen: Vec<Directive>,
    escape: char,
}

impl DirectiveParser {
    /// Look at one line (newline and leading white space already trimmed); returns an error for a repeated
    /// directive or a bad escape token.
    fn parse_line(&mut self, line: &str, line_no: usize) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        if !VALID_DIRECTIVES.contains(&name.as_str()) {
            self.done = true;
            return Ok(());
        }
        if self.seen.iter().any(|d| d.name == name) {
            return Err(format!("only one {name} parser directive can be used"));
        }
        if name == "escape" {
            self.escape = match value.as_str() {
                "`" => '`',
                "\\" => '\\',
                other => {
                    return Err(format!("invalid escape token '{other}' does not match ` or \\"));
                }
            };
        }
        self.seen.push(Directive { name, value, line: line_no });
        Ok(())
    }
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` with Go's ASCII `\s` (`[\t\n\f\r ]`).
fn match_directive(line: &str) -> Option<(String, String)> {
    let is_s = |c: char| matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ');
    let rest = line.strip_prefix('#')?.trim_start_matches(is_s);
    let name_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
    let name = &rest[..name_len];
    if !name.chars().next()?.is_ascii_alphabetic() {
        return None;
    }
    let value = rest[name_len..].trim_start_matches(is_s).strip_prefix('=')?.trim_start_matches(is_s);
    let value = value.trim_end_matches(is_s);
    if value.is_empty() {
        return None;
    }
    Some((name.to_string(), value.to_string()))
}

/// Strip a line continuation: BuildKit's `([^E])E[ \t]*$|^E[ \t]*$`. Returns the line and whether it continues.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(before) if before.is_empty() || !before.ends_with(escape) => (before.to_string(), true),
        _ => (line.to_string(), false),
    }
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Lines of the input, each with its `\n` (the last one may lack it).
fn split_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// Parse Dockerfile text into an AST.
pub fn parse(text: &str) -> Result<Ast, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = split_lines(text);
    let mut directives = DirectiveParser { done: false, seen: Vec::new(), escape: '\\' };
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut i = 0; // index of the next line to read
    let err = |line: usize, end: usize, message: String| ParseError { span: Span::lines(line, end), message };

    while i < lines.len() {
        let raw = trim_newline(lines[i]).trim_start();
        directives.parse_line(raw, i + 1).map_err(|m| err(i + 1, i + 1, m))?;
        i += 1;
        let start_line = i;
        let first = if is_comment(raw) { "" } else { raw };
        let (mut line, mut continues) = trim_continuation(first, directives.escape);
        if !continues && line.is_empty() {
            continue;
        }
        let mut empty_continuation = false;
        while continues && i < lines.len() {
            let raw = lines[i];
            let trimmed = trim_newline(raw);
            directives.parse_line(trimmed, i + 1).map_err(|m| err(i + 1, i + 1, m))?;
            i += 1;
            if is_comment(raw) {
                continue;
            }
            if trimmed.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, more) = trim_continuation(trimmed, directives.escape);
            line.push_str(&part);
            continues = more;
        }
        if empty_continuation {
            warnings.push(ParseWarning {
                line: i,
                message: format!(
                    "Empty continuation line found in: {line} (empty continuation lines will become errors in a future release)"
                ),
            });
        }

        let mut node = node_from_line(&line, directives.escape).map_err(|m| err(start_line, i, m))?;
        if can_contain_heredoc(&node) && line.contains("<<") {
            for mut heredoc in heredocs_from_line(&line).map_err(|m| err(start_line, i, m))? {
                let mut terminated = false;
                while i < lines.len() {
                    let raw = lines[i];
                    i += 1;
                    let mut candidate = trim_newline(raw);
                    if heredoc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == heredoc.name {
                        terminated = true;
                        break;
                    }
                    heredoc.content.push_str(raw);
                }
                if !terminated {
                    return Err(err(
                        start_line,
                        i,
                        format!("unterminated heredoc: no line with only {:?} ends it", heredoc.name),
                    ));
                }
                node.heredocs.push(heredoc);
            }
        }
        set_span(&mut node, Span::lines(start_line, i));
        nodes.push(node);
    }

    if nodes.is_empty() {
        return Err(err(lines.len(), lines.len(), "file with no instructions".into()));
    }
    Ok(Ast { directives: directives.seen, escape: directives.escape, nodes, warnings })
}

fn set_span(node: &mut Node, span: Span) {
    node.span = span;
    if let Some(n) = node.nested.as_mut() {
        set_span(n, span);
    }
}

/// Parse one logical line into a node (keyword, flags, split arguments, nested ONBUILD trigger).
fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    let (keyword, flags, rest) = line_args::split_command(line);
    let style = line_args::style_for(&keyword.to_ascii_lowercase());
    let mut node = Node {
        keyword,
        flags,
        args: Vec::new(),
        nested: None,
        json: false,
        original: line.to_string(),
        heredocs: Vec::new(),
        span: Span::default(),
    };
    match style {
        // Unknown instructions parse (as BuildKit's parser does) with one empty argument; the instruction layer
        // reports them.
        None => node.args = vec![String::new()],
        Some(ArgStyle::SubCommand) => {
            if !rest.is_empty() {
                node.nested = Some(Box::new(node_from_line(&rest, escape)?));
            }
        }
        Some(style) => {
            let split = line_args::split_args(style, &rest, escape).map_err(|e| e.to_string())?;
            node.args = split.args;
            node.json = split.json;
        }
    }
    Ok(node)
}

/// RUN, COPY and ADD in shell form can carry heredocs, also as an ONBUILD trigger.
fn can_contain_heredoc(node: &Node) -> bool {
    let target = match (node.keyword_lower().as_str(), node.nested.as_deref()) {
        ("onbuild", Some(nested)) => nested,
        _ => node,
    };
    matches!(target.keyword_lower().as_str(), "run" | "copy" | "add") && !target.json
}

/// The heredocs an instruction line opens, in order.
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lexer = Lexer::new('\\');
    lexer.raw_quotes = true;
    lexer.raw_escapes = true;
    lexer.skip_unset_env = true;
    let words = lexer.process_words(line, &EmptyEnv).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc_word(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// If `word` opens a heredoc (`^(\d*)<<(-?)([^<]*)$` with a non-empty single-word delimiter), describe it.
pub(crate) fn parse_heredoc_word(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.find(|c: char| !c.is_ascii_digit()).unwrap_or(word.len());
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = if digits == 0 { 0 } else { word[..digits].parse::<u32>().unwrap_or(u32::MAX) };
    let mut lexer = Lexer::new('\\');
    lexer.skip_unset_env = true;
    let words = lexer.process_words(rest, &EmptyEnv).map_err(|e| e.to_string())?;
    if words.len() != 1 {
        return Ok(None);
    }
    lexer.raw_quotes = true;
    let raw = lexer.process_words(rest, &EmptyEnv).map_err(|e| e.to_string())?;
    if raw.len() != words.len() {
        return Err(format!("internal lexing of heredoc produced inconsistent results: {rest}"));
    }
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let expand = quotes(&words[0]) == quotes(&raw[0]);
    Ok(Some(Heredoc { name: words[0].clone(), fd, expand, chomp, content: String::new() }))
}

/// Remove leading tabs from every line (the content of a `<<-` heredoc).
pub fn chomp_heredoc_content(content: &str) -> String {
    content.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rule() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ".into(), true));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\".into(), false));
        assert_eq!(trim_continuation("\\  ", '\\'), (String::new(), true));
        assert_eq!(trim_continuation("a `", '`'), ("a ".into(), true));
    }

    #[test]
    fn directives_only_at_top() {
        let ast = parse("# syntax=docker/dockerfile:1\n#escape=`\nFROM a\n# escape=\\\n").unwrap();
        assert_eq!(ast.escape, '`');
        assert_eq!(ast.directives.len(), 2);
        assert!(parse("# escape=x\nFROM a").unwrap_err().message.contains("invalid escape token"));
        assert!(parse("# check=a\n# check=b\nFROM a").unwrap_err().message.contains("only one check"));
    }

    #[test]
    fn heredocs_are_collected() {
        let ast = parse("FROM a\nRUN 3<<EOF <<-'X' cat\nhello $A\nEOF\n\tbye\n\tX\nCMD x\n").unwrap();
        let run = &ast.nodes[1];
        assert_eq!(run.heredocs.len(), 2);
        assert_eq!(
            run.heredocs[0],
            Heredoc { name: "EOF".into(), fd: 3, expand: true, chomp: false, content: "hello $A\n".into() }
        );
        assert_eq!(run.heredocs[1].name, "X");
        assert!(!run.heredocs[1].expand && run.heredocs[1].chomp);
        assert_eq!(run.span, Span::lines(2, 6));
        assert_eq!(ast.nodes[2].keyword, "CMD");
        assert!(parse("FROM a\nRUN <<EOF\nx\n").unwrap_err().message.contains("unterminated heredoc"));
    }

    #[test]
    fn json_form_run_has_no_heredocs() {
        let ast = parse("FROM a\nRUN [\"cat\", \"<<EOF\"]\nEOF\n").unwrap();
        assert!(ast.nodes[1].heredocs.is_empty());
        assert_eq!(ast.nodes.len(), 3, "EOF is then an (unknown) instruction");
    }

    #[test]
    fn crlf_and_bom() {
        let ast = parse("\u{feff}FROM a\r\nRUN x \\\r\n  y\r\n").unwrap();
        assert_eq!(ast.nodes[1].args, vec!["x   y"]);
    }
}
