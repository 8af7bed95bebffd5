//! How each instruction's argument text splits into AST arguments, exactly as BuildKit's line parsers do:
//! leading `--flags`, JSON (exec) form vs shell form, `KEY value` vs `KEY=value ...` pairs for ENV and LABEL,
//! ARG's name-or-name=value words, HEALTHCHECK's type word, and ONBUILD's nested instruction.

/// What an instruction's argument text became.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SplitArgs {
    pub args: Vec<String>,
    /// The arguments were a JSON string array (exec form).
    pub json: bool,
}

/// The argument splitter an instruction keyword uses (lower case); `None` for unknown instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgStyle {
    MaybeJsonToList,
    NameOrNameVal,
    MaybeJson,
    Env,
    Label,
    WhitespaceDelimited,
    HealthConfig,
    String,
    SubCommand,
}

pub(crate) fn style_for(keyword_lower: &str) -> Option<ArgStyle> {
    Some(match keyword_lower {
        "add" | "copy" | "volume" => ArgStyle::MaybeJsonToList,
        "arg" => ArgStyle::NameOrNameVal,
        "cmd" | "entrypoint" | "run" | "shell" => ArgStyle::MaybeJson,
        "env" => ArgStyle::Env,
        "label" => ArgStyle::Label,
        "expose" | "from" => ArgStyle::WhitespaceDelimited,
        "healthcheck" => ArgStyle::HealthConfig,
        "maintainer" | "stopsignal" | "user" | "workdir" => ArgStyle::String,
        "onbuild" => ArgStyle::SubCommand,
        _ => return None,
    })
}

/// BuildKit's whitespace class for splitting: `[\t\v\f\r ]`.
pub(crate) fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Split on runs of `[\t\v\f\r ]` into at most `limit` parts (`None`: no limit), like Go's `Regexp.Split`.
pub(crate) fn split_whitespace_n(s: &str, limit: Option<usize>) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = s;
    loop {
        if limit.is_some_and(|l| parts.len() + 1 >= l) {
            parts.push(rest.to_string());
            return parts;
        }
        match rest.find(is_split_space) {
            None => {
                parts.push(rest.to_string());
                return parts;
            }
            Some(at) => {
                parts.push(rest[..at].to_string());
                rest = rest[at..].trim_start_matches(is_split_space);
            }
        }
    }
}

/// The instruction keyword, its `--flags`, and the remaining argument text (trimmed).
pub(crate) fn split_command(line: &str) -> (String, Vec<String>, String) {
    let trimmed = line.trim();
    let mut parts = split_whitespace_n(trimmed, Some(2));
    let keyword = parts.remove(0);
    match parts.pop() {
        Some(rest) => {
            let (args, flags) = extract_builder_flags(&rest);
            (keyword, flags, args.trim().to_string())
        }
        None => (keyword, Vec::new(), String::new()),
    }
}

/// Leading words that start with `--` are flags (quotes and backslashes are processed inside them); a bare `--`
/// ends the flags. Returns the rest of the line and the flags.
pub(crate) fn extract_builder_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    let rest_from = |p: usize| -> String { chars.get(p).map_or(String::new(), |&(b, _)| line[b..].to_string()) };
    while pos <= n {
        let ch = chars.get(pos).map(|&(_, c)| c).unwrap_or('\0');
        if phase == Phase::Spaces {
            if pos == n {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            if ch != '-' || pos + 1 == n || chars[pos + 1].1 != '-' {
                return (rest_from(pos), words);
            }
            phase = Phase::Word;
        }
        if pos == n {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (rest_from(pos), words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    pos += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = ch;
                    blank_ok = true;
                    phase = Phase::Quote;
                    pos += 1;
                    continue;
                }
                let mut c = ch;
                if c == '\\' {
                    if pos + 1 == n {
                        pos += 1;
                        continue;
                    }
                    pos += 1;
                    c = chars[pos].1;
                }
                word.push(c);
                pos += 1;
            }
        } else {
            {
                if ch == quote {
                    phase = Phase::Word;
                    pos += 1;
                    continue;
                }
                let mut c = ch;
                if c == '\\' {
                    if pos + 1 == n {
                        phase = Phase::Word;
                        pos += 1;
                        continue;
                    }
                    pos += 1;
                    c = chars[pos].1;
                }
                word.push(c);
                pos += 1;
            }
        }
    }
    (String::new(), words)
}

