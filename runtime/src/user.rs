//! Resolving `USER` specifications (`name`, `uid`, `name:group`, `uid:gid`) against the sandbox's own
//! /etc/passwd and /etc/group, with supplementary groups, as Docker does.

use std::path::Path;

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

fn read(root: &Path, file: &str) -> String {
    std::fs::read_to_string(root.join(file)).unwrap_or_default()
}

/// Resolve `spec` inside `root` (`None` is root).
pub fn resolve(root: &Path, spec: Option<&str>) -> Result<ResolvedUser, String> {
    resolve_in(&read(root, "etc/passwd"), &read(root, "etc/group"), spec)
}

/// Resolve `spec` against the text of an /etc/passwd and an /etc/group (`None` is root).
pub fn resolve_in(passwd: &str, group_file: &str, spec: Option<&str>) -> Result<ResolvedUser, String> {
    let spec = spec.unwrap_or("0");
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entries: Vec<Vec<&str>> =
        passwd.lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 7).collect();
    let found = entries.iter().find(|f| f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user));
    let (uid, primary_gid, home, name) = match (found, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse::<u32>().map_err(|_| format!("bad uid for {user} in /etc/passwd"))?,
            f[3].parse::<u32>().map_err(|_| format!("bad gid for {user} in /etc/passwd"))?,
            f[5].to_string(),
            f[0].to_string(),
        ),
        (None, Ok(uid)) => (uid, 0, "/".to_string(), String::new()),
        (None, Err(_)) => return Err(format!("unable to find user {user}: no matching entries in passwd file")),
    };
    let groups: Vec<Vec<&str>> =
        group_file.lines().map(|l| l.split(':').collect()).filter(|f: &Vec<&str>| f.len() >= 4).collect();
    let gid = match group {
        None => primary_gid,
        Some(g) => match (groups.iter().find(|f| f[0] == g), g.parse::<u32>()) {
            (Some(f), _) => f[2].parse().map_err(|_| format!("bad gid for group {g} in /etc/group"))?,
            (None, Ok(n)) => n,
            (None, Err(_)) => return Err(format!("unable to find group {g}: no matching entries in group file")),
        },
    };
    let mut supplementary: Vec<u32> = if group.is_none() && !name.is_empty() {
        groups.iter().filter(|f| f[3].split(',').any(|m| m == name)).filter_map(|f| f[2].parse().ok()).collect()
    } else {
        Vec::new()
    };
    supplementary.insert(0, gid);
    supplementary.dedup();
    Ok(ResolvedUser { uid, gid, groups: supplementary, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_ids_and_groups() {
        let dir = std::env::temp_dir().join(format!("rbuild-user-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n")
            .unwrap();
        std::fs::write(dir.join("etc/group"), "root:x:0:\nu:x:1000:\nwheel:x:10:u,other\n").unwrap();
        assert_eq!(
            resolve(&dir, None).unwrap(),
            ResolvedUser { uid: 0, gid: 0, groups: vec![0], home: "/root".into() }
        );
        let u = resolve(&dir, Some("u")).unwrap();
        assert_eq!((u.uid, u.gid, u.groups.clone(), u.home.as_str()), (1000, 1000, vec![1000, 10], "/home/u"));
        assert_eq!(resolve(&dir, Some("1000:10")).unwrap().gid, 10);
        assert_eq!(resolve(&dir, Some("u:wheel")).unwrap().groups, vec![10]);
        assert_eq!(resolve(&dir, Some("4242")).unwrap().uid, 4242);
        assert!(resolve(&dir, Some("nobody")).unwrap_err().contains("unable to find user nobody"));
        assert!(resolve(&dir, Some("u:nogroup")).unwrap_err().contains("unable to find group"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
