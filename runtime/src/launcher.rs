//! rbuild's side of a run: start the sandbox init (the rbuild binary re-executed as `__sandbox-init`), hand it
//! the spec on fd 3, answer its request for a subordinate-id mapping, read its messages on fd 4, collect the
//! step's output, and take the mount points it had to create back out of the upper directory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::unistd::Pid;

use crate::error::Error;
use crate::init::{SPEC_FD, STATUS_FD};
use crate::spec::{ExitStatus, InitMessage, InitRequest, Rootfs, RunSpec, UsernsMode};

/// Pids of the sandbox inits running now, so a signal handler can stop them (async-signal-safe: atomics only).
static RUNNING: [std::sync::atomic::AtomicI32; 64] = [const { std::sync::atomic::AtomicI32::new(0) }; 64];

fn register(pid: i32) -> Option<usize> {
    RUNNING.iter().position(|slot| {
        slot.compare_exchange(0, pid, std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst).is_ok()
    })
}

/// Kill every sandbox this process is running (their steps die with them). Safe to call from a signal
/// handler: it only reads atomics and calls kill(2). `rbuild` calls it on SIGINT and SIGTERM, then lets each
/// run clean up as after any other end.
pub fn kill_running_sandboxes() {
    for slot in &RUNNING {
        let pid = slot.load(std::sync::atomic::Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill(2) is async-signal-safe and has no memory-safety preconditions.
            unsafe { nix::libc::kill(pid, nix::libc::SIGKILL) };
        }
    }
}

/// Which of the step's output streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Receives the step's output one line at a time (with its newline, if it had one), as it is written.
pub type LineSink = std::sync::Arc<dyn Fn(OutputStream, &[u8]) + Send + Sync>;

/// Where the step's output goes.
#[derive(Clone)]
pub enum OutputMode {
    /// The step writes to rbuild's own stdout and stderr.
    Inherit,
    /// The step's stdout and stderr are captured and returned.
    Capture,
    /// Each line goes to the sink as it arrives; the output is also returned, as with `Capture`.
    Lines(LineSink),
}

impl std::fmt::Debug for OutputMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputMode::Inherit => "Inherit",
            OutputMode::Capture => "Capture",
            OutputMode::Lines(_) => "Lines",
        })
    }
}

/// How a run went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub status: ExitStatus,
    /// Captured output (empty with `OutputMode::Inherit`).
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Starts sandboxes with a given init binary (the rbuild executable).
#[derive(Debug, Clone)]
pub struct Runtime {
    init_binary: PathBuf,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Channel(format!("pipe: {e}")))
}

impl Runtime {
    /// A runtime whose sandboxes run `init_binary __sandbox-init` (the binary must call
    /// [`crate::init_main`] for that argument before starting any thread).
    pub fn new(init_binary: impl Into<PathBuf>) -> Runtime {
        Runtime { init_binary: init_binary.into() }
    }

    /// A runtime using the running executable as its init.
    pub fn current() -> Result<Runtime, Error> {
        let exe =
            std::env::current_exe().map_err(|e| Error::Channel(format!("cannot find the rbuild executable: {e}")))?;
        Ok(Runtime::new(exe))
    }

    /// Run one step; returns when it has ended and the sandbox is gone.
    pub fn run(&self, spec: &RunSpec, output: OutputMode) -> Result<RunOutcome, Error> {
        let outcome = self.start(&InitRequest::Run(Box::new(spec.clone())), spec.userns, output)?;
        remove_mountpoints(spec, &outcome.1);
        Ok(outcome.0)
    }

