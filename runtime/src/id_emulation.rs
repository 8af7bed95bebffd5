//! Root steps with ONE id mapped (no subordinate ids): ownership changes and id switches answered by the sandbox
//! init through seccomp user notification, so `chown app /x`, `su`, `gosu` and apt's `_apt` sandbox work.
//!
//! The init installs a filter on itself before forking the step (the step inherits it) that sends the ownership
//! calls (`chown`, `fchown`, `lchown`, `fchownat`) and the id calls (`set*id`, `setgroups`, `get*id`, `getgroups`)
//! to the init. An ownership change is answered with success and recorded as the file's `user.rootlesscontainers`
//! record (which makes overlayfs copy the file up, so the layer has it; the layer writer reads the record as the
//! owner). Symbolic links cannot carry the record: their owner is left as it is. Id switches are emulated per
//! process (POSIX rules: only an effective uid 0 may switch freely), inherited by children, and the id getters of
//! a process that switched answer from that state; a process that never switched runs its getters for real.
//! What such a process creates is still owned by root. Paths are resolved through the init's handle on /proc
//! (its working directory, kept when the step's root replaces the init's), `/proc/<pid>/root|cwd|fd`, and the
//! notification is checked to be still valid after the target's memory was read.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::libc;

use crate::owner_record::{self, NAME as OWNER_XATTR};

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
/// Elsewhere the emulation is not offered (ownership changes fail as without it).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: u32 = 0;

/// The id getters: answered from the emulated ids of a process that switched, else by the kernel.
const GETTERS: [i64; 7] = [
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_getgroups,
];

/// The calls sent to the init.
fn intercepted() -> Vec<i64> {
    let mut calls = vec![
        libc::SYS_fchown,
        libc::SYS_fchownat,
        libc::SYS_setuid,
        libc::SYS_setgid,
        libc::SYS_setreuid,
        libc::SYS_setregid,
        libc::SYS_setresuid,
        libc::SYS_setresgid,
        libc::SYS_setfsuid,
        libc::SYS_setfsgid,
        libc::SYS_setgroups,
    ];
    calls.extend(GETTERS);
    calls.extend([libc::SYS_fstat, libc::SYS_newfstatat, libc::SYS_statx]);
    #[cfg(target_arch = "x86_64")]
    calls.extend([libc::SYS_chown, libc::SYS_lchown, libc::SYS_stat, libc::SYS_lstat]);
    calls
}

#[repr(C)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// BPF_LD | BPF_W | BPF_ABS.
const BPF_LD_W_ABS: u16 = 0x20;
/// BPF_JMP | BPF_JEQ | BPF_K.
const BPF_JMP_JEQ_K: u16 = 0x15;
/// BPF_RET | BPF_K.
const BPF_RET_K: u16 = 0x06;

/// The filter: the native architecture's intercepted calls go to the listener, everything else is allowed.
fn program(calls: &[i64]) -> Vec<SockFilter> {
    let k = calls.len() as u8;
    let mut p = vec![
        SockFilter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 4 }, // seccomp_data.arch
        SockFilter { code: BPF_JMP_JEQ_K, jt: 0, jf: k + 1, k: AUDIT_ARCH },
        SockFilter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 0 }, // seccomp_data.nr
    ];
    for (i, nr) in calls.iter().enumerate() {
        p.push(SockFilter { code: BPF_JMP_JEQ_K, jt: k - i as u8, jf: 0, k: *nr as u32 });
    }
    p.push(SockFilter { code: BPF_RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW });
    p.push(SockFilter { code: BPF_RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_USER_NOTIF });
    p
}

/// The listener the init answers from.
pub(crate) struct Listener {
    fd: OwnedFd,
}

/// How the step hands its listener to the init: the step installs the filter on itself just before it execs (the
/// init must not be under it: it makes the very calls it answers), tells the init the descriptor's number, and waits
/// until the init has taken a copy (`pidfd_getfd`) before it closes its own.
pub(crate) struct Channel {
    to_init: (OwnedFd, OwnedFd),
    to_step: (OwnedFd, OwnedFd),
}

