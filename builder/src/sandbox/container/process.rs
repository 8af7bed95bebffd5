//! A step's process in container isolation: plain fork and exec in the container's root, as root switching to the
//! step's user (supplementary groups, group, user), with its environment, working directory (made when missing),
//! limits and umask, in a session of its own. Its output is read line by line; when it ends, whatever it left
//! running in its session is killed and reaped (rbuild is the child subreaper, so orphans come back to it), and
//! output still held open by an escaped process is given up after a grace period.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rbuild_runtime::user::ResolvedUser;

use crate::engine::ports::{ExitStatus, OutputSink};
use crate::engine::progress::Stream;
use crate::error::{Error, Result};

/// What the process is.
#[derive(Debug)]
pub struct StepProcess<'a> {
    pub argv: &'a [String],
    pub env: Vec<String>,
    pub cwd: &'a str,
    pub user: &'a ResolvedUser,
    pub user_name: &'a str,
    pub rlimits: &'a [(String, u64, u64)],
    /// `RUN --network=none`: a network namespace of its own (refused where the container forbids one).
    pub no_network: bool,
}

fn process_error(step: &str, message: impl std::fmt::Display) -> Error {
    Error::Sandbox(Box::new(rbuild_runtime::Error::setup(rbuild_runtime::SetupStage::Process, step, message)))
}

/// Run the step to its end; its output lines go to `output`.
pub fn run(p: &StepProcess<'_>, output: OutputSink<'_>) -> Result<ExitStatus> {
    let mut env = p.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", p.user.home));
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    let program = find_program(p.argv, &env)?;
    std::fs::create_dir_all(p.cwd).map_err(|e| process_error(&format!("enter working directory {}", p.cwd), e))?;
    let mut limits = Vec::new();
    for (name, soft, hard) in p.rlimits {
        let resource = rbuild_runtime::rlimit_resource(name)
            .ok_or_else(|| process_error("set resource limit", format!("unknown limit {name:?}")))?;
        limits.push((resource, *soft, *hard));
    }
    let groups: Vec<nix::unistd::Gid> = p.user.groups.iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
    let (uid, gid, no_network) = (p.user.uid, p.user.gid, p.no_network);
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let mut cmd = Command::new(&program);
    cmd.arg0(&p.argv[0]).args(&p.argv[1..]).env_clear().current_dir(p.cwd);
    for e in &env {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: between fork and exec only async-signal-safe calls are made (setsid, unshare, setgroups, setresgid,
    // setresuid, setrlimit, umask, sigprocmask); nothing allocates.
    unsafe {
        cmd.pre_exec(move || {
            use nix::unistd::{Gid, Uid};
            nix::unistd::setsid()?;
            if no_network {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
            }
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setresgid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid))?;
            nix::unistd::setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid))?;
            for (resource, soft, hard) in &limits {
                nix::sys::resource::setrlimit(*resource, *soft, *hard)?;
            }
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            )?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        if no_network {
            process_error(
                "RUN --network=none",
                format!(
                    "{e}: this container does not allow a network namespace of the step's own (container \
                     isolation); drop --network=none or build where the namespace sandbox runs"
                ),
            )
        } else {
            process_error("start the step", format!("{} as user {}: {e}", program.display(), p.user_name))
        }
    })?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let session = child.id() as i32;
    let done = std::sync::atomic::AtomicBool::new(false);
    let status = std::thread::scope(|scope| {
        let done = &done;
        let reader = scope.spawn(move || read_lines(stdout, stderr, output, done));
        let status = child.wait();
        kill_session(session);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = reader.join();
        status
    })
    .map_err(|e| process_error("wait for the step", e))?;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => ExitStatus::Exited(c),
        (None, Some(s)) => ExitStatus::Signaled(s),
        (None, None) => ExitStatus::Exited(255),
    })
}

