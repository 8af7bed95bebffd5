//! How a foreign platform's binaries run here, decided once per platform before any step runs: natively; with an
//! emulator registered in each run's own binfmt_misc (Linux 6.7+, a static `qemu-<arch>-static` found through
//! `RBUILD_QEMU_DIR` or PATH); or through a registration the host (or an outer user namespace) already has with
//! flag `F` (without it the kernel would look for the emulator inside the image). `RBUILD_BINFMT=host-only` skips
//! the first, as an old kernel would. When none works, the error names the architecture, what was tried, and the
//! remedies. The ELF header patterns are facts of the ELF format (class, byte order, machine number).

use std::path::{Path, PathBuf};

use rbuild_runtime::Emulator;

use crate::platform::Platform;

/// What a platform's RUN steps need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emulation {
    Native,
    /// Registered in each run's own binfmt_misc.
    Sandboxed(Emulator),
    /// A registration in force here already (named), inherited by the run.
    Host(String),
}

/// No way to run a platform's binaries here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot run {platform} binaries on this {host} host: {}\nremedies: {}",
    tried.join("; "),
    remedies.join("; ")
)]
pub struct Unsupported {
    pub platform: String,
    pub host: String,
    pub tried: Vec<String>,
    pub remedies: Vec<String>,
}

/// An architecture's ELF identification: qemu's name for it, then the ELF class (1: 32-bit, 2: 64-bit), byte
/// order (1: little, 2: big endian) and machine number.
struct ElfArch {
    qemu: &'static str,
    class: u8,
    data: u8,
    machine: u16,
}

fn elf_arch(p: &Platform) -> Option<ElfArch> {
    let (qemu, class, data, machine) = match p.architecture.as_str() {
        "amd64" => ("x86_64", 2, 1, 62),
        "386" => ("i386", 1, 1, 3),
        "arm64" => ("aarch64", 2, 1, 183),
        "arm" => ("arm", 1, 1, 40),
        "ppc64le" => ("ppc64le", 2, 1, 21),
        "s390x" => ("s390x", 2, 2, 22),
        "riscv64" => ("riscv64", 2, 1, 243),
        "mips64le" => ("mips64el", 2, 1, 8),
        "loong64" => ("loongarch64", 2, 1, 258),
        _ => return None,
    };
    Some(ElfArch { qemu, class, data, machine })
}

/// The 20 bytes that start an executable or shared object of `arch`, and the mask to compare them under: the
/// ABI byte is ignored, and the type matches both ET_EXEC (2) and ET_DYN (3).
fn magic_and_mask(arch: &ElfArch) -> (Vec<u8>, Vec<u8>) {
    let [m0, m1] = if arch.data == 1 { arch.machine.to_le_bytes() } else { arch.machine.to_be_bytes() };
    let (t0, t1, tm0, tm1) = if arch.data == 1 { (2, 0, 0xfe, 0xff) } else { (0, 2, 0xff, 0xfe) };
    let magic = vec![0x7f, b'E', b'L', b'F', arch.class, arch.data, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, t0, t1, m0, m1];
    let mut mask = vec![0xff; 20];
    mask[7] = 0;
    mask[16] = tm0;
    mask[17] = tm1;
    (magic, mask)
}

/// Where emulators are looked for: `RBUILD_QEMU_DIR` first, then PATH.
fn candidates(qemu: &str) -> Vec<PathBuf> {
    let names = [format!("qemu-{qemu}-static"), format!("qemu-{qemu}")];
    let mut dirs: Vec<PathBuf> = std::env::var_os("RBUILD_QEMU_DIR").into_iter().map(PathBuf::from).collect();
    dirs.extend(std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default());
    dirs.iter().flat_map(|d| names.iter().map(move |n| d.join(n))).collect()
}

