//! The Dockerfile frontend, in two layers as in BuildKit: `parser` turns text into an AST (directives,
//! continuations, heredocs, per-instruction argument splitting) and `instructions` turns the AST into typed,
//! validated instructions grouped into stages. `shell` is the word-expansion lexer both the frontend and the
//! engine use. Every error carries the file, line (and column where known) and the source line.

mod diagnostic;
mod dump;
pub mod expose;
mod flags;
pub(crate) mod go_quote;
mod instructions;
mod line_args;
pub mod lint;
mod parser;
mod run_mount;
pub mod shell;
pub(crate) mod suggest;

pub use diagnostic::{DockerfileError, Location, Span};
pub use dump::dump;
pub use go_quote::quote as go_quote;
pub use instructions::{
    ArgDecl, CommandLine, CopySpec, Dockerfile, HealthcheckSpec, INSTRUCTIONS, InlineSource, Instruction,
    InstructionKind, KeyValue, RunInstruction, Stage, invalid_chmod, parse_go_duration,
};
pub use parser::{Ast, Directive, Heredoc, Node, ParseWarning, chomp_heredoc_content};
pub use run_mount::{CacheSharing, MountType, RunMount, expand_mount, parse_mount};

/// Decode Dockerfile bytes as UTF-8; invalid sequences become U+FFFD (BuildKit does not reject them either).
pub fn decode(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parse `text` (from `file`, the name used in messages) into an AST, without validating instructions.
pub fn parse_ast(file: &str, text: &str) -> Result<Ast, crate::Error> {
    parser::parse(text).map_err(|e| {
        let hint = hint_for_parse_error(&e.message);
        let err = DockerfileError::new(file, text, e.span, e.message);
        crate::Error::from(match hint {
            Some(h) => err.with_hint(h),
            None => err,
        })
    })
}

/// Parse and validate `text` (from `file`) into stages of typed instructions.
pub fn load(file: &str, text: &str) -> Result<Dockerfile, crate::Error> {
    let ast = parse_ast(file, text)?;
    instructions::from_ast(&ast).map_err(|e| {
        let span = e.span.with_needle(text, &e.needle);
        let err = DockerfileError::new(file, text, span, e.message);
        crate::Error::from(match e.hint {
            Some(h) => err.with_hint(h),
            None => err,
        })
    })
}

fn hint_for_parse_error(message: &str) -> Option<&'static str> {
    if message.contains("file with no instructions") {
        Some("a Dockerfile needs at least a FROM instruction")
    } else if message.contains("must have two arguments") {
        Some("give a value: ENV NAME=value (or ENV NAME value)")
    } else if message.contains("arrays must be comprised of strings") {
        Some("quote every element, e.g. [\"echo\", \"1\"]")
    } else if message.contains("unterminated heredoc") {
        Some("end the heredoc with a line holding only its delimiter")
    } else {
        None
    }
}
