//! The typed Compose model rbuild validates a (merged, interpolated) file against: every top-level and service
//! key of the Compose specification is known (unknown keys are errors; `x-` extensions are dropped first), the
//! service keys rbuild does not act on are checked for their JSON kind, and `build:` is fully typed. Errors name
//! the path in the document (`services.web.build.args`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

/// What a service key's value must be (rbuild only checks the shape of keys it does not act on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    /// A boolean, or a string (interpolated values are strings).
    Bool,
    /// An integer or a string.
    Int,
    /// A number or a string.
    Num,
    List,
    StrOrList,
    ListOrDict,
    Obj,
    ListOrObj,
    Any,
}

/// Every service key of the Compose specification, with the shape rbuild checks.
const SERVICE_KEYS: &[(&str, Kind)] = &[
    ("annotations", Kind::ListOrDict),
    ("attach", Kind::Bool),
    ("blkio_config", Kind::Obj),
    ("build", Kind::Any),
    ("cap_add", Kind::List),
    ("cap_drop", Kind::List),
    ("cgroup", Kind::Str),
    ("cgroup_parent", Kind::Str),
    ("command", Kind::StrOrList),
    ("configs", Kind::List),
    ("container_name", Kind::Str),
    ("cpu_count", Kind::Int),
    ("cpu_percent", Kind::Int),
    ("cpu_period", Kind::Num),
    ("cpu_quota", Kind::Num),
    ("cpu_rt_period", Kind::Num),
    ("cpu_rt_runtime", Kind::Num),
    ("cpu_shares", Kind::Num),
    ("cpus", Kind::Num),
    ("cpuset", Kind::Str),
    ("credential_spec", Kind::Obj),
    ("depends_on", Kind::ListOrObj),
    ("deploy", Kind::Obj),
    ("develop", Kind::Obj),
    ("device_cgroup_rules", Kind::List),
    ("devices", Kind::List),
    ("dns", Kind::StrOrList),
    ("dns_opt", Kind::List),
    ("dns_search", Kind::StrOrList),
    ("domainname", Kind::Str),
    ("entrypoint", Kind::StrOrList),
    ("env_file", Kind::Any),
    ("environment", Kind::ListOrDict),
    ("expose", Kind::List),
    ("extends", Kind::Any),
    ("external_links", Kind::List),
    ("extra_hosts", Kind::ListOrObj),
    ("gpus", Kind::Any),
    ("group_add", Kind::List),
    ("healthcheck", Kind::Obj),
    ("hostname", Kind::Str),
    ("image", Kind::Str),
    ("init", Kind::Bool),
    ("ipc", Kind::Str),
    ("isolation", Kind::Str),
    ("label_file", Kind::StrOrList),
    ("labels", Kind::ListOrDict),
    ("links", Kind::List),
    ("logging", Kind::Obj),
    ("mac_address", Kind::Str),
    ("mem_limit", Kind::Num),
    ("mem_reservation", Kind::Int),
    ("mem_swappiness", Kind::Int),
    ("memswap_limit", Kind::Num),
    ("models", Kind::ListOrObj),
    ("network_mode", Kind::Str),
    ("networks", Kind::ListOrObj),
    ("oom_kill_disable", Kind::Bool),
    ("oom_score_adj", Kind::Int),
    ("pid", Kind::Any),
    ("pids_limit", Kind::Num),
    ("platform", Kind::Str),
    ("ports", Kind::List),
    ("post_start", Kind::List),
    ("pre_start", Kind::List),
    ("pre_stop", Kind::List),
    ("privileged", Kind::Bool),
    ("profiles", Kind::List),
    ("provider", Kind::Obj),
    ("pull_policy", Kind::Str),
    ("pull_refresh_after", Kind::Str),
    ("read_only", Kind::Bool),
    ("restart", Kind::Str),
    ("runtime", Kind::Str),
    ("scale", Kind::Int),
    ("secrets", Kind::List),
    ("security_opt", Kind::List),
    ("shm_size", Kind::Num),
    ("stdin_open", Kind::Bool),
    ("stop_grace_period", Kind::Str),
    ("stop_signal", Kind::Str),
    ("storage_opt", Kind::Obj),
    ("sysctls", Kind::ListOrDict),
    ("tmpfs", Kind::StrOrList),
    ("tty", Kind::Bool),
    ("ulimits", Kind::Obj),
    ("use_api_socket", Kind::Bool),
    ("user", Kind::Str),
    ("userns_mode", Kind::Str),
    ("uts", Kind::Str),
    ("volumes", Kind::List),
    ("volumes_from", Kind::List),
    ("working_dir", Kind::Str),
];