/// Whether an ELF file is statically linked (no program interpreter), by its program headers (read alone: an
/// emulator is megabytes, and this is asked before every build that runs a foreign step).
pub fn is_static_elf(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an ELF file");
    let mut file = std::fs::File::open(path)?;
    let mut header = [0u8; 64];
    let n = file.read(&mut header)?;
    if n < 52 || &header[..4] != b"\x7fELF" {
        return Err(bad());
    }
    let (wide, little) = (header[4] == 2, header[5] == 1);
    let int = |bytes: &[u8], at: usize, n: usize| -> Option<u64> {
        let b = bytes.get(at..at + n)?;
        Some(b.iter().enumerate().fold(0u64, |v, (i, x)| {
            let shift = if little { 8 * i } else { 8 * (n - 1 - i) };
            v | (u64::from(*x) << shift)
        }))
    };
    let (phoff, phentsize, phnum) = if wide {
        (int(&header, 32, 8), int(&header, 54, 2), int(&header, 56, 2))
    } else {
        (int(&header, 28, 4), int(&header, 42, 2), int(&header, 44, 2))
    };
    let (phoff, phentsize, phnum) = (phoff.ok_or_else(bad)?, phentsize.ok_or_else(bad)?, phnum.ok_or_else(bad)?);
    let mut table = vec![0u8; usize::try_from(phentsize * phnum).map_err(|_| bad())?];
    file.seek(SeekFrom::Start(phoff))?;
    file.read_exact(&mut table)?;
    for i in 0..phnum {
        let at = usize::try_from(i * phentsize).map_err(|_| bad())?;
        // PT_INTERP (3): a dynamic loader is named.
        if int(&table, at, 4).ok_or_else(bad)? == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A handler registered in a binfmt_misc this process sees, read from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Registration {
    name: String,
    enabled: bool,
    flags: String,
    magic: Vec<u8>,
    mask: Vec<u8>,
    offset: usize,
}

fn parse_registration(name: &str, text: &str) -> Option<Registration> {
    let hex = |s: &str| -> Option<Vec<u8>> {
        (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
    };
    let mut r = Registration {
        name: name.to_string(),
        enabled: false,
        flags: String::new(),
        magic: Vec::new(),
        mask: Vec::new(),
        offset: 0,
    };
    for line in text.lines() {
        match line.split_once(' ').or_else(|| line.split_once(':')).map(|(k, v)| (k, v.trim())) {
            Some(("flags:", v)) | Some(("flags", v)) => r.flags = v.to_string(),
            Some(("magic", v)) => r.magic = hex(v)?,
            Some(("mask", v)) => r.mask = hex(v)?,
            Some(("offset", v)) => r.offset = v.parse().ok()?,
            _ if line.trim() == "enabled" => r.enabled = true,
            _ => {}
        }
    }
    (!r.magic.is_empty()).then_some(r)
}

impl Registration {
    /// Whether this handler takes executables whose header starts with `magic` (matched under its own mask).
    fn takes(&self, magic: &[u8]) -> bool {
        self.offset == 0
            && self.magic.len() <= magic.len()
            && self.magic.iter().enumerate().all(|(i, m)| {
                let mask = self.mask.get(i).copied().unwrap_or(0xff);
                magic[i] & mask == m & mask
            })
    }
}

/// The handlers of every binfmt_misc mounted in this process's view, and whether the subsystem is enabled there.
fn visible_registrations() -> Vec<Registration> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mount_point = pre.split(' ').nth(4)?;
            (post.split_whitespace().next() == Some("binfmt_misc")).then(|| PathBuf::from(mount_point))
        })
        .collect();
    dirs.dedup();
    let mut out = Vec::new();
    for dir in dirs {
        if std::fs::read_to_string(dir.join("status")).is_ok_and(|s| s.trim() != "enabled") {
            continue;
        }
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name == "register" || name == "status" {
                continue;
            }
            if let Some(r) = std::fs::read_to_string(entry.path()).ok().and_then(|t| parse_registration(&name, &t)) {
                out.push(r);
            }
        }
    }
    out
}

/// Whether this kernel gives each user namespace a binfmt_misc of its own (Linux 6.7).
fn kernel_has_sandboxed_binfmt() -> (bool, String) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let mut nums = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    ((major, minor) >= (6, 7), release)
}

