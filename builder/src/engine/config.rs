//! The image config as a type ([`ImageConfig`]): what the metadata instructions (ENV, LABEL, WORKDIR, USER, CMD,
//! ENTRYPOINT, EXPOSE, VOLUME, STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD) change, with Docker's rules, the history,
//! the layers' diff_ids, and the `created` timestamp.

use serde_json::{Map, Value, json};

/// An image config (the OCI config document), read and changed through named accessors instead of JSON paths.
/// Every field the accessors do not know is kept as it came, so a base image's config loses nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig(Value);

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
}

impl ImageConfig {
    /// A config document as read (a `config` object is added when it has none).
    pub fn from_json(mut doc: Value) -> Self {
        if !doc["config"].is_object() {
            doc["config"] = json!({});
        }
        ImageConfig(doc)
    }

    /// The document, for writing it and for reading fields no accessor names.
    pub fn json(&self) -> &Value {
        &self.0
    }

    pub fn into_json(self) -> Value {
        self.0
    }

    /// The working directory (`/` when unset or empty).
    pub fn workdir(&self) -> &str {
        self.0["config"]["WorkingDir"].as_str().filter(|w| !w.is_empty()).unwrap_or("/")
    }

    pub fn set_workdir(&mut self, dir: &str) {
        self.0["config"]["WorkingDir"] = Value::String(dir.to_string());
    }

    /// The USER (None when unset or empty: root).
    pub fn user(&self) -> Option<&str> {
        self.0["config"]["User"].as_str().filter(|u| !u.is_empty())
    }

    pub fn set_user(&mut self, user: &str) {
        self.0["config"]["User"] = Value::String(user.to_string());
    }

