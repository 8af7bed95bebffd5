//! The sandbox init: what runs in the re-executed rbuild binary (`rbuild __sandbox-init`), single-threaded as
//! `unshare(CLONE_NEWUSER)` requires. It reads the spec from fd 3, enters new user (unless real root), mount,
//! pid, uts, ipc (and with `--network none`, network) namespaces, forks the step as pid 1 of the new pid
//! namespace, and reports to rbuild on fd 4 how setup went and how the step ended. Mounts live only in the new
//! mount namespace: when the last process in it ends they are gone, whatever happened.

use std::ffi::CString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::path::Path;

use nix::sched::{CloneFlags, unshare};
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Uid, fork};

use crate::error::SetupStage;
use crate::mounts;
use crate::spec::{ExitStatus, Failure, InitMessage, InitRequest, NetworkMode, RunSpec, UsernsMode};
use crate::user;

/// File descriptors the launcher passes: the spec (and mapping acknowledgement) in, messages out.
pub(crate) const SPEC_FD: RawFd = 3;
pub(crate) const STATUS_FD: RawFd = 4;

fn send(out: &mut File, msg: &InitMessage) {
    if let Ok(mut line) = serde_json::to_vec(msg) {
        line.push(b'\n');
        let _ = out.write_all(&line);
    }
}

/// The entry point of `rbuild __sandbox-init`. Never returns.
pub fn init_main() -> ! {
    // SAFETY: the launcher dup'ed these descriptors for us; nothing else in this process owns them.
    let mut status = unsafe { File::from_raw_fd(STATUS_FD) };
    // SAFETY: as above.
    let spec_in = unsafe { File::from_raw_fd(SPEC_FD) };
    let code = match run_init(spec_in, &mut status) {
        Ok(st) => {
            send(&mut status, &InitMessage::Exited(st));
            0
        }
        Err(f) => {
            send(&mut status, &InitMessage::Failed { stage: f.stage, step: f.step, message: f.message, hint: f.hint });
            125
        }
    };
    std::process::exit(code)
}

fn run_init(spec_in: File, status: &mut File) -> Result<ExitStatus, Failure> {
    // Die with rbuild, whatever kills it.
    prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| Failure::new(SetupStage::Init, "set parent-death signal", e))?;
    let mut spec_in = BufReader::new(spec_in);
    let mut line = String::new();
    spec_in.read_line(&mut line).map_err(|e| Failure::new(SetupStage::Init, "read spec", e))?;
    let request: InitRequest =
        serde_json::from_str(&line).map_err(|e| Failure::new(SetupStage::Init, "read spec", e))?;
    let spec = match request {
        InitRequest::Run(spec) => *spec,
        InitRequest::RemoveTree { path, userns } => {
            if userns != UsernsMode::Off {
                enter_user_namespace(userns, (0, 0), &mut spec_in, status)?;
            }
            return remove_tree(&path);
        }
        InitRequest::Exec { argv, userns } => {
            if userns != UsernsMode::Off {
                enter_user_namespace(userns, (0, 0), &mut spec_in, status)?;
            }
            return exec_helper(&argv);
        }
        InitRequest::Probe { dir, userns } => {
            if userns != UsernsMode::Off
                && let Err(f) = enter_user_namespace(userns, (0, 0), &mut spec_in, status)
            {
                let namespaces = Some(format!("{}: {}", f.step, f.message));
                send(status, &InitMessage::Probed(crate::probe::ProbeReport { namespaces, ..Default::default() }));
                return Ok(ExitStatus::Exited(0));
            }
            let mut out = status.try_clone().map_err(|e| Failure::new(SetupStage::Init, "probe", e))?;
            let userxattr = userns != UsernsMode::Off;
            let code =
                crate::probe::probe_namespaces(&dir, userxattr, &mut |r| send(&mut out, &InitMessage::Probed(r)));
            return Ok(ExitStatus::Exited(code));
        }
    };
    if spec.userns != UsernsMode::Off {
        enter_user_namespace(spec.userns, spec.single_id_as, &mut spec_in, status)?;
    }
    // With the caller's /proc shared, so is its pid namespace (a /proc of another one would show wrong pids).
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if !spec.isolation.shared_proc {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    if spec.network == NetworkMode::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| Failure::new(SetupStage::Namespaces, "create namespaces", e))?;
    if spec.network == NetworkMode::None {
        mounts::loopback_up().map_err(|e| Failure::new(SetupStage::Namespaces, "bring up lo", e))?;
    }
    if spec.isolation.shared_proc {
        // No pid namespace to end with the step: what it leaves running is reparented here and killed after it.
        prctl::set_child_subreaper(true).map_err(|e| Failure::new(SetupStage::Process, "become a subreaper", e))?;
    }
    // One id: ownership changes, id switches and what stat says of recorded owners are answered here (the
    // chroot tier keeps the host's root here, where the step's paths would resolve). A kernel without seccomp user
    // notification (before 5.0) runs the step without it, as before.
    let emulation = (spec.emulate_ids && spec.userns == UsernsMode::Single && !spec.isolation.chroot)
        .then(crate::id_emulation::prepare)
        .flatten();
    // SAFETY: this process is single-threaded (a fresh exec that started no threads), so fork is sound.
    match unsafe { fork() }.map_err(|e| Failure::new(SetupStage::Init, "fork", e))? {
        ForkResult::Child => {
            // Pid 1 of the new pid namespace: set up the root and become the step.
            let err = step_main(&spec, status, emulation);
            send(
                status,
                &InitMessage::Failed { stage: err.stage, step: err.step, message: err.message, hint: err.hint },
            );
            std::process::exit(127);
        }
        ForkResult::Parent { child } => {
            if let Some(listener) = emulation.and_then(|channel| channel.receive(child)) {
                crate::id_emulation::supervise(&listener, child, spec.single_id_as, spec.groups.clone());
            }
            let status = loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => break ExitStatus::Exited(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => break ExitStatus::Signaled(sig as i32),
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(Failure::new(SetupStage::Init, "wait for the step", e)),
                }
            };
            if spec.isolation.shared_proc {
                kill_leftovers();
            }
            Ok(status)
        }
    }
}

