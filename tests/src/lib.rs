//! rbuild-tests: fixtures shared by the integration tests in `tests/tests/`: the built `rbuild` binary, the peer
//! conformance data in `../shared/conformance` (tests skip, saying so, when it is absent), and the offline test
//! images made by `vendor-test-images/` (built once, cached under `target/test-images/`, shared between tests).

pub mod build_fixture;
pub mod docker_jobs;
pub mod hostile_registry;
pub mod identity;
pub mod image_files;
pub mod image_tree;
pub mod raw_tar;
pub mod registry_fixture;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".."))
}

/// The cargo target directory of the running test (`target/` or `$CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("target"),
    }
}

/// The `rbuild` binary under test: `$RBUILD_BIN`, else the one cargo built beside this test executable.
pub fn rbuild_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RBUILD_BIN") {
        return PathBuf::from(p);
    }
    // Test executables live in target/<profile>/deps/; binaries in target/<profile>/.
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("test executable is in target/<profile>/deps");
    let bin = profile_dir.join("rbuild");
    assert!(
        bin.is_file(),
        "{} does not exist: build it first (`cargo build -p rbuild`, which scripts/test does) or set RBUILD_BIN",
        bin.display()
    );
    bin
}

/// Whether the ELF file at `path` is statically linked (no program interpreter: static or static-pie).
pub fn is_static_elf(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else { return false };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap_or_default()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        // PT_INTERP (3) names the dynamic loader.
        bytes.get(o..o + 4).is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap_or_default()) != 3)
    })
}

/// A statically linked rbuild to run where no libraries are (an empty root, a busybox container): `$RBUILD_STATIC_BIN`,
/// else the binary under test when it is static (scripts/test builds it so), else `dist/rbuild` (scripts/dist).
pub fn static_rbuild_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RBUILD_STATIC_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let built = exe.parent()?.parent()?.join("rbuild");
    if is_static_elf(&built) {
        return Some(built);
    }
    let dist = workspace_root().join("dist/rbuild");
    is_static_elf(&dist).then_some(dist)
}

/// A `Command` for the rbuild binary.
pub fn rbuild() -> Command {
    let mut c = Command::new(rbuild_bin());
    // Tests reach nothing beyond loopback; registry tests turn this off for their local registry.
    c.env("RBUILD_OFFLINE", "1");
    c
}

/// Run rbuild with `args`, feeding `stdin`, and return what it printed.
pub fn run_rbuild(args: &[&str], stdin: Option<&[u8]>, cwd: Option<&Path>) -> Output {
    let mut cmd = rbuild();
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().expect("rbuild starts");
    if let (Some(mut pipe), Some(data)) = (child.stdin.take(), stdin) {
        pipe.write_all(data).expect("write stdin");
    }
    child.wait_with_output().expect("rbuild finishes")
}

/// Peer conformance data (`../shared/conformance`), or `None` after printing why the caller skips.
pub fn conformance_dir(test: &str) -> Option<PathBuf> {
    let dir = workspace_root().join("../shared/conformance");
    if dir.is_dir() {
        Some(dir)
    } else {
        // Written to the stderr handle directly: libtest captures `eprintln!`, and a skip must be visible.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: {} is absent (it is present in the project's CI)",
            dir.display()
        );
        None
    }
}

/// A fresh temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("rbuild-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Write `content` to `rel` inside the directory, creating parents.
    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&p, content).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The directory holding the cached test images (`target/test-images`).
pub fn test_images_dir() -> PathBuf {
    target_dir().join("test-images")
}

/// The OCI layout of test image `name` (`busybox` or `debian`), built by `vendor-test-images/make-<name>.sh` on
/// first use and cached; concurrent callers (threads or processes) wait for one builder.
/// An image made by an older version of its script is made again.
pub fn test_image(name: &str) -> PathBuf {
    let dir = test_images_dir();
    std::fs::create_dir_all(&dir).expect("create test image dir");
    let out = dir.join(name);
    let made_from = image_script_digest(name);
    let stamp = dir.join(format!(".{name}.made-from"));
    let current =
        || out.join("index.json").is_file() && std::fs::read_to_string(&stamp).ok() == Some(made_from.clone());
    if current() {
        return out;
    }
    let lock = File::create(dir.join(format!(".{name}.lock"))).expect("create lock file");
    lock.lock().expect("lock test image");
    if !current() {
        make_test_image(name, &out);
        std::fs::write(&stamp, &made_from).expect("write test image stamp");
    }
    out
}