const TOP_LEVEL_KEYS: [&str; 9] =
    ["version", "name", "include", "services", "models", "networks", "volumes", "secrets", "configs"];

/// A problem at a path of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    pub path: String,
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> ModelError {
    ModelError { path: path.to_string(), message: message.into() }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn check_kind(path: &str, kind: Kind, v: &Value) -> Result<(), ModelError> {
    let ok = match kind {
        Kind::Any => true,
        Kind::Str => v.is_string(),
        Kind::Bool => v.is_boolean() || v.is_string(),
        Kind::Int => v.is_i64() || v.is_u64() || v.is_string(),
        Kind::Num => v.is_number() || v.is_string(),
        Kind::List => v.is_array(),
        Kind::StrOrList => v.is_string() || v.is_array(),
        Kind::ListOrDict | Kind::ListOrObj => v.is_array() || v.is_object(),
        Kind::Obj => v.is_object(),
    };
    if ok {
        return Ok(());
    }
    let want = match kind {
        Kind::Str => "a string",
        Kind::Bool => "a boolean",
        Kind::Int => "an integer",
        Kind::Num => "a number",
        Kind::List => "a list",
        Kind::StrOrList => "a string or a list",
        Kind::ListOrDict => "a mapping or a list of KEY=VALUE strings",
        Kind::ListOrObj => "a list or a mapping",
        Kind::Obj => "a mapping",
        Kind::Any => "anything",
    };
    Err(err(path, format!("expected {want}, got {}", describe(v))))
}

/// Drop `x-` extension keys from the top level and from each service and build section, network, volume,
/// secret and config definition.
pub fn strip_extensions(file: &mut Value) {
    let strip = |m: &mut Map<String, Value>| m.retain(|k, _| !k.starts_with("x-"));
    let Some(top) = file.as_object_mut() else { return };
    strip(top);
    for section in ["services", "networks", "volumes", "secrets", "configs", "models"] {
        let Some(defs) = top.get_mut(section).and_then(Value::as_object_mut) else { continue };
        for def in defs.values_mut().filter_map(Value::as_object_mut) {
            strip(def);
            if let Some(build) = def.get_mut("build").and_then(Value::as_object_mut) {
                strip(build);
            }
        }
    }
}

/// A string, number or boolean as the string a build receives; null stays absent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }

    /// `true`/`false` (also as strings).
    pub fn flag(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            Scalar::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Scalar::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }
}

/// A mapping after normalisation (`KEY: value`, a value of null meaning "not given").
pub type Dict = BTreeMap<String, Option<Scalar>>;

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub fn items(&self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s.clone()],
            StringOrList::Many(v) => v.clone(),
        }
    }
}

/// `extra_hosts` as a list (`host=ip`, `host:ip`) or a mapping (`host: ip` or `host: [ips]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ExtraHosts {
    List(Vec<String>),
    Map(BTreeMap<String, StringOrList>),
}

/// One ulimit: a single value or soft/hard.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Ulimit {
    Single(Scalar),
    Pair { soft: Scalar, hard: Scalar },
}

/// A build secret grant: its name, or the long syntax.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SecretGrant {
    Short(String),
    Long(SecretGrantLong),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretGrantLong {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<Scalar>,
    pub gid: Option<Scalar>,
    pub mode: Option<Scalar>,
}