/// In the init, before the fork: the channel, and /proc as the init's working directory (kept when the step's
/// root replaces the init's, so the step's processes can be found through it).
pub(crate) fn prepare() -> Option<Channel> {
    if AUDIT_ARCH == 0 {
        return None;
    }
    std::env::set_current_dir("/proc").ok()?;
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok();
    Some(Channel { to_init: pipe()?, to_step: pipe()? })
}

impl Channel {
    /// In the step, after its last set-up call and before exec: install the filter and hand the listener over.
    /// Without one (an old kernel), the step runs as if there were no emulation.
    pub(crate) fn install_in_step(self) {
        let filter = program(&intercepted());
        let prog = SockFprog { len: filter.len() as u16, filter: filter.as_ptr() };
        // SAFETY: the kernel reads `prog` and the filter it points to, both alive for the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                &prog as *const SockFprog,
            )
        } as i32;
        let _ = nix::unistd::write(&self.to_init.1, &fd.to_ne_bytes());
        if fd >= 0 {
            let mut ack = [0u8; 1];
            let _ = nix::unistd::read(&self.to_step.0, &mut ack);
            // SAFETY: the descriptor the kernel gave us above; the init holds its own copy now.
            unsafe { libc::close(fd) };
        }
    }

    /// In the init: the step's listener, once the step has installed its filter (None: it could not, or it
    /// ended before).
    pub(crate) fn receive(self, child: nix::unistd::Pid) -> Option<Listener> {
        let Channel { to_init: (from_step, to_init_w), to_step: (to_step_r, to_step) } = self;
        drop((to_init_w, to_step_r));
        let mut number = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match nix::unistd::read(&from_step, &mut number[got..]) {
                Ok(0) | Err(_) => return None,
                Ok(n) => got += n,
            }
        }
        let fd = i32::from_ne_bytes(number);
        if fd < 0 {
            return None;
        }
        // SAFETY: pidfd_open and pidfd_getfd take integers and return new descriptors (or -1).
        let copy = unsafe {
            let pidfd = libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) as i32;
            let copy = if pidfd >= 0 { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32 } else { -1 };
            if pidfd >= 0 {
                libc::close(pidfd);
            }
            copy
        };
        let _ = nix::unistd::write(&to_step, &[1]);
        // SAFETY: pidfd_getfd gave us this descriptor; nothing else owns it.
        (copy >= 0).then(|| Listener { fd: unsafe { OwnedFd::from_raw_fd(copy) } })
    }
}

/// A process's emulated ids (after it switched ids once).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Creds {
    uid: [u32; 3],
    gid: [u32; 3],
    groups: Vec<u32>,
    /// The process's start time (clock ticks), so a reused pid is not taken for it.
    start: u64,
}

impl Creds {
    /// Who the step starts as: its user's uid and gid (the one id), and its groups.
    fn of_step(uid: u32, gid: u32, groups: Vec<u32>) -> Creds {
        Creds { uid: [uid; 3], gid: [gid; 3], groups, start: 0 }
    }

    fn same_ids(&self, other: &Creds) -> bool {
        self.uid == other.uid && self.gid == other.gid && self.groups == other.groups
    }

    fn privileged(&self) -> bool {
        self.uid[1] == 0
    }
}

/// What the init answers with.
enum Answer {
    Value(i64),
    Errno(i32),
    /// Run the call for real.
    Continue,
}

