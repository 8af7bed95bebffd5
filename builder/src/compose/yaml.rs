//! YAML in and out for Compose files, through serde-saphyr: strict booleans (`yes`/`no`/`on`/`off` stay
//! strings, only `true`/`false` are booleans), duplicate keys are errors, merge keys (`<<`) are expanded.

use serde_json::Value;

/// Parse one YAML document into a JSON value tree; the error carries the line and column.
pub fn parse(text: &str) -> Result<Value, String> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        merge_keys: serde_saphyr::MergeKeyPolicy::Merge,
    };
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_saphyr::from_str_with_options::<Value>(text, options)
        .map_err(|e| e.to_string().replace(", set DuplicateKeyPolicy in Options if acceptable", ""))
}

/// A value tree as YAML.
pub fn render(value: &Value) -> Result<String, String> {
    serde_saphyr::to_string(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_booleans_duplicate_keys_and_merge_keys() {
        let v = parse("a: yes\nb: true\nc: 'no'\nd: 10\nbase: &b {x: 1}\nmerged:\n  <<: *b\n  y: 2\n").unwrap();
        assert_eq!(v["a"], "yes");
        assert_eq!(v["b"], true);
        assert_eq!(v["d"], 10);
        assert_eq!(v["merged"]["x"], 1);
        assert_eq!(v["merged"]["y"], 2);
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(e.to_lowercase().contains("duplicate"), "{e}");
        let e = parse("a: [1,\n").unwrap_err();
        assert!(e.contains('2') || e.contains("line"), "{e}");
        let out = render(&v).unwrap();
        assert!(out.contains("a: \"yes\"") && out.contains("b: true"), "{out}");
    }
}