/// Kill and reap every process left as this subreaper's child (what a step started in the background), until
/// none is: they would hold the step's output open and outlive it.
fn kill_leftovers() {
    let me = std::process::id().to_string();
    for _ in 0..1000 {
        let children: Vec<i32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // Fields after the command (which may hold spaces) in parentheses: state, ppid.
                stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)) == Some(me.as_str())
            })
            .collect();
        if children.is_empty() {
            return;
        }
        for pid in children {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        while let Ok(st) = waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            if st == WaitStatus::StillAlive {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Create the user namespace and get ids mapped: the caller alone (written by us), or the subordinate range
/// (written by rbuild outside with newuidmap, which we wait for).
/// With one id, that id is `inside` (uid, gid) in the namespace (the step's user; root otherwise).
fn enter_user_namespace(
    mode: UsernsMode,
    inside: (u32, u32),
    spec_in: &mut BufReader<File>,
    status: &mut File,
) -> Result<(), Failure> {
    let (uid, gid) = (Uid::current().as_raw(), Gid::current().as_raw());
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| Failure {
        stage: SetupStage::UserNamespace,
        step: "create user namespace".into(),
        message: e.to_string(),
        hint: Some("unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces)".into()),
    })?;
    match mode {
        UsernsMode::Single => {
            let write = |file: &str, content: &str| {
                std::fs::write(format!("/proc/self/{file}"), content)
                    .map_err(|e| Failure::new(SetupStage::UserNamespace, &format!("write {file}"), e))
            };
            write("setgroups", "deny")?;
            write("uid_map", &format!("{} {uid} 1\n", inside.0))?;
            write("gid_map", &format!("{} {gid} 1\n", inside.1))?;
        }
        UsernsMode::Subuid { .. } | UsernsMode::Full => {
            send(status, &InitMessage::NeedsMapping { pid: std::process::id() as i32 });
            let mut ack = String::new();
            spec_in
                .read_line(&mut ack)
                .map_err(|e| Failure::new(SetupStage::UserNamespace, "wait for id mapping", e))?;
            if ack.trim() != "mapped" {
                return Err(Failure::new(
                    SetupStage::UserNamespace,
                    "id mapping",
                    format!("rbuild could not map ids: {}", ack.trim()),
                ));
            }
        }
        UsernsMode::Off => {}
    }
    Ok(())
}

/// Run a helper and report how it ended.
fn exec_helper(argv: &[String]) -> Result<ExitStatus, Failure> {
    let (prog, args) = argv.split_first().ok_or_else(|| Failure::new(SetupStage::Init, "exec helper", "no command"))?;
    let status = std::process::Command::new(prog)
        .args(args)
        .status()
        .map_err(|e| Failure::new(SetupStage::Init, "exec helper", e))?;
    Ok(match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
        (Some(c), _) => ExitStatus::Exited(c),
        (None, Some(s)) => ExitStatus::Signaled(s),
        (None, None) => ExitStatus::Exited(255),
    })
}

/// Remove `path` (as root of the user namespace, so files of any mapped id go too).
fn remove_tree(path: &Path) -> Result<ExitStatus, Failure> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(ExitStatus::Exited(0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ExitStatus::Exited(0)),
        Err(e) => Err(Failure::new(SetupStage::Init, &format!("remove {}", path.display()), e)),
    }
}

