//! What this host allows a sandbox, found by trying it once (in a throwaway init: namespaces, a fresh /proc in a
//! new pid namespace, `pivot_root`) and by reading what the kernel says of this process (seccomp mode, effective
//! capabilities, the user-namespace sysctls, AppArmor's restriction, cgroup version, whether it runs in a
//! container). The launcher's caller turns a report into an [`crate::Isolation`] and says what it gave up.

use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use serde::{Deserialize, Serialize};

/// What trying a sandbox found: `None` where it worked, else why not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Creating the user namespace (when one was asked for) and the mount, pid, uts and ipc namespaces.
    pub namespaces: Option<String>,
    /// Mounting a fresh /proc for a new pid namespace.
    pub fresh_proc: Option<String>,
    /// `pivot_root` into a new root.
    pub pivot_root: Option<String>,
    /// An overlayfs mount over directories of the probe's filesystem (the store's): `userxattr` in a user
    /// namespace. Refused, steps use a scratch upper directory or copies.
    #[serde(default)]
    pub overlay: Option<String>,
}

/// In the probe init, after its user namespace (if any) is set up: the rest of the probe. Reports through `send`.
pub(crate) fn probe_namespaces(dir: &Path, userxattr: bool, send: &mut dyn FnMut(ProbeReport)) -> i32 {
    let flags =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if let Err(e) = unshare(flags) {
        send(ProbeReport { namespaces: Some(format!("create namespaces: {e}")), ..Default::default() });
        return 0;
    }
    if let Err(e) = mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>) {
        send(ProbeReport { namespaces: Some(format!("make mounts private: {e}")), ..Default::default() });
        return 0;
    }
    // SAFETY: the probe init is single-threaded, so fork is sound.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let mut report = ProbeReport { overlay: try_overlay(dir, userxattr).err(), ..Default::default() };
            let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            if let Err(e) = mount(Some("tmpfs"), dir, Some("tmpfs"), nosuid, Some("size=64k")) {
                report.fresh_proc = Some(format!("mount a tmpfs: {e}"));
                report.pivot_root = report.fresh_proc.clone();
                send(report);
                std::process::exit(0);
            }
            let proc = dir.join("proc");
            report.fresh_proc = std::fs::create_dir(&proc)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    mount(Some("proc"), &proc, Some("proc"), nosuid | MsFlags::MS_NOEXEC, None::<&str>)
                        .map_err(|e| e.to_string())
                })
                .err()
                .map(|e| format!("mount /proc: {e}"));
            report.pivot_root = std::env::set_current_dir(dir)
                .map_err(|e| e.to_string())
                .and_then(|()| nix::unistd::pivot_root(".", ".").map_err(|e| e.to_string()))
                .err()
                .map(|e| format!("pivot_root: {e}"));
            send(report);
            std::process::exit(0);
        }
        Ok(ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) => return 0,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return 1,
            }
        },
        Err(e) => {
            send(ProbeReport { namespaces: Some(format!("fork: {e}")), ..Default::default() });
            0
        }
    }
}

/// Mount an overlay over new directories under `dir` (on the filesystem the store is on) and unmount it.
fn try_overlay(dir: &Path, userxattr: bool) -> Result<(), String> {
    let base = dir.join("overlay");
    let [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map(|d| base.join(d));
    for d in [&lower, &upper, &work, &merged] {
        std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    let mut options = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    if userxattr {
        options.push_str(",userxattr");
    }
    mount(Some("overlay"), &merged, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
        .map_err(|e| format!("mount overlay: {e}"))?;
    let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
    Ok(())
}

/// What the kernel says of this process and host, read without trying anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// `Seccomp:` of /proc/self/status: 0 none, 1 strict, 2 filter (a container runtime's profile).
    pub seccomp: u8,
    /// Whether the effective capabilities hold CAP_SYS_ADMIN.
    pub cap_sys_admin: bool,
    /// Running as real root (uid 0 outside any user namespace).
    pub real_root: bool,
    /// `kernel.unprivileged_userns_clone` is 0 (Debian's switch), if the knob exists.
    pub userns_clone_disabled: bool,
    /// `user.max_user_namespaces` is 0.
    pub max_user_namespaces_zero: bool,
    /// `kernel.apparmor_restrict_unprivileged_userns` is 1 (Ubuntu 23.10 and later).
    pub apparmor_restricts_userns: bool,
    /// 1 or 2.
    pub cgroup_version: u8,
    /// Docker, Podman, Kubernetes or another runtime's container, when it can be told.
    pub container: Option<String>,
    /// Whether /proc has paths masked by a container runtime (something mounted over /proc/kcore and the like).
    pub masked_proc: bool,
    /// The binfmt_misc handlers registered (emulators for foreign architectures), None when binfmt_misc is not
    /// mounted here.
    pub binfmt: Option<Vec<String>>,
}

impl HostFacts {
    pub fn read() -> HostFacts {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or_default().to_string()
        };
        let cap_eff = u64::from_str_radix(&field("CapEff:"), 16).unwrap_or(0);
        let knob = |path: &str| std::fs::read_to_string(path).ok().map(|v| v.trim().to_string());
        let uid_map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        HostFacts {
            seccomp: field("Seccomp:").parse().unwrap_or(0),
            cap_sys_admin: cap_eff & (1 << 21) != 0,
            real_root: nix::unistd::geteuid().is_root()
                && uid_map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"],
            userns_clone_disabled: knob("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0"),
            max_user_namespaces_zero: knob("/proc/sys/user/max_user_namespaces").as_deref() == Some("0"),
            apparmor_restricts_userns: knob("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref()
                == Some("1"),
            cgroup_version: if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { 2 } else { 1 },
            container: container_kind(),
            binfmt: std::fs::read_dir("/proc/sys/fs/binfmt_misc").ok().map(|entries| {
                let mut names: Vec<String> = entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n != "register" && n != "status")
                    .collect();
                names.sort();
                names
            }),
            masked_proc: mountinfo.lines().any(|l| {
                l.split_whitespace()
                    .nth(4)
                    .is_some_and(|m| m == "/proc/kcore" || m == "/proc/keys" || m == "/proc/acpi")
            }),
        }
    }
}

/// Which container runtime this process runs under, from the marks they leave.
fn container_kind() -> Option<String> {
    if Path::new("/.dockerenv").exists() {
        return Some("docker".into());
    }
    if Path::new("/run/.containerenv").exists() {
        return Some("podman".into());
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Some("kubernetes".into());
    }
    if let Ok(c) = std::env::var("container")
        && !c.is_empty()
    {
        return Some(c);
    }
    let cgroup = std::fs::read_to_string("/proc/1/cgroup").unwrap_or_default();
    ["docker", "kubepods", "containerd", "libpod"].iter().find(|k| cgroup.contains(*k)).map(|k| k.to_string())
}