/// Answer notifications until the step (`child`) ends. Returns when it has. The step starts as `ids` (its user's
/// uid and gid, the one id) with `groups` (its user's groups, the primary first; None: as the kernel says).
pub(crate) fn supervise(listener: &Listener, child: nix::unistd::Pid, ids: (u32, u32), groups: Option<Vec<u32>>) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) };
    let base = Creds::of_step(ids.0, ids.1, groups.clone().unwrap_or_default());
    let mut state = Supervisor { creds: HashMap::new(), base, groups_known: groups.is_some() };
    loop {
        let mut fds = vec![libc::pollfd { fd: listener.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        if pidfd >= 0 {
            fds.push(libc::pollfd { fd: pidfd as RawFd, events: libc::POLLIN, revents: 0 });
        }
        // SAFETY: `fds` is a live array of `fds.len()` pollfd records.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, if pidfd >= 0 { -1 } else { 50 }) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        if fds.get(1).is_some_and(|p| p.revents != 0) {
            break;
        }
        if pidfd < 0 && child_gone(child) {
            break;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            state.answer_one(listener);
        }
    }
    if pidfd >= 0 {
        // SAFETY: closing the descriptor pidfd_open gave us.
        unsafe { libc::close(pidfd as RawFd) };
    }
}

/// Whether the step has ended (without reaping it), for kernels without pidfd_open.
fn child_gone(child: nix::unistd::Pid) -> bool {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    matches!(
        waitid(Id::Pid(child), WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT),
        Ok(status) if status != nix::sys::wait::WaitStatus::StillAlive
    )
}

struct Supervisor {
    /// The emulated ids of processes that switched (by thread group id); the others are `base`.
    creds: HashMap<i32, Creds>,
    base: Creds,
    /// Whether `base.groups` answers `getgroups` (else the kernel's answer stands).
    groups_known: bool,
}

impl Supervisor {
    fn answer_one(&mut self, listener: &Listener) {
        // SAFETY: an all-zero seccomp_notif is the required input of NOTIF_RECV.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: NOTIF_RECV writes one seccomp_notif into `req`.
        if unsafe { libc::ioctl(listener.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV as _, &mut req) } != 0 {
            return;
        }
        let answer = self.answer(listener, &req);
        // SAFETY: an all-zero response is valid; the fields are set below.
        let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
        resp.id = req.id;
        match answer {
            Answer::Value(v) => resp.val = v,
            Answer::Errno(e) => resp.error = -e,
            Answer::Continue => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        }
        // SAFETY: NOTIF_SEND reads the response; a target that died meanwhile makes it fail, which is fine.
        unsafe { libc::ioctl(listener.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND as _, &resp) };
    }

