//! Glob matching shared by shell patterns (`${a#*/}`, `${a//x/y}`) and `.dockerignore` patterns.
//!
//! A pattern compiles to tokens matched by a small NFA simulation: linear in the text for each start position, no
//! backtracking blow-up on hostile patterns. Shell patterns treat `/` like any character; path patterns keep `*`, `?`
//! and classes inside one path segment and add `**`.

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// This exact character.
    Lit(char),
    /// `?`: one character (not the separator, for path patterns).
    AnyChar,
    /// `*`: any run of characters (not the separator, for path patterns).
    AnyRun,
    /// `[a-z]`, `[!x]`: one character in (or, negated, not in) the ranges.
    Class { negated: bool, ranges: Vec<(char, char)> },
    /// Any run of characters, separators included (`**` at the end of a path pattern).
    AnyPath,
    /// Nothing, or any run of characters ending in a separator (`**/` and `**` mid-pattern in path patterns).
    OptDirs,
}

/// A compiled glob: tokens plus the separator that `*`, `?` and classes never match (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    pub(crate) tokens: Vec<Token>,
    pub(crate) separator: Option<char>,
}

impl Glob {
    fn single_ok(&self, c: char) -> bool {
        self.separator != Some(c)
    }

    fn class_ok(&self, negated: bool, ranges: &[(char, char)], c: char) -> bool {
        let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
        self.single_ok(c) && inside != negated
    }

    /// Add the epsilon-closure of `state` to `set` (states are token indexes; `n` is accepting).
    fn close(&self, set: &mut [bool], state: usize) {
        let mut s = state;
        loop {
            if set[s] && s != state {
                return;
            }
            set[s] = true;
            match self.tokens.get(s) {
                Some(Token::AnyRun | Token::AnyPath | Token::OptDirs) => s += 1,
                _ => return,
            }
        }
    }

    /// For a text, the lengths `k` (in chars) such that `text[..k]` matches the whole pattern.
    pub(crate) fn matching_prefix_lengths(&self, text: &[char]) -> Vec<usize> {
        let n = self.tokens.len();
        // States 0..=n: "before token i"; states n+1+i: "inside the OptDirs token i" (read something, no '/' yet).
        let mut cur = vec![false; 2 * n + 2];
        self.close(&mut cur, 0);
        let mut out = Vec::new();
        if cur[n] {
            out.push(0);
        }
        for (k, &c) in text.iter().enumerate() {
            let mut next = vec![false; 2 * n + 2];
            for i in 0..n {
                let sep = self.separator.unwrap_or('/');
                if cur[n + 1 + i] {
                    next[n + 1 + i] = true;
                    if c == sep {
                        self.close(&mut next, i + 1);
                    }
                }
                if !cur[i] {
                    continue;
                }
                match &self.tokens[i] {
                    Token::Lit(x) if *x == c => self.close(&mut next, i + 1),
                    Token::AnyChar if self.single_ok(c) => self.close(&mut next, i + 1),
                    Token::Class { negated, ranges } if self.class_ok(*negated, ranges, c) => {
                        self.close(&mut next, i + 1)
                    }
                    Token::AnyRun if self.single_ok(c) => self.close(&mut next, i),
                    Token::AnyPath => self.close(&mut next, i),
                    Token::OptDirs => {
                        next[n + 1 + i] = true;
                        if c == sep {
                            self.close(&mut next, i + 1);
                        }
                    }
                    _ => {}
                }
            }
            if next[n] {
                out.push(k + 1);
            }
            if !next.iter().any(|&b| b) {
                break;
            }
            cur = next;
        }
        out
    }

    /// Whether the whole text matches the whole pattern.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        self.matching_prefix_lengths(&chars).last() == Some(&chars.len())
    }
}

/// Parse a bracket expression starting after `[`; returns the class and the index after `]`, or `None` when the
/// bracket is not closed (then `[` is literal).
pub(crate) fn parse_class(chars: &[char], mut i: usize, escape: Option<char>) -> Option<(Token, usize)> {
    let mut negated = false;
    if matches!(chars.get(i), Some('!' | '^')) {
        negated = true;
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let mut c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        if Some(c) == escape {
            i += 1;
            c = *chars.get(i)?;
        }
        i += 1;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&e| e != ']') {
            let mut hi = chars[i + 1];
            i += 2;
            if Some(hi) == escape {
                hi = *chars.get(i)?;
                i += 1;
            }
            ranges.push((c, hi));
        } else {
            ranges.push((c, c));
        }
    }
}