/// A service's `build:` section (after normalisation to the long form).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    pub context: Option<String>,
    pub dockerfile: Option<String>,
    pub dockerfile_inline: Option<String>,
    #[serde(default)]
    pub args: Dict,
    pub target: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: Dict,
    #[serde(default)]
    pub additional_contexts: Dict,
    #[serde(default)]
    pub cache_from: Vec<String>,
    #[serde(default)]
    pub cache_to: Vec<String>,
    pub no_cache: Option<Scalar>,
    pub pull: Option<Scalar>,
    pub network: Option<String>,
    pub extra_hosts: Option<ExtraHosts>,
    pub shm_size: Option<Scalar>,
    #[serde(default)]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(default)]
    pub secrets: Vec<SecretGrant>,
    #[serde(default)]
    pub ssh: Vec<String>,
    pub no_cache_filter: Option<StringOrList>,
    #[serde(default)]
    pub platforms: Vec<String>,
    pub privileged: Option<Scalar>,
    #[serde(default)]
    pub entitlements: Vec<String>,
    pub isolation: Option<String>,
    pub sbom: Option<Scalar>,
    pub provenance: Option<Scalar>,
}

/// A top-level secret definition.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretDef {
    pub name: Option<String>,
    pub file: Option<String>,
    pub environment: Option<String>,
    pub external: Option<Value>,
    pub labels: Option<Value>,
    pub driver: Option<String>,
    pub driver_opts: Option<Value>,
    pub template_driver: Option<String>,
}

/// What rbuild reads of a service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceSpec {
    pub image: Option<String>,
    pub build: Option<BuildSpec>,
    pub pull_policy: Option<String>,
    pub profiles: Vec<String>,
    pub platform: Option<String>,
}

/// The validated parts of a Compose document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ComposeModel {
    pub name: Option<String>,
    pub services: BTreeMap<String, ServiceSpec>,
    pub secrets: BTreeMap<String, SecretDef>,
}

/// Deserialize `v` as `T`, reporting the path below `prefix` where it failed.
fn typed<T: serde::de::DeserializeOwned>(prefix: &str, v: &Value) -> Result<T, ModelError> {
    serde_path_to_error::deserialize::<_, T>(v.clone()).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." || inner.is_empty() { prefix.to_string() } else { format!("{prefix}.{inner}") };
        let message = e.inner().to_string();
        // Untagged enums say only that nothing matched: say what was expected instead.
        let message = if message.contains("did not match any variant") {
            match path.rsplit('.').next().unwrap_or("") {
                "extra_hosts" => "expected a list of HOST=IP strings or a mapping of host to IP".to_string(),
                "secrets" => "expected a secret name or {source, target, uid, gid, mode}".to_string(),
                "no_cache_filter" => "expected a stage name or a list of them".to_string(),
                _ => "expected a string, number or boolean (or soft/hard for a ulimit)".to_string(),
            }
        } else {
            message
        };
        err(&path, message)
    })
}

/// Validate a merged, interpolated, normalised document (extensions stripped) and extract the model.
pub fn validate(doc: &Value) -> Result<ComposeModel, ModelError> {
    let top =
        doc.as_object().ok_or_else(|| err("(top level)", format!("expected a mapping, got {}", describe(doc))))?;
    for key in top.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            return Err(err(
                key,
                "unknown top-level key (Compose has version, name, include, services, networks, volumes, secrets, configs, models; x- for extensions)",
            ));
        }
    }
    for section in ["networks", "volumes", "configs", "models"] {
        if let Some(v) = top.get(section).filter(|v| !v.is_null()) {
            check_kind(section, Kind::Obj, v)?;
        }
    }
    let mut model = ComposeModel { name: None, ..Default::default() };
    if let Some(v) = top.get("name") {
        model.name =
            Some(v.as_str().ok_or_else(|| err("name", format!("expected a string, got {}", describe(v))))?.to_string());
    }
    if let Some(secrets) = top.get("secrets").filter(|v| !v.is_null()) {
        model.secrets = typed("secrets", secrets)?;
    }
    let services = match top.get("services") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(v) => return Err(err("services", format!("expected a mapping of services, got {}", describe(v)))),
    };
    for (name, service) in &services {
        let path = format!("services.{name}");
        let svc =
            service.as_object().ok_or_else(|| err(&path, format!("expected a mapping, got {}", describe(service))))?;
        for (key, value) in svc {
            let kind = SERVICE_KEYS.iter().find(|(k, _)| k == key).map(|(_, kind)| *kind).ok_or_else(|| {
                err(&format!("{path}.{key}"), "unknown service key (see the Compose specification's service keys)")
            })?;
            check_kind(&format!("{path}.{key}"), kind, value)?;
        }
        let str_of = |key: &str| svc.get(key).and_then(Value::as_str).map(str::to_string);
        let build = match svc.get("build") {
            None | Some(Value::Null) => None,
            Some(b @ Value::Object(_)) => Some(typed::<BuildSpec>(&format!("{path}.build"), b)?),
            Some(other) => {
                return Err(err(
                    &format!("{path}.build"),
                    format!("expected a path, a git URL or a mapping, got {}", describe(other)),
                ));
            }
        };
        if let Some(p) = &str_of("pull_policy")
            && !valid_pull_policy(p)
        {
            return Err(err(
                &format!("{path}.pull_policy"),
                format!(
                    "{p:?} is not a pull policy (always, never, missing, if_not_present, build, refresh, daily, weekly, every_<duration>)"
                ),
            ));
        }
        let profiles = match svc.get("profiles") {
            Some(v) => typed::<Vec<String>>(&format!("{path}.profiles"), v)?,
            None => Vec::new(),
        };
        model.services.insert(
            name.clone(),
            ServiceSpec {
                image: str_of("image"),
                build,
                pull_policy: str_of("pull_policy"),
                profiles,
                platform: str_of("platform"),
            },
        );
    }
    Ok(model)
}