    fn answer(&mut self, listener: &Listener, req: &libc::seccomp_notif) -> Answer {
        let nr = i64::from(req.data.nr);
        let a = req.data.args;
        let pid = req.pid as i32;
        if let Some((target, buf, statx)) = stat_call(nr, &a, |addr| self.read_path(pid, addr)) {
            return self.stat(listener, req, target, buf, statx);
        }
        if is_ownership_call(nr) {
            // A process that is not (emulating) root changes owners as the kernel lets it: its own ids only.
            let euid = match self.creds.is_empty() {
                true => self.base.uid[1],
                false => {
                    let switched = process_of(pid).and_then(|(tgid, start)| self.creds_of(tgid, start));
                    switched.map_or(self.base.uid[1], |c| c.uid[1])
                }
            };
            if euid != 0 {
                return Answer::Continue;
            }
        }
        #[cfg(target_arch = "x86_64")]
        {
            if nr == libc::SYS_chown {
                return self.chown(listener, req, Target::Path { dirfd: None, path: a[0], follow: true }, a[1], a[2]);
            }
            if nr == libc::SYS_lchown {
                return self.chown(listener, req, Target::Path { dirfd: None, path: a[0], follow: false }, a[1], a[2]);
            }
        }
        if nr == libc::SYS_fchown {
            return self.chown(listener, req, Target::Fd(a[0] as i32), a[1], a[2]);
        }
        if nr == libc::SYS_fchownat {
            let flags = a[4] as i32;
            let dirfd = a[0] as i32;
            let target = if flags & libc::AT_EMPTY_PATH != 0 && self.read_path(pid, a[1]).is_some_and(|p| p.is_empty())
            {
                Target::Fd(dirfd)
            } else {
                let dirfd = (dirfd != libc::AT_FDCWD).then_some(dirfd);
                Target::Path { dirfd, path: a[1], follow: flags & libc::AT_SYMLINK_NOFOLLOW == 0 }
            };
            return self.chown(listener, req, target, a[2], a[3]);
        }
        // The id calls: a process that never switched ids runs its getters for real.
        let getter = GETTERS.contains(&nr);
        if getter && self.creds.is_empty() {
            return self.base_answer(nr, pid, &a);
        }
        let Some((tgid, start)) = process_of(pid) else { return Answer::Continue };
        let mut creds = self.creds_of(tgid, start);
        if getter && creds.is_none() {
            return self.base_answer(nr, pid, &a);
        }
        let answer = match nr {
            n if n == libc::SYS_getuid => return answer_or_continue(creds.as_ref(), |c| c.uid[0]),
            n if n == libc::SYS_geteuid => return answer_or_continue(creds.as_ref(), |c| c.uid[1]),
            n if n == libc::SYS_getgid => return answer_or_continue(creds.as_ref(), |c| c.gid[0]),
            n if n == libc::SYS_getegid => return answer_or_continue(creds.as_ref(), |c| c.gid[1]),
            n if n == libc::SYS_getresuid || n == libc::SYS_getresgid => {
                let Some(c) = creds.as_ref() else { return Answer::Continue };
                let ids = if n == libc::SYS_getresuid { c.uid } else { c.gid };
                for (i, v) in ids.iter().enumerate() {
                    if !write_memory(pid, a[i], &v.to_ne_bytes()) {
                        return Answer::Errno(libc::EFAULT);
                    }
                }
                return Answer::Value(0);
            }
            n if n == libc::SYS_getgroups => {
                let Some(c) = creds.as_ref() else { return Answer::Continue };
                return groups_answer(&c.groups, pid, &a);
            }
            _ => {
                let c = creds.get_or_insert_with(|| Creds { start, ..self.base.clone() });
                switch_ids(c, nr, &a, |addr, n| read_groups(pid, addr, n))
            }
        };
        match creds {
            // Back to the step's own ids: nothing to emulate for this process any more.
            Some(c) if c.same_ids(&self.base) => {
                self.creds.remove(&tgid);
            }
            Some(c) => {
                self.creds.insert(tgid, c);
            }
            None => {}
        }
        // The switch is answered only if the process is still the one that asked.
        if !notification_valid(listener, req.id) {
            return Answer::Errno(libc::ESRCH);
        }
        answer
    }

    /// A getter's answer for a process with the step's own ids: the kernel's, but for the groups, which the one id
    /// cannot have.
    fn base_answer(&self, nr: i64, pid: i32, a: &[u64; 6]) -> Answer {
        if nr != libc::SYS_getgroups || !self.groups_known {
            return Answer::Continue;
        }
        groups_answer(&self.base.groups, pid, a)
    }

    /// The emulated ids of process `tgid`, or of its nearest ancestor that has some (a child inherits them).
    fn creds_of(&mut self, tgid: i32, start: u64) -> Option<Creds> {
        if let Some(c) = self.creds.get(&tgid) {
            if c.start == start {
                return Some(c.clone());
            }
            self.creds.remove(&tgid);
        }
        let mut pid = parent_of(tgid)?;
        for _ in 0..64 {
            if let Some(c) = self.creds.get(&pid) {
                let mut c = c.clone();
                c.start = start;
                self.creds.insert(tgid, c.clone());
                return Some(c);
            }
            pid = parent_of(pid)?;
        }
        None
    }

