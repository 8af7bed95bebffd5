//! The registry client against a real Distribution registry on 127.0.0.1: round trips checked by skopeo and
//! umoci, pushes that upload nothing twice and mount across repositories, token and Basic auth with credentials
//! from `rbuild login`, a credential helper and wrong passwords, TLS with a private CA, mirrors and offline
//! mode, and faults (a registry that restarts mid-push, one that stays down, one that corrupts blobs).

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use rbuild_tests::build_fixture::Builder;
use rbuild_tests::registry_fixture::{RegistryAuth, RegistryServer};
use rbuild_tests::{TempDir, require_tool, test_image};

/// A builder whose commands may use the network (loopback only) with an isolated HOME and docker config.
struct Client {
    b: Builder,
    home: TempDir,
}

impl Client {
    fn new() -> Client {
        Client { b: Builder::empty(false), home: TempDir::new("home") }
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("RBUILD_OFFLINE".into(), "0".into()),
            ("HOME".into(), self.home.path().display().to_string()),
            ("DOCKER_CONFIG".into(), self.home.path().join(".docker").display().to_string()),
            ("RBUILD_REGISTRY_RETRY_SECONDS".into(), "3".into()),
        ]
    }

    fn rb(&self, args: &[&str]) -> Output {
        self.rb_with(args, &[])
    }

    fn rb_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let env = self.env();
        let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        self.b.rb_env(args, &all)
    }

    /// `rbuild run` with the network allowed (remote layers are fetched).
    fn run(&self, image: &str, cmd: &[&str]) -> String {
        let mut args = vec!["run", image];
        args.extend_from_slice(cmd);
        let out = self.rb(&args);
        assert!(out.status.success(), "run {image}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.rb(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "rbuild {args:?}: {err}");
        err
    }
}

fn skopeo(args: &[&str]) -> Output {
    require_tool("skopeo");
    Command::new("skopeo").args(args).output().unwrap()
}

/// Put the busybox test image into the registry with skopeo, as REPO:latest; returns its manifest digest.
fn seed_busybox(reg: &RegistryServer, repo: &str, extra: &[&str]) -> String {
    let layout = test_image("busybox");
    let mut args = vec!["copy", "-q"];
    args.extend_from_slice(extra);
    let src = format!("oci:{}:latest", layout.display());
    let dest = format!("docker://{}/{repo}:latest", reg.host());
    args.extend_from_slice(&[&src, &dest]);
    let out = skopeo(&args);
    assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    rbuild_tests::layout_manifest_digest(&layout)
}

fn uploads(reg: &RegistryServer) -> usize {
    reg.count("POST", "/blobs/uploads/") - reg.count("POST", "mount=")
}