/// A digest of what makes test image `name`: its script, the shared library and the files the scripts install.
fn image_script_digest(name: &str) -> String {
    use sha2::Digest;
    let base = workspace_root().join("vendor-test-images");
    let mut files = vec![base.join(format!("make-{name}.sh"))];
    // The shared scripts, and the files the image's family installs (`busybox-multi` is a busybox).
    let family = name.split('-').next().unwrap_or(name);
    for dir in [base.join("lib"), base.join(format!("{family}-etc"))] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut extra: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            extra.sort();
            files.extend(extra);
        }
    }
    let mut h = sha2::Sha256::new();
    for f in files {
        h.update(f.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
        h.update(std::fs::read(&f).unwrap_or_default());
    }
    hex::encode(h.finalize())
}

/// Run `vendor-test-images/make-<name>.sh OUT` and fail the test with its output when it fails.
pub fn make_test_image(name: &str, out: &Path) -> String {
    let script = workspace_root().join(format!("vendor-test-images/make-{name}.sh"));
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(out);
    if std::env::var_os("DEB_CACHE").is_none() {
        // Downloaded packages are shared by every build of the images.
        cmd.env("DEB_CACHE", test_images_dir().join("debs"));
    }
    run_script(&mut cmd, &script)
}

/// Run a setup script, failing the test with its output when it fails; returns its standard output.
fn run_script(cmd: &mut Command, script: &Path) -> String {
    let output = cmd.output().unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The name of the unprivileged user tests run rootless work as when the suite runs as root (created by
/// `scripts/install-test-deps.sh`).
pub const TEST_USER: &str = "rbuild-test";

/// Give `path` (recursively) to the test user and its group, as a rootless user's own files would be.
pub fn give_to_test_user(path: &Path) {
    let status = Command::new("chown").arg("-R").arg(format!("{TEST_USER}:")).arg(path).status().expect("run chown");
    assert!(status.success(), "chown {}", path.display());
}

/// Whether the tests run as root.
pub fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.trim_ascii() == b"0").unwrap_or(false)
}

/// The manifest digest an OCI layout's index.json names first.
pub fn layout_manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("read index.json"))
            .expect("index.json is JSON");
    index["manifests"][0]["digest"].as_str().expect("index.json names a manifest").to_string()
}

/// Read a blob of an OCI layout by digest.
pub fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    std::fs::read(layout.join("blobs/sha256").join(hex)).expect("read blob")
}

/// A required external tool: its path, or a failure telling how to install it.
pub fn require_tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not installed: run scripts/install-test-deps.sh (scripts/test runs it)");
}

/// A private Docker engine (Debian's `docker.io`) for checking rbuild's output with a real engine: its own
/// data root, exec root, pid file and socket, no bridge and no iptables. Needs root. Stopped when dropped.
#[derive(Debug)]
pub struct PrivateDockerd {
    dir: TempDir,
    child: std::process::Child,
}

