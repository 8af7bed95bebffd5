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
        let at = Location { file: self.file.clone(), span: self.span, source_line: self.source_line.clone() };
        at.write(f, &self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

/// Where in a Dockerfile something happened: the file, the span, and the source line to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub span: Span,
    pub source_line: Option<String>,
}

impl Location {
    /// The location of `span` in `source`, the text of `file`.
    pub fn new(file: &str, source: &str, span: Span) -> Self {
        let e = DockerfileError::new(file, source, span, "");
        Location { file: e.file, span: e.span, source_line: e.source_line }
    }

    /// `message` at this location, as every located error is shown: `file:line[:column]: message`, then the
    /// source line and a caret under the columns.
    pub fn write(&self, f: &mut impl fmt::Write, message: &str) -> fmt::Result {
        let line = self.span.start_line;
        match (line, self.span.columns) {
            (0, _) => write!(f, "{}: {message}", self.file)?,
            (l, Some((c, _))) => write!(f, "{}:{l}:{c}: {message}", self.file)?,
            (l, None) => write!(f, "{}:{l}: {message}", self.file)?,
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
        Ok(())
    }

    /// [`Location::write`] into a string.
    pub fn render(&self, message: &str) -> String {
        let mut out = String::new();
        let _ = self.write(&mut out, message);
        out
    }
}

impl std::error::Error for DockerfileError {}
