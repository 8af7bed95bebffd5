//! `.env` files (Compose's `--env-file` and the project directory's `.env`): `KEY=VALUE` lines, `export `
//! prefixes, comments, single quotes (literal), double quotes (escapes, interpolation) and unquoted values
//! (trimmed, ` #` comments, interpolation of variables defined earlier or in the environment).

use std::collections::BTreeMap;

use super::interpolate::interpolate;

/// Parse `text`; `outer` looks up variables the file does not define (the process environment). Errors name
/// the line.
pub fn parse(text: &str, outer: &dyn Fn(&str) -> Option<String>) -> Result<BTreeMap<String, String>, String> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, raw)) = lines.next() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected KEY=VALUE, got {raw:?}", n + 1));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
            return Err(format!("line {}: {key:?} is not a valid variable name", n + 1));
        }
        let value = value.trim_start();
        let lookup = |name: &str| vars.get(name).cloned().or_else(|| outer(name));
        let parsed = if let Some(body) = value.strip_prefix('\'') {
            let mut text = body.to_string();
            while !text.contains('\'') {
                let Some((_, next)) = lines.next() else {
                    return Err(format!("line {}: unterminated single quote", n + 1));
                };
                text.push('\n');
                text.push_str(next);
            }
            text[..text.find('\'').unwrap_or(text.len())].to_string()
        } else if let Some(body) = value.strip_prefix('"') {
            let mut text = body.to_string();
            while closing_quote(&text).is_none() {
                let Some((_, next)) = lines.next() else {
                    return Err(format!("line {}: unterminated double quote", n + 1));
                };
                text.push('\n');
                text.push_str(next);
            }
            let inner = &text[..closing_quote(&text).unwrap_or(text.len())];
            let unescaped = inner.replace("\\n", "\n").replace("\\t", "\t").replace("\\\"", "\"").replace("\\\\", "\\");
            interpolate(&unescaped, &lookup).map_err(|e| format!("line {}: {e}", n + 1))?
        } else {
            let bare = match value.find(" #") {
                Some(i) => &value[..i],
                None => value,
            };
            interpolate(bare.trim_end(), &lookup).map_err(|e| format!("line {}: {e}", n + 1))?
        };
        vars.insert(key.to_string(), parsed);
    }
    Ok(vars)
}

/// The index of the first `"` not escaped by a backslash.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn quoting_comments_and_references() {
        let text = "# comment\nA=1\nexport B = two words  # trailing\nC='lit $A'\nD=\"x\\ny ${A}\"\nE=${A}-${OUTER}\n\nF=\"multi\nline\"\n";
        let vars = parse(text, &|n| (n == "OUTER").then(|| "out".to_string())).unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "lit $A");
        assert_eq!(vars["D"], "x\ny 1");
        assert_eq!(vars["E"], "1-out");
        assert_eq!(vars["F"], "multi\nline");
        assert!(parse("NOEQUALS\n", &|_| None).unwrap_err().contains("line 1"));
        assert!(parse("A='open\n", &|_| None).is_err());
    }
}