impl PrivateDockerd {
    /// Start the engine and wait until it answers (up to 60 s).
    pub fn start() -> PrivateDockerd {
        PrivateDockerd::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start the engine, or say why it did not answer within 60 s (its log's tail).
    pub fn try_start() -> Result<PrivateDockerd, String> {
        let dockerd = require_tool("dockerd");
        let dir = TempDir::new("dockerd");
        let p = dir.path().to_path_buf();
        let p = p.as_path();
        let log = File::create(p.join("dockerd.log")).map_err(|e| format!("create dockerd log: {e}"))?;
        let child = Command::new(dockerd)
            .arg("--data-root")
            .arg(p.join("data"))
            .arg("--exec-root")
            .arg(p.join("exec"))
            .arg("--pidfile")
            .arg(p.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", p.join("docker.sock").display()))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start dockerd: {e}"))?;
        let mut engine = PrivateDockerd { dir, child };
        for _ in 0..120 {
            if engine.docker(&["version"]).status.success() {
                return Ok(engine);
            }
            if let Ok(Some(status)) = engine.child.try_wait() {
                let log = std::fs::read_to_string(p.join("dockerd.log")).unwrap_or_default();
                return Err(format!("dockerd exited ({status}): {}", tail_lines(&log, 15)));
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        let log = std::fs::read_to_string(p.join("dockerd.log")).unwrap_or_default();
        Err(format!("dockerd did not answer in 60 s: {}", tail_lines(&log, 15)))
    }

    /// The engine's address for DOCKER_HOST.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    /// Run the package's own client (`/usr/bin/docker`; another `docker` may come first on PATH).
    pub fn docker(&self, args: &[&str]) -> Output {
        let sock = format!("unix://{}", self.dir.path().join("docker.sock").display());
        Command::new("/usr/bin/docker").arg("-H").arg(sock).args(args).output().expect("run docker")
    }

    /// Load the OCI layout `layout` into the engine as `name` (`busybox:latest`), through a docker archive.
    pub fn load_layout(&self, layout: &Path, name: &str) {
        let archive = self.dir.path().join(format!("{}.tar", name.replace([':', '/'], "-")));
        let copied = Command::new(require_tool("skopeo"))
            .args(["copy", "-q"])
            .arg(format!("oci:{}", layout.display()))
            .arg(format!("docker-archive:{}:{name}", archive.display()))
            .output()
            .unwrap();
        assert!(copied.status.success(), "skopeo: {}", String::from_utf8_lossy(&copied.stderr));
        let loaded = self.docker(&["load", "-i", archive.to_str().unwrap()]);
        assert!(loaded.status.success(), "docker load: {}", String::from_utf8_lossy(&loaded.stderr));
        let _ = std::fs::remove_file(&archive);
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        // The engine's mounts live under the data root; make sure none outlive it.
        let data = self.dir.path().join("data");
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("grep -o ' {}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l", data.display()))
            .status();
    }
}

/// The last `n` lines of `text`.
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A flat apt repository (`vendor-test-images/make-apt-repo.sh`) holding `packages` and what they depend on, made
/// on first use and cached under `target/test-images/apt-repo` until the script or the package list changes.
pub fn test_apt_repo(packages: &[&str]) -> PathBuf {
    use sha2::Digest;
    let dir = test_images_dir();
    std::fs::create_dir_all(&dir).expect("create test image dir");
    let out = dir.join("apt-repo");
    let script = workspace_root().join("vendor-test-images/make-apt-repo.sh");
    let mut h = sha2::Sha256::new();
    h.update(std::fs::read(&script).expect("read make-apt-repo.sh"));
    h.update(packages.join(" "));
    let made_from = hex::encode(h.finalize());
    let stamp = dir.join(".apt-repo.made-from");
    let current = || out.join("Packages").is_file() && std::fs::read_to_string(&stamp).ok() == Some(made_from.clone());
    if current() {
        return out;
    }
    let lock = File::create(dir.join(".apt-repo.lock")).expect("create lock file");
    lock.lock().expect("lock apt repo");
    if !current() {
        run_script(Command::new("bash").arg(&script).arg(&out).args(packages), &script);
        std::fs::write(&stamp, &made_from).expect("write apt repo stamp");
    }
    out
}

/// Python's file server, except that files under `no-last-modified/` are served without a `Last-Modified`
/// header (as many servers serve generated files); with a second argument, each request's method and path are
/// appended to that file.
const FILE_SERVER: &str = r#"
import http.server, sys
LOG = sys.argv[2] if len(sys.argv) > 2 else None
class Handler(http.server.SimpleHTTPRequestHandler):
    def send_header(self, key, value):
        if key == "Last-Modified" and self.path.startswith("/no-last-modified/"):
            return
        super().send_header(key, value)
    def log_message(self, *args):
        if LOG:
            with open(LOG, "a") as log:
                log.write(self.command + " " + self.path + "\n")
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"#;

/// A static file server on 127.0.0.1 (python's http.server; files under `no-last-modified/` are served without
/// `Last-Modified`), stopped on drop.
#[derive(Debug)]
pub struct FileServer {
    child: std::process::Child,
    pub port: u16,
}

impl FileServer {
    pub fn start(dir: &std::path::Path) -> FileServer {
        Self::serve(dir, None)
    }

    /// [`Self::start`], appending each request's method and path (`GET /foo`) to `log`, a line each.
    pub fn start_logging(dir: &std::path::Path, log: &std::path::Path) -> FileServer {
        Self::serve(dir, Some(log))
    }

    fn serve(dir: &std::path::Path, log: Option<&std::path::Path>) -> FileServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut args = vec!["-c".to_string(), FILE_SERVER.to_string(), port.to_string()];
        args.extend(log.map(|l| l.display().to_string()));
        let child = Command::new("python3")
            .args(&args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Up to 30 s: a loaded CI machine starts python slowly (5 s was once too short).
        let up = (0..600).any(|_| {
            let ok = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if !ok {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            ok
        });
        assert!(up, "the file server on 127.0.0.1:{port} did not start within 30 s");
        FileServer { child, port }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