#[test]
fn round_trip_with_skopeo_and_umoci_and_no_second_upload() {
    let reg = RegistryServer::start(RegistryAuth::None, false);
    let c = Client::new();
    let digest = seed_busybox(&reg, "library/busybox", &["--dest-tls-verify=false"]);
    // rbuild pulls what skopeo pushed: same digest.
    let image = format!("{}/library/busybox:latest", reg.host());
    c.ok(&["pull", &image]);
    let v: serde_json::Value = serde_json::from_slice(&c.b.rb(&["inspect", &image]).stdout).unwrap();
    assert_eq!(v["Digest"], digest, "{v}");
    // A build FROM the registry image, pushed by the build itself.
    let ctx = c
        .b
        .context("app", &[("Dockerfile", &format!("FROM {image}\nRUN echo pushed > /msg\nCMD [\"cat\", \"/msg\"]\n"))]);
    let target = format!("{}/team/app:1", reg.host());
    let err = c.ok(&["build", "--progress", "plain", "-t", &target, "--push", ctx.to_str().unwrap()]);
    assert!(err.contains("pushed"), "{err}");
    let pushed_digest =
        err.lines().find(|l| l.starts_with("built ")).unwrap().split_whitespace().nth(1).unwrap().to_string();
    // skopeo reads it back into an OCI layout that umoci opens; the manifest digest is identical.
    let out_dir = TempDir::new("skopeo-out");
    let layout = out_dir.path().join("layout");
    let out = skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:app", layout.display()),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(rbuild_tests::layout_manifest_digest(&layout), pushed_digest);
    require_tool("umoci");
    let bundle = out_dir.path().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:app", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read_to_string(bundle.join("rootfs/msg")).unwrap(), "pushed\n");
    // A second push uploads no blob.
    let before = uploads(&reg);
    let err = c.ok(&["push", &target]);
    assert_eq!(uploads(&reg), before, "{err}");
    assert!(err.contains("0 blobs uploaded"), "{err}");
    // Another repository of the same registry: the blobs are mounted, not uploaded.
    let other = format!("{}/elsewhere/app:1", reg.host());
    let err = c.ok(&["push", &target, &other]);
    assert_eq!(uploads(&reg), before, "{err}");
    assert!(reg.count("POST", "mount=") >= 1 && err.contains("0 blobs uploaded"), "{err}");
    c.b.assert_clean();
    // Rootless: the unprivileged test user pulls the pushed image into its own store and runs it.
    if rbuild_tests::running_as_root() {
        let user = Builder::empty(true);
        let out = user.rb_env(&["pull", &target], &[("RBUILD_OFFLINE", "0"), ("DOCKER_CONFIG", "/nonexistent")]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(user.run(&target, &[]), "pushed\n");
        user.assert_clean();
    }
}

#[test]
fn token_and_basic_auth_login_helpers_and_wrong_passwords() {
    for auth in [
        RegistryAuth::Token { user: "alice".into(), password: "s3cret-token-pw".into() },
        RegistryAuth::Basic { user: "bob".into(), password: "s3cret-basic-pw".into() },
    ] {
        let (user, password) = match &auth {
            RegistryAuth::Token { user, password } | RegistryAuth::Basic { user, password } => {
                (user.clone(), password.clone())
            }
            RegistryAuth::None => unreachable!(),
        };
        let reg = RegistryServer::start(auth.clone(), false);
        let c = Client::new();
        c.ok(&["load", "-i", test_image("busybox").to_str().unwrap()]);
        let target = format!("{}/private/busybox:1", reg.host());
        // No credentials: a clear error.
        let out = c.rb(&["push", "busybox", &target]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(&reg.host()) && err.contains("rbuild login"), "{auth:?}: {err}");
        // A wrong password is refused at login and nothing is saved.
        let out = c.rb(&["login", "-u", &user, "-p", "wrong", &reg.host()]);
        assert!(!out.status.success(), "{auth:?}");
        assert!(
            !c.home.path().join(".docker/config.json").exists()
                || !fs::read_to_string(c.home.path().join(".docker/config.json")).unwrap().contains(&reg.host())
        );
        // The right one: login, push, pull into a fresh store.
        let login = c.rb(&["login", "-u", &user, "-p", &password, &reg.host()]);
        assert!(login.status.success(), "{auth:?}: {}", String::from_utf8_lossy(&login.stderr));
        let err = c.ok(&["push", "busybox", &target]);
        assert!(!err.contains(&password), "the password is never printed");
        let fresh = Client { b: Builder::empty(false), home: TempDir::new("home2") };
        fs::create_dir_all(fresh.home.path().join(".docker")).unwrap();
        fs::copy(c.home.path().join(".docker/config.json"), fresh.home.path().join(".docker/config.json")).unwrap();
        fresh.ok(&["pull", &target]);
        // A credential helper instead of a stored password.
        let helper_home = TempDir::new("home3");
        let bin = helper_home.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        let script = format!(
            "#!/bin/sh\nread host\necho '{{\"ServerURL\":\"'$host'\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}'\n"
        );
        let helper = bin.join("docker-credential-rbuildtest");
        fs::write(&helper, script).unwrap();
        fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        fs::create_dir_all(helper_home.path().join(".docker")).unwrap();
        fs::write(
            helper_home.path().join(".docker/config.json"),
            format!("{{\"credHelpers\": {{\"{}\": \"rbuildtest\"}}}}", reg.host()),
        )
        .unwrap();
        let via_helper = Client { b: Builder::empty(false), home: helper_home };
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let out = via_helper.rb_with(&["pull", &target], &[("PATH", &path)]);
        assert!(out.status.success(), "{auth:?} helper: {}", String::from_utf8_lossy(&out.stderr));
        // logout forgets.
        c.ok(&["logout", &reg.host()]);
        let out = c.rb(&["pull", &target]);
        assert!(!out.status.success(), "{auth:?}");
    }
}

#[test]
fn tls_with_a_private_ca() {
    let reg = RegistryServer::start(RegistryAuth::None, true);
    let c = Client::new();
    c.ok(&["load", "-i", test_image("busybox").to_str().unwrap()]);
    let target = format!("localhost:{}/tls/busybox:1", reg.port);
    // Without the CA the certificate is refused (HTTPS is used: the registry answers TLS).
    let out = c.rb(&["push", "busybox", &target]);
    assert!(!out.status.success());
    // With the CA in ~/.config/rbuild/certs.d/<host>/ the push works, and skopeo (trusting the CA) reads it.
    let certs = c.home.path().join(format!(".config/rbuild/certs.d/localhost:{}", reg.port));
    fs::create_dir_all(&certs).unwrap();
    fs::copy(reg.ca_cert(), certs.join("ca.crt")).unwrap();
    c.ok(&["push", "busybox", &target]);
    let certdir = certs.display().to_string();
    let out = skopeo(&["inspect", "--cert-dir", &certdir, &format!("docker://{target}")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn mirrors_and_offline_mode() {
    let reg = RegistryServer::start(RegistryAuth::None, false);
    seed_busybox(&reg, "library/busybox", &["--dest-tls-verify=false"]);
    let c = Client::new();
    let conf_dir = c.home.path().join(".config/rbuild");
    fs::create_dir_all(&conf_dir).unwrap();
    fs::write(conf_dir.join("registries.toml"), format!("[registry.\"docker.io\"]\nmirrors = [\"{}\"]\n", reg.host()))
        .unwrap();
    let ctx = c.b.context("mirror", &[("Dockerfile", "FROM busybox\nRUN echo via-mirror > /m\n")]);
    c.ok(&["build", "--progress", "plain", "-t", "m", ctx.to_str().unwrap()]);
    assert_eq!(c.b.run("m", &["cat", "/m"]), "via-mirror\n");
    assert!(reg.count("GET", "/library/busybox/manifests/latest") >= 1);
    // Offline: the same build works from the store, and touches no registry.
    let gets = reg.count("GET", "");
    c.ok(&["--offline", "build", "--progress", "plain", "--no-cache", "-t", "m2", ctx.to_str().unwrap()]);
    let ctx2 = c.b.context("missing", &[("Dockerfile", "FROM alpine:3.19\n")]);
    let out = c.rb(&["--offline", "build", "--progress", "plain", ctx2.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("offline mode") && err.contains("alpine:3.19"), "{err}");
    assert_eq!(reg.count("GET", ""), gets, "offline mode contacted the registry");
    // A registries.toml that lists only the mirror refuses other registries by name.
    fs::write(conf_dir.join("registries.toml"), format!("only_listed = true\n[registry.\"{}\"]\n", reg.host()))
        .unwrap();
    let out = c.rb(&["pull", "quay.io/some/image:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("quay.io is not allowed") && err.contains("registries.toml"),
        "{err}"
    );
}

/// A big random layer, so that a push takes long enough to be interrupted.
fn big_image(c: &Client, mb: usize) -> String {
    let ctx =
        c.b.context("big", &[("Dockerfile", &format!("FROM busybox\nRUN head -c {}m /dev/urandom > /big\n", mb))]);
    c.ok(&["load", "-i", test_image("busybox").to_str().unwrap()]);
    c.ok(&["build", "--progress", "plain", "--compression", "uncompressed", "-t", "big", ctx.to_str().unwrap()]);
    "big".into()
}

#[test]
fn a_registry_restarting_mid_push_and_one_staying_down() {
    let mut reg = RegistryServer::start(RegistryAuth::None, false);
    let c = Client::new();
    let image = big_image(&c, 96);
    let target = format!("{}/faults/big:1", reg.host());
    // Kill the registry once the big blob's upload has started; restart it a second later.
    let env = c.env();
    let mut cmd = Command::new(rbuild_tests::rbuild_bin());
    cmd.arg("--root").arg(&c.b.root).args(["push", &image, &target]);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    cmd.env("RBUILD_REGISTRY_RETRY_SECONDS", "20").env("RBUILD_REGISTRY_CHUNK_SIZE", "4194304");
    let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = std::time::Instant::now();
    while reg.count("PATCH", "/blobs/uploads/") < 2 && start.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(reg.count("PATCH", "/blobs/uploads/") >= 2, "the upload never started");
    reg.stop();
    std::thread::sleep(std::time::Duration::from_secs(1));
    reg.restart();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the push did not survive the restart: {}", String::from_utf8_lossy(&out.stderr));
    let out = skopeo(&["inspect", "--tls-verify=false", &format!("docker://{target}")]);
    assert!(out.status.success());
    // Down for longer than the retry budget: the push fails naming the registry; after a restart a rerun
    // uploads only what is missing (here: nothing but the manifest).
    let target2 = format!("{}/faults/again:1", reg.host());
    reg.stop();
    let out = c.rb(&["push", &image, &target2]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&reg.host()), "{err}");
    reg.restart();
    let before = uploads(&reg);
    let err = c.ok(&["push", &image, &target2]);
    assert_eq!(uploads(&reg), before, "{err}");
}

/// A proxy in front of the registry that flips a byte in every blob it serves.
fn corrupting_proxy(upstream: u16) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).replace("Connection: keep-alive", "Connection: close");
                let is_blob = text.starts_with("GET ") && text.lines().next().unwrap_or("").contains("/blobs/sha256:");
                let mut up = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                let head_end = text.find("\r\n\r\n").unwrap();
                let request = format!("{}\r\nConnection: close\r\n\r\n", &text[..head_end]);
                up.write_all(request.as_bytes()).unwrap();
                let mut resp = Vec::new();
                let _ = up.read_to_end(&mut resp);
                if is_blob && resp.starts_with(b"HTTP/1.1 200") {
                    let last = resp.len() - 1;
                    resp[last] ^= 0xff;
                }
                let _ = conn.write_all(&resp);
            });
        }
    });
    port
}

