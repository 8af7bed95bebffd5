//! Compose variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
//! `${VAR?error}`, `${VAR:+replacement}`, `${VAR+replacement}` (defaults and replacements may hold further
//! interpolations) and `$$` for a literal `$`. Applied to every string value of a Compose file.

/// Interpolate `text`, looking variables up with `lookup`. Errors say what is wrong (the caller adds where).
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner_and_tail) = after.strip_prefix('{') {
            let end = matching_brace(inner_and_tail)
                .ok_or_else(|| format!("invalid interpolation format in {text:?}: an unclosed ${{"))?;
            out.push_str(&braced(&inner_and_tail[..end], text, lookup)?);
            rest = &inner_and_tail[end + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                return Err(format!(
                    "invalid interpolation format in {text:?}: a $ must start $VAR or ${{VAR}} (write $$ for a literal $)"
                ));
            }
            out.push_str(&lookup(&after[..len]).unwrap_or_default());
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The length of the variable name at the start of `s` (`[A-Za-z_][A-Za-z0-9_]*`).
fn name_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, c)) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return 0,
    }
    chars.find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_')).map_or(s.len(), |(i, _)| i)
}

/// The index of the `}` closing a `${` whose body starts `s`, counting nested `${...}`.
fn matching_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The body of `${...}`.
fn braced(body: &str, text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let len = name_len(body);
    if len == 0 {
        return Err(format!(
            "invalid interpolation format in {text:?}: ${{{body}}} does not start with a variable name"
        ));
    }
    let (name, op) = body.split_at(len);
    let value = lookup(name);
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let arg = |skip: usize| interpolate(&op[skip..], lookup);
    Ok(match op {
        "" => value.unwrap_or_default(),
        _ if op.starts_with(":-") => {
            if non_empty {
                value.unwrap_or_default()
            } else {
                arg(2)?
            }
        }
        _ if op.starts_with('-') => {
            if set {
                value.unwrap_or_default()
            } else {
                arg(1)?
            }
        }
        _ if op.starts_with(":+") => {
            if non_empty {
                arg(2)?
            } else {
                String::new()
            }
        }
        _ if op.starts_with('+') => {
            if set {
                arg(1)?
            } else {
                String::new()
            }
        }
        _ if op.starts_with(":?") || op.starts_with('?') => {
            let ok = if op.starts_with(':') { non_empty } else { set };
            if !ok {
                let skip = if op.starts_with(':') { 2 } else { 1 };
                let message = arg(skip)?;
                return Err(if message.is_empty() {
                    format!("required variable {name} is missing a value")
                } else {
                    format!("required variable {name} is missing a value: {message}")
                });
            }
            value.unwrap_or_default()
        }
        _ => return Err(format!("invalid interpolation format in {text:?}: unknown modifier in ${{{body}}}")),
    })
}

#[cfg(test)]
mod tests {
    use super::interpolate;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            "NESTED" => Some("inner".into()),
            _ => None,
        }
    }

    fn i(s: &str) -> Result<String, String> {
        interpolate(s, &env)
    }

    #[test]
    fn every_form_of_the_spec() {
        assert_eq!(i("a $SET b ${SET}c").unwrap(), "a value b valuec");
        assert_eq!(i("${UNSET:-d} ${EMPTY:-d} ${SET:-d}").unwrap(), "d d value");
        assert_eq!(i("${UNSET-d} [${EMPTY-d}] ${SET-d}").unwrap(), "d [] value");
        assert_eq!(i("[${UNSET:+r}] [${EMPTY:+r}] ${SET:+r}").unwrap(), "[] [] r");
        assert_eq!(i("[${UNSET+r}] ${EMPTY+r} ${SET+r}").unwrap(), "[] r r");
        assert_eq!(i("$$SET $$").unwrap(), "$SET $");
        assert_eq!(i("${UNSET:-${NESTED}-x}").unwrap(), "inner-x");
        assert_eq!(i("${SET:?must} ${EMPTY?must}").unwrap(), "value ");
        assert!(i("${UNSET:?set it please}").unwrap_err().contains("UNSET is missing a value: set it please"));
        assert!(i("${EMPTY:?}").unwrap_err().contains("EMPTY"));
        assert!(i("${UNSET?x}").is_err());
        assert!(i("${oops").unwrap_err().contains("unclosed"));
        assert!(i("${}").is_err() && i("cost $5").is_err() && i("${A*}").is_err());
    }
}