/// Compose's pull policies, `every_<duration>` with units w, d, h, m, s (`every_12h`, `every_1d12h`).
pub fn valid_pull_policy(p: &str) -> bool {
    if let Some(d) = p.strip_prefix("every_") {
        return parse_duration(d).is_some();
    }
    matches!(p, "always" | "never" | "missing" | "if_not_present" | "build" | "refresh" | "daily" | "weekly")
}

/// `1w2d3h4m5s` in seconds.
pub fn parse_duration(d: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut num = String::new();
    for c in d.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'w' => 604_800,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(num.parse::<u64>().ok()?.checked_mul(unit)?)?;
        num.clear();
    }
    (num.is_empty() && total > 0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_path() {
        let e = validate(&json!({"services": {"web": {"image": "x", "colour": "blue"}}})).unwrap_err();
        assert_eq!(e.path, "services.web.colour");
        let e = validate(&json!({"services": {"web": {"build": {"context": ".", "args": {"A": [1]}}}}})).unwrap_err();
        assert!(e.path.starts_with("services.web.build.args"), "{e:?}");
        let e = validate(&json!({"services": {"web": {"ports": "80"}}})).unwrap_err();
        assert_eq!((e.path.as_str(), e.message.as_str()), ("services.web.ports", "expected a list, got a string"));
        let e = validate(&json!({"services": {"web": {"build": {"contxt": "."}}}})).unwrap_err();
        assert!(e.path.contains("services.web.build") && e.message.contains("contxt"), "{e:?}");
        let e = validate(&json!({"servicess": {}})).unwrap_err();
        assert_eq!(e.path, "servicess");
        assert!(validate(&json!({"services": {"a": {"pull_policy": "every_2h30m"}}})).is_ok());
        assert!(validate(&json!({"services": {"a": {"pull_policy": "sometimes"}}})).is_err());
    }

    #[test]
    fn build_sections_type_check() {
        let m = validate(&json!({"services": {"web": {"image": "web:1", "build": {"context": "dir", "args": {"A": "1", "B": null, "C": 2},
            "secrets": ["s", {"source": "t", "target": "u", "mode": 288}], "ulimits": {"nofile": {"soft": 1, "hard": 2}, "nproc": 5},
            "extra_hosts": ["a=1.2.3.4"], "shm_size": "2gb", "no_cache": true}}}}))
        .unwrap();
        let b = m.services["web"].build.clone().unwrap();
        assert_eq!(b.args["C"].as_ref().unwrap().text(), "2");
        assert!(b.args["B"].is_none());
        assert_eq!(b.secrets.len(), 2);
        assert_eq!(parse_duration("1d12h"), Some(129_600));
    }
}