#[test]
fn a_registry_sending_a_wrong_blob_is_rejected_and_nothing_is_stored() {
    let reg = RegistryServer::start(RegistryAuth::None, false);
    seed_busybox(&reg, "library/busybox", &["--dest-tls-verify=false"]);
    let proxy = corrupting_proxy(reg.port);
    let c = Client::new();
    let out = c.rb(&["pull", &format!("127.0.0.1:{proxy}/library/busybox:latest")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("expected sha256:") && err.contains("nothing was stored"), "{err}");
    let blobs: Vec<PathBuf> = fs::read_dir(c.b.root.join("blobs/sha256"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(blobs.is_empty(), "blobs entered the store: {blobs:?}");
    c.b.assert_clean();
}

#[test]
fn remote_cache_through_a_registry_and_a_local_layout_with_warm_cache_mounts() {
    let reg = RegistryServer::start(RegistryAuth::None, false);
    seed_busybox(&reg, "library/busybox", &["--dest-tls-verify=false"]);
    let dockerfile = format!(
        "FROM {}/library/busybox:latest\n\
         RUN --mount=type=cache,target=/cache,id=warm sh -c 'test -f /cache/filled || echo filled-once > /cache/filled; cat /cache/filled > /seen'\n\
         RUN echo two > /two\nCOPY f.txt /f.txt\n",
        reg.host()
    );
    let cache_ref = format!("type=registry,ref={}/cache/app:buildcache,mode=max,mounts=true", reg.host());
    let local_dir = TempDir::new("local-cache");
    let local_to = format!("type=local,dest={}", local_dir.path().join("c").display());
    let local_from = format!("type=local,src={}", local_dir.path().join("c").display());
    let first = Client::new();
    let ctx = first.b.context("cached", &[("Dockerfile", &dockerfile), ("f.txt", "file\n")]);
    let ctx = ctx.to_str().unwrap();
    let err = first.ok(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "app",
        "--cache-to",
        &cache_ref,
        "--cache-to",
        &local_to,
        ctx,
    ]);
    assert_eq!(rbuild_tests::build_fixture::counts(&err), (3, 0), "{err}");
    assert!(err.contains("cache: exported 3 records"), "{err}");
    let built = |err: &str| err.split("built ").nth(1).map(|s| s[..71].to_string()).unwrap_or_default();
    let first_digest = built(&err);
    assert!(first_digest.starts_with("sha256:"), "{err}");
    for from in [format!("type=registry,ref={}/cache/app:buildcache", reg.host()), local_from] {
        // A runner that starts empty: every step comes from the imported cache, and the image is the same image
        // (BuildKit's testImportExportReproducibleIDs).
        let fresh = Client::new();
        let err = fresh.ok(&["build", "--progress", "plain", "-t", "app", "--cache-from", &from, ctx]);
        assert_eq!(rbuild_tests::build_fixture::counts(&err), (0, 3), "{from}: {err}");
        assert_eq!(built(&err), first_digest, "{from}: the image from the imported cache is the first build's");
        assert_eq!(fresh.run("app", &["cat", "/seen", "/two", "/f.txt"]), "filled-once\ntwo\nfile\n");
        let warm = from.starts_with("type=registry");
        if warm {
            // The cache mount came along (mounts=true): a step that re-runs finds it filled.
            let ctx2 = fresh.b.context("cached2", &[(
                "Dockerfile",
                &format!("FROM {}/library/busybox:latest\nRUN --mount=type=cache,target=/cache,id=warm cat /cache/filled > /again\n", reg.host()),
            )]);
            fresh.ok(&["build", "--progress", "plain", "-t", "again", ctx2.to_str().unwrap()]);
            assert_eq!(fresh.run("again", &["cat", "/again"]), "filled-once\n");
        }
        fresh.b.assert_clean();
    }
    // Inline cache: the image itself carries the records; a fresh runner names the image as its cache.
    let image = format!("{}/cache/inline:1", reg.host());
    let err = first.ok(&[
        "build",
        "--progress",
        "plain",
        "--no-cache",
        "-t",
        &image,
        "--cache-to",
        "type=inline",
        "--push",
        ctx,
    ]);
    assert!(err.contains("pushed"), "{err}");
    let fresh = Client::new();
    let err = fresh.ok(&["build", "--progress", "plain", "-t", "app", "--cache-from", &image, ctx]);
    assert_eq!(rbuild_tests::build_fixture::counts(&err), (0, 3), "{err}");
    // A cache that is not there is a warning, not a failure.
    let fresh = Client::new();
    let missing = format!("type=registry,ref={}/cache/none:1", reg.host());
    let err = fresh.ok(&["build", "--progress", "plain", "--cache-from", &missing, ctx]);
    assert!(err.contains("warning: cache from") && err.contains("not used"), "{err}");
}

/// The layer digests of an image in the registry (skopeo reads its manifest).
fn registry_layers(image: &str) -> Vec<String> {
    let out = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{image}")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

/// A CI runner that starts empty with a registry cache (issue 27): the cached steps' layers and the base's stay
/// remote — the build downloads no layer, its push to another repository mounts them — until something needs
/// their bytes (`run`, a changed step, a push to another registry), which fetches and verifies them; offline that
/// is a clear error and the store stays sound; fsck names remote layers, prune keeps them. As root and rootless.
#[test]
fn a_fresh_runner_downloads_no_layer_until_one_is_needed() {
    let reg = RegistryServer::start(RegistryAuth::None, false);
    seed_busybox(&reg, "library/busybox", &["--dest-tls-verify=false"]);
    // A side stage mounted by the last RUN: a cached step with a bind mount from a stage reads none of its files.
    let dockerfile = format!(
        "FROM {0}/library/busybox:latest AS side\nRUN echo side > /side\n\
         FROM {0}/library/busybox:latest\nCOPY files/ /data/\nRUN find /data -type f | wc -l > /count\n\
         WORKDIR /app\nCOPY --chown=1:1 f.txt ./\nRUN cat /data/a > /copy-of-a\n\
         RUN --mount=from=side,target=/s cat /s/side > /from-side\n",
        reg.host()
    );
    let files: Vec<(String, String)> = (0..40).map(|i| (format!("files/{i}.txt"), format!("file {i}\n"))).collect();
    let mut all: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    all.extend([("Dockerfile", dockerfile.as_str()), ("f.txt", "f\n"), ("files/a", "a\n")]);
    let first = Client::new();
    let ctx = first.b.context("app", &all);
    let ctx = ctx.to_str().unwrap();
    let cache = format!("type=registry,ref={}/cache/app:ci,mode=max", reg.host());
    let first_image = format!("{}/team/app:1", reg.host());
    let err = first.ok(&["build", "--progress", "plain", "-t", &first_image, "--cache-to", &cache, "--push", ctx]);
    assert_eq!(rbuild_tests::build_fixture::counts(&err), (7, 0), "{err}");
    let built = |err: &str| err.split("built ").nth(1).map(|s| s[..71].to_string()).unwrap_or_default();
    let digest = built(&err);
    let layers = registry_layers(&first_image);
    assert_eq!(layers.len(), 7, "busybox + 6 steps: {layers:?}");
    let layer_gets = || layers.iter().map(|l| reg.count("GET", &format!("blobs/{l}"))).sum::<usize>();
    let layer_puts = || layers.iter().map(|l| reg.count("PUT", l)).sum::<usize>();

    // The fresh runner: every step cached, the same image, pushed to another repository: no layer downloaded
    // or uploaded (each mounted from where the store knows it is).
    let (gets, puts, mounts) = (layer_gets(), layer_puts(), reg.count("POST", "mount="));
    let blob_gets = reg.count("GET", "/blobs/sha256:");
    let fresh = Client::new();
    let from = format!("type=registry,ref={}/cache/app:ci", reg.host());
    let pushed = format!("{}/other/app:1", reg.host());
    let err = fresh.ok(&["build", "--progress", "plain", "-t", &pushed, "--cache-from", &from, "--push", ctx]);
    assert_eq!(rbuild_tests::build_fixture::counts(&err), (0, 7), "{err}");
    assert_eq!(built(&err), digest, "the image from the imported cache is the first build's");
    assert_eq!((layer_gets(), layer_puts()), (gets, puts), "a layer moved: {err}");
    // Two blobs downloaded in all: the cache's config and the base image's config (not the side stage's layer).
    assert_eq!(reg.count("GET", "/blobs/sha256:"), blob_gets + 2, "{err}");
    assert!(reg.count("POST", "mount=") >= mounts + layers.len(), "the layers are mounted: {err}");
    assert_eq!(registry_layers(&pushed), layers);
    let store_blobs = fresh.b.root.join("blobs/sha256");
    assert!(layers.iter().all(|l| !store_blobs.join(&l[7..]).exists()), "a layer is in the store");
    // fsck names them remote, not missing; prune keeps them.
    let out = fresh.b.rb(&["fsck"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("(7 remote layers)") && text.contains("remote layer"), "{text}");
    fresh.ok(&["prune"]);
    let err = fresh.ok(&["build", "--progress", "plain", "-t", &pushed, "--cache-from", &from, ctx]);
    assert_eq!(rbuild_tests::build_fixture::counts(&err), (0, 7), "after prune: {err}");

    // Offline, a command that needs the files fails naming the layer and what to do; the store stays sound.
    let out = fresh.rb_with(&["run", &pushed, "cat", "/count"], &[("RBUILD_OFFLINE", "1")]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("is not in the store yet") && text.contains("without --offline"), "{text}");
    assert!(fresh.b.rb(&["fsck"]).status.success());
    // Online it fetches (verified) what it needs.
    assert_eq!(fresh.run(&pushed, &["cat", "/count", "/copy-of-a", "/app/f.txt", "/from-side"]), "41\na\nf\nside\n");
    assert!(layer_gets() > gets, "run fetched the layers");

    // One file changed on another empty runner: the steps after it run on the fetched layers below them.
    let changed = Client::new();
    let ctx2 = changed.b.context("app", &all);
    fs::write(ctx2.join("f.txt"), "changed\n").unwrap();
    let err = changed.ok(&["build", "--progress", "plain", "-t", "app", "--cache-from", &from, ctx2.to_str().unwrap()]);
    assert_eq!(rbuild_tests::build_fixture::counts(&err), (3, 4), "{err}");
    assert_eq!(changed.run("app", &["stat", "-c", "%u:%g %n", "/app/f.txt"]), "1:1 /app/f.txt\n");
    assert_eq!(
        changed.run("app", &["cat", "/count", "/copy-of-a", "/app/f.txt", "/from-side"]),
        "41\na\nchanged\nside\n"
    );
    // To a registry that has none of the layers (no mount possible): each is fetched from where it is, verified,
    // and uploaded.
    let reg2 = RegistryServer::start(RegistryAuth::None, false);
    let elsewhere = Client::new();
    let ctx4 = elsewhere.b.context("app", &all);
    let copied = format!("{}/copied/app:1", reg2.host());
    let err = elsewhere.ok(&[
        "build",
        "--progress",
        "plain",
        "-t",
        &copied,
        "--cache-from",
        &from,
        "--push",
        ctx4.to_str().unwrap(),
    ]);
    assert_eq!(rbuild_tests::build_fixture::counts(&err), (0, 7), "{err}");
    assert_eq!(built(&err), digest, "{err}");
    assert_eq!(registry_layers(&copied), layers);
    assert!(layers.iter().all(|l| reg2.count("PUT", l) == 1), "every layer uploaded once: {err}");
    fresh.b.assert_clean();
    changed.b.assert_clean();
    elsewhere.b.assert_clean();
    // Rootless (subordinate ids): the same empty-runner build, then the layers unpacked in the user namespace.
    if rbuild_tests::running_as_root() {
        let user = Client { b: Builder::empty(true), home: TempDir::new("home") };
        rbuild_tests::give_to_test_user(user.home.path());
        let ctx3 = user.b.context("app", &all);
        let err =
            user.ok(&["build", "--progress", "plain", "-t", "app", "--cache-from", &from, ctx3.to_str().unwrap()]);
        assert_eq!(rbuild_tests::build_fixture::counts(&err), (0, 7), "rootless: {err}");
        assert_eq!(built(&err), digest, "rootless: the same image");
        assert_eq!(user.run("app", &["cat", "/count", "/copy-of-a", "/app/f.txt"]), "41\na\nf\n");
        user.b.assert_clean();
    }
}

/// What the scripted proxy does with one request.
enum Action {
    Forward,
    Respond(String),
}

/// A loopback HTTP proxy in front of `upstream` that first asks `script` what to do with each request (by its
/// request line and headers), and records every request it saw.
fn scripted_proxy(
    upstream: u16,
    script: impl Fn(&str, &str) -> Action + Send + Sync + 'static,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (seen2, script) = (seen.clone(), std::sync::Arc::new(script));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (seen, script) = (seen2.clone(), script.clone());
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut req = Vec::new();
                let mut buf = [0u8; 65536];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).into_owned();
                let head_end = text.find("\r\n\r\n").unwrap();
                let head = &text[..head_end];
                let line = head.lines().next().unwrap_or("").to_string();
                seen.lock().unwrap().push(head.to_string());
                match script(&line, head) {
                    Action::Respond(r) => {
                        let _ = conn.write_all(r.as_bytes());
                    }
                    Action::Forward => {
                        // Bodies (uploads) are not proxied: the scripted tests only pull.
                        let mut up = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                        let head: String = head
                            .lines()
                            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                            .collect::<Vec<_>>()
                            .join("\r\n");
                        up.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
                        let mut resp = Vec::new();
                        let _ = up.read_to_end(&mut resp);
                        let _ = conn.write_all(&resp);
                    }
                }
            });
        }
    });
    (port, seen)
}

