//! `RUN --mount=...` specifications: comma-separated `key=value` fields (CSV quoting allowed), validated per mount
//! type as BuildKit does. A specification with a variable in a value (`type=$T`, `target=$P`, `id=$I`) is parsed
//! twice, as BuildKit does: when the Dockerfile is read only its `from` is taken (for the stage graph), and the
//! engine expands every value with the step's variables and validates the result with [`expand_mount`].

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount` of a RUN instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    pub kind: MountType,
    /// Where it appears in the container; for secret and ssh mounts it may be left to the default.
    pub target: Option<String>,
    pub source: Option<String>,
    /// A stage, image or named context to take the source from.
    pub from: Option<String>,
    /// `None` means the type's default (bind: read-only; cache: read-write).
    pub read_only: Option<bool>,
    pub id: Option<String>,
    pub sharing: Option<CacheSharing>,
    pub required: Option<bool>,
    pub mode: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub size: Option<String>,
    /// For secrets: expose the secret as this environment variable.
    pub env: Option<String>,
    /// The specification as written, kept when a value refers to a variable: the engine expands it.
    pub deferred: Option<String>,
    /// For a cache seeded `from=` a stage or image: the host directory of its files, set by the engine.
    pub seed: Option<String>,
}

/// Split a CSV record: commas separate fields, double quotes group (and `""` is a quote inside quotes).
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => fields.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if in_quotes {
        return Err(format!("unterminated quote in mount specification {s:?}"));
    }
    fields.push(cur);
    Ok(fields)
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "" | "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("invalid value for {key}: {v} (expected true or false)")),
    }
}

/// Parse one `--mount` value. A value holding a variable defers the parse to [`expand_mount`]; only `from` (which
/// may not hold one) is read now.
pub fn parse_mount(spec: &str) -> Result<RunMount, String> {
    let fields = csv_fields(spec)?;
    let has_variable = |f: &String| f.split_once('=').is_some_and(|(_, v)| v.contains('$'));
    if !fields.iter().any(has_variable) {
        return parse_fields(spec, fields);
    }
    let mut m = empty_mount();
    for f in &fields {
        if let Some((k, v)) = f.split_once('=')
            && k.trim().eq_ignore_ascii_case("from")
        {
            if v.contains('$') {
                return Err("'from' doesn't support variable expansion, define alias stage instead".into());
            }
            m.from = Some(v.to_string());
        }
    }
    m.deferred = Some(spec.to_string());
    Ok(m)
}

/// The mount a deferred specification makes once `expand` has replaced the variables in each of its values.
pub fn expand_mount(m: &RunMount, mut expand: impl FnMut(&str) -> Result<String, String>) -> Result<RunMount, String> {
    let Some(spec) = &m.deferred else { return Ok(m.clone()) };
    let mut fields = Vec::new();
    for f in csv_fields(spec)? {
        fields.push(match f.split_once('=') {
            Some((k, v)) => format!("{k}={}", expand(v)?),
            None => f,
        });
    }
    parse_fields(spec, fields)
}

fn empty_mount() -> RunMount {
    RunMount {
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        read_only: None,
        id: None,
        sharing: None,
        required: None,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        env: None,
        deferred: None,
        seed: None,
    }
}

/// Parse and validate the fields of one specification (its variables expanded).
fn parse_fields(spec: &str, fields: Vec<String>) -> Result<RunMount, String> {
    let mut m = empty_mount();
    // The type decides which keys are allowed, so read it first.
    for f in &fields {
        if let Some(("type", v)) = f.split_once('=').map(|(k, v)| (k.trim(), v)) {
            m.kind = match v.to_ascii_lowercase().as_str() {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                other => {
                    let types = ["bind", "cache", "tmpfs", "secret", "ssh"];
                    let hint = super::suggest::closest(other, types)
                        .map(|s| format!("did you mean {s}? "))
                        .unwrap_or_default();
                    return Err(format!(
                        "unsupported mount type {other:?} ({hint}use bind, cache, tmpfs, secret or ssh)"
                    ));
                }
            };
        }
    }
    for field in fields.iter().filter(|f| !f.trim().is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = |v: Option<String>| v.ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"));
        match key.as_str() {
            "type" => {}
            "target" | "dst" | "destination" => m.target = Some(need(value)?),
            "source" | "src" => m.source = Some(need(value)?),
            "from" => m.from = Some(need(value)?),
            "readonly" | "ro" => m.read_only = Some(parse_bool(&key, value.as_deref().unwrap_or(""))?),
            "readwrite" | "rw" => m.read_only = Some(!parse_bool(&key, value.as_deref().unwrap_or(""))?),
            "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                m.required = Some(parse_bool(&key, value.as_deref().unwrap_or(""))?)
            }
            "id" => m.id = Some(need(value)?),
            "sharing" if m.kind == MountType::Cache => {
                let v = need(value)?;
                m.sharing = Some(match v.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => {
                        return Err(format!("unsupported sharing value {v:?} (use shared, private or locked)"));
                    }
                })
            }
            "mode" if m.kind != MountType::Bind => {
                let v = need(value)?;
                if u32::from_str_radix(&v, 8).is_err() {
                    return Err(format!("invalid mode {v:?}: expected an octal number such as 0644"));
                }
                m.mode = Some(v);
            }
            "uid" | "gid" if m.kind != MountType::Bind => {
                let v = need(value)?;
                if v.parse::<u32>().is_err() {
                    return Err(format!("invalid {key} {v:?}: expected a number"));
                }
                if key == "uid" { m.uid = Some(v) } else { m.gid = Some(v) }
            }
            "size" if m.kind == MountType::Tmpfs => m.size = Some(need(value)?),
            "env" if m.kind == MountType::Secret => m.env = Some(need(value)?),
            _ => {
                let keys = [
                    "type",
                    "target",
                    "source",
                    "from",
                    "readonly",
                    "readwrite",
                    "required",
                    "id",
                    "sharing",
                    "mode",
                    "uid",
                    "gid",
                    "size",
                    "env",
                ];
                let hint =
                    super::suggest::closest(&key, keys).map(|s| format!(" (did you mean {s}?)")).unwrap_or_default();
                return Err(format!(
                    "unexpected key '{key}' in '{field}' for a {} mount{hint}",
                    format!("{:?}", m.kind).to_lowercase()
                ));
            }
        }
    }
    if m.target.is_none() && matches!(m.kind, MountType::Bind | MountType::Cache | MountType::Tmpfs) {
        return Err(format!("mount {spec:?} has no target: add target=/path"));
    }
    if m.kind == MountType::Secret && m.target.is_none() && m.id.is_none() && m.env.is_none() {
        return Err(format!("secret mount {spec:?} needs an id or a target"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_type() {
        let c = parse_mount("type=cache,target=/root/.cache,sharing=locked,id=x,mode=0755,uid=1").unwrap();
        assert_eq!(
            (c.kind, c.sharing, c.target.as_deref()),
            (MountType::Cache, Some(CacheSharing::Locked), Some("/root/.cache"))
        );
        let b = parse_mount("target=/src,from=build,source=/out,rw").unwrap();
        assert_eq!((b.kind, b.read_only, b.from.as_deref()), (MountType::Bind, Some(false), Some("build")));
        let s = parse_mount("type=secret,id=tok,env=TOKEN,required").unwrap();
        assert_eq!((s.kind, s.required, s.env.as_deref()), (MountType::Secret, Some(true), Some("TOKEN")));
        assert_eq!(parse_mount("type=ssh").unwrap().kind, MountType::Ssh);
        assert_eq!(parse_mount("type=tmpfs,target=/t,size=64m").unwrap().size.as_deref(), Some("64m"));
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(parse_mount("type=volume,target=/x").unwrap_err().contains("unsupported mount type"));
        assert!(parse_mount("type=cache").unwrap_err().contains("no target"));
        assert!(parse_mount("type=cache,target=/x,sharing=maybe").unwrap_err().contains("sharing"));
        assert!(parse_mount("type=bind,target=/x,size=1").unwrap_err().contains("unexpected key 'size'"));
        assert!(parse_mount("target=/x,from=$STAGE").unwrap_err().contains("variable expansion"));
        assert!(parse_mount("type=cache,target=/x,mode=999").unwrap_err().contains("octal"));
    }

    #[test]
    fn variables_are_expanded_before_validation() {
        let m = parse_mount("type=$T,id=$I,target=$P,from=base").unwrap();
        assert_eq!((m.from.as_deref(), m.deferred.is_some()), (Some("base"), true));
        let vars = |v: &str| {
            Ok(match v {
                "$T" => "cache".to_string(),
                "$I" => "mycache".into(),
                "$P" => "/c".into(),
                "$M" => "0999".into(),
                other => other.into(),
            })
        };
        let e = expand_mount(&m, vars).unwrap();
        assert_eq!((e.kind, e.id.as_deref(), e.target.as_deref()), (MountType::Cache, Some("mycache"), Some("/c")));
        assert!(e.deferred.is_none());
        let bad = parse_mount("type=cache,target=/x,mode=$M").unwrap();
        assert!(expand_mount(&bad, vars).unwrap_err().contains("octal"));
    }
}