/// In pid 1 of the sandbox: mounts, root switch, identity, then exec. Returns only on failure.
fn step_main(spec: &RunSpec, status: &mut File, emulation: Option<crate::id_emulation::Channel>) -> Failure {
    if let Err(e) = prctl::set_pdeathsig(Signal::SIGKILL) {
        return Failure::new(SetupStage::Init, "set parent-death signal", e);
    }
    let emulator = match spec.emulator.as_ref().map(crate::emulation::open).transpose() {
        Ok(e) => e,
        Err(f) => return f,
    };
    let created = match mounts::setup_root(spec) {
        Ok(c) => c,
        Err(f) => return f,
    };
    send(status, &InitMessage::Mountpoints(created));
    if let Err(e) = nix::unistd::sethostname(&spec.hostname) {
        return Failure::new(SetupStage::Process, "set hostname", e);
    }
    if let (Some(e), Some(open)) = (&spec.emulator, &emulator)
        && let Err(f) = crate::emulation::enable(e, open, spec.userns)
    {
        return f;
    }
    let who = match user::resolve(Path::new("/"), spec.user.as_deref()) {
        Ok(u) => u,
        Err(m) => return Failure { stage: SetupStage::Process, step: "resolve user".into(), message: m, hint: None },
    };
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", who.home));
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if let Err(e) = std::fs::create_dir_all(&spec.cwd).and_then(|()| std::env::set_current_dir(&spec.cwd)) {
        return Failure::new(SetupStage::Process, &format!("enter working directory {}", spec.cwd), e);
    }
    // While still root of the namespace (dropping needs CAP_SETPCAP); setuid/setgid stay in the kept set.
    if !spec.all_capabilities
        && let Err(f) = drop_capabilities(spec.isolation.chroot)
    {
        return f;
    }
    if let Err(f) = become_user(spec, &who) {
        return f;
    }
    if let Err(f) = set_rlimits(&spec.rlimits) {
        return f;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    if let Err(e) = prctl::set_no_new_privs() {
        return Failure::new(SetupStage::Process, "set no_new_privs", e);
    }
    // The status pipe must not leak into the step.
    for fd in [STATUS_FD, SPEC_FD] {
        // SAFETY: setting FD_CLOEXEC on descriptors this process owns has no memory-safety effect.
        unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC) };
    }
    // Last: from here on the init answers this process's ownership and id calls.
    if let Some(channel) = emulation {
        channel.install_in_step();
    }
    exec(spec, &env)
}

/// Apply `--ulimit`-style limits (names as Docker spells them).
fn set_rlimits(limits: &[(String, u64, u64)]) -> Result<(), Failure> {
    use nix::sys::resource::setrlimit;
    for (name, soft, hard) in limits {
        let Some(resource) = crate::rlimit::rlimit_resource(name) else {
            return Err(Failure::new(SetupStage::Process, "set resource limit", format!("unknown limit {name:?}")));
        };
        setrlimit(resource, *soft, *hard).map_err(|e| Failure {
            stage: SetupStage::Process,
            step: "set resource limit".into(),
            message: format!("{name}={soft}:{hard}: {e}"),
            hint: Some("a limit above the current hard limit needs root".into()),
        })?;
    }
    Ok(())
}

fn become_user(spec: &RunSpec, who: &user::ResolvedUser) -> Result<(), Failure> {
    let single = spec.userns == UsernsMode::Single;
    let hint = |step: &str, e: nix::errno::Errno| Failure {
        stage: SetupStage::Process,
        step: step.to_string(),
        message: format!("{e} (user {})", spec.user.as_deref().unwrap_or("root")),
        hint: single.then(|| crate::userns::SUBUID_HINT.to_string()),
    };
    if !single {
        let groups: Vec<Gid> = who.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&groups).map_err(|e| hint("set supplementary groups", e))?;
    }
    nix::unistd::setgid(Gid::from_raw(who.gid)).map_err(|e| hint("set group id", e))?;
    nix::unistd::setuid(Uid::from_raw(who.uid)).map_err(|e| hint("set user id", e))?;
    Ok(())
}

/// Docker's (and BuildKit's) default capabilities: what a step keeps of its user namespace's full set. Without
/// CAP_SYS_ADMIN and the rest a step cannot mount, remount the read-only /proc paths, or reach kernel knobs.
const DEFAULT_CAPABILITIES: [u32; 14] = [
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    13, // NET_RAW
    18, // SYS_CHROOT
    27, // MKNOD
    29, // AUDIT_WRITE
    31, // SETFCAP
];

const SYS_CHROOT: u32 = 18;