#[test]
fn retries_on_429_and_no_credentials_on_redirects_to_another_host() {
    let reg = RegistryServer::start(RegistryAuth::Basic { user: "carol".into(), password: "pw-carol-1".into() }, false);
    let layout = test_image("busybox");
    let src = format!("oci:{}:latest", layout.display());
    let out = skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        "carol:pw-carol-1",
        &src,
        &format!("docker://{}/r/busybox:1", reg.host()),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // "Storage": another host (port) that serves blobs when asked by URL, as S3 does with presigned URLs.
    let upstream = reg.port;
    let (storage, storage_seen) = scripted_proxy(upstream, move |_, _| Action::Forward);
    // The registry's front: the first manifest request gets a 429; blob GETs are redirected to the storage host,
    // which forwards them with its own credentials.
    let once = std::sync::atomic::AtomicBool::new(false);
    let (front, front_seen) = scripted_proxy(upstream, move |line, _| {
        if line.contains("/manifests/") && !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Action::Respond(
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .into(),
            );
        }
        if line.starts_with("GET ") && line.contains("/blobs/sha256:") {
            let path = line.split_whitespace().nth(1).unwrap();
            return Action::Respond(format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{storage}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ));
        }
        Action::Forward
    });
    let c = Client::new();
    let docker_dir = c.home.path().join(".docker");
    fs::create_dir_all(&docker_dir).unwrap();
    fs::write(
        docker_dir.join("config.json"),
        format!(
            "{{\"auths\": {{\"127.0.0.1:{front}\": {{\"auth\": \"{}\"}}}}}}",
            rbuild_tests::registry_fixture::b64(b"carol:pw-carol-1")
        ),
    )
    .unwrap();
    let out = c.rb(&["pull", &format!("127.0.0.1:{front}/r/busybox:1")]);
    // The storage host has no credentials of its own here, so the registry behind it refuses: what matters is
    // what rbuild sent it.
    let storage_requests = storage_seen.lock().unwrap().clone();
    assert!(!storage_requests.is_empty(), "the redirect was not followed: {}", String::from_utf8_lossy(&out.stderr));
    for r in &storage_requests {
        assert!(!r.to_ascii_lowercase().contains("authorization"), "credentials went to another host: {r}");
    }
    let front_requests = front_seen.lock().unwrap().clone();
    let manifest_gets =
        front_requests.iter().filter(|r| r.lines().next().unwrap_or("").contains("/manifests/")).count();
    assert!(manifest_gets >= 2, "the 429 was not retried: {front_requests:?}");
    assert!(
        front_requests.iter().any(|r| r.to_ascii_lowercase().contains("authorization: basic")),
        "{front_requests:?}"
    );
}