    /// Record the requested owner on the file (uid or gid -1: keep that part of the current record).
    fn chown(&self, listener: &Listener, req: &libc::seccomp_notif, target: Target, uid: u64, gid: u64) -> Answer {
        let pid = req.pid as i32;
        let Some(path) = self.resolve(pid, &target) else { return Answer::Errno(libc::EFAULT) };
        if !notification_valid(listener, req.id) {
            return Answer::Errno(libc::ESRCH);
        }
        let follow = !matches!(target, Target::Path { follow: false, .. });
        let Ok(c_path) = CString::new(path) else { return Answer::Errno(libc::EINVAL) };
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `c_path` is a NUL-terminated path and `st` a live stat buffer.
        let r = unsafe {
            if follow { libc::stat(c_path.as_ptr(), &mut st) } else { libc::lstat(c_path.as_ptr(), &mut st) }
        };
        if r != 0 {
            return Answer::Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOENT));
        }
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            // A symbolic link's owner has nowhere to be recorded; its target's is not what was asked to change.
            return Answer::Value(0);
        }
        let (old_uid, old_gid) = current_record(&c_path, true).unwrap_or((0, 0));
        let new_uid = if uid as u32 == u32::MAX { old_uid } else { uid as u32 };
        let new_gid = if gid as u32 == u32::MAX { old_gid } else { gid as u32 };
        let record = owner_record::encode(new_uid, new_gid);
        let name = CString::new(OWNER_XATTR).unwrap_or_default();
        // SAFETY: path, name and value are live for the call; the kernel copies them.
        let r = unsafe { libc::setxattr(c_path.as_ptr(), name.as_ptr(), record.as_ptr().cast(), record.len(), 0) };
        if r != 0 {
            return Answer::Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EPERM));
        }
        Answer::Value(0)
    }

    /// A stat of a file with an owner record, in a root step: answered here with the recorded owner, so that what
    /// a step chowned shows as chowned (and tools that copy owners from stat copy the right ones). Everything else
    /// (no record, a USER step, anything unexpected) is left to the kernel.
    fn stat(
        &self,
        listener: &Listener,
        req: &libc::seccomp_notif,
        target: Target,
        buf: u64,
        statx: Option<(i32, u32)>,
    ) -> Answer {
        if self.base.uid[0] != 0 {
            return Answer::Continue;
        }
        let pid = req.pid as i32;
        let follow = !matches!(target, Target::Path { follow: false, .. });
        let Some(Ok(c_path)) = self.resolve(pid, &target).map(CString::new) else { return Answer::Continue };
        let Some((uid, gid)) = current_record(&c_path, follow) else { return Answer::Continue };
        let bytes = match statx {
            None => {
                // SAFETY: an all-zero stat is a valid buffer for the kernel to fill.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: `c_path` is NUL-terminated and `st` a live stat buffer.
                let r = unsafe {
                    if follow { libc::stat(c_path.as_ptr(), &mut st) } else { libc::lstat(c_path.as_ptr(), &mut st) }
                };
                if r != 0 {
                    return Answer::Continue;
                }
                (st.st_uid, st.st_gid) = (uid, gid);
                bytes_of(&st)
            }
            Some((flags, mask)) => {
                // SAFETY: an all-zero statx is a valid buffer for the kernel to fill.
                let mut sx: libc::statx = unsafe { std::mem::zeroed() };
                let flags = (flags & !libc::AT_EMPTY_PATH) | if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
                // SAFETY: `c_path` is NUL-terminated and `sx` a live statx buffer.
                if unsafe { libc::statx(libc::AT_FDCWD, c_path.as_ptr(), flags, mask, &mut sx) } != 0 {
                    return Answer::Continue;
                }
                (sx.stx_uid, sx.stx_gid) = (uid, gid);
                bytes_of(&sx)
            }
        };
        if !notification_valid(listener, req.id) || !write_memory(pid, buf, &bytes) {
            return Answer::Continue;
        }
        Answer::Value(0)
    }

    /// The path (relative to the init's working directory, /proc) that names the target's file.
    fn resolve(&self, pid: i32, target: &Target) -> Option<String> {
        match target {
            Target::Fd(fd) if *fd == libc::AT_FDCWD => Some(format!("{pid}/cwd")),
            Target::Fd(fd) => Some(format!("{pid}/fd/{fd}")),
            Target::Path { dirfd, path, .. } => {
                let p = self.read_path(pid, *path)?;
                if p.is_empty() {
                    return None;
                }
                Some(match (p.starts_with('/'), dirfd) {
                    (true, _) => format!("{pid}/root{p}"),
                    (false, None) => format!("{pid}/cwd/{p}"),
                    (false, Some(fd)) => format!("{pid}/fd/{fd}/{p}"),
                })
            }
        }
    }

    fn read_path(&self, pid: i32, addr: u64) -> Option<String> {
        read_string(pid, addr)
    }
}

