//! Normalising Compose's short forms (so files can be merged and printed the same way) and merging several
//! files with override semantics: mappings merge key by key, most sequences are appended (without
//! duplicates), a few are replaced (commands, entrypoints, healthcheck tests), scalars are replaced.

use serde_json::{Map, Value};

/// Keys whose sequences replace rather than extend the base's.
const REPLACED_SEQUENCES: [&str; 5] = ["command", "entrypoint", "test", "platforms", "profiles"];

/// Service keys (and build keys) whose list form `KEY=VALUE` is turned into a mapping.
const LIST_OR_DICT: [&str; 6] = ["environment", "labels", "args", "annotations", "additional_contexts", "sysctls"];

/// `["K=V", "K"]` as `{K: V, K: null}`.
fn list_to_map(list: &[Value]) -> Value {
    let mut map = Map::new();
    for item in list {
        match item.as_str() {
            Some(s) => match s.split_once('=') {
                Some((k, v)) => map.insert(k.to_string(), Value::String(v.to_string())),
                None => map.insert(s.to_string(), Value::Null),
            },
            None => map.insert(item.to_string(), Value::Null),
        };
    }
    Value::Object(map)
}

/// Short forms into long ones, in place: `build: DIR`, list-form `args`/`labels`/`environment`/..., and
/// `ssh`/`extra_hosts` as lists.
pub fn normalise(file: &mut Value) {
    let Some(services) = file.get_mut("services").and_then(Value::as_object_mut) else { return };
    for service in services.values_mut() {
        let Some(service) = service.as_object_mut() else { continue };
        if let Some(Value::String(context)) = service.get("build") {
            let context = context.clone();
            service.insert("build".into(), serde_json::json!({ "context": context }));
        }
        for key in LIST_OR_DICT {
            if let Some(Value::Array(list)) = service.get(key) {
                let map = list_to_map(list);
                service.insert(key.into(), map);
            }
        }
        if let Some(build) = service.get_mut("build").and_then(Value::as_object_mut) {
            for key in LIST_OR_DICT {
                if let Some(Value::Array(list)) = build.get(key) {
                    let map = list_to_map(list);
                    build.insert(key.into(), map);
                }
            }
            if let Some(Value::Object(map)) = build.get("ssh") {
                let list: Vec<Value> = map
                    .iter()
                    .map(|(k, v)| match v.as_str() {
                        Some(p) => Value::String(format!("{k}={p}")),
                        None => Value::String(k.clone()),
                    })
                    .collect();
                build.insert("ssh".into(), Value::Array(list));
            }
            if let Some(Value::String(f)) = build.get("no_cache_filter") {
                let f = f.clone();
                build.insert("no_cache_filter".into(), Value::Array(vec![Value::String(f)]));
            }
        }
    }
}

/// Merge `over` into `base` (both normalised).
pub fn merge(base: &mut Value, over: Value) {
    merge_at(base, over, "");
}

fn merge_at(base: &mut Value, over: Value, key: &str) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge_at(existing, v, &k),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(o)) if !REPLACED_SEQUENCES.contains(&key) => {
            for v in o {
                if !b.contains(&v) {
                    b.push(v);
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_forms_normalise_and_overrides_merge() {
        let mut base = json!({"services": {"web": {"build": "./web", "environment": ["A=1", "B"], "ports": ["80"],
            "command": ["a"]}}});
        let mut over = json!({"services": {"web": {"build": {"args": ["X=1"], "target": "dev"},
            "environment": {"B": "2"}, "ports": ["80", "443"], "command": ["b"]}, "db": {"image": "db"}}});
        normalise(&mut base);
        normalise(&mut over);
        merge(&mut base, over);
        assert_eq!(
            base,
            json!({"services": {
                "web": {"build": {"context": "./web", "args": {"X": "1"}, "target": "dev"},
                        "environment": {"A": "1", "B": "2"}, "ports": ["80", "443"], "command": ["b"]},
                "db": {"image": "db"}}})
        );
    }
}