#[test]
fn podman_auth_files_are_read() {
    let reg = RegistryServer::start(RegistryAuth::Basic { user: "dave".into(), password: "pw-dave-2".into() }, false);
    let c = Client::new();
    c.ok(&["load", "-i", test_image("busybox").to_str().unwrap()]);
    let auth_file = c.home.path().join("podman-auth.json");
    let auth = rbuild_tests::registry_fixture::b64(b"dave:pw-dave-2");
    fs::write(&auth_file, format!("{{\"auths\": {{\"{}\": {{\"auth\": \"{auth}\"}}}}}}", reg.host())).unwrap();
    let target = format!("{}/p/busybox:1", reg.host());
    let out = c.rb(&["push", "busybox", &target]);
    assert!(!out.status.success(), "no credentials yet");
    let out = c.rb_with(&["push", "busybox", &target], &[("REGISTRY_AUTH_FILE", auth_file.to_str().unwrap())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The static binary (what `scripts/dist` hands out; scripts/test builds the tested one statically too), alone in
/// an empty root (no libraries, no /etc, no certificate store), pulls from the TLS registry given only that
/// registry's CA (SSL_CERT_FILE) and lists what it pulled. Needs root for chroot.
#[test]
fn the_static_binary_pulls_over_tls_from_an_empty_root() {
    let Some(dist) = rbuild_tests::static_rbuild_bin() else {
        eprintln!("skipped: rbuild is linked dynamically here (scripts/test builds it static; or run scripts/dist)");
        return;
    };
    if !rbuild_tests::running_as_root() {
        eprintln!("skipped: chroot needs root");
        return;
    }
    let reg = RegistryServer::start(RegistryAuth::None, true);
    let certdir = TempDir::new("seed-certs");
    fs::copy(reg.ca_cert(), certdir.path().join("ca.crt")).unwrap();
    let layout = test_image("busybox");
    let target = format!("localhost:{}/static/busybox:1", reg.port);
    let out = skopeo(&[
        "copy",
        "--dest-cert-dir",
        &certdir.path().display().to_string(),
        &format!("oci:{}", layout.display()),
        &format!("docker://{target}"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = TempDir::new("empty-root");
    fs::copy(&dist, root.path().join("rbuild")).unwrap();
    fs::copy(reg.ca_cert(), root.path().join("ca.pem")).unwrap();
    let chrooted = |args: &[&str]| {
        Command::new(require_tool("chroot"))
            .arg(root.path())
            .arg("/rbuild")
            .args(["--root", "/store"])
            .args(args)
            .env_clear()
            .env("SSL_CERT_FILE", "/ca.pem")
            .env("HOME", "/")
            .output()
            .unwrap()
    };
    let out = chrooted(&["pull", &target]);
    assert!(out.status.success(), "pull: {}", String::from_utf8_lossy(&out.stderr));
    let out = chrooted(&["images"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("static/busybox"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(fs::read_dir(root.path()).unwrap().count(), 3, "rbuild, ca.pem and the store: nothing else was needed");
}