    /// Remove a tree whose files may belong to subordinate ids, from inside the user namespace.
    pub fn remove_tree(&self, path: &std::path::Path, userns: UsernsMode) -> Result<(), Error> {
        if userns == UsernsMode::Off || !path.exists() {
            return std::fs::remove_dir_all(path).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(Error::Channel(format!("remove {}: {e}", path.display()))),
            });
        }
        let req = InitRequest::RemoveTree { path: path.to_path_buf(), userns };
        let (outcome, _) = self.start(&req, userns, OutputMode::Capture)?;
        match outcome.status {
            ExitStatus::Exited(0) => Ok(()),
            other => Err(Error::Channel(format!("removing {} ended with {other:?}", path.display()))),
        }
    }

    /// Run a helper command as root of the user namespace `userns` (its stderr goes to rbuild's).
    pub fn exec_in_userns(&self, argv: &[String], userns: UsernsMode) -> Result<ExitStatus, Error> {
        let req = InitRequest::Exec { argv: argv.to_vec(), userns };
        Ok(self.start(&req, userns, OutputMode::Inherit)?.0.status)
    }

    /// Try what a run with `userns` needs, in the empty scratch directory `dir` (the caller removes it).
    pub fn probe(&self, dir: &std::path::Path, userns: UsernsMode) -> Result<crate::probe::ProbeReport, Error> {
        let req = InitRequest::Probe { dir: dir.to_path_buf(), userns };
        let (outcome, _, probed) = self.start_with(&req, userns, OutputMode::Capture)?;
        probed.ok_or_else(|| {
            Error::Channel(format!(
                "the probe reported nothing ({:?}): {}",
                outcome.status,
                String::from_utf8_lossy(&outcome.stderr).trim()
            ))
        })
    }

    fn start(
        &self,
        req: &InitRequest,
        userns: UsernsMode,
        output: OutputMode,
    ) -> Result<(RunOutcome, Vec<String>), Error> {
        let (outcome, mountpoints, _) = self.start_with(req, userns, output)?;
        Ok((outcome, mountpoints))
    }

    fn start_with(
        &self,
        req: &InitRequest,
        userns: UsernsMode,
        output: OutputMode,
    ) -> Result<(RunOutcome, Vec<String>, Option<crate::probe::ProbeReport>), Error> {
        let (spec_r, spec_w) = pipe()?;
        let (status_r, status_w) = pipe()?;
        let mut cmd = Command::new(&self.init_binary);
        cmd.arg("__sandbox-init").stdin(Stdio::null());
        if !matches!(output, OutputMode::Inherit) {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let (spec_raw, status_raw) = (spec_r.as_raw_fd(), status_w.as_raw_fd());
        // SAFETY: between fork and exec only dup2 and fcntl are called, both async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                use nix::libc;
                for (from, to) in [(spec_raw, SPEC_FD), (status_raw, STATUS_FD)] {
                    if libc::dup2(from, to) < 0 || libc::fcntl(to, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| Error::Spawn { path: self.init_binary.clone(), source })?;
        drop(spec_r);
        drop(status_w);
        let slot = register(child.id() as i32);
        let sink = match &output {
            OutputMode::Lines(s) => Some(s.clone()),
            _ => None,
        };
        let readers = capture_threads(&mut child, sink);
        let mut spec_w = File::from(spec_w);
        let mut probed = None;
        let result = converse(req, userns, &mut spec_w, File::from(status_r), &mut probed);
        drop(spec_w);
        let waited = child.wait();
        if let Some(i) = slot {
            RUNNING[i].store(0, std::sync::atomic::Ordering::SeqCst);
        }
        let (stdout, stderr) = readers.join();
        // An init killed before it could report (SIGINT/SIGTERM to rbuild, or an outside kill) took its step
        // with it: report the signal.
        let killed = waited.ok().and_then(|w| std::os::unix::process::ExitStatusExt::signal(&w));
        let (status, mountpoints) = match (result, killed) {
            (Err(Error::Channel(_)), Some(sig)) => (ExitStatus::Signaled(sig), Vec::new()),
            (r, _) => r?,
        };
        Ok((RunOutcome { status, stdout, stderr }, mountpoints, probed))
    }
}

fn converse(
    req: &InitRequest,
    userns: UsernsMode,
    spec_w: &mut File,
    status_r: File,
    probed: &mut Option<crate::probe::ProbeReport>,
) -> Result<(ExitStatus, Vec<String>), Error> {
    {
        let mut line = serde_json::to_vec(req).map_err(|e| Error::Channel(e.to_string()))?;
        line.push(b'\n');
        spec_w.write_all(&line).map_err(|e| Error::Channel(format!("send spec: {e}")))?;
        let mut mountpoints = Vec::new();
        for msg in BufReader::new(status_r).lines() {
            let msg = msg.map_err(|e| Error::Channel(format!("read from sandbox: {e}")))?;
            let msg: InitMessage =
                serde_json::from_str(&msg).map_err(|e| Error::Channel(format!("bad message from sandbox: {e}")))?;
            match msg {
                InitMessage::NeedsMapping { pid } => {
                    let reply = match crate::userns::write_mapping(Pid::from_raw(pid), userns) {
                        Ok(()) => "mapped\n".to_string(),
                        Err(e) => format!("failed: {e}\n").replace('\n', " ") + "\n",
                    };
                    spec_w.write_all(reply.as_bytes()).map_err(|e| Error::Channel(format!("send mapping: {e}")))?;
                }
                InitMessage::Mountpoints(m) => mountpoints = m,
                InitMessage::Probed(r) => *probed = Some(r),
                InitMessage::Failed { stage, step, message, hint } => {
                    return Err(Error::Setup { stage, step, message, hint });
                }
                InitMessage::Exited(status) => return Ok((status, mountpoints)),
            }
        }
        Err(Error::Channel("the sandbox init ended without reporting a status".into()))
    }
}

struct Readers {
    out: Option<std::thread::JoinHandle<Vec<u8>>>,
    err: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Readers {
    fn join(self) -> (Vec<u8>, Vec<u8>) {
        let j = |h: Option<std::thread::JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        (j(self.out), j(self.err))
    }
}

fn capture_threads(child: &mut std::process::Child, sink: Option<LineSink>) -> Readers {
    fn reader(
        r: impl Read + Send + 'static,
        stream: OutputStream,
        sink: Option<LineSink>,
    ) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut r = BufReader::new(r);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if let Some(s) = &sink {
                            s(stream, &line);
                        }
                        all.extend_from_slice(&line);
                    }
                }
            }
            all
        })
    }
    Readers {
        out: child.stdout.take().map(|o| reader(o, OutputStream::Stdout, sink.clone())),
        err: child.stderr.take().map(|e| reader(e, OutputStream::Stderr, sink)),
    }
}