/// Which file an ownership call names.
enum Target {
    Fd(i32),
    Path { dirfd: Option<i32>, path: u64, follow: bool },
}

/// `getgroups(size, list)` answered with `groups`.
fn groups_answer(groups: &[u32], pid: i32, a: &[u64; 6]) -> Answer {
    let size = a[0] as usize;
    if size == 0 {
        return Answer::Value(groups.len() as i64);
    }
    if size < groups.len() {
        return Answer::Errno(libc::EINVAL);
    }
    let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
    if !bytes.is_empty() && !write_memory(pid, a[1], &bytes) {
        return Answer::Errno(libc::EFAULT);
    }
    Answer::Value(groups.len() as i64)
}

/// The bytes of a plain C struct the kernel filled (`stat`, `statx`), to write into the target's memory.
fn bytes_of<T: Copy>(value: &T) -> Vec<u8> {
    // SAFETY: `T` is a plain-old-data struct (Copy, no references); its bytes are all initialised (zeroed, then
    // filled by the kernel).
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>()) }.to_vec()
}

/// A stat call: the file it names, the buffer it fills, and for `statx` its flags and mask.
type StatCall = (Target, u64, Option<(i32, u32)>);

/// For a stat call: the file it names, the buffer it fills, and for `statx` its flags and mask.
fn stat_call(nr: i64, a: &[u64; 6], read_path: impl Fn(u64) -> Option<String>) -> Option<StatCall> {
    #[cfg(target_arch = "x86_64")]
    {
        if nr == libc::SYS_stat || nr == libc::SYS_lstat {
            let follow = nr == libc::SYS_stat;
            return Some((Target::Path { dirfd: None, path: a[0], follow }, a[1], None));
        }
    }
    if nr == libc::SYS_fstat {
        return Some((Target::Fd(a[0] as i32), a[1], None));
    }
    let at = |flags: i32, buf: u64, statx: Option<(i32, u32)>| {
        let dirfd = a[0] as i32;
        let target = if flags & libc::AT_EMPTY_PATH != 0 && read_path(a[1]).is_some_and(|p| p.is_empty()) {
            Target::Fd(dirfd)
        } else {
            let dirfd = (dirfd != libc::AT_FDCWD).then_some(dirfd);
            Target::Path { dirfd, path: a[1], follow: flags & libc::AT_SYMLINK_NOFOLLOW == 0 }
        };
        Some((target, buf, statx))
    };
    if nr == libc::SYS_newfstatat {
        return at(a[3] as i32, a[2], None);
    }
    if nr == libc::SYS_statx {
        return at(a[2] as i32, a[4], Some((a[2] as i32, a[3] as u32)));
    }
    None
}

/// Whether `nr` changes a file's owner.
fn is_ownership_call(nr: i64) -> bool {
    #[cfg(target_arch = "x86_64")]
    if nr == libc::SYS_chown || nr == libc::SYS_lchown {
        return true;
    }
    nr == libc::SYS_fchown || nr == libc::SYS_fchownat
}

