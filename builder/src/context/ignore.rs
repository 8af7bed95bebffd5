//! `.dockerignore` with Docker's semantics (not gitignore's): every pattern is anchored at the context root and
//! cleaned like a path (`/a/./b/` is `a/b`); `*` and `?` stay inside one path segment; `**` matches any number of
//! directories, including none; a pattern that matches a directory also matches everything below it; `!pattern`
//! re-includes; the last matching pattern wins. Lines starting with `#` are comments. A Dockerfile's own
//! `<Dockerfile>.dockerignore` is preferred over the context's `.dockerignore`.

use std::path::{Path, PathBuf};

use crate::glob::{Glob, Token, parse_class};

/// One line of an ignore file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnorePattern {
    /// The cleaned pattern, without its `!`.
    pub pattern: String,
    /// A `!pattern`: re-includes what it matches.
    pub exclusion: bool,
    /// 1-based line in the ignore file (0 when built from a list).
    pub line: usize,
    glob: Glob,
}

/// A bad pattern in an ignore file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: invalid .dockerignore pattern {pattern:?}: {reason}")]
pub struct IgnoreError {
    pub file: String,
    pub line: usize,
    pub pattern: String,
    pub reason: String,
}

/// The compiled patterns of one ignore file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreMatcher {
    patterns: Vec<IgnorePattern>,
}

/// Lexically clean a slash-separated path like Go's `filepath.Clean`: no empty or `.` segments, `..` resolved.
pub fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Compile a cleaned pattern to a glob over `/`-separated paths.
fn compile(pattern: &str) -> Result<Glob, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i >= chars.len() { Token::AnyPath } else { Token::OptDirs });
            }
            '*' => tokens.push(Token::AnyRun),
            '?' => tokens.push(Token::AnyChar),
            '\\' => match chars.get(i) {
                Some(&n) => {
                    tokens.push(Token::Lit(n));
                    i += 1;
                }
                None => return Err("trailing backslash".into()),
            },
            '[' => {
                // As Go's regexp (which Docker compiles patterns to): `^` negates a class, `!` is literal.
                let negated = chars.get(i) == Some(&'^');
                let start = if negated { i + 1 } else { i };
                let Some((Token::Class { ranges, .. }, next)) = parse_class_plain(&chars, start) else {
                    return Err("unclosed character class '['".into());
                };
                if ranges.iter().any(|(lo, hi)| lo > hi) {
                    return Err("bad range in character class".into());
                }
                tokens.push(Token::Class { negated, ranges });
                i = next;
            }
            c => tokens.push(Token::Lit(c)),
        }
    }
    Ok(Glob { tokens, separator: Some('/') })
}

/// A class whose first character is never a negation marker (the caller handled `^`).
fn parse_class_plain(chars: &[char], i: usize) -> Option<(Token, usize)> {
    if chars.get(i) == Some(&'!') {
        // parse_class would take '!' as negation; read it as a literal member instead.
        let (tok, next) = parse_class(chars, i + 1, Some('\\')).or_else(|| {
            (chars.get(i + 1) == Some(&']')).then(|| (Token::Class { negated: false, ranges: vec![] }, i + 2))
        })?;
        let Token::Class { ranges, .. } = tok else {
            return None;
        };
        let mut all = vec![('!', '!')];
        all.extend(ranges);
        return Some((Token::Class { negated: false, ranges: all }, next));
    }
    match parse_class(chars, i, Some('\\'))? {
        (Token::Class { ranges, .. }, next) => Some((Token::Class { negated: false, ranges }, next)),
        _ => None,
    }
}