/// Split into words on white space, keeping quotes and escapes in the words (quotes group white space).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= n {
        let ch = chars.get(pos).copied().unwrap_or('\0');
        if phase == Phase::Spaces {
            if pos == n {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if pos == n {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            let mut c = ch;
            if c == escape {
                if pos + 1 == n {
                    pos += 1;
                    continue;
                }
                // Outside quotes the escape token and the escaped character both stay in the word.
                word.push(c);
                pos += 1;
                c = chars[pos];
            }
            word.push(c);
            pos += 1;
            continue;
        }
        // In quotes: the escape token escapes, except inside single quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        let mut c = ch;
        if c == escape && quote != '\'' {
            if pos + 1 == n {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            word.push(c);
            c = chars[pos];
        }
        word.push(c);
        pos += 1;
    }
    words
}

/// Why an argument text could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArgError {
    /// A JSON array with a non-string element (BuildKit rejects these rather than falling back to shell form).
    NotStringArray,
    /// `ENV x` / `LABEL x` with no value.
    MissingValue(&'static str),
    /// `ENV a=1 b` mixes forms.
    NoEquals(String),
}

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgError::NotStringArray => {
                f.write_str("when using JSON array syntax, arrays must be comprised of strings only")
            }
            ArgError::MissingValue(k) => write!(f, "{k} must have two arguments"),
            ArgError::NoEquals(w) => {
                write!(
                    f,
                    "Syntax error - can't find = in {}. Must be of the form: name=value",
                    super::go_quote::quote(w)
                )
            }
        }
    }
}

/// A JSON string array, if `rest` is one.
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, ArgError> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(ArgError::NotStringArray),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn maybe_json(rest: &str) -> Result<SplitArgs, ArgError> {
    if rest.is_empty() {
        return Ok(SplitArgs::default());
    }
    Ok(match parse_json(rest)? {
        Some(args) => SplitArgs { args, json: true },
        None => SplitArgs { args: vec![rest.to_string()], json: false },
    })
}

fn whitespace_delimited(rest: &str) -> SplitArgs {
    if rest.is_empty() {
        return SplitArgs::default();
    }
    SplitArgs { args: split_whitespace_n(rest, None), json: false }
}

fn name_val(rest: &str, key: &'static str, escape: char) -> Result<SplitArgs, ArgError> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Ok(SplitArgs::default());
    }
    if !words[0].contains('=') {
        // Legacy form: KEY name value (the value is the rest of the line, as written).
        let parts = split_whitespace_n(rest, Some(2));
        if parts.len() < 2 {
            return Err(ArgError::MissingValue(key));
        }
        return Ok(SplitArgs { args: vec![parts[0].clone(), parts[1].clone(), String::new()], json: false });
    }
    let mut args = Vec::with_capacity(words.len() * 3);
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(ArgError::NoEquals(w));
        };
        args.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(SplitArgs { args, json: false })
}

fn health_config(rest: &str) -> Result<SplitArgs, ArgError> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(SplitArgs::default());
    }
    let typ = rest[..sep].to_string();
    let cmd = maybe_json(rest[sep..].trim_start())?;
    let mut args = vec![typ];
    args.extend(cmd.args);
    Ok(SplitArgs { args, json: cmd.json })
}

/// Split `rest` for an instruction of the given style (not `SubCommand`, which the parser handles).
pub(crate) fn split_args(style: ArgStyle, rest: &str, escape: char) -> Result<SplitArgs, ArgError> {
    match style {
        ArgStyle::MaybeJson => maybe_json(rest),
        ArgStyle::MaybeJsonToList => Ok(match parse_json(rest)? {
            Some(args) => SplitArgs { args, json: true },
            None => whitespace_delimited(rest),
        }),
        ArgStyle::WhitespaceDelimited => Ok(whitespace_delimited(rest)),
        ArgStyle::NameOrNameVal => Ok(SplitArgs { args: parse_words(rest, escape), json: false }),
        ArgStyle::Env => name_val(rest, "ENV", escape),
        ArgStyle::Label => name_val(rest, "LABEL", escape),
        ArgStyle::HealthConfig => health_config(rest),
        ArgStyle::String | ArgStyle::SubCommand => Ok(if rest.is_empty() {
            SplitArgs::default()
        } else {
            SplitArgs { args: vec![rest.to_string()], json: false }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_stop_at_first_non_flag_and_at_double_dash() {
        assert_eq!(extract_builder_flags("--a=1 --b x y"), ("x y".into(), vec!["--a=1".into(), "--b".into()]));
        assert_eq!(extract_builder_flags("--a -- --b"), (" --b".into(), vec!["--a".into()]));
        assert_eq!(extract_builder_flags("--a=\"x y\" z"), ("z".into(), vec!["--a=x y".into()]));
        assert_eq!(extract_builder_flags("--a"), (String::new(), vec!["--a".into()]));
        assert_eq!(extract_builder_flags("-a"), ("-a".into(), vec![]));
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(parse_words("abc=\"123 456\" def", '\\'), vec!["abc=\"123 456\"", "def"]);
        assert_eq!(parse_words("a\\ b c", '\\'), vec!["a\\ b", "c"]);
        assert_eq!(parse_words("''", '\\'), vec!["''"]);
    }

    #[test]
    fn json_with_non_strings_is_an_error() {
        assert_eq!(maybe_json("[1]"), Err(ArgError::NotStringArray));
        assert_eq!(maybe_json("['a']").unwrap().args, vec!["['a']"]);
        assert!(maybe_json("[]").unwrap().json);
    }
}
