//! Source locations and the Dockerfile error type, rendered like a compiler diagnostic:
//! file, line and column, the offending source line with a marker, and a hint saying what to do.

use std::fmt;

/// A region of a Dockerfile: 1-based lines, and optionally 1-based columns on the start line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start_line: usize,
    pub end_line: usize,
    /// Column range `[start, end)` on `start_line`, in characters, when known.
    pub columns: Option<(usize, usize)>,
}

impl Span {
    pub fn lines(start_line: usize, end_line: usize) -> Self {
        Span { start_line, end_line, columns: None }
    }

    pub fn line(line: usize) -> Self {
        Span::lines(line, line)
    }

    /// The same lines, with the column range of `needle` on the start line when it occurs there.
    pub fn with_needle(self, source: &str, needle: &str) -> Self {
        if needle.is_empty() {
            return self;
        }
        let Some(line) = source.lines().nth(self.start_line.saturating_sub(1)) else {
            return self;
        };
        match line.find(needle) {
            Some(byte_at) => {
                let start = line[..byte_at].chars().count() + 1;
                Span { columns: Some((start, start + needle.chars().count())), ..self }
            }
            None => self,
        }
    }
}

/// A problem found in a Dockerfile (parse error or invalid instruction), located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerfileError {
    /// The file as the user named it (e.g. `Dockerfile`, `app/Dockerfile.dev`, `-` for stdin).
    pub file: String,
    pub span: Span,
    /// What is wrong, in BuildKit's words where BuildKit has words for it.
    pub message: String,
    /// The source line at `span.start_line`, for display.
    pub source_line: Option<String>,
    /// What to do about it, when there is something useful to say.
    pub hint: Option<String>,
}

impl DockerfileError {
    /// An error at `span`; `source` is the whole Dockerfile text (used to show the line).
    pub fn new(file: &str, source: &str, span: Span, message: impl Into<String>) -> Self {
        let source_line = if span.start_line == 0 {
            None
        } else {
            source.lines().nth(span.start_line - 1).map(|l| l.trim_end_matches('\r').to_string())
        };
        DockerfileError { file: file.to_string(), span, message: message.into(), source_line, hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for DockerfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.span.start_line;
        match (line, self.span.columns) {
            (0, _) => write!(f, "{}: {}", self.file, self.message)?,
            (l, Some((c, _))) => write!(f, "{}:{}:{}: {}", self.file, l, c, self.message)?,
            (l, None) => write!(f, "{}:{}: {}", self.file, l, self.message)?,
        }
        if let Some(src) = &self.source_line {
            let number = line.to_string();
            let pad = " ".repeat(number.len());
            write!(f, "\n {pad} |\n {number} | {src}")?;
            if let Some((start, end)) = self.span.columns {
                let lead: String =
                    src.chars().take(start.saturating_sub(1)).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
                write!(f, "\n {pad} | {lead}{}", "^".repeat(end.saturating_sub(start).max(1)))?;
            }
        }
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DockerfileError {}
