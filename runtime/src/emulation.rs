//! Foreign-architecture runs: a binfmt_misc instance of the run's own user namespace (Linux 6.7 and later allow
//! one per user namespace) with the emulator registered for the image's architecture, flag `F` (the kernel opens
//! the interpreter at registration, so the image need not contain it), `P` (argv[0] preserved) and `O` (the
//! binary passed open, so execute-only files run). The instance is mounted at `/proc/sys/fs/binfmt_misc` inside
//! the run's root, where a real system has it, and lives as long as the run's mount namespace: it vanishes with
//! the run, and nothing is ever written to the host's registrations.
//!
//! Real root (no user namespace) gets one here, mapping every id to itself (written by a helper process that
//! stays outside it), entered after the root filesystem is set up, so the overlay is still root's own.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

use crate::error::SetupStage;
use crate::spec::{Emulator, Failure, UsernsMode};

/// Where the instance is mounted inside the run's root.
const MOUNT_POINT: &str = "/proc/sys/fs/binfmt_misc";

/// The emulator opened before the root switch (its host path is out of reach after it).
pub(crate) struct OpenEmulator {
    file: File,
}

/// Open the emulator's binary, close-on-exec, while the host's files are still in view.
pub(crate) fn open(emulator: &Emulator) -> Result<OpenEmulator, Failure> {
    let file = File::open(&emulator.interpreter).map_err(|e| Failure {
        stage: SetupStage::Emulation,
        step: "open emulator".into(),
        message: format!("{}: {e}", emulator.interpreter.display()),
        hint: Some("set RBUILD_QEMU_DIR to a directory holding a static qemu-<arch>-static".into()),
    })?;
    Ok(OpenEmulator { file })
}

/// In the run's pid 1, after the root switch: (as real root, enter a user namespace of the run's own, then a
/// mount namespace it owns,) mount binfmt_misc and register the emulator.
pub(crate) fn enable(emulator: &Emulator, open: &OpenEmulator, userns: UsernsMode) -> Result<(), Failure> {
    if userns == UsernsMode::Off {
        enter_identity_namespace()?;
        unshare(CloneFlags::CLONE_NEWNS)
            .map_err(|e| Failure::new(SetupStage::Emulation, "create mount namespace for emulation", e))?;
    }
    mount(
        Some("binfmt_misc"),
        MOUNT_POINT,
        Some("binfmt_misc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| Failure {
        stage: SetupStage::Emulation,
        step: "mount binfmt_misc".into(),
        message: e.to_string(),
        hint: Some(
            "a binfmt_misc of a user namespace's own needs Linux 6.7 or later; on an older kernel register the \
                 emulator on the host with flag F (e.g. Debian's qemu-user-static package) and set \
                 RBUILD_BINFMT=host-only"
                .into(),
        ),
    })?;
    let line = registration(emulator, &format!("/proc/self/fd/{}", open.file.as_raw_fd()));
    std::fs::OpenOptions::new()
        .write(true)
        .open(Path::new(MOUNT_POINT).join("register"))
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| {
            Failure::new(SetupStage::Emulation, "register emulator", format!("{}: {e}", emulator.interpreter.display()))
        })
}

/// The `register` line: `:name:M::magic:mask:interpreter:flags`, bytes written as `\xHH`.
pub(crate) fn registration(emulator: &Emulator, interpreter: &str) -> String {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("\\x{b:02x}")).collect::<String>();
    format!(":{}:M::{}:{}:{interpreter}:POF", emulator.name, hex(&emulator.magic), hex(&emulator.mask))
}

/// Enter a new user namespace mapping every id to itself: a helper forked first (still real root outside it)
/// writes the maps once this process has unshared, which only a process of the parent namespace may do.
fn enter_identity_namespace() -> Result<(), Failure> {
    let (go_read, go_write) =
        nix::unistd::pipe().map_err(|e| Failure::new(SetupStage::Emulation, "create user namespace", e))?;
    // SAFETY: the sandbox's pid 1 is single-threaded (forked from the single-threaded init).
    match unsafe { fork() }.map_err(|e| Failure::new(SetupStage::Emulation, "create user namespace", e))? {
        ForkResult::Child => {
            drop(go_write);
            let code = match write_identity_maps(go_read) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: _exit ends the helper without running anything of the parent's state.
            unsafe { nix::libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(go_read);
            let unshared = unshare(CloneFlags::CLONE_NEWUSER);
            let mut go = File::from(go_write);
            let _ = go.write_all(if unshared.is_ok() { b"y" } else { b"n" });
            drop(go);
            let helper = loop {
                match waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            };
            unshared.map_err(|e| Failure::new(SetupStage::Emulation, "create user namespace for emulation", e))?;
            match helper {
                Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                other => Err(Failure::new(
                    SetupStage::Emulation,
                    "map ids for emulation",
                    format!("the helper ended with {other:?}"),
                )),
            }
        }
    }
}

/// In the helper: wait for the parent's word, then map every uid and gid of its new namespace to itself.
fn write_identity_maps(go: OwnedFd) -> std::io::Result<()> {
    let mut word = [0u8; 1];
    File::from(go).read_exact(&mut word)?;
    if word[0] != b'y' {
        return Err(std::io::Error::other("the parent did not unshare"));
    }
    let parent = nix::unistd::getppid();
    std::fs::write(format!("/proc/{parent}/uid_map"), "0 0 4294967295\n")?;
    std::fs::write(format!("/proc/{parent}/gid_map"), "0 0 4294967295\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::registration;
    use crate::spec::Emulator;

    #[test]
    fn the_register_line_spells_every_byte() {
        let e = Emulator {
            name: "qemu-aarch64".into(),
            interpreter: "/usr/bin/qemu-aarch64-static".into(),
            magic: vec![0x7f, b'E', 0],
            mask: vec![0xff, 0xff, 0xfe],
        };
        assert_eq!(
            registration(&e, "/proc/self/fd/7"),
            ":qemu-aarch64:M::\\x7f\\x45\\x00:\\xff\\xff\\xfe:/proc/self/fd/7:POF"
        );
    }
}
