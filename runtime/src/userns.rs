//! Choosing and writing user-namespace id mappings: subordinate ranges from /etc/subuid and /etc/subgid with
//! `newuidmap`/`newgidmap`, else the caller alone, else (as real root) no user namespace. `RBUILD_USERNS`
//! (`auto`, `single`, `subuid`, `off`) forces a mode.

use std::path::Path;
use std::process::Command;

use nix::unistd::{Gid, Pid, Uid, User};

use crate::error::{Error, SetupStage};
use crate::spec::UsernsMode;

/// A subordinate range of the user in `/etc/subuid` or `/etc/subgid` (by name or by id).
fn subordinate_range(file: &str, name: &str, id: u32) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        (who == name || who == id.to_string()).then_some(())?;
        Some((start.parse().ok()?, count.parse().ok()?))
    })
}

fn tool(name: &str) -> Option<&'static str> {
    ["/usr/bin/", "/usr/sbin/", "/bin/"]
        .into_iter()
        .map(|d| Box::leak(format!("{d}{name}").into_boxed_str()) as &'static str)
        .find(|p| Path::new(p).is_file())
}

/// The subordinate-id mode if this user has ranges and the setuid helpers exist.
fn subuid_mode() -> Option<UsernsMode> {
    tool("newuidmap")?;
    tool("newgidmap")?;
    let uid = Uid::current();
    let name = User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_default();
    let (uid_start, ucount) = subordinate_range("/etc/subuid", &name, uid.as_raw())?;
    let (gid_start, gcount) = subordinate_range("/etc/subgid", &name, uid.as_raw())?;
    Some(UsernsMode::Subuid { uid_start, gid_start, count: ucount.min(gcount) })
}

/// The mode to use: `RBUILD_USERNS`, else off for root, subordinate ids when set up, else a single id.
pub fn detect() -> Result<UsernsMode, Error> {
    detect_with(std::env::var("RBUILD_USERNS").ok().as_deref())
}

/// The mode `choice` (`auto`, `single`, `subuid`, `off`; `None` is auto) stands for on this machine.
pub fn detect_with(choice: Option<&str>) -> Result<UsernsMode, Error> {
    match choice.unwrap_or("auto") {
        // Root of a user namespace mapping one id (`unshare -r`) cannot switch ids or set groups: one id it is.
        "" | "auto" => Ok(if Uid::effective().is_root() && ids_mapped_here() == 1 {
            UsernsMode::Single
        } else if Uid::effective().is_root() {
            UsernsMode::Off
        } else {
            subuid_mode().unwrap_or(UsernsMode::Single)
        }),
        "single" => Ok(UsernsMode::Single),
        "off" if Uid::effective().is_root() => Ok(UsernsMode::Off),
        "off" => Err(Error::Setup {
            stage: SetupStage::UserNamespace,
            step: "user namespace".into(),
            message: "RBUILD_USERNS=off needs root".into(),
            hint: Some("use auto, single or subuid".into()),
        }),
        "subuid" => subuid_mode().ok_or_else(|| Error::Setup {
            stage: SetupStage::UserNamespace,
            step: "user namespace".into(),
            message: "RBUILD_USERNS=subuid, but newuidmap/newgidmap or this user's /etc/subuid and /etc/subgid ranges are missing".into(),
            hint: Some(subuid_hint()),
        }),
        other => Err(Error::Setup {
            stage: SetupStage::UserNamespace,
            step: "user namespace".into(),
            message: format!("unknown RBUILD_USERNS={other:?}"),
            hint: Some("use auto, single, subuid or off".into()),
        }),
    }
}

/// What to tell a user whose step failed changing owners or ids with only one id mapped (inside a sandbox, where
/// the host's /etc/subuid cannot be read: no range suggested).
/// How many user ids this process's user namespace maps (the sum of /proc/self/uid_map's ranges).
fn ids_mapped_here() -> u64 {
    std::fs::read_to_string("/proc/self/uid_map")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).and_then(|n| n.parse::<u64>().ok()))
        .sum()
}

pub const SUBUID_HINT: &str = "only one user id is mapped into the sandbox, so steps that change file owners \
(chown, package installs) fail; install the uidmap package and give this user ranges in /etc/subuid and \
/etc/subgid";

/// [`SUBUID_HINT`] with a `usermod` line whose range overlaps none in this host's /etc/subuid and /etc/subgid.
pub fn subuid_hint() -> String {
    let (start, end) = free_subordinate_range(&[
        std::fs::read_to_string("/etc/subuid").unwrap_or_default(),
        std::fs::read_to_string("/etc/subgid").unwrap_or_default(),
    ]);
    format!("{SUBUID_HINT} (e.g. `sudo usermod --add-subuids {start}-{end} --add-subgids {start}-{end} $USER`)")
}

/// A 65536-id range (first, last) starting at 100000 or past every range the files list (`name:start:count`).
fn free_subordinate_range(files: &[String]) -> (u64, u64) {
    let mut start = 100_000u64;
    for line in files.iter().flat_map(|f| f.lines()) {
        let fields: Vec<&str> = line.trim().split(':').collect();
        if let [_, s, n] = fields[..]
            && let (Ok(s), Ok(n)) = (s.parse::<u64>(), n.parse::<u64>())
        {
            start = start.max(s + n);
        }
    }
    // Aligned up to a multiple of 65536 past the last range, as useradd hands them out.
    let start = if start == 100_000 { start } else { start.div_ceil(65_536) * 65_536 };
    (start, start + 65_535)
}

/// Write the id mapping of the process `pid` (run by rbuild, outside the namespace): the full range to itself
/// (real root), or the caller and its subordinate range (with newuidmap/newgidmap).
pub(crate) fn write_mapping(pid: Pid, mode: UsernsMode) -> Result<(), Error> {
    if mode == UsernsMode::Full {
        for file in ["uid_map", "gid_map"] {
            std::fs::write(format!("/proc/{pid}/{file}"), "0 0 4294967295\n").map_err(|e| Error::Setup {
                stage: SetupStage::UserNamespace,
                step: format!("write {file}"),
                message: e.to_string(),
                hint: Some("mapping every id needs CAP_SETUID and CAP_SETGID".into()),
            })?;
        }
        return Ok(());
    }
    let UsernsMode::Subuid { uid_start, gid_start, count } = mode else { return Ok(()) };
    let (uid, gid) = (Uid::current().as_raw(), Gid::current().as_raw());
    for (tool_name, own, start) in [("newuidmap", uid, uid_start), ("newgidmap", gid, gid_start)] {
        let path = tool(tool_name).ok_or_else(|| Error::Setup {
            stage: SetupStage::UserNamespace,
            step: "user namespace".into(),
            message: format!("{tool_name} is missing"),
            hint: Some(subuid_hint()),
        })?;
        let out = Command::new(path)
            .arg(pid.to_string())
            .args(["0", &own.to_string(), "1", "1", &start.to_string(), &count.to_string()])
            .output()
            .map_err(|e| Error::setup(SetupStage::UserNamespace, tool_name, e))?;
        if !out.status.success() {
            return Err(Error::Setup {
                stage: SetupStage::UserNamespace,
                step: tool_name.into(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                hint: Some(subuid_hint()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod hint_tests {
    #[test]
    fn the_suggested_range_overlaps_none_listed() {
        assert_eq!(super::free_subordinate_range(&[String::new()]), (100_000, 165_535));
        let listed = "alice:100000:65536\nbob:165536:65536\n".to_string();
        assert_eq!(super::free_subordinate_range(&[listed, "ci:200000:65536\n".into()]), (327_680, 393_215));
    }
}
