//! The shell-word lexer: variable expansion and word splitting for Dockerfile arguments, with the semantics of
//! BuildKit's `shell.Lex` (POSIX-like quoting, escapes with the Dockerfile's escape token, and the parameter
//! expansions `$a ${a} ${a:-b} ${a-b} ${a:+b} ${a+b} ${a:?m} ${a?m} ${a#p} ${a##p} ${a%p} ${a%%p} ${a/x/y}
//! ${a//x/y}`). It never runs a shell: command substitution and arithmetic are left as text.

use std::collections::BTreeSet;

use crate::glob::ShellPattern;

/// Where variable values come from.
pub trait Env {
    /// The value of `name`, or `None` when it is not set (set-but-empty is `Some("")`).
    fn get(&self, name: &str) -> Option<String>;
}

impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<String> {
        Env::get(self.as_slice(), name)
    }
}

impl Env for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::BTreeMap::get(self, name).cloned()
    }
}

/// An environment with nothing set.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyEnv;

impl Env for EmptyEnv {
    fn get(&self, _name: &str) -> Option<String> {
        None
    }
}

/// A failed expansion: unterminated quotes or braces, bad substitutions, `${x:?msg}` on an unset variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {reason}")]
pub struct ShellError {
    pub word: String,
    pub reason: String,
}

/// The lexer's settings, as in BuildKit's `shell.Lex`.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    pub escape: char,
    /// Keep quote characters in the output (used to find heredoc words on an instruction line).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written instead of expanding them to nothing.
    pub skip_unset_env: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
}

/// The result of one expansion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The word with quotes removed and variables expanded.
    pub word: String,
    /// The same, split into fields on unquoted white space (including white space that came from variables).
    pub words: Vec<String>,
    /// Variables that were referenced but not set.
    pub unmatched: BTreeSet<String>,
    /// Variables that were referenced and set.
    pub matched: BTreeSet<String>,
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer { escape, raw_quotes: false, raw_escapes: false, skip_unset_env: false, skip_process_quotes: false }
    }

    /// Expand `word` into one string (quotes removed, variables substituted).
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ShellError> {
        Ok(self.process(word, env)?.word)
    }

    /// Expand `word` and split it into fields, as the shell form of some instructions does.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ShellError> {
        Ok(self.process(word, env)?.words)
    }

    /// Expand `word`, returning the joined word, the fields, and which variables were (not) found.
    pub fn process(&self, word: &str, env: &dyn Env) -> Result<Expansion, ShellError> {
        let mut sw = ShellWord {
            chars: word.chars().collect(),
            pos: 0,
            env,
            lexer: *self,
            raw_escapes: self.raw_escapes,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        let raw_escapes = sw.raw_escapes;
        match sw.process_stop_on_any(&[], raw_escapes) {
            Ok((joined, words)) => Ok(Expansion { word: joined, words, unmatched: sw.unmatched, matched: sw.matched }),
            Err(reason) => Err(ShellError { word: word.to_string(), reason }),
        }
    }
}

struct ShellWord<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Env,
    lexer: Lexer,
    raw_escapes: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

/// Accumulates fields: unquoted white space separates them, quoted or escaped characters never do.
#[derive(Default)]
struct Fields {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Fields {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

type Res<T> = Result<T, String>;

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        let v = self.env.get(name);
        if v.is_some() {
            self.matched.insert(name.to_string());
        } else {
            self.unmatched.insert(name.to_string());
        }
        v
    }

