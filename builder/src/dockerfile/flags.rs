//! Instruction flags (`--name=value`, `--name`), validated per instruction as BuildKit's `BFlags` does: unknown
//! flags are rejected with the instruction's list of valid flags, booleans take `true`/`false`, strings need a
//! value, repeatable flags collect every value, and non-repeatable flags may not be given twice.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    Bool,
    String,
    /// May be given several times; every value is kept.
    Strings,
}

/// A flag problem: the message and the flag text to point at in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlagError {
    pub message: String,
    pub flag: String,
}

/// The flags one instruction accepts, and what was given.
#[derive(Debug)]
pub(crate) struct Flags {
    instruction: &'static str,
    spec: Vec<(&'static str, FlagKind)>,
    values: BTreeMap<&'static str, Vec<String>>,
}

impl Flags {
    pub(crate) fn new(instruction: &'static str, spec: &[(&'static str, FlagKind)]) -> Self {
        Flags { instruction, spec: spec.to_vec(), values: BTreeMap::new() }
    }

    /// Parse the flag words of one instruction against the spec.
    pub(crate) fn parse(mut self, words: &[String]) -> Result<Self, FlagError> {
        for word in words {
            let Some(body) = word.strip_prefix("--") else {
                return Err(FlagError { message: format!("arg should start with -- : {word}"), flag: word.clone() });
            };
            if body.is_empty() {
                break;
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(key, kind)) = self.spec.iter().find(|(n, _)| *n == name) else {
                return Err(FlagError { message: self.unknown_message(name), flag: format!("--{name}") });
            };
            let err = |message: String| FlagError { message, flag: format!("--{name}") };
            if self.values.contains_key(key) && kind != FlagKind::Strings {
                return Err(err(format!("duplicate flag specified: {name}")));
            }
            let v = match (kind, value) {
                (FlagKind::Bool, None) => "true".to_string(),
                (FlagKind::Bool, Some("")) => {
                    return Err(err(format!("missing a value on flag: {name}")));
                }
                (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    b @ ("true" | "false") => b.to_string(),
                    _ => {
                        return Err(err(format!("expecting boolean value for flag {name}, not: {v}")));
                    }
                },
                (_, None) => return Err(err(format!("missing a value on flag: {name}"))),
                (_, Some(v)) => v.to_string(),
            };
            self.values.entry(key).or_default().push(v);
        }
        Ok(self)
    }

    fn unknown_message(&self, name: &str) -> String {
        let mut valid: Vec<String> = self.spec.iter().map(|(n, _)| format!("--{n}")).collect();
        valid.sort();
        let list = if valid.is_empty() {
            "it takes no flags".to_string()
        } else {
            format!("valid flags: {}", valid.join(", "))
        };
        let suggestion = super::suggest::closest(name, self.spec.iter().map(|(n, _)| *n))
            .map(|s| format!("did you mean {s}? "))
            .unwrap_or_default();
        format!("unknown flag: --{name} for {} ({suggestion}{list})", self.instruction)
    }

    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last().cloned())
    }

    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    pub(crate) fn bool(&self, name: &str) -> bool {
        self.string(name).as_deref() == Some("true")
    }

    /// A boolean that distinguishes "not given" from `false`.
    pub(crate) fn opt_bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Flags {
        Flags::new("COPY", &[("from", FlagKind::String), ("link", FlagKind::Bool), ("exclude", FlagKind::Strings)])
    }

    #[test]
    fn parses_and_validates() {
        let words: Vec<String> = ["--from=a", "--link", "--exclude=x", "--exclude=y"].map(String::from).to_vec();
        let f = spec().parse(&words).unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert!(f.bool("link"));
        assert_eq!(f.strings("exclude"), vec!["x", "y"]);
        let e = spec().parse(&["--form=a".to_string()]).unwrap_err();
        assert_eq!(
            e.message,
            "unknown flag: --form for COPY (did you mean from? valid flags: --exclude, --from, --link)"
        );
        assert!(spec().parse(&["--from".into()]).unwrap_err().message.contains("missing a value"));
        assert!(spec().parse(&["--link=maybe".into()]).unwrap_err().message.contains("expecting boolean"));
        assert!(spec().parse(&["--link=".into()]).unwrap_err().message.contains("missing a value"));
        assert!(spec().parse(&["--from=a".into(), "--from=b".into()]).unwrap_err().message.contains("duplicate flag"));
    }
}