fn answer_or_continue(creds: Option<&Creds>, id: impl Fn(&Creds) -> u32) -> Answer {
    match creds {
        Some(c) => Answer::Value(i64::from(id(c))),
        None => Answer::Continue,
    }
}

/// Apply an id switch to `c` with POSIX's rules (an effective uid 0 may set anything; others only switch between
/// their real, effective and saved ids).
fn switch_ids(c: &mut Creds, nr: i64, a: &[u64; 6], read_groups: impl Fn(u64, usize) -> Option<Vec<u32>>) -> Answer {
    let keep = |v: u64| v as u32 == u32::MAX;
    let privileged = c.privileged();
    let allowed = |ids: &[u32; 3], v: u32| privileged || ids.contains(&v);
    match nr {
        n if n == libc::SYS_setuid || n == libc::SYS_setgid => {
            let v = a[0] as u32;
            let ids = if n == libc::SYS_setuid { &mut c.uid } else { &mut c.gid };
            if privileged {
                *ids = [v; 3];
            } else if ids[0] == v || ids[2] == v {
                ids[1] = v;
            } else {
                return Answer::Errno(libc::EPERM);
            }
        }
        n if n == libc::SYS_setreuid || n == libc::SYS_setregid => {
            let ids = if n == libc::SYS_setreuid { c.uid } else { c.gid };
            let (r, e) = (a[0] as u32, a[1] as u32);
            let ok_r = keep(a[0]) || privileged || r == ids[0] || r == ids[1];
            let ok_e = keep(a[1]) || privileged || ids.contains(&e);
            if !(ok_r && ok_e) {
                return Answer::Errno(libc::EPERM);
            }
            let mut new = ids;
            if !keep(a[0]) {
                new[0] = r;
            }
            if !keep(a[1]) {
                new[1] = e;
            }
            if !keep(a[0]) || (!keep(a[1]) && e != ids[0]) {
                new[2] = new[1];
            }
            if n == libc::SYS_setreuid { c.uid = new } else { c.gid = new }
        }
        n if n == libc::SYS_setresuid || n == libc::SYS_setresgid => {
            let ids = if n == libc::SYS_setresuid { c.uid } else { c.gid };
            let mut new = ids;
            for i in 0..3 {
                if keep(a[i]) {
                    continue;
                }
                if !allowed(&ids, a[i] as u32) {
                    return Answer::Errno(libc::EPERM);
                }
                new[i] = a[i] as u32;
            }
            if n == libc::SYS_setresuid { c.uid = new } else { c.gid = new }
        }
        n if n == libc::SYS_setfsuid => return Answer::Value(i64::from(c.uid[1])),
        n if n == libc::SYS_setfsgid => return Answer::Value(i64::from(c.gid[1])),
        n if n == libc::SYS_setgroups => {
            if !privileged {
                return Answer::Errno(libc::EPERM);
            }
            let count = a[0] as usize;
            if count > 65536 {
                return Answer::Errno(libc::EINVAL);
            }
            match read_groups(a[1], count) {
                Some(g) => c.groups = g,
                None => return Answer::Errno(libc::EFAULT),
            }
        }
        _ => return Answer::Continue,
    }
    Answer::Value(0)
}

/// The thread group and start time of thread `tid` (from the init's /proc, its working directory).
fn process_of(tid: i32) -> Option<(i32, u64)> {
    let status = std::fs::read_to_string(format!("{tid}/status")).ok()?;
    let tgid: i32 = status.lines().find_map(|l| l.strip_prefix("Tgid:"))?.trim().parse().ok()?;
    Some((tgid, start_time(tgid)?))
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

fn parent_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("{pid}/status")).ok()?;
    let ppid: i32 = status.lines().find_map(|l| l.strip_prefix("PPid:"))?.trim().parse().ok()?;
    (ppid > 0).then_some(ppid)
}