/// Take the mount points the sandbox created out of the upper directory again (deepest first), if they are
/// still what was created: an empty directory or an empty file. Their parent directories, copied up only to
/// hold them, go too when they are empty and match the lower directory's mode and owner.
fn remove_mountpoints(spec: &RunSpec, created: &[String]) {
    use std::os::unix::fs::MetadataExt;
    let (upper, lowers) = match &spec.rootfs {
        Rootfs::Overlay { upper, lowers, .. } | Rootfs::FuseOverlay { upper, lowers, .. } => (upper, lowers.as_slice()),
        Rootfs::Dir(dir) => (dir, &[][..]),
    };
    for rel in created.iter().rev() {
        let p = upper.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(&p);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(&p);
            }
            _ => {}
        }
        let mut parent = std::path::Path::new(rel).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            let in_upper = upper.join(dir);
            let lower = lowers.iter().map(|l| l.join(dir)).find(|l| l.is_dir());
            let same = match (std::fs::symlink_metadata(&in_upper), lower.map(std::fs::symlink_metadata)) {
                (Ok(u), Some(Ok(l))) => (u.mode(), u.uid(), u.gid()) == (l.mode(), l.uid(), l.gid()),
                _ => false,
            };
            let empty = std::fs::read_dir(&in_upper).map(|mut d| d.next().is_none()).unwrap_or(false);
            if !(same && empty && xattr_free(&in_upper)) || std::fs::remove_dir(&in_upper).is_err() {
                break;
            }
            parent = dir.parent();
        }
    }
}

/// Whether a copied-up directory carries no xattr that means something: overlay's own bookkeeping
/// (`overlay.origin`, `overlay.impure`) is fine; opaque or redirect markers, or any other xattr, are not.
fn xattr_free(dir: &std::path::Path) -> bool {
    let Ok(c) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str())) else { return false };
    let mut buf = vec![0u8; 4096];
    // SAFETY: the buffer is valid for its length; llistxattr writes at most that many bytes.
    let n = unsafe { nix::libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return false;
    }
    buf[..n as usize]
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .all(|name| name.ends_with(b".overlay.origin") || name.ends_with(b".overlay.impure"))
}
