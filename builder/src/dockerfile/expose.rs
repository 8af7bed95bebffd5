//! EXPOSE port specifications, read as BuildKit reads them: `[ip:][hostPort:]containerPort[/proto]`, where the
//! container port may be a range (`8000-8002`) and the protocol is tcp (the default), udp or sctp in any case. Only
//! the container ports are exposed; an IP address or host port is accepted (BuildKit warns: ExposeInvalidFormat).

use std::net::IpAddr;

/// What one EXPOSE word exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// `port/proto` keys of the image's `ExposedPorts`, one per port of a range.
    pub ports: Vec<String>,
    /// The word named an IP address or a host port (which EXPOSE does not use).
    pub maps_host: bool,
    /// The protocol was not written in lower case (BuildKit warns: ExposeProtoCasing).
    pub proto_not_lowercase: bool,
}

/// Parse one EXPOSE word (variables already expanded).
pub fn parse_port_spec(raw: &str) -> Result<PortSpec, String> {
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    let (ip, host, container) = match n {
        1 => (String::new(), "", parts[0]),
        2 => (String::new(), parts[0], parts[1]),
        _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    };
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    let invalid = |why: &str| format!("invalid port: {raw:?}: {why}");
    if port.is_empty() {
        return Err(invalid("no port specified"));
    }
    let proto_key = match proto.to_ascii_lowercase().as_str() {
        "" => "tcp".to_string(),
        p @ ("tcp" | "udp" | "sctp") => p.to_string(),
        _ => return Err(invalid(&format!("invalid proto: {proto}"))),
    };
    if !ip.is_empty() {
        let bare = ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')).unwrap_or(&ip);
        if bare.parse::<IpAddr>().is_err() {
            return Err(format!("invalid IP address: {ip}"));
        }
    }
    let (start, end) = port_range(port).ok_or_else(|| format!("invalid containerPort: {port}"))?;
    if !host.is_empty() {
        let (hs, he) = port_range(host).ok_or_else(|| format!("invalid hostPort: {host}"))?;
        if end - start != he - hs && end != start {
            return Err(format!("invalid ranges specified for container and host Ports: {port} and {host}"));
        }
    }
    Ok(PortSpec {
        ports: (start..=end).map(|p| format!("{p}/{proto_key}")).collect(),
        maps_host: !ip.is_empty() || !host.is_empty(),
        proto_not_lowercase: proto != proto.to_ascii_lowercase(),
    })
}

/// `N` or `N-M` (0-65535, N <= M).
fn port_range(s: &str) -> Option<(u32, u32)> {
    let number = |p: &str| p.parse::<u16>().ok().map(u32::from);
    match s.split_once('-') {
        Some((a, b)) if a != b => Some((number(a)?, number(b)?)).filter(|(a, b)| a <= b),
        Some((a, _)) => number(a).map(|a| (a, a)),
        None => number(s).map(|a| (a, a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildkit_forms() {
        let ports = |s: &str| parse_port_spec(s).unwrap().ports;
        assert_eq!(ports("80"), ["80/tcp"]);
        assert_eq!(ports("53/UDP"), ["53/udp"]);
        assert_eq!(ports("8000-8002/sctp"), ["8000/sctp", "8001/sctp", "8002/sctp"]);
        assert_eq!(ports("127.0.0.1:80:8080"), ["8080/tcp"]);
        assert_eq!(ports("[::1]:8080:8081"), ["8081/tcp"]);
        assert_eq!(ports("5000:5001"), ["5001/tcp"]);
        assert!(parse_port_spec("5000:5000").unwrap().maps_host);
        assert!(!parse_port_spec("5000").unwrap().maps_host);
        assert!(parse_port_spec("80/TcP").unwrap().proto_not_lowercase);
        assert!(parse_port_spec("80/quic").unwrap_err().contains("invalid proto: quic"));
        assert!(parse_port_spec("70000").unwrap_err().contains("invalid containerPort"));
        assert!(parse_port_spec("bad.ip:1:2").unwrap_err().contains("invalid IP address"));
        assert!(parse_port_spec("9-8").is_err());
        assert!(parse_port_spec("1-3:1-2").unwrap_err().contains("invalid ranges"));
    }
}