impl IgnoreMatcher {
    /// Parse the text of an ignore file; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let (exclusion, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let err = |reason: &str| IgnoreError {
                file: file.to_string(),
                line: idx + 1,
                pattern: line.to_string(),
                reason: reason.to_string(),
            };
            if exclusion && body.is_empty() {
                return Err(err("a lone '!' excludes nothing; write !PATTERN"));
            }
            patterns.push(Self::compile_one(body, exclusion, idx + 1).map_err(|r| err(&r))?);
        }
        Ok(IgnoreMatcher { patterns })
    }

    /// These patterns, then `more` (later patterns win, as in one file).
    pub fn extended(&self, more: &IgnoreMatcher) -> IgnoreMatcher {
        let mut patterns = self.patterns.clone();
        patterns.extend(more.patterns.iter().cloned());
        IgnoreMatcher { patterns }
    }

    /// Build from patterns given directly (e.g. `COPY --exclude`): same syntax, `!` allowed.
    pub fn from_patterns<S: AsRef<str>>(list: &[S]) -> Result<Self, IgnoreError> {
        let text: Vec<&str> = list.iter().map(|s| s.as_ref()).collect();
        Self::parse(&text.join("\n"), "--exclude")
    }

    fn compile_one(body: &str, exclusion: bool, line: usize) -> Result<IgnorePattern, String> {
        let mut pattern = clean_path(body);
        if pattern.len() > 1 && pattern.starts_with('/') {
            pattern.remove(0);
        }
        let glob = compile(&pattern)?;
        Ok(IgnorePattern { pattern, exclusion, line, glob })
    }

    pub fn patterns(&self) -> &[IgnorePattern] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a context-relative path (`a/b/c`, `/`-separated) is excluded from the context.
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = clean_path(path.trim_start_matches('/'));
        // Every parent directory of the path, as a prefix of it (computed once, not per pattern).
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut excluded = false;
        for p in &self.patterns {
            // Only patterns that could change the verdict are evaluated.
            if p.exclusion != excluded {
                continue;
            }
            let mut hit = p.glob.matches(&path);
            if !hit {
                // A pattern matching a parent directory matches everything below it.
                hit = parents.iter().any(|parent| p.glob.matches(parent));
            }
            if hit {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether some `!pattern` might re-include a path below the directory `dir` (so a walker must descend into
    /// an excluded directory instead of skipping it). Errs on the side of descending.
    pub fn may_reinclude_below(&self, dir: &str) -> bool {
        let dir = clean_path(dir.trim_start_matches('/'));
        let dir_parts: Vec<&str> = if dir == "." { vec![] } else { dir.split('/').collect() };
        self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            let pat_parts: Vec<&str> = p.pattern.split('/').collect();
            for (i, d) in dir_parts.iter().enumerate() {
                let Some(pp) = pat_parts.get(i) else {
                    return false;
                };
                if pp.contains("**") {
                    return true;
                }
                match compile(pp) {
                    Ok(g) if g.matches(d) => {}
                    _ => return false,
                }
            }
            pat_parts.len() > dir_parts.len() || pat_parts.iter().any(|s| s.contains("**"))
        })
    }
}

/// The ignore file for a build: `<dockerfile>.dockerignore` beside the Dockerfile when it exists, else
/// `<context>/.dockerignore` when that exists.
pub fn find_ignore_file(context: &Path, dockerfile: &Path) -> Option<PathBuf> {
    let mut specific = dockerfile.as_os_str().to_owned();
    specific.push(".dockerignore");
    let specific = PathBuf::from(specific);
    if specific.is_file() {
        return Some(specific);
    }
    let general = context.join(".dockerignore");
    general.is_file().then_some(general)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_like_go() {
        assert_eq!(clean_path("a//b/./c/"), "a/b/c");
        assert_eq!(clean_path("a/../../b"), "../b");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("./"), ".");
        assert_eq!(clean_path(""), ".");
    }

    #[test]
    fn reinclude_needs_descent() {
        let m = IgnoreMatcher::parse("dir\n!dir/keep.txt\n", ".dockerignore").unwrap();
        assert!(m.is_excluded("dir"));
        assert!(m.may_reinclude_below("dir"));
        assert!(!m.may_reinclude_below("other"));
        assert!(!m.is_excluded("dir/keep.txt"));
    }
}
