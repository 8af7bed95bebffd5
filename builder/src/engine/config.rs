//! Image config changes made by the metadata instructions (ENV, LABEL, WORKDIR, USER, CMD, ENTRYPOINT, EXPOSE,
//! VOLUME, STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD), applied to the OCI config's `config` object with Docker's
//! rules, and the `created` timestamp.

use serde_json::{Map, Value, json};

/// Set `KEY=value` in the config's Env (replacing an existing KEY).
pub(crate) fn set_env(config: &mut Value, key: &str, value: &str) {
    let mut env = config["config"]["Env"].as_array().cloned().unwrap_or_default();
    let entry = Value::String(format!("{key}={value}"));
    // A variable already set keeps its place (BuildKit replaces it in place: `ENV A=1 PATH=/x:$PATH` leaves PATH
    // first); a new one goes last.
    match env.iter().position(|e| e.as_str().is_some_and(|s| s.split_once('=').map(|(k, _)| k) == Some(key))) {
        Some(i) => env[i] = entry,
        None => env.push(entry),
    }
    config["config"]["Env"] = Value::Array(env);
}

/// The config's Env as (key, value) pairs.
pub(crate) fn env_pairs(config: &Value) -> Vec<(String, String)> {
    config["config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str()?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

pub(crate) fn set_label(config: &mut Value, key: &str, value: &str) {
    if !config["config"]["Labels"].is_object() {
        config["config"]["Labels"] = Value::Object(Map::new());
    }
    config["config"]["Labels"][key] = Value::String(value.to_string());
}

pub(crate) fn add_to_set(config: &mut Value, field: &str, key: &str) {
    if !config["config"][field].is_object() {
        config["config"][field] = Value::Object(Map::new());
    }
    config["config"][field][key] = json!({});
}

/// Seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The image's creation time: SOURCE_DATE_EPOCH when set, else now.
pub(crate) fn created(source_date_epoch: Option<i64>) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    rfc3339(source_date_epoch.unwrap_or(now))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