fn notification_valid(listener: &Listener, id: u64) -> bool {
    // SAFETY: NOTIF_ID_VALID reads the u64 id.
    unsafe { libc::ioctl(listener.fd.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID as _, &id) == 0 }
}

/// Read a NUL-terminated string (at most 4096 bytes) from the target's memory, page by page.
fn read_string(pid: i32, addr: u64) -> Option<String> {
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < 4096 {
        let chunk = (4096 - (at % 4096)) as usize;
        let mut buf = vec![0u8; chunk];
        if !read_memory(pid, at, &mut buf) {
            return None;
        }
        if let Some(end) = buf.iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..end]);
            return String::from_utf8(out).ok();
        }
        out.extend_from_slice(&buf);
        at += chunk as u64;
    }
    None
}

fn read_groups(pid: i32, addr: u64, count: usize) -> Option<Vec<u32>> {
    let mut buf = vec![0u8; count * 4];
    if count > 0 && !read_memory(pid, addr, &mut buf) {
        return None;
    }
    Some(buf.chunks_exact(4).map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn read_memory(pid: i32, addr: u64, buf: &mut [u8]) -> bool {
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    n == buf.len() as isize
}

fn write_memory(pid: i32, addr: u64, bytes: &[u8]) -> bool {
    let local = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: bytes.len() };
    // SAFETY: the kernel reads `bytes.len()` bytes from `bytes` and writes them into the target.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    n == bytes.len() as isize
}

/// The owner record a file has now, if any (`follow`: of the file a final symbolic link names).
fn current_record(path: &CString, follow: bool) -> Option<(u32, u32)> {
    let name = CString::new(OWNER_XATTR).ok()?;
    let mut buf = [0u8; 32];
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let n = unsafe {
        if follow {
            libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        } else {
            libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        }
    };
    if n < 0 {
        return None;
    }
    owner_record::decode(&buf[..n as usize]).map(|(u, g)| (u.unwrap_or(0), g.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_switches_freely_and_a_dropped_process_cannot_regain_root() {
        let mut c = Creds::of_step(0, 0, Vec::new());
        let args = |x: [u64; 3]| [x[0], x[1], x[2], 0, 0, 0];
        assert!(matches!(
            switch_ids(&mut c, libc::SYS_setgroups, &args([1, 0, 0]), |_, _| Some(vec![65534])),
            Answer::Value(0)
        ));
        assert!(matches!(switch_ids(&mut c, libc::SYS_setresgid, &args([65534; 3]), |_, _| None), Answer::Value(0)));
        assert!(matches!(switch_ids(&mut c, libc::SYS_setresuid, &args([42; 3]), |_, _| None), Answer::Value(0)));
        assert_eq!((c.uid, c.gid, c.groups.clone()), ([42; 3], [65534; 3], vec![65534]));
        assert!(matches!(
            switch_ids(&mut c, libc::SYS_setuid, &args([0, 0, 0]), |_, _| None),
            Answer::Errno(libc::EPERM)
        ));
        assert!(matches!(
            switch_ids(&mut c, libc::SYS_setgid, &args([0, 0, 0]), |_, _| None),
            Answer::Errno(libc::EPERM)
        ));
        // seteuid (setresuid -1, u, -1) back and forth, as apt checks a directory as _apt and returns.
        let mut c = Creds::of_step(0, 0, vec![0, 10]);
        let keep = u32::MAX as u64;
        assert!(matches!(
            switch_ids(&mut c, libc::SYS_setresuid, &args([keep, 42, keep]), |_, _| None),
            Answer::Value(0)
        ));
        assert_eq!(c.uid, [0, 42, 0]);
        assert!(matches!(
            switch_ids(&mut c, libc::SYS_setresuid, &args([keep, 0, keep]), |_, _| None),
            Answer::Value(0)
        ));
        assert_eq!(c.uid, [0, 0, 0]);
    }
}
