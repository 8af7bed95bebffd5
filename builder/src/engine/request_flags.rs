//! The grammars of a build request's flag values, one place each, shared by `rbuild build`, `rbuild run` and
//! Compose: `--build-arg`, `KEY=VALUE` lists, `--secret`, `--ssh`, `--ulimit` and `--cache-from`/`--cache-to`.
//! Each error names the flag and the value as given, and says the form expected.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::SecretSource;
use super::remote_cache::CacheSpec;
use crate::error::{Error, Result};

fn invalid(message: String) -> Error {
    Error::InvalidFlag { message }
}

/// `--build-arg KEY=VALUE`, or `KEY` alone for the environment's value (left out when unset).
pub fn parse_build_args(specs: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in specs {
        match a.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    out
}

/// `KEY=VALUE` values of `flag` (`--label`, `--build-context`), in order.
pub fn key_values(specs: &[String], flag: &str) -> Result<Vec<(String, String)>> {
    specs
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| invalid(format!("{flag} {l:?}: expected KEY=VALUE")))
        })
        .collect()
}

/// `--ssh default` (the agent at $SSH_AUTH_SOCK) or `--ssh ID=SOCKET[,SOCKET]`.
pub fn parse_ssh(specs: &[String]) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (id, path) = match spec.split_once('=') {
            Some((id, p)) => (id.to_string(), PathBuf::from(p.split(',').next().unwrap_or(p))),
            None => {
                let sock = std::env::var_os("SSH_AUTH_SOCK").ok_or_else(|| {
                    invalid(format!("--ssh {spec}: SSH_AUTH_SOCK is not set (start an agent or give ID=SOCKET)"))
                })?;
                (spec.clone(), PathBuf::from(sock))
            }
        };
        if !path.exists() {
            return Err(invalid(format!("--ssh {spec}: {} does not exist", path.display())));
        }
        out.insert(id, path);
    }
    Ok(out)
}

/// `--secret id=ID,src=PATH|source=PATH|env=VAR` (as docker buildx takes them; `type=` is accepted).
pub fn parse_secrets(specs: &[String]) -> Result<BTreeMap<String, SecretSource>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (mut id, mut source) = (None, None);
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => source = Some(SecretSource::File(PathBuf::from(v))),
                Some(("env", v)) => source = Some(SecretSource::Env(v.to_string())),
                Some(("type", "file" | "env")) => {}
                _ => {
                    return Err(invalid(format!(
                        "--secret {spec:?}: unknown field {field:?} (use id=ID,src=PATH or id=ID,env=VAR)"
                    )));
                }
            }
        }
        let id = id.ok_or_else(|| invalid(format!("--secret {spec:?}: missing id=")))?;
        let source = source.unwrap_or_else(|| SecretSource::Env(id.clone()));
        out.insert(id, source);
    }
    Ok(out)
}

/// `--ulimit NAME=SOFT[:HARD]` (`-1`: unlimited).
pub fn parse_ulimit(s: &str) -> Result<(String, u64, u64)> {
    let err = || invalid(format!("--ulimit {s:?}: expected NAME=SOFT[:HARD], e.g. nofile=1024:2048"));
    let (name, values) = s.split_once('=').ok_or_else(err)?;
    let value = |v: &str| -> Result<u64> { if v == "-1" { Ok(u64::MAX) } else { v.parse().map_err(|_| err()) } };
    let (soft, hard) = match values.split_once(':') {
        Some((a, b)) => (value(a)?, value(b)?),
        None => (value(values)?, value(values)?),
    };
    if soft > hard {
        return Err(invalid(format!("--ulimit {s:?}: the soft limit is above the hard limit")));
    }
    Ok((name.to_string(), soft, hard))
}

/// `--cache-from`/`--cache-to` values (`flag` names them in errors: `--cache-to`, Compose's `cache_to`).
pub fn parse_cache_specs(specs: &[String], flag: &str) -> Result<Vec<CacheSpec>> {
    specs.iter().map(|v| CacheSpec::parse(v).map_err(|e| invalid(format!("{flag} {v:?}: {e}")))).collect()
}

/// `--allow`: the entitlements rbuild knows.
pub fn check_entitlements(allow: &[String]) -> Result<()> {
    match allow.iter().find(|a| *a != "network.host" && *a != "security.insecure") {
        Some(a) => Err(invalid(format!("--allow {a:?}: rbuild knows network.host and security.insecure"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_take_soft_and_hard_or_one_value_and_refuse_soft_above_hard() {
        assert_eq!(parse_ulimit("nofile=1024:2048").unwrap(), ("nofile".into(), 1024, 2048));
        assert_eq!(parse_ulimit("nproc=-1").unwrap(), ("nproc".into(), u64::MAX, u64::MAX));
        assert!(parse_ulimit("nofile=10:5").unwrap_err().to_string().contains("soft limit is above"));
        assert!(parse_ulimit("nofile").unwrap_err().to_string().contains("expected NAME=SOFT[:HARD]"));
    }

    #[test]
    fn secrets_default_to_the_environment_variable_of_their_id() {
        let s = parse_secrets(&["id=tok".into(), "id=f,src=/x".into()]).unwrap();
        assert_eq!(s["tok"], SecretSource::Env("tok".into()));
        assert_eq!(s["f"], SecretSource::File("/x".into()));
        assert!(parse_secrets(&["src=/x".into()]).unwrap_err().to_string().contains("missing id="));
    }
}
