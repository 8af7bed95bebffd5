//! The one reading of an extra host entry (`--add-host` of `build` and `run`, Compose `extra_hosts`): `NAME=IP`
//! or `NAME:IP` (split at the first `=`, else the first `:`, so IPv6 addresses keep theirs), an IPv6 address
//! optionally in brackets; the address must be an IP address.

/// A host entry that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: expected NAME=IP or NAME:IP (an IPv4 or IPv6 address)")]
pub struct HostError(pub String);

/// (name, address) of `NAME=IP` or `NAME:IP`.
pub fn parse_host_entry(entry: &str) -> Result<(String, String), HostError> {
    let (name, ip) = entry.split_once('=').or_else(|| entry.split_once(':')).ok_or_else(|| HostError(entry.into()))?;
    host_with_address(name, ip).map_err(|_| HostError(entry.to_string()))
}

/// (name, address) of a name and an address given apart (Compose's map form).
pub fn host_with_address(name: &str, ip: &str) -> Result<(String, String), HostError> {
    let (name, ip) = (name.trim(), ip.trim());
    let ip = ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')).unwrap_or(ip);
    if name.is_empty() || name.contains(char::is_whitespace) || ip.parse::<std::net::IpAddr>().is_err() {
        return Err(HostError(format!("{name}={ip}")));
    }
    Ok((name.to_string(), ip.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{HostError, parse_host_entry};

    #[test]
    fn both_separators_and_ipv6_read_the_same_everywhere() {
        let ok = |n: &str, ip: &str| Ok((n.to_string(), ip.to_string()));
        assert_eq!(parse_host_entry("db:10.0.0.1"), ok("db", "10.0.0.1"));
        assert_eq!(parse_host_entry("db=10.0.0.1"), ok("db", "10.0.0.1"));
        assert_eq!(parse_host_entry("v6:::1"), ok("v6", "::1"));
        assert_eq!(parse_host_entry("v6=[fe80::1]"), ok("v6", "fe80::1"));
        for bad in ["db", "db:", ":10.0.0.1", "db:not-an-ip", "two words:10.0.0.1"] {
            assert_eq!(parse_host_entry(bad), Err(HostError(bad.to_string())), "{bad}");
        }
    }
}
