//! The sandbox's filesystem, set up by pid 1 inside the new mount namespace: the root (overlayfs over the lower
//! snapshots, `userxattr` in a user namespace, or a plain directory), `/proc`, a minimal `/dev` (null, zero,
//! full, random, urandom, tty bound from the host; devpts with its own ptmx; shm), `/sys` read-only, and
//! generated `/etc/hosts` and `/etc/resolv.conf`; then `pivot_root` into it. Mount points the
//! image lacks are created and reported, so rbuild can take them out of the layer afterwards.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::error::SetupStage;
use crate::spec::{Failure, Mount, NetworkMode, Rootfs, RunSpec, UsernsMode};

fn fail(step: &str) -> impl Fn(nix::errno::Errno) -> Failure + '_ {
    move |e| Failure::new(SetupStage::Mounts, step, e)
}

fn switch_fail(step: &str) -> impl Fn(nix::errno::Errno) -> Failure + '_ {
    move |e| Failure::new(SetupStage::RootSwitch, step, e)
}

fn io_fail(step: &str) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |e| Failure::new(SetupStage::Mounts, step, e)
}

fn switch_io_fail(step: &str) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |e| Failure::new(SetupStage::RootSwitch, step, e)
}

/// Make sure `rel` exists in `root` (as a directory or an empty file), recording it when created.
fn ensure(root: &Path, rel: &str, dir: bool, created: &mut Vec<String>) -> Result<(), Failure> {
    let p = root.join(rel);
    if fs::symlink_metadata(&p).is_ok() {
        return Ok(());
    }
    if let Some(parent) = Path::new(rel).parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure(root, &parent.to_string_lossy(), true, created)?;
    }
    if dir {
        fs::create_dir(&p).map_err(io_fail("create mount point"))?;
    } else {
        fs::File::create(&p).map_err(io_fail("create mount point"))?;
    }
    created.push(rel.to_string());
    Ok(())
}

/// Mount an overlay, `volatile` where the kernel has it (5.10 and later): an overlay's unmount otherwise syncs
/// the whole upper filesystem, so every step would wait for all the store's unwritten data (measured: 0.2 s after
/// a COPY of 20,000 files). What must be durable is synced by the store itself: layer blobs, image references.
fn mount_overlay(target: &Path, options: &str) -> nix::Result<()> {
    let volatile = format!("{options},volatile");
    mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(volatile.as_str())).or_else(|e| {
        if e != nix::errno::Errno::EINVAL {
            return Err(e);
        }
        mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(options))
    })
}

fn mount_root(spec: &RunSpec, root: &Path) -> Result<(), Failure> {
    match &spec.rootfs {
        Rootfs::Overlay { lowers, upper, work } => {
            let lower: Vec<String> = lowers.iter().map(|l| escape_overlay_path(&l.to_string_lossy())).collect();
            let mut options = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.join(":"),
                escape_overlay_path(&upper.to_string_lossy()),
                escape_overlay_path(&work.to_string_lossy())
            );
            if spec.userns != UsernsMode::Off {
                options.push_str(",userxattr");
            }
            mount_overlay(root, &options).map_err(|e| Failure {
                stage: SetupStage::RootMount,
                step: "mount overlay root".into(),
                message: e.to_string(),
                hint: Some("overlayfs was refused; set RBUILD_SNAPSHOTTER=copy to use copies instead".into()),
            })
        }
        Rootfs::FuseOverlay { lowers, upper, work } => {
            let lower: Vec<String> = lowers.iter().map(|l| escape_overlay_path(&l.to_string_lossy())).collect();
            let options = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.join(":"),
                escape_overlay_path(&upper.to_string_lossy()),
                escape_overlay_path(&work.to_string_lossy())
            );
            // It daemonizes once the mount is up; it lives in this pid namespace and ends with it.
            let out = std::process::Command::new("fuse-overlayfs")
                .args(["-o", &options])
                .arg(root)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .output()
                .map_err(|e| Failure {
                    stage: SetupStage::RootMount,
                    step: "mount fuse-overlayfs root".into(),
                    message: e.to_string(),
                    hint: Some("install the fuse-overlayfs package, or set RBUILD_SNAPSHOTTER=copy".into()),
                })?;
            if !out.status.success() {
                return Err(Failure {
                    stage: SetupStage::RootMount,
                    step: "mount fuse-overlayfs root".into(),
                    message: format!(
                        "fuse-overlayfs exited with {}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                    hint: Some("fuse-overlayfs needs access to /dev/fuse; set RBUILD_SNAPSHOTTER=copy".into()),
                });
            }
            Ok(())
        }
        Rootfs::Dir(dir) => {
            mount(Some(dir.as_path()), root, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(|e| Failure::new(SetupStage::RootMount, "bind root directory", e))
        }
    }
}

/// Overlay options separate with `,` and `:`; escape them (and backslashes) in paths.
fn escape_overlay_path(p: &str) -> String {
    p.replace('\\', "\\\\").replace(':', "\\:").replace(',', "\\,")
}