    /// Process until one of `stops` (consumed) or the end; with stops, reaching the end is an error.
    fn process_stop_on_any(&mut self, stops: &[char], raw_escapes: bool) -> Res<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.process_stop_on_inner(stops);
        self.raw_escapes = saved;
        r
    }

    fn process_stop_on_inner(&mut self, stops: &[char]) -> Res<(String, Vec<String>)> {
        let mut result = String::new();
        let mut fields = Fields::default();
        while let Some(ch) = self.peek() {
            if stops.contains(&ch) {
                self.next();
                return Ok((result, fields.finish()));
            }
            let quotes = !self.lexer.skip_process_quotes;
            if ch == '$' {
                let tmp = self.process_dollar()?;
                result.push_str(&tmp);
                fields.add_string(&tmp);
            } else if quotes && ch == '\'' {
                let tmp = self.process_single_quote()?;
                result.push_str(&tmp);
                fields.add_raw_string(&tmp);
            } else if quotes && ch == '"' {
                let tmp = self.process_double_quote()?;
                result.push_str(&tmp);
                fields.add_raw_string(&tmp);
            } else {
                self.next();
                if ch == self.lexer.escape {
                    if self.raw_escapes {
                        fields.add_raw_char(ch);
                        result.push(ch);
                    }
                    match self.next() {
                        None => break,
                        Some(escaped) => {
                            fields.add_raw_char(escaped);
                            result.push(escaped);
                        }
                    }
                } else {
                    fields.add_char(ch);
                    result.push(ch);
                }
            }
        }
        if let Some(stop) = stops.first() {
            return Err(format!("unexpected end of statement while looking for matching {stop}"));
        }
        Ok((result, fields.finish()))
    }

    fn process_single_quote(&mut self) -> Res<String> {
        // Everything up to the next ' is literal; ' cannot be escaped inside.
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err("unexpected end of statement while looking for matching single-quote".into());
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Res<String> {
        // Literal except $ and the escape token, which escapes only " $ and itself.
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err("unexpected end of statement while looking for matching double-quote".into());
                }
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lexer.escape => {
                                ch = self.next().unwrap_or_default();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Res<String> {
        self.next(); // the $
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // the {
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err("syntax error: missing '}'".into());
        };
        match ch {
            '}' => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' => {
                let Some(modifier) = self.next() else {
                    return Err("syntax error: missing '}'".into());
                };
                match modifier {
                    '-' | '+' | '?' => self.process_modifier(&name, modifier, true),
                    other => Err(format!("unsupported modifier ({}) in substitution", other_str(':', other))),
                }
            }
            '-' | '+' | '?' | '#' | '%' => self.process_modifier(&name, ch, false),
            '/' => self.process_replace(&name),
            other => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }

    /// `${name-word}`, `${name:+word}`, `${name?msg}`, `${name#pattern}`, ... after the modifier was read.
    fn process_modifier(&mut self, name: &str, modifier: char, null_is_unset: bool) -> Res<String> {
        let pattern = modifier == '#' || modifier == '%';
        let mut word = self.stop_on_brace(pattern)?;
        let value = self.lookup(name);
        if self.lexer.skip_unset_env && value.is_none() {
            let colon = if null_is_unset { ":" } else { "" };
            return Ok(format!("${{{name}{colon}{modifier}{word}}}"));
        }
        let unset = value.is_none() || (null_is_unset && value.as_deref() == Some(""));
        match modifier {
            '-' => Ok(if unset { word } else { value.unwrap_or_default() }),
            '+' => Ok(if unset { String::new() } else { word }),
            '?' => {
                if value.is_none() {
                    let msg = if word.is_empty() { "is not allowed to be unset".to_string() } else { word };
                    return Err(format!("{name}: {msg}"));
                }
                if unset {
                    let msg = if word.is_empty() { "is not allowed to be empty".to_string() } else { word };
                    return Err(format!("{name}: {msg}"));
                }
                Ok(value.unwrap_or_default())
            }
            _ => {
                // # and % remove the shortest matching prefix/suffix; ## and %% the longest.
                let greedy = word.starts_with(modifier);
                if greedy {
                    word.remove(0);
                }
                let value = value.unwrap_or_default();
                let pat = ShellPattern::parse(&word);
                Ok(if modifier == '#' {
                    pat.trim_prefix(&value, greedy).to_string()
                } else {
                    pat.trim_suffix(&value, greedy).to_string()
                })
            }
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`, after the first `/` was read.
    fn process_replace(&mut self, name: &str) -> Res<String> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let (pattern, _) = self.process_stop_on_any(&['/', '}'], true).map_err(|e| self.missing_brace(e))?;
        // The stop character was consumed last: it tells whether a replacement follows.
        let stopped_on_slash = self.pos.checked_sub(1).and_then(|p| self.chars.get(p)) == Some(&'/');
        let replacement = if stopped_on_slash { self.stop_on_brace(true)? } else { String::new() };
        let value = self.lookup(name);
        if self.lexer.skip_unset_env && value.is_none() {
            let slashes = if all { "//" } else { "/" };
            return Ok(format!("${{{name}{slashes}{pattern}/{replacement}}}"));
        }
        let value = value.unwrap_or_default();
        let replacement = unescape(&replacement, self.lexer.escape);
        Ok(ShellPattern::parse(&pattern).replace(&value, &replacement, all))
    }

    fn stop_on_brace(&mut self, raw_escapes: bool) -> Res<String> {
        self.process_stop_on_any(&['}'], raw_escapes).map(|(w, _)| w).map_err(|e| self.missing_brace(e))
    }

    fn missing_brace(&self, e: String) -> String {
        if self.peek().is_none() { "syntax error: missing '}'".into() } else { e }
    }

    /// A variable name: letters, digits and `_`; or all the digits of a positional parameter; or one special
    /// parameter character (`@ * # ? - $ ! 0`).
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

fn other_str(a: char, b: char) -> String {
    format!("{a}{b}")
}

/// Remove escape characters (used on a replacement string that was read with escapes kept).
fn unescape(s: &str, escape: char) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        [("a", "foo/bar/baz.tar.gz"), ("e", ""), ("sp", "x y")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expand(w: &str) -> Result<String, ShellError> {
        Lexer::new('\\').process_word(w, &env())
    }

    #[test]
    fn pattern_expansions() {
        assert_eq!(expand("${a#*/}").unwrap(), "bar/baz.tar.gz");
        assert_eq!(expand("${a##*/}").unwrap(), "baz.tar.gz");
        assert_eq!(expand("${a%.*}").unwrap(), "foo/bar/baz.tar");
        assert_eq!(expand("${a%%.*}").unwrap(), "foo/bar/baz");
        assert_eq!(expand("${a/bar/X}").unwrap(), "foo/X/baz.tar.gz");
        assert_eq!(expand("${a//a/_}").unwrap(), "foo/b_r/b_z.t_r.gz");
        assert_eq!(expand("${a/o}").unwrap(), "fo/bar/baz.tar.gz");
        assert_eq!(expand("${a#\\*}").unwrap(), "foo/bar/baz.tar.gz");
        assert_eq!(expand("${nope#x}").unwrap(), "");
    }

    #[test]
    fn unset_vs_empty_without_colon() {
        assert_eq!(expand("${e-d}").unwrap(), "");
        assert_eq!(expand("${e:-d}").unwrap(), "d");
        assert_eq!(expand("${u-d}").unwrap(), "d");
        assert_eq!(expand("${e+r}").unwrap(), "r");
        assert_eq!(expand("${e:+r}").unwrap(), "");
        assert_eq!(expand("${u+r}").unwrap(), "");
        assert!(expand("${u?}").unwrap_err().reason.contains("u: is not allowed to be unset"));
        assert!(expand("${u:?need u}").unwrap_err().reason.contains("u: need u"));
        assert_eq!(expand("${e?}").unwrap(), "");
    }

    #[test]
    fn words_split_on_expanded_whitespace_only() {
        let l = Lexer::new('\\');
        assert_eq!(l.process_words("a$sp \"b c\"", &env()).unwrap(), vec!["ax", "y", "b c"]);
    }

    #[test]
    fn skip_unset_keeps_references() {
        let mut l = Lexer::new('\\');
        l.skip_unset_env = true;
        assert_eq!(l.process_word("$u ${u} ${u:-x} ${a%%/*}", &env()).unwrap(), "$u ${u} ${u:-x} foo");
    }

    #[test]
    fn records_matched_and_unmatched() {
        let x = Lexer::new('\\').process("$a ${nope:-1}", &env()).unwrap();
        assert!(x.matched.contains("a"));
        assert!(x.unmatched.contains("nope"));
    }
}