    /// The SHELL for shell-form commands (`/bin/sh -c` when unset).
    pub fn shell(&self) -> Vec<String> {
        strings(&self.0["config"]["Shell"]).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    pub fn set_shell(&mut self, shell: &[String]) {
        self.0["config"]["Shell"] = json!(shell);
    }

    /// The Env as (key, value) pairs, in order.
    pub fn env(&self) -> Vec<(String, String)> {
        self.0["config"]["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str()?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    }

    /// Set `KEY=value` in the Env. A variable already set keeps its place (BuildKit replaces it in place: `ENV A=1
    /// PATH=/x:$PATH` leaves PATH first); a new one goes last.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.0["config"]["Env"].as_array().cloned().unwrap_or_default();
        let entry = Value::String(format!("{key}={value}"));
        match env.iter().position(|e| e.as_str().is_some_and(|s| s.split_once('=').map(|(k, _)| k) == Some(key))) {
            Some(i) => env[i] = entry,
            None => env.push(entry),
        }
        self.0["config"]["Env"] = Value::Array(env);
    }

    pub fn set_label(&mut self, key: &str, value: &str) {
        self.set_in_object("Labels", key, Value::String(value.to_string()));
    }

    /// Add a port to ExposedPorts.
    pub fn expose(&mut self, port: &str) {
        self.set_in_object("ExposedPorts", port, json!({}));
    }

    /// Add a path to Volumes.
    pub fn add_volume(&mut self, path: &str) {
        self.set_in_object("Volumes", path, json!({}));
    }

    fn set_in_object(&mut self, field: &str, key: &str, value: Value) {
        if !self.0["config"][field].is_object() {
            self.0["config"][field] = Value::Object(Map::new());
        }
        self.0["config"][field][key] = value;
    }

    /// CMD (None removes it).
    pub fn set_cmd(&mut self, argv: Option<&[String]>) {
        self.0["config"]["Cmd"] = argv.map_or(Value::Null, |a| json!(a));
    }

    /// Docker's `ArgsEscaped` (set for a shell-form CMD or ENTRYPOINT on Windows-compatible configs).
    pub fn set_args_escaped(&mut self) {
        self.0["config"]["ArgsEscaped"] = Value::Bool(true);
    }

    /// ENTRYPOINT (an empty one removes it).
    pub fn set_entrypoint(&mut self, argv: &[String]) {
        self.0["config"]["Entrypoint"] = if argv.is_empty() { Value::Null } else { json!(argv) };
    }

    pub fn set_stop_signal(&mut self, signal: &str) {
        self.0["config"]["StopSignal"] = Value::String(signal.to_string());
    }

    /// HEALTHCHECK, as Docker's `Healthcheck` object.
    pub fn set_healthcheck(&mut self, check: Value) {
        self.0["config"]["Healthcheck"] = check;
    }

    /// MAINTAINER.
    pub fn set_author(&mut self, author: &str) {
        self.0["author"] = Value::String(author.to_string());
    }

    /// The ONBUILD triggers, in order.
    pub fn onbuild(&self) -> Vec<String> {
        strings(&self.0["config"]["OnBuild"]).unwrap_or_default()
    }

    pub fn push_onbuild(&mut self, trigger: &str) {
        let mut triggers = self.0["config"]["OnBuild"].as_array().cloned().unwrap_or_default();
        triggers.push(Value::String(trigger.to_string()));
        self.0["config"]["OnBuild"] = Value::Array(triggers);
    }

    /// Triggers are not inherited: a stage built from an image runs them and drops them.
    pub fn clear_onbuild(&mut self) {
        self.0["config"]["OnBuild"] = Value::Null;
    }

    /// When the image was made (RFC 3339), if it says.
    pub fn created(&self) -> Option<&str> {
        self.0["created"].as_str()
    }

    pub fn set_created(&mut self, created: &str) {
        self.0["created"] = Value::String(created.to_string());
    }

    /// How many history entries the image has.
    pub fn history_len(&self) -> usize {
        self.0["history"].as_array().map_or(0, Vec::len)
    }

    pub fn push_history(&mut self, entry: Value) {
        let mut h = self.0["history"].as_array().cloned().unwrap_or_default();
        h.push(entry);
        self.0["history"] = Value::Array(h);
    }

    /// Set `created` on the history entries from `from` on.
    pub fn stamp_history(&mut self, from: usize, created: &str) {
        if let Some(entries) = self.0["history"].as_array_mut() {
            for e in entries.iter_mut().skip(from) {
                e["created"] = Value::String(created.to_string());
            }
        }
    }

    /// Add a layer's diff_id to `rootfs.diff_ids`.
    pub fn push_diff_id(&mut self, diff_id: &crate::digest::Digest) {
        let mut ids = self.0["rootfs"]["diff_ids"].as_array().cloned().unwrap_or_default();
        ids.push(Value::String(diff_id.to_string()));
        self.0["rootfs"]["diff_ids"] = Value::Array(ids);
    }

    /// Replace `rootfs.diff_ids` with one layer's.
    pub fn set_only_diff_id(&mut self, diff_id: &crate::digest::Digest) {
        self.0["rootfs"]["diff_ids"] = json!([diff_id.to_string()]);
    }

    /// The platform the config says it is for.
    pub fn platform(&self) -> Option<crate::platform::Platform> {
        crate::platform::Platform::of_config(&self.0)
    }

    /// Set (or replace) a top-level field no accessor names (the inline cache's records).
    pub fn set_field(&mut self, key: &str, value: Value) {
        self.0[key] = value;
    }
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
    fn env_keeps_a_variable_in_place_and_unknown_fields_survive() {
        let mut c =
            super::ImageConfig::from_json(serde_json::json!({"config": {"Env": ["PATH=/bin", "A=1"]}, "x-custom": 7}));
        c.set_env("PATH", "/x:/bin");
        c.set_env("B", "2");
        assert_eq!(c.env(), [("PATH".into(), "/x:/bin".into()), ("A".into(), "1".into()), ("B".into(), "2".into())]);
        assert_eq!(c.workdir(), "/");
        assert_eq!(c.json()["x-custom"], 7);
    }

    #[test]
    fn dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