/// Set up everything and switch into the new root; returns the mount points created in the root.
pub(crate) fn setup_root(spec: &RunSpec) -> Result<Vec<String>, Failure> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(fail("make mounts private"))?;
    let root = spec.state_dir.join("rootfs");
    fs::create_dir_all(&root).map_err(io_fail("create root mount point"))?;
    mount_root(spec, &root)?;
    let mut created = Vec::new();
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;

    ensure(&root, "proc", true, &mut created)?;
    if spec.isolation.shared_proc {
        // The caller's /proc as it is, with what its container runtime masked and made read-only.
        mount(Some("/proc"), &root.join("proc"), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(fail("bind /proc"))?;
    } else {
        mount(Some("proc"), &root.join("proc"), Some("proc"), nosuid | MsFlags::MS_NOEXEC, None::<&str>)
            .map_err(fail("mount /proc"))?;
        protect_proc(&root.join("proc"))?;
    }

    ensure(&root, "dev", true, &mut created)?;
    let dev = root.join("dev");
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .map_err(fail("mount /dev"))?;
    for d in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(d);
        fs::File::create(&target).map_err(io_fail("create /dev entry"))?;
        mount(Some(Path::new("/dev").join(d).as_path()), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(fail("bind /dev device"))?;
    }
    fs::create_dir(dev.join("pts")).map_err(io_fail("create /dev/pts"))?;
    mount(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )
    .map_err(fail("mount /dev/pts"))?;
    symlink("pts/ptmx", dev.join("ptmx")).map_err(io_fail("link /dev/ptmx"))?;
    fs::create_dir(dev.join("shm")).map_err(io_fail("create /dev/shm"))?;
    mount(
        Some("shm"),
        &dev.join("shm"),
        Some("tmpfs"),
        nosuid | MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,size={}", if spec.shm_size == 0 { 64 << 20 } else { spec.shm_size }).as_str()),
    )
    .map_err(fail("mount /dev/shm"))?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name)).map_err(io_fail("link /dev entry"))?;
    }

    ensure(&root, "sys", true, &mut created)?;
    mount_sys(spec, &root.join("sys"))?;

    write_etc_files(spec, &root, &mut created)?;
    for (i, m) in spec.mounts.iter().enumerate() {
        extra_mount(spec, i, &root, m, &mut created)?;
    }

    std::env::set_current_dir(&root).map_err(switch_io_fail("enter new root"))?;
    if spec.isolation.chroot {
        // runc's no-pivot: the new root moved over /, then entered with chroot (the old root stays below it,
        // out of reach of a step without CAP_SYS_CHROOT... which it keeps: this is the weaker tier).
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(switch_fail("move the root onto /"))?;
        nix::unistd::chroot(".").map_err(switch_fail("chroot"))?;
    } else {
        nix::unistd::pivot_root(".", ".").map_err(switch_fail("pivot_root"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(switch_fail("detach old root"))?;
    }
    std::env::set_current_dir("/").map_err(switch_io_fail("enter new root"))?;
    Ok(created)
}

/// Like runc's defaults: the kernel knobs under /proc are read-only (`sys`, `sysrq-trigger`, `irq`, `bus`, `fs`)
/// and the files that expose host state are masked (`/dev/null` over files, an empty read-only tmpfs over
/// directories), so a step cannot change or read more than its namespaces own.
fn protect_proc(proc: &Path) -> Result<(), Failure> {
    let locked = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for name in ["sys", "sysrq-trigger", "irq", "bus", "fs"] {
        let p = proc.join(name);
        if fs::symlink_metadata(&p).is_err() {
            continue;
        }
        mount(Some(&p), &p, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(fail("bind /proc read-only path"))?;
        mount(
            None::<&str>,
            &p,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked,
            None::<&str>,
        )
        .map_err(fail("make /proc path read-only"))?;
    }
    for name in ["kcore", "keys", "timer_list", "sched_debug", "latency_stats", "acpi", "scsi"] {
        let p = proc.join(name);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => mount(Some("tmpfs"), &p, Some("tmpfs"), MsFlags::MS_RDONLY | locked, Some("size=0"))
                .map_err(fail("mask /proc directory"))?,
            Ok(_) => mount(Some("/dev/null"), &p, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(fail("mask /proc file"))?,
            Err(_) => {}
        }
    }
    Ok(())
}

/// A mount point path inside the root: relative, without `..`.
fn inside(target: &str) -> Result<String, Failure> {
    let rel: Vec<&str> = target.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if rel.is_empty() || rel.contains(&"..") {
        return Err(Failure::new(
            SetupStage::Mounts,
            "mount",
            format!("invalid mount target {target:?}: it must be a path below /"),
        ));
    }
    Ok(rel.join("/"))
}

fn extra_mount(spec: &RunSpec, index: usize, root: &Path, m: &Mount, created: &mut Vec<String>) -> Result<(), Failure> {
    let rel = inside(m.target())?;
    let target = root.join(&rel);
    // The mount point must not lead out of the root through a symlink in the image.
    let mut cur = root.to_path_buf();
    for part in rel.split('/') {
        cur.push(part);
        if fs::symlink_metadata(&cur).is_ok_and(|md| md.file_type().is_symlink()) {
            return Err(Failure::new(
                SetupStage::Mounts,
                "mount",
                format!("mount target {} goes through a symbolic link", m.target()),
            ));
        }
    }
    match m {
        Mount::Tmpfs { size, .. } => {
            ensure(root, &rel, true, created)?;
            let opts = if *size > 0 { format!("mode=1777,size={size}") } else { "mode=1777".to_string() };
            mount(Some("tmpfs"), &target, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(opts.as_str()))
                .map_err(fail("mount tmpfs"))
        }
        Mount::BindDiscardingWrites { source, .. } => {
            let scratch = spec.state_dir.join(format!("bind-{index}"));
            let is_dir = fs::metadata(source)
                .map_err(|e| Failure::new(SetupStage::Mounts, &format!("mount {}", source.display()), e))?
                .is_dir();
            ensure(root, &rel, is_dir, created)?;
            if !is_dir {
                fs::create_dir_all(&scratch).map_err(io_fail("create bind scratch"))?;
                let copy = scratch.join("file");
                fs::copy(source, &copy).map_err(io_fail("copy bind source"))?;
                return mount(Some(copy.as_path()), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .map_err(fail("bind mount"));
            }
            let (upper, work) = (scratch.join("upper"), scratch.join("work"));
            for d in [&upper, &work] {
                fs::create_dir_all(d).map_err(io_fail("create bind scratch"))?;
            }
            let mut options = format!(
                "lowerdir={},upperdir={},workdir={}",
                escape_overlay_path(&source.to_string_lossy()),
                escape_overlay_path(&upper.to_string_lossy()),
                escape_overlay_path(&work.to_string_lossy())
            );
            if spec.userns != UsernsMode::Off {
                options.push_str(",userxattr");
            }
            mount_overlay(&target, &options).map_err(fail("mount writable bind"))
        }
        Mount::Bind { source, read_only, .. } => {
            let is_dir = fs::metadata(source)
                .map_err(|e| Failure::new(SetupStage::Mounts, &format!("mount {}", source.display()), e))?
                .is_dir();
            ensure(root, &rel, is_dir, created)?;
            mount(Some(source.as_path()), &target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(fail("bind mount"))?;
            if *read_only {
                // Keep the flags the kernel locks in a user namespace (nosuid, nodev, noexec) when remounting.
                let locked = nix::sys::statvfs::statvfs(source)
                    .map(|s| s.flags())
                    .unwrap_or(nix::sys::statvfs::FsFlags::empty());
                let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                for (f, m) in [
                    (nix::sys::statvfs::FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                    (nix::sys::statvfs::FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                    (nix::sys::statvfs::FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                ] {
                    if locked.contains(f) {
                        flags |= m;
                    }
                }
                mount(None::<&str>, &target, None::<&str>, flags, None::<&str>)
                    .map_err(fail("make bind mount read-only"))?;
            }
            Ok(())
        }
    }
}

/// `/sys` read-only: a fresh sysfs where this sandbox owns its network namespace (or is real root), else the
/// host's bound and remounted read-only.
fn mount_sys(spec: &RunSpec, target: &Path) -> Result<(), Failure> {
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if (spec.network == NetworkMode::None || spec.userns == UsernsMode::Off)
        && mount(Some("sysfs"), target, Some("sysfs"), ro, None::<&str>).is_ok()
    {
        return Ok(());
    }
    mount(Some("/sys"), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(fail("bind /sys"))?;
    mount(None::<&str>, target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ro, None::<&str>)
        .map_err(fail("make /sys read-only"))
}

fn write_etc_files(spec: &RunSpec, root: &Path, created: &mut Vec<String>) -> Result<(), Failure> {
    let mut hosts =
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n", spec.hostname);
    for (name, addr) in &spec.extra_hosts {
        hosts.push_str(&format!("{addr}\t{name}\n"));
    }
    let resolv = match spec.network {
        NetworkMode::Host => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        NetworkMode::None => String::new(),
    };
    // /etc/hostname is the image's own (BuildKit mounts only these two): a step may write or remove it.
    let files = [("hosts", hosts), ("resolv.conf", resolv)];
    for (name, content) in files {
        let source = spec.state_dir.join(name);
        fs::write(&source, content).map_err(io_fail("write /etc file"))?;
        let rel = format!("etc/{name}");
        // A symlink in the image (resolv.conf often is one) is replaced only in this mount view.
        if fs::symlink_metadata(root.join(&rel)).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        ensure(root, &rel, false, created)?;
        mount(Some(source.as_path()), &root.join(&rel), None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(fail("bind /etc file"))?;
    }
    Ok(())
}

/// Bring up `lo` in a new network namespace.
pub(crate) fn loopback_up() -> Result<(), nix::errno::Errno> {
    use nix::libc;
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq naming "lo"; the descriptor is closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(nix::errno::Errno::last());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut result = Ok(());
        if libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr) < 0 {
            result = Err(nix::errno::Errno::last());
        } else {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr) < 0 {
                result = Err(nix::errno::Errno::last());
            }
        }
        libc::close(fd);
        result
    }
}