/// Decide how `platform`'s binaries run here.
pub fn plan(platform: &Platform) -> Result<Emulation, Unsupported> {
    if platform.is_native() {
        return Ok(Emulation::Native);
    }
    let host = Platform::host().to_string();
    let unsupported = |tried: Vec<String>, remedies: Vec<String>| Unsupported {
        platform: platform.to_string(),
        host: host.clone(),
        tried,
        remedies,
    };
    if platform.os != "linux" {
        return Err(unsupported(
            vec![format!("rbuild runs Linux binaries only, not {}'s", platform.os)],
            vec!["a stage for this platform may hold no RUN step (FROM scratch, COPY, ...)".into()],
        ));
    }
    let Some(arch) = elf_arch(platform) else {
        return Err(unsupported(
            vec![format!("rbuild knows no emulator for the architecture {:?}", platform.architecture)],
            vec!["build on a host of that architecture".into()],
        ));
    };
    let (magic, mask) = magic_and_mask(&arch);
    let mut tried = Vec::new();
    let host_only = std::env::var("RBUILD_BINFMT").is_ok_and(|v| v == "host-only");
    if host_only {
        tried.push("a binfmt_misc of the build's own: skipped (RBUILD_BINFMT=host-only)".to_string());
    } else {
        let (sandboxed, release) = kernel_has_sandboxed_binfmt();
        let found = candidates(arch.qemu).into_iter().find(|c| c.is_file());
        match (&found, sandboxed) {
            (Some(path), true) => match is_static_elf(path) {
                Ok(true) => {
                    let emulator =
                        Emulator { name: format!("qemu-{}", arch.qemu), interpreter: path.clone(), magic, mask };
                    return Ok(Emulation::Sandboxed(emulator));
                }
                Ok(false) => tried.push(format!(
                    "{} is dynamically linked (an emulator must be static: it runs inside the image)",
                    path.display()
                )),
                Err(e) => tried.push(format!("{}: {e}", path.display())),
            },
            (None, _) => {
                tried.push(format!("no qemu-{q}-static or qemu-{q} in RBUILD_QEMU_DIR or PATH", q = arch.qemu))
            }
            (Some(_), false) => tried
                .push(format!("a binfmt_misc of the build's own needs Linux 6.7 or later (this kernel is {release})")),
        }
    }
    let registrations = visible_registrations();
    let matching: Vec<&Registration> = registrations.iter().filter(|r| r.enabled && r.takes(&magic)).collect();
    if let Some(r) = matching.iter().find(|r| r.flags.contains('F')) {
        return Ok(Emulation::Host(r.name.clone()));
    }
    tried.push(match matching.first() {
        Some(r) => format!(
            "the host's registration {} lacks flag F (its emulator would be looked for inside the image)",
            r.name
        ),
        None => "no registration for it in the host's binfmt_misc".to_string(),
    });
    Err(unsupported(
        tried,
        vec![
            format!(
                "install a static qemu-{}-static (Debian and Ubuntu: the qemu-user-static package) or point \
                 RBUILD_QEMU_DIR at one, on Linux 6.7 or later",
                arch.qemu
            ),
            "or register it on the host with flag F (as root: the qemu-user-static package does; or `docker run \
             --privileged tonistiigi/binfmt --install all`)"
                .to_string(),
        ],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_matches_what_debian_registers() {
        let (magic, mask) = magic_and_mask(&elf_arch(&Platform::parse("linux/arm64").unwrap()).unwrap());
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(&magic), "7f454c460201010000000000000000000200b700");
        assert_eq!(hex(&mask), "ffffffffffffff00fffffffffffffffffeffffff");
        let (magic, mask) = magic_and_mask(&elf_arch(&Platform::parse("linux/s390x").unwrap()).unwrap());
        assert_eq!(hex(&magic), "7f454c4602020100000000000000000000020016");
        assert_eq!(&hex(&mask)[32..], "fffeffff");
    }

    #[test]
    fn a_registration_file_is_read_and_matched() {
        let text = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\n\
                    magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
        let r = parse_registration("qemu-aarch64", text).unwrap();
        assert!(r.enabled && r.flags.contains('F'));
        let arm64 = magic_and_mask(&elf_arch(&Platform::parse("linux/arm64").unwrap()).unwrap()).0;
        let s390x = magic_and_mask(&elf_arch(&Platform::parse("linux/s390x").unwrap()).unwrap()).0;
        assert!(r.takes(&arm64));
        assert!(!r.takes(&s390x));
    }

    #[test]
    fn static_and_dynamic_programs_are_told_apart() {
        // Debian's shell is dynamically linked; its static emulators (when installed) are not.
        assert!(!is_static_elf(Path::new("/bin/sh")).unwrap());
        let qemu = Path::new("/usr/bin/qemu-aarch64-static");
        if qemu.exists() {
            assert!(is_static_elf(qemu).unwrap());
        }
        assert!(is_static_elf(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn native_platforms_need_nothing() {
        assert_eq!(plan(&Platform::host()), Ok(Emulation::Native));
    }
}