/// Drop every capability outside [`DEFAULT_CAPABILITIES`] from the bounding, inheritable, permitted and effective
/// sets (and clear the ambient set), so neither this process nor what it executes has them.
/// In the chroot tier CAP_SYS_CHROOT goes too: with it, a step could leave a chroot (the old root stays below).
fn drop_capabilities(chroot: bool) -> Result<(), Failure> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40);
    let kept: Vec<u32> = DEFAULT_CAPABILITIES.iter().copied().filter(|&c| !(chroot && c == SYS_CHROOT)).collect();
    for cap in (0..=last).filter(|c| !kept.contains(c)) {
        // SAFETY: PR_CAPBSET_DROP takes an integer and touches no memory.
        let r = unsafe { nix::libc::prctl(nix::libc::PR_CAPBSET_DROP, cap as nix::libc::c_ulong, 0, 0, 0) };
        if r != 0 {
            return Err(Failure::new(SetupStage::Process, "drop capabilities", std::io::Error::last_os_error()));
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes integers and touches no memory.
    unsafe {
        nix::libc::prctl(nix::libc::PR_CAP_AMBIENT, nix::libc::PR_CAP_AMBIENT_CLEAR_ALL as nix::libc::c_ulong, 0, 0, 0)
    };
    let keep: u64 = kept.iter().fold(0, |m, c| m | (1u64 << c));
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header { version: 0x2008_0522, pid: 0 };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two `Data` records (version 3) into `data`, which has room for them.
    if unsafe { nix::libc::syscall(nix::libc::SYS_capget, &mut header as *mut Header, data.as_mut_ptr()) } != 0 {
        return Err(Failure::new(SetupStage::Process, "read capabilities", std::io::Error::last_os_error()));
    }
    for (i, d) in data.iter_mut().enumerate() {
        let mask = (keep >> (32 * i)) as u32;
        d.effective &= mask;
        d.permitted &= mask;
        d.inheritable &= mask;
    }
    // SAFETY: capset reads the two records it was given.
    if unsafe { nix::libc::syscall(nix::libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) } != 0 {
        return Err(Failure::new(SetupStage::Process, "set capabilities", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Give the step default signal dispositions and an empty signal mask. Ignored signals survive exec, and the
/// Rust runtime ignores SIGPIPE: without this, `yes | head -c 10` in a step never ends (yes gets EPIPE, not
/// SIGPIPE, and busybox's yes keeps writing).
fn reset_signals() {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
    for sig in Signal::iterator() {
        if sig == Signal::SIGKILL || sig == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: setting the default disposition installs no Rust handler; this process execs right after.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
    // The real-time signals (32..=64) have no `Signal` variant, and libc refuses the two it reserves (32, 33);
    // a parent may have ignored them all, so ask the kernel directly. The kernel's sigaction is handler, flags,
    // restorer, mask: all zero is SIG_DFL with no flags and an empty mask.
    let default_action = [0u64; 4];
    for n in 32..=64 {
        // SAFETY: the kernel reads a sigaction of the size given (8-byte mask) from a live, zeroed buffer.
        unsafe {
            nix::libc::syscall(nix::libc::SYS_rt_sigaction, n, default_action.as_ptr(), std::ptr::null::<u8>(), 8);
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Find `argv[0]` on the step's PATH (inside the new root) and exec it.
fn exec(spec: &RunSpec, env: &[String]) -> Failure {
    let Some(prog) = spec.argv.first() else {
        return Failure::new(SetupStage::Process, "exec", "no command given");
    };
    let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/bin:/bin");
    let candidates: Vec<String> = if prog.contains('/') {
        vec![prog.clone()]
    } else {
        path.split(':').filter(|d| !d.is_empty()).map(|d| format!("{d}/{prog}")).collect()
    };
    let Some(found) = candidates.iter().find(|c| Path::new(c).is_file()) else {
        return Failure {
            stage: SetupStage::Process,
            step: "exec".into(),
            message: format!("{prog}: executable file not found in $PATH"),
            hint: None,
        };
    };
    let to_c = |s: &str| CString::new(s.as_bytes()).map_err(|e| Failure::new(SetupStage::Process, "exec", e));
    reset_signals();
    let result = (|| {
        let file = to_c(found)?;
        let args = spec.argv.iter().map(|a| to_c(a)).collect::<Result<Vec<_>, _>>()?;
        let envs = env.iter().map(|e| to_c(e)).collect::<Result<Vec<_>, _>>()?;
        Err(match nix::unistd::execve(&file, &args, &envs) {
            Err(e) => Failure::new(SetupStage::Process, "exec", format!("{found}: {e}")),
            Ok(never) => match never {},
        })
    })();
    result.unwrap_or_else(|f| f)
}