/// A shell parameter-expansion pattern: `*` any run, `?` one char, `[...]` classes, `\x` a literal x.
#[derive(Debug, Clone)]
pub(crate) struct ShellPattern {
    glob: Glob,
}

impl ShellPattern {
    pub(crate) fn parse(pattern: &str) -> Self {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' => tokens.push(Token::AnyRun),
                '?' => tokens.push(Token::AnyChar),
                '\\' if i < chars.len() => {
                    tokens.push(Token::Lit(chars[i]));
                    i += 1;
                }
                '[' => match parse_class(&chars, i, Some('\\')) {
                    Some((class, next)) => {
                        tokens.push(class);
                        i = next;
                    }
                    None => tokens.push(Token::Lit('[')),
                },
                c => tokens.push(Token::Lit(c)),
            }
        }
        ShellPattern { glob: Glob { tokens, separator: None } }
    }

    fn reversed(&self) -> Glob {
        Glob { tokens: self.glob.tokens.iter().rev().cloned().collect(), separator: None }
    }

    /// `${v#p}` (shortest) / `${v##p}` (greedy): remove a matching prefix.
    pub(crate) fn trim_prefix<'v>(&self, value: &'v str, greedy: bool) -> &'v str {
        let chars: Vec<char> = value.chars().collect();
        let lens = self.glob.matching_prefix_lengths(&chars);
        let cut = if greedy { lens.last() } else { lens.first() };
        match cut {
            Some(&k) => &value[char_to_byte(value, k)..],
            None => value,
        }
    }

    /// `${v%p}` (shortest) / `${v%%p}` (greedy): remove a matching suffix.
    pub(crate) fn trim_suffix<'v>(&self, value: &'v str, greedy: bool) -> &'v str {
        let rev: Vec<char> = value.chars().rev().collect();
        let lens = self.reversed().matching_prefix_lengths(&rev);
        let cut = if greedy { lens.last() } else { lens.first() };
        match cut {
            Some(&k) => &value[..char_to_byte(value, rev.len() - k)],
            None => value,
        }
    }

    /// `${v/p/r}` (first match) / `${v//p/r}` (every match); the longest match at the leftmost position wins.
    pub(crate) fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        if self.glob.tokens.is_empty() {
            return value.to_string();
        }
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::with_capacity(value.len());
        let mut i = 0;
        let mut replaced = false;
        while i < chars.len() || (i == chars.len() && !replaced) {
            let longest = if replaced && !all { None } else { self.glob.matching_prefix_lengths(&chars[i..]).pop() };
            match longest {
                Some(len) => {
                    out.push_str(replacement);
                    replaced = true;
                    if len == 0 {
                        if let Some(&c) = chars.get(i) {
                            out.push(c);
                        }
                        i += 1;
                    } else {
                        i += len;
                    }
                }
                None => {
                    if let Some(&c) = chars.get(i) {
                        out.push(c);
                    }
                    i += 1;
                }
            }
            if i > chars.len() {
                break;
            }
        }
        out
    }
}

fn char_to_byte(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(b, _)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_pattern_prefix_suffix() {
        let p = ShellPattern::parse("*/");
        assert_eq!(p.trim_prefix("a/b/c", false), "b/c");
        assert_eq!(p.trim_prefix("a/b/c", true), "c");
        let s = ShellPattern::parse(".*");
        assert_eq!(s.trim_suffix("x.tar.gz", false), "x.tar");
        assert_eq!(s.trim_suffix("x.tar.gz", true), "x");
        assert_eq!(ShellPattern::parse("[a-c]").trim_prefix("bx", false), "x");
        assert_eq!(ShellPattern::parse("[!a-c]").trim_prefix("bx", false), "bx");
    }

    #[test]
    fn shell_pattern_replace() {
        let p = ShellPattern::parse("o");
        assert_eq!(p.replace("foo", "0", false), "f0o");
        assert_eq!(p.replace("foo", "0", true), "f00");
        assert_eq!(ShellPattern::parse("*").replace("abc", "X", false), "X");
        assert_eq!(ShellPattern::parse("z").replace("abc", "X", true), "abc");
    }

    #[test]
    fn hostile_patterns_stay_linear() {
        let p = ShellPattern::parse(&"*a".repeat(200));
        let text = "a".repeat(5000) + "b";
        assert_eq!(p.trim_prefix(&text, true).len(), 1);
    }
}