/// `argv[0]` on the step's PATH (not rbuild's), as the sandbox looks it up.
fn find_program(argv: &[String], env: &[String]) -> Result<std::path::PathBuf> {
    let prog = argv.first().ok_or_else(|| process_error("exec", "no command given"))?;
    let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/bin:/bin");
    let candidates: Vec<String> = if prog.contains('/') {
        vec![prog.clone()]
    } else {
        path.split(':').filter(|d| !d.is_empty()).map(|d| format!("{d}/{prog}")).collect()
    };
    candidates
        .iter()
        .find(|c| Path::new(c).is_file())
        .map(std::path::PathBuf::from)
        .ok_or_else(|| process_error("exec", format!("{prog}: executable file not found in $PATH")))
}

/// Read both streams until they close, or until `done` has been set for a grace period (a process that escaped
/// the session may hold them open).
fn read_lines(
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    output: OutputSink<'_>,
    done: &std::sync::atomic::AtomicBool,
) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    // Each stream: its reader, which it is, the partial line read so far, and whether it is still open.
    type Open = (Box<dyn Read + Send>, Stream, Vec<u8>, bool);
    let mut streams: Vec<Open> = Vec::new();
    let mut fds: Vec<std::os::fd::RawFd> = Vec::new();
    if let Some(s) = stdout {
        let _ = nix::fcntl::fcntl(&s, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
        fds.push(s.as_raw_fd());
        streams.push((Box::new(s), Stream::Stdout, Vec::new(), true));
    }
    if let Some(s) = stderr {
        let _ = nix::fcntl::fcntl(&s, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
        fds.push(s.as_raw_fd());
        streams.push((Box::new(s), Stream::Stderr, Vec::new(), true));
    }
    let mut done_since: Option<Instant> = None;
    let mut chunk = [0u8; 16 * 1024];
    while streams.iter().any(|s| s.3) {
        if done.load(std::sync::atomic::Ordering::SeqCst) {
            let since = *done_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        let borrowed: Vec<std::os::fd::BorrowedFd<'_>> =
            // SAFETY: the descriptors belong to `streams`, alive for this whole loop.
            fds.iter().map(|fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) }).collect();
        let mut polls: Vec<PollFd<'_>> = borrowed
            .iter()
            .zip(&streams)
            .map(|(fd, s)| PollFd::new(fd.as_fd(), if s.3 { PollFlags::POLLIN } else { PollFlags::empty() }))
            .collect();
        if poll(&mut polls, PollTimeout::from(100u16)).is_err() {
            continue;
        }
        for (stream, _) in streams.iter_mut().zip(&polls).filter(|(s, p)| s.3 && p.any().unwrap_or(false)) {
            loop {
                match stream.0.read(&mut chunk) {
                    Ok(0) => {
                        stream.3 = false;
                        break;
                    }
                    Ok(n) => {
                        stream.2.extend_from_slice(&chunk[..n]);
                        while let Some(i) = stream.2.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = stream.2.drain(..=i).collect();
                            output(stream.1, String::from_utf8_lossy(&line[..line.len() - 1]).as_ref());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        stream.3 = false;
                        break;
                    }
                }
            }
        }
    }
    for (_, kind, rest, _) in streams {
        if !rest.is_empty() {
            output(kind, String::from_utf8_lossy(&rest).as_ref());
        }
    }
}

/// Kill every process left in the step's session (and its process group) and reap those that came back to rbuild.
fn kill_session(session: i32) {
    let _ = kill(Pid::from_raw(-session), Signal::SIGKILL);
    let me = std::process::id() as i32;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left: Vec<(i32, i32)> =
            processes().into_iter().filter(|(_, _, sid)| *sid == session).map(|(p, pp, _)| (p, pp)).collect();
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        for (pid, ppid) in left {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            if ppid == me {
                let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every process: (pid, parent pid, session id), from /proc.
fn processes() -> Vec<(i32, i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command name (which may hold spaces and parentheses): state ppid pgrp session ...
            let rest = &stat[stat.rfind(')')? + 2..];
            let mut fields = rest.split(' ');
            let _state = fields.next()?;
            let ppid = fields.next()?.parse().ok()?;
            let _pgrp = fields.next()?;
            let session = fields.next()?.parse().ok()?;
            Some((pid, ppid, session))
        })
        .collect()
}
